"""Sending a call again when it failed before it reached any server.

A pool's view lags its connections by a few milliseconds: when a backend
dies, calls started before the worker has seen its connection drop are
still routed to it. Such a call never reaches a server. grpcio queues it
while the channel reconnects, the connect is refused, and the load balancing
policy fails it at pick time with ``UNAVAILABLE`` and details that begin
``failed to connect to all addresses`` (pinned by
tests/test_grpcio_contract.py). A call that was sent and then lost its
connection fails otherwise (``UNAVAILABLE: Stream removed (Socket closed)``,
say), so the wording tells the two apart, and only the first is sent again,
on another ready connection, within the call's deadline.

grpcio retries a call it has already sent only if the user's service config
has a retry policy for the code; a call that policy retried and whose last
attempt failed at pick time is one the user allowed to be sent again.

This module is the pure part: what a failure means and which connection is
next. The pool channels (sync and asyncio) drive it from their failure
paths only, so a call that succeeds pays nothing for it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import grpc

from grpcpool.connection._call_errors import status_code
from grpcpool.core._ready import ReadyConnection
from grpcpool.core._view import PoolView
from grpcpool.errors import NotConnectedError

__all__ = ["NEVER_SENT", "never_sent", "untried"]

#: How grpcio's load balancing policy words a call it failed at pick time,
#: before the call had a connection: the channel was not READY and its
#: connect failed.
NEVER_SENT = "failed to connect to all addresses"


def never_sent(error: BaseException) -> bool:
    """True if a failed call never left the client: it may be sent elsewhere."""
    if status_code(error) is not grpc.StatusCode.UNAVAILABLE:
        return False
    details = error.details()  # type: ignore[attr-defined]  # a grpc.Call or AioRpcError
    return isinstance(details, str) and details.startswith(NEVER_SENT)


def untried(view: PoolView, tried: Sequence[ReadyConnection]) -> ReadyConnection | None:
    """A ready connection of ``view`` not in ``tried``, by the pool's strategy if it will.

    The strategy picks first (as many times as there are connections, so
    round robin reaches every one); a strategy that keeps picking tried
    ones is passed over for the first untried connection in the view.
    """
    connections = view.connections
    for _ in range(len(connections)):
        try:
            picked = view.pick_connection()
        except NotConnectedError:
            return None
        if not _among(picked, tried):
            return picked
    return next((c for c in connections if not _among(c, tried)), None)


def _among(connection: Any, tried: Sequence[ReadyConnection]) -> bool:
    return any(connection is seen for seen in tried)
