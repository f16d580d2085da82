"""The public API above both drivers: module functions, proxies and pool channels.

The sync functions and :class:`PoolProxy` drive a pool's actors
(:mod:`grpcpool.actors`); :class:`grpcpool.aio.Pool` and the asyncio functions
drive its tasks (:mod:`grpcpool.tasks`). :class:`PoolChannel` and
:class:`AioPoolChannel` route each call over a pool's view. :mod:`grpcpool`
and :mod:`grpcpool.aio` re-export what users need from here.
"""

from grpcpool.api._table import lookup

__all__ = ["lookup"]
