"""ReadyConnection: one ready channel of a pool, as the pool channel routes to it.

The HealthRegistry makes one when a worker reports a channel ready and keeps
the same object in every view while that channel stays ready, so what
belongs to the connection rather than to one picture of the pool lives here:

* ``calls``: the calls running on it through a pool channel, one token each
  (a ``perf_counter_ns`` reading for a sync blocking call, the call object
  otherwise). ``set.add`` and ``set.discard`` are single C calls, atomic
  under the GIL, so callers on any thread count without a lock, and
  ``len(calls)`` is exact.
* ``callables``: the grpc multi-callables built on its channel, one per
  method and kind, so a call through the pool channel builds nothing.
* ``failed`` and ``report_unavailable``: a call failed with ``UNAVAILABLE``
  (not a refused stream); tell the connection's worker to check it now (at most once per
  ``SUSPECT_CHECK_INTERVAL``, so a dead connection under load sends its
  worker one message, not one per failed call).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import grpc

from grpcpool.config import SUSPECT_CHECK_INTERVAL
from grpcpool.connection._health import refused_stream, status_code

__all__ = ["CallableKey", "ReadyConnection", "callable_key"]

#: What identifies a multi-callable on one channel: its kind
#: (``"unary_unary"``, ...), the method path, the request serializer, the
#: response deserializer and grpcio's ``_registered_method`` flag: the
#: arguments of grpcio's ``Channel.unary_unary`` (and the other three).
CallableKey = tuple[str, str, Any, Any, bool | None]


def callable_key(
    kind: str, method: str, serializer: Any, deserializer: Any, registered: bool | None
) -> CallableKey:
    """The :data:`CallableKey` of a multi-callable a pool channel hands out."""
    return (kind, method, serializer, deserializer, registered)


class ReadyConnection:
    """A ready channel of one worker, with its calls in flight.

    Attributes:
        channel: The grpc channel.
        worker_id: The worker that owns it.
        calls: Tokens of the calls running on it through the pool channel.
        callables: Multi-callables built on ``channel``, by :data:`CallableKey`.
        address: The resolved address the channel is pinned to (None: ``host:port``).
    """

    __slots__ = (
        "_last_suspect",
        "_suspect",
        "address",
        "callables",
        "calls",
        "channel",
        "worker_id",
    )

    def __init__(
        self,
        channel: grpc.Channel,
        worker_id: str,
        suspect: Callable[[], None] | None = None,
        address: str | None = None,
    ) -> None:
        self.channel = channel
        self.worker_id = worker_id
        self.address = address
        self.calls: set[object] = set()
        self.callables: dict[CallableKey, Any] = {}
        self._suspect = suspect
        self._last_suspect = -SUSPECT_CHECK_INTERVAL

    @property
    def in_flight(self) -> int:
        """How many calls are running on this connection through the pool channel."""
        return len(self.calls)

    def multi_callable(self, key: CallableKey) -> Any:
        """The multi-callable of ``key`` on this channel, built on first use.

        Two callers racing on a new key may both build one; the last stored
        wins and both work.
        """
        built = self.callables.get(key)
        if built is None:
            kind, method, serializer, deserializer, registered = key
            factory = getattr(self.channel, kind)
            built = self.callables[key] = factory(
                method,
                request_serializer=serializer,
                response_deserializer=deserializer,
                _registered_method=registered,
            )
        return built

    def failed(self, error: BaseException) -> None:
        """A call on this connection failed: if the error says it may be gone, have it checked.

        ``UNAVAILABLE`` may mean the connection is gone; not so a stream the
        server refused at its stream limit (it answered on the connection).
        """
        if status_code(error) is grpc.StatusCode.UNAVAILABLE and not refused_stream(error):
            self.report_unavailable()

    def report_unavailable(self) -> None:
        """A call on this connection failed with ``UNAVAILABLE``: have it checked soon."""
        suspect = self._suspect
        if suspect is None:
            return
        now = time.monotonic()
        if now - self._last_suspect < SUSPECT_CHECK_INTERVAL:
            return
        self._last_suspect = now
        suspect()

    def __repr__(self) -> str:
        return f"<ReadyConnection {self.worker_id} in_flight={len(self.calls)}>"
