"""Pool rules as pure code: no grpc, threads or asyncio, so both drivers share them.

The sync pool (pykka actors, caller threads) and the asyncio pool (tasks on
one loop) make the same decisions; each decision lives here once, takes what
it needs as arguments, and answers with an effect the driver carries out.
:class:`CallLedger` counts the calls running on one connection and says when
a retired connection may close.
"""

from grpcpool.core._calls import CallLedger, Close

__all__ = ["CallLedger", "Close"]
