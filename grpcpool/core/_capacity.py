"""Call capacity: per-connection caps, refused streams and the queue of waiting calls.

Two things limit how many calls the pool channel runs on one connection:

* ``pool.max_calls_per_connection`` (None: no cap), the same for every
  connection;
* a connection's own :attr:`~grpcpool.core.ReadyConnection.limit`, set when
  its server refuses a stream (HTTP/2 ``REFUSED_STREAM``: the server was at
  its ``max_concurrent_streams``). The refused call never reached a handler,
  so the connection can take no more than the calls it had in flight then:
  its limit drops to that (at least 1), for the connection's life, and the
  call is routed again.

A pool is *limited* once either applies (the key is set, or a connection of
the pool refused a stream); until then the pool channel admits calls as it
always did, and :class:`Capacity` costs nothing. A limited pool admits each
call through :meth:`Capacity.admit`: the strategy's pick if it has room, else
the connection with the most room; when every ready connection is at its
limit the call waits in a FIFO queue of at most ``pool.max_queued_calls``
(beyond it the call fails at once with ``RESOURCE_EXHAUSTED``), and a new
call queues behind the calls already waiting. :meth:`Capacity.hand_out`
gives the freed slots to the waiting calls, oldest first, when a call ends
or the pool's view changes. A waiting call whose deadline passes leaves the
queue (:meth:`Capacity.leave`) and fails with ``DEADLINE_EXCEEDED``.

:class:`Capacity` is a small machine over the pool's views, which it reads
through the getter it is given: it holds no lock, starts no timer and reads
no clock. The sync driver (:mod:`grpcpool.actors._capacity`) serializes its
steps with a lock and wakes each waiter's event; the asyncio driver
(:mod:`grpcpool.tasks._capacity`) runs them on the pool's loop and resolves
futures. Both use the same rules, so a queue behaves alike in both kinds of
pool.

For ``pool.autoscale`` (to come), :attr:`Capacity.queued` is the calls
waiting now, :meth:`Capacity.take_peak` the peak of calls in flight plus
calls waiting since the last read, and :attr:`Capacity.on_wait` is called
each time a call starts waiting on a full pool (a no-op by default).
"""

from __future__ import annotations

import collections
import enum
from collections.abc import Callable
from typing import Generic, Protocol, TypeVar

import grpc

from grpcpool.core._ready import ReadyConnection
from grpcpool.core._view import PoolView
from grpcpool.errors import PoolCallError

__all__ = [
    "FULL",
    "Capacity",
    "Full",
    "Gate",
    "Slot",
    "in_flight",
    "queue_full",
    "queue_timed_out",
]

W = TypeVar("W")


class Full(enum.Enum):
    """Every ready connection is at its limit (or calls wait already): the call waits."""

    FULL = "full"


FULL = Full.FULL

Slot = tuple[ReadyConnection, int]


class Gate(Protocol):
    """What the pool channels' shared code (hedging) asks of either driver's capacity."""

    @property
    def limited(self) -> bool: ...

    def try_start(self, connection: ReadyConnection) -> int | None:
        """Starts a call on ``connection`` if it has room; its ticket, else None."""

    def note_refused(self, connection: ReadyConnection, others: int) -> None:
        """``connection``'s server refused a stream while ``others`` other calls ran on it."""


def _nothing() -> None:
    """The default :attr:`Capacity.on_wait`."""


def in_flight(view: PoolView) -> int:
    """Calls in flight through the pool channel on the connections of ``view``."""
    return sum(len(c.calls) for c in view.connections) + sum(len(c.calls) for c in view.unrouted)


