"""ReadyConnection: one ready channel of a pool, as the pool channel routes to it.

The HealthRegistry makes one when a worker reports a channel ready and keeps
the same object in every view while that channel stays ready, so what
belongs to the connection rather than to one picture of the pool lives here:

* ``ledger``: the calls running on its channel through a pool channel (a
  :class:`~grpcpool.core.CallLedger`, one per channel, shared by every
  ReadyConnection of that channel), counted from :meth:`start` to
  :meth:`end` without a lock by callers on any thread; ``calls`` is its live
  set of tickets, whose ``len`` is exact. When the last call on a retired
  connection ends, :meth:`end` has its driver close the channel.
* ``stats``: how the calls through the pool channel on it ended (their
  outcomes and latencies), told by the pool channel as each call ends.
* ``callables``: the grpc multi-callables built on its channel, one per
  method and kind, so a call through the pool channel builds nothing.
* ``limit``: the most calls it may run at once since its server refused a
  stream (None: no such limit), lowered by :mod:`grpcpool.core._capacity`;
  ``on_end``, set once its pool is limited, is called after each call on it
  ends, to hand the slot to a call waiting for one.
* ``failed`` and ``report_unavailable``: a call failed with ``UNAVAILABLE``
  (not a refused stream); tell the connection's worker to check it now (at most once per
  ``SUSPECT_CHECK_INTERVAL``, so a dead connection under load sends its
  worker one message, not one per failed call).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import grpc

from grpcpool._config_timings import SUSPECT_CHECK_INTERVAL
from grpcpool.connection._call_errors import refused_stream, status_code
from grpcpool.connection._calls import CallLedger
from grpcpool.core._call_stats import CallStats

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


# Tickets of calls: unique in the process (a ledger must never take two
# calls for one), and next() on a count is one C call, atomic under the GIL.
_tickets = itertools.count().__next__


class ReadyConnection:
    """A ready channel of one worker, with its calls in flight.

    Attributes:
        channel: The grpc channel.
        worker_id: The worker that owns it.
        ledger: The calls in flight on ``channel`` and its retirement.
        calls: Tickets of the calls running on it through the pool channel
            (``ledger.calls``, the live set).
        callables: Multi-callables built on ``channel``, by :data:`CallableKey`.
        address: The resolved address the channel is pinned to (None: ``host:port``).
        stats: How the calls through the pool channel on it ended
            (:class:`~grpcpool.core._call_stats.CallStats`).

    Args:
        ledger: The channel's ledger, from its worker (a new one if None).
        on_last_call: Called once when the last call on the retired
            connection has ended (:attr:`Close.NOW <grpcpool.core.Close>`):
            the driver closes the channel. On the thread that ended the call;
            it must not block.
    """

    __slots__ = (
        "_last_suspect",
        "_on_last_call",
        "_suspect",
        "address",
        "callables",
        "calls",
        "channel",
        "ledger",
        "limit",
        "on_end",
        "stats",
        "worker_id",
    )

    def __init__(
        self,
        channel: grpc.Channel,
        worker_id: str,
        suspect: Callable[[], None] | None = None,
        address: str | None = None,
        ledger: CallLedger | None = None,
        on_last_call: Callable[[], None] | None = None,
    ) -> None:
        self.channel = channel
        self.worker_id = worker_id
        self.address = address
        self.ledger = ledger if ledger is not None else CallLedger()
        self.calls = self.ledger.calls
        self.callables: dict[CallableKey, Any] = {}
        self._suspect = suspect
        self._on_last_call = on_last_call
        self._last_suspect = -SUSPECT_CHECK_INTERVAL
        self.stats = CallStats()
        #: The most calls it may run at once (a refused stream lowered it); None: no limit.
        self.limit: int | None = None
        #: Called after each call on it ends, once its pool is limited (core._capacity).
        self.on_end: Callable[[], None] | None = None

    @property
    def in_flight(self) -> int:
        """How many calls are running on this connection through the pool channel."""
        return len(self.calls)

    def start(self) -> int | None:
        """Counts a call starting here; returns its ticket, or None if the connection was retired.

        None means the caller picked from a view taken before the connection
        left the pool: the call goes to another connection.
        """
        ticket = _tickets()
        if self.ledger.started(ticket):
            return ticket
        # Never started, so no slot to hand on (on_end is not called).
        if self.ledger.ended(ticket) is not None and self._on_last_call is not None:
            self._on_last_call()
        return None

    def end(self, ticket: int) -> None:
        """The call of ``ticket`` has ended; closes a retired channel when it was the last."""
        if self.ledger.ended(ticket) is not None and self._on_last_call is not None:
            self._on_last_call()
        on_end = self.on_end
        if on_end is not None:
            on_end()

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

    def failed(self, error: BaseException, now: float) -> None:
        """A call on this connection failed: if the error says it may be gone, have it checked.

        ``UNAVAILABLE`` may mean the connection is gone; not so a stream the
        server refused at its stream limit (it answered on the connection).

        Args:
            error: What the call raised.
            now: ``time.monotonic()``, passed in by the caller (a rule of the
                core reads no clock).
        """
        if status_code(error) is grpc.StatusCode.UNAVAILABLE and not refused_stream(error):
            self.report_unavailable(now)

    def report_unavailable(self, now: float) -> None:
        """A call on this connection failed with ``UNAVAILABLE`` at ``now``: have it checked soon.

        At most one check per ``SUSPECT_CHECK_INTERVAL``, however many calls fail.
        """
        suspect = self._suspect
        if suspect is None:
            return
        if now - self._last_suspect < SUSPECT_CHECK_INTERVAL:
            return
        self._last_suspect = now
        suspect()

    def __repr__(self) -> str:
        return f"<ReadyConnection {self.worker_id} in_flight={len(self.calls)}>"
