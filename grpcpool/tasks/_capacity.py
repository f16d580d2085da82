"""The asyncio pool's call capacity: the core's rules on the loop, each waiting call a future.

:class:`AioCapacity` is the pool's :class:`~grpcpool.core._capacity.Capacity`
with what the asyncio driver adds: a waiting call awaits a future of the
pool's loop, resolved with its slot when one frees (oldest first) or failed
when its deadline passes (a ``call_later`` timer) or the pool stops. Every
step runs on the loop, so there is no lock. A call that ends on a connection
of a limited pool hands its slot on
(:attr:`ReadyConnection.on_end <grpcpool.core.ReadyConnection.on_end>`,
installed here).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import grpc

from grpcpool import telemetry
from grpcpool.core._capacity import Capacity, Slot, queue_full, queue_timed_out
from grpcpool.core._ready import ReadyConnection
from grpcpool.core._view import ALL_RETIRED, PoolView
from grpcpool.errors import NotConnectedError, PoolCallError

__all__ = ["AioCapacity"]

_clock = time.monotonic
_DEADLINE = grpc.StatusCode.DEADLINE_EXCEEDED

_Waiter = asyncio.Future[Slot]


class AioCapacity(Capacity[_Waiter]):
    """An asyncio pool's caps and queue (loop thread only)."""

    def __init__(
        self, name: str, max_calls: int | None, max_queued: int, view: Callable[[], PoolView]
    ) -> None:
        super().__init__(name, max_calls, max_queued, view)

    async def acquire(self, deadline: float | None) -> Slot:
        """A slot for a call: now, or once one frees (FIFO), before ``deadline``.

        Args:
            deadline: ``time.monotonic()`` by which the call must have a slot;
                None: it waits as long as it takes.

        Raises:
            NotConnectedError: No connection is ready.
            PoolCallError: The queue is full (``RESOURCE_EXHAUSTED``), the
                deadline passed while waiting (``DEADLINE_EXCEEDED``) or the
                pool stopped meanwhile (``UNAVAILABLE``).
            asyncio.CancelledError: The waiting task was cancelled (out of the
                queue; a slot handed to it meanwhile is handed on).
        """
        slot = self.admit_now()
        if slot is not None:
            return slot
        loop = asyncio.get_running_loop()
        waiter: _Waiter = loop.create_future()
        if not self.wait(waiter):
            raise queue_full(self)
        since = _clock()
        self._wake(self.hand_out())
        self.on_wait()
        timer = None
        if deadline is not None and not waiter.done():
            timer = loop.call_later(max(0.0, deadline - since), self._expire, waiter, since)
        outcome = "started"
        try:
            return await waiter
        except asyncio.CancelledError:
            outcome = "cancelled"
            handed = waiter.done() and not waiter.cancelled() and waiter.exception() is None
            if not self.leave(waiter) and handed:  # handed a slot as it was cancelled: hand it on
                connection, ticket = waiter.result()
                connection.end(ticket)
            raise
        except PoolCallError as error:
            outcome = "stopped" if error.code() is not _DEADLINE else "deadline_exceeded"
            raise
        finally:
            if timer is not None:
                timer.cancel()
            self._emit(_clock() - since, outcome)

    def admit_now(self) -> Slot | None:
        """A slot for a call now; None if it must wait for one (:meth:`acquire`).

        Raises:
            NotConnectedError: No connection is ready.
        """
        slot = self.admit()
        if isinstance(slot, tuple):
            self._watch(slot[0])
            return slot
        if slot is None:
            raise NotConnectedError(self.name, ALL_RETIRED)
        return None

    def _expire(self, waiter: _Waiter, since: float) -> None:
        if self.leave(waiter) and not waiter.done():
            waiter.set_exception(queue_timed_out(self, _clock() - since))

    def try_start(self, connection: ReadyConnection) -> int | None:
        """Starts a call on ``connection`` (a hedge, a resend) if it has room; its ticket."""
        if not self.limited:
            return connection.start()
        ticket = self.start_on(connection)
        if ticket is not None:
            self._watch(connection)
        return ticket

    def note_refused(self, connection: ReadyConnection, others: int) -> None:
        """``connection``'s server refused a stream while ``others`` other calls ran on it."""
        if self.refused(connection, others):
            self._watch_all(self._view())

    # --- the pool -----------------------------------------------------------------------

    def view_changed(self, view: PoolView) -> None:
        """The pool published ``view``: new slots, or a stop."""
        if not self.limited:
            return
        self._watch_all(view)
        if view.lifecycle == "stopped":
            self.pool_ended("the pool has stopped")
        elif self.queued:
            self._wake(self.hand_out())

    def pool_ended(self, reason: str) -> None:
        """The pool ended: every waiting call fails ``UNAVAILABLE`` saying ``reason``."""
        for waiter in self.drop_all():
            if not waiter.done():
                waiter.set_exception(
                    PoolCallError(self.name, f"{reason} while the call waited for a slot")
                )

    # --- waking -------------------------------------------------------------------------

    def _released(self) -> None:
        """A call ended on a connection of the pool: its slot to a waiting call."""
        if self.queued:
            self._wake(self.hand_out())

    def _wake(self, handed: list[tuple[_Waiter, Slot]]) -> None:
        back: list[Slot] = []
        for waiter, slot in handed:
            self._watch(slot[0])
            if waiter.done():  # cancelled, and not out of the queue yet
                back.append(slot)
            else:
                waiter.set_result(slot)
        for connection, ticket in back:  # after the loop: each may hand out again
            connection.end(ticket)

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