class Capacity(Generic[W]):
    """One pool's caps, its queue of waiting calls (``W``: the driver's waiters) and their counts.

    Args:
        name: The pool's name (for the errors' messages).
        max_calls: ``pool.max_calls_per_connection``.
        max_queued: ``pool.max_queued_calls``.
        view: Returns the pool's current view.

    Attributes:
        limited: Calls are admitted through :meth:`admit` (the key is set,
            or a connection of the pool refused a stream). Set once, never
            cleared.
        queued: Calls waiting for a slot now (kept as a plain int: a call that
            ends reads it, and only then takes the driver's lock).
        on_wait: Called (by the driver, outside its lock) each time a call
            starts waiting on a full pool.
    """

    def __init__(
        self, name: str, max_calls: int | None, max_queued: int, view: Callable[[], PoolView]
    ) -> None:
        self.name = name
        self.max_calls = max_calls
        self.max_queued = max_queued
        self.limited = max_calls is not None
        self.queued = 0
        self.on_wait: Callable[[], None] = _nothing
        self._view = view
        self._waiters: collections.deque[W] = collections.deque()
        self._peak = 0

    # --- the counts ---------------------------------------------------------------------

    def take_peak(self) -> int:
        """The peak of calls in flight plus calls waiting since the last read; starts anew.

        Sampled when a limited pool admits a call, queues one or hands one a
        slot, and now; an unlimited pool has only the sample taken now.
        """
        now = in_flight(self._view()) + self.queued
        peak, self._peak = max(self._peak, now), now
        return peak

    def _sample(self, view: PoolView) -> None:
        total = in_flight(view) + self.queued
        if total > self._peak:
            self._peak = total

    # --- limits -------------------------------------------------------------------------

    def limit(self, connection: ReadyConnection) -> int | None:
        """How many calls ``connection`` may run at once (None: no limit)."""
        own, cap = connection.limit, self.max_calls
        if own is None:
            return cap
        return own if cap is None else min(own, cap)

    def has_room(self, connection: ReadyConnection) -> bool:
        """Whether one more call may start on ``connection``."""
        limit = self.limit(connection)
        return limit is None or len(connection.calls) < limit

    def refused(self, connection: ReadyConnection, others: int) -> bool:
        """``connection``'s server refused a stream while ``others`` other calls ran on it.

        Its limit drops to ``others`` (at least 1) if that is lower, for the
        connection's life, and the pool is limited from now on.

        Returns:
            True if the pool was not limited before (the driver then starts
            watching its calls end).
        """
        lowered = max(1, others)
        if connection.limit is None or lowered < connection.limit:
            connection.limit = lowered
        first = not self.limited
        self.limited = True
        return first

    # --- admission ----------------------------------------------------------------------

    def admit(self) -> Slot | Full | None:
        """A slot for a new call in the current view: the connection and the call's ticket.

        Returns:
            The slot; :data:`FULL` if no connection has room or calls are
            waiting already (the new call waits behind them); None if every
            ready connection with room was retired meanwhile (as
            :meth:`PoolView.admit <grpcpool.core.PoolView.admit>`).

        Raises:
            NotConnectedError: No connection is ready.
        """
        view = self._view()
        picked = view.pick_connection()  # raises when none is ready
        if self._waiters:
            return FULL
        slot = self._slot(view, picked)
        if isinstance(slot, tuple):
            self._sample(view)
        return slot

    def start_on(self, connection: ReadyConnection) -> int | None:
        """Starts a call on this very ``connection`` (a hedge, a resend) if it has room.

        Returns:
            The call's ticket; None if it has no room or was retired.
        """
        if not self.has_room(connection):
            return None
        return connection.start()

    def _slot(self, view: PoolView, picked: ReadyConnection) -> Slot | Full | None:
        retired = False
        if self.has_room(picked):
            ticket = picked.start()
            if ticket is not None:
                return picked, ticket
            retired = True
        for connection in sorted(view.connections, key=self._room, reverse=True):
            if connection is picked or not self.has_room(connection):
                continue
            ticket = connection.start()
            if ticket is not None:
                return connection, ticket
            retired = True
        return None if retired else FULL

    def _room(self, connection: ReadyConnection) -> float:
        limit = self.limit(connection)
        return float("inf") if limit is None else limit - len(connection.calls)

    # --- the queue ----------------------------------------------------------------------

    def wait(self, waiter: W) -> bool:
        """Puts ``waiter`` at the end of the queue.

        Returns:
            False if the queue is full (``pool.max_queued_calls``): the call
            fails with :func:`queue_full`.
        """
        if len(self._waiters) >= self.max_queued:
            return False
        self._waiters.append(waiter)
        self.queued = len(self._waiters)
        self._sample(self._view())
        return True

    def leave(self, waiter: W) -> bool:
        """``waiter`` gives up (its deadline passed, it was cancelled).

        Returns:
            False if it is not waiting (it was handed a slot, or dropped).
        """
        try:
            self._waiters.remove(waiter)
        except ValueError:
            return False
        self.queued = len(self._waiters)
        return True

    def hand_out(self) -> list[tuple[W, Slot]]:
        """Gives the free slots of the current view to the waiting calls, oldest first.

        Returns:
            Each waiter handed a slot, with its slot (the call is counted in
            flight there): the driver wakes them.
        """
        handed: list[tuple[W, Slot]] = []
        if not self._waiters:
            return handed
        view = self._view()
        while self._waiters and view.connections:
            slot = self._slot(view, view.pick_connection())
            if not isinstance(slot, tuple):
                break
            handed.append((self._waiters.popleft(), slot))
        self.queued = len(self._waiters)
        if handed:
            self._sample(view)
        return handed

    def drop_all(self) -> list[W]:
        """Empties the queue (the pool has stopped): the driver fails each waiter."""
        dropped = list(self._waiters)
        self._waiters.clear()
        self.queued = 0
        return dropped

    def __repr__(self) -> str:
        state = "limited" if self.limited else "unlimited"
        return f"<Capacity {self.name!r} {state} queued={self.queued}>"


def queue_full(capacity: Capacity[W]) -> PoolCallError:
    """The error of a call refused because the queue is full: ``RESOURCE_EXHAUSTED``."""
    return PoolCallError(
        capacity.name,
        f"every ready connection is at its limit and {capacity.queued} calls wait already "
        f"(pool.max_queued_calls is {capacity.max_queued}); raise pool.max_queued_calls, "
        "pool.max_calls_per_connection or pool.size",
        code=grpc.StatusCode.RESOURCE_EXHAUSTED,
    )


def queue_timed_out(capacity: Capacity[W], waited: float) -> PoolCallError:
    """The error of a call whose deadline passed while it waited: ``DEADLINE_EXCEEDED``."""
    cap = capacity.max_calls
    why = (
        f"pool.max_calls_per_connection is {cap}"
        if cap is not None
        else "connections lowered their limits after their servers refused streams"
    )
    return PoolCallError(
        capacity.name,
        f"no connection had a free slot within the call's deadline (waited {waited:.3f} s "
        f"in the queue; {why})",
        code=grpc.StatusCode.DEADLINE_EXCEEDED,
    )
