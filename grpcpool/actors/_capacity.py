"""The sync pool's call capacity: the core's rules under a lock, each waiting call on an event.

:class:`SyncCapacity` is the pool's :class:`~grpcpool.core._capacity.Capacity`
(kept on its :class:`~grpcpool.actors._entry.PoolEntry` across restarts) with
what the sync driver adds: a lock around every step, since calls start and
end on any thread, and an event per waiting call, set when the call is
handed a slot (oldest first) or the pool stops. A waiting call blocks its
caller's thread until then or until its deadline.

A call that ends on a connection of a limited pool hands its slot on
(:attr:`ReadyConnection.on_end <grpcpool.core.ReadyConnection.on_end>`,
installed here): it reads the queue's length without the lock and takes the
lock only when calls wait. A caller that queues puts itself in the queue and
then looks for room under the lock, so a slot freed in between is never
missed: whichever of the two goes second sees the other.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from grpcpool import telemetry
from grpcpool.core._capacity import Capacity, Slot, queue_full, queue_timed_out
from grpcpool.core._ready import ReadyConnection
from grpcpool.core._view import ALL_RETIRED, PoolView
from grpcpool.errors import NotConnectedError, PoolCallError

__all__ = ["SyncCapacity"]

_clock = time.monotonic


class _Waiter:
    """One call waiting for a slot: woken by its event with a slot or an error."""

    __slots__ = ("error", "event", "since", "slot")

    def __init__(self, since: float) -> None:
        self.event = threading.Event()
        self.since = since
        self.slot: Slot | None = None
        self.error: PoolCallError | None = None


class SyncCapacity(Capacity[_Waiter]):
    """A sync pool's caps and queue; every step under one lock (see the module)."""

    def __init__(
        self, name: str, max_calls: int | None, max_queued: int, view: Callable[[], PoolView]
    ) -> None:
        super().__init__(name, max_calls, max_queued, view)
        # Re-entrant: a step may end a ticket, whose on_end may step again.
        self._lock = threading.RLock()

    # --- the pool channel -------------------------------------------------------------

    def acquire(self, deadline: float | None) -> Slot:
        """A slot for a call: now, or once one frees (FIFO), before ``deadline``.

        Args:
            deadline: ``time.monotonic()`` by which the call must have a slot;
                None: it waits as long as it takes.

        Raises:
            NotConnectedError: No connection is ready (the caller's
                ``wait_for_ready`` decides what happens then).
            PoolCallError: The queue is full (``RESOURCE_EXHAUSTED``), the
                deadline passed while waiting (``DEADLINE_EXCEEDED``) or the
                pool stopped meanwhile (``UNAVAILABLE``).
        """
        with self._lock:
            slot = self.admit()
            if isinstance(slot, tuple):
                self._watch(slot[0])
                return slot
            if slot is None:
                raise NotConnectedError(self.name, ALL_RETIRED)
            waiter = _Waiter(_clock())
            if not self.wait(waiter):
                raise queue_full(self)
            self._wake(self.hand_out())
        self.on_wait()
        return self._await_slot(waiter, deadline)

    def _await_slot(self, waiter: _Waiter, deadline: float | None) -> Slot:
        try:
            left = None if deadline is None else max(0.0, deadline - _clock())
            waiter.event.wait(left)
        except BaseException:  # interrupted: out of the queue, and any slot handed back
            self._give_up(waiter)
            raise
        with self._lock:
            slot, error = waiter.slot, waiter.error
            if slot is None and error is None:
                self.leave(waiter)
        waited = _clock() - waiter.since
        if slot is not None and (deadline is None or _clock() < deadline):
            self._emit(waited, "started")
            return slot
        if slot is not None:  # handed a slot just as its deadline passed
            slot[0].end(slot[1])
        if error is not None:
            self._emit(waited, "stopped")
            raise error
        self._emit(waited, "deadline_exceeded")
        raise queue_timed_out(self, waited)

    def _give_up(self, waiter: _Waiter) -> None:
        with self._lock:
            self.leave(waiter)
            slot = waiter.slot
        if slot is not None:
            slot[0].end(slot[1])
        self._emit(_clock() - waiter.since, "cancelled")

    def try_start(self, connection: ReadyConnection) -> int | None:
        """Starts a call on ``connection`` (a hedge, a resend) if it has room; its ticket."""
        if not self.limited:
            return connection.start()
        with self._lock:
            ticket = self.start_on(connection)
        if ticket is not None:
            self._watch(connection)
        return ticket

    def note_refused(self, connection: ReadyConnection, others: int) -> None:
        """``connection``'s server refused a stream while ``others`` other calls ran on it."""
        with self._lock:
            if self.refused(connection, others):
                self._watch_all(self._view())

    def take_peak(self) -> int:
        with self._lock:
            return super().take_peak()

    # --- the pool -----------------------------------------------------------------------

    def view_changed(self, view: PoolView) -> None:
        """The pool published ``view`` (its registry's thread): new slots, or a stop."""
        if not self.limited:
            return
        self._watch_all(view)
        if view.lifecycle == "stopped":
            self.pool_ended("the pool has stopped")
        elif self.queued:
            with self._lock:
                self._wake(self.hand_out())

    def pool_ended(self, reason: str) -> None:
        """The pool ended: every waiting call fails ``UNAVAILABLE`` saying ``reason``."""
        with self._lock:
            for waiter in self.drop_all():
                waiter.error = PoolCallError(self.name, f"{reason} while the call waited for a slot")
                waiter.event.set()

    # --- waking -------------------------------------------------------------------------

    def _released(self) -> None:
        """A call ended on a connection of the pool (any thread): its slot to a waiting call."""
        if not self.queued:
            return
        with self._lock:
            self._wake(self.hand_out())

    def _wake(self, handed: list[tuple[_Waiter, Slot]]) -> None:
        for waiter, slot in handed:
            self._watch(slot[0])
            waiter.slot = slot
            waiter.event.set()

    def _watch(self, connection: ReadyConnection) -> None:
        if connection.on_end is None:
            connection.on_end = self._released

    def _watch_all(self, view: PoolView) -> None:
        for connection in (*view.connections, *view.unrouted):
            self._watch(connection)

    def _emit(self, waited: float, outcome: str) -> None:
        telemetry.emit(
            telemetry.call_queued,
            self.name,
            {"duration": waited},
            {"pool_name": self.name, "outcome": outcome},
        )
