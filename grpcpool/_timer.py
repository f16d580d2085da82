"""The process-wide timer: a callable run later, on one thread for every timer.

No actor in grpcpool sleeps. A worker that wants to reconnect in 3 seconds asks
the timer to ``tell`` it a message in 3 seconds (``grpcpool.supervisor.send_after``
wraps :func:`call_later`) and goes back to its inbox, so it can still be
stopped or pinged meanwhile; a drained channel is closed the same way.

One process-wide thread serves every timer. It starts when the first timer is
scheduled and exits as soon as no timer is pending, so an idle process (or a
test that stopped everything) has no timer thread left. The scheduler is a
process-wide object (``PROCESS.scheduler``), created on first use, so a forked
child starts afresh: its parent's timer thread did not survive the fork.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import math
import threading
import time
from collections.abc import Callable
from typing import Any

from grpcpool._process import PROCESS

__all__ = ["Scheduler", "TimerHandle", "call_later"]

_log = logging.getLogger(__name__)

# What a timer runs when it is due.
Target = Callable[[], object]


class TimerHandle:
    """A pending timer; :meth:`cancel` it to prevent delivery.

    ``message`` names what it delivers (shown in its repr), if anything.
    """

    __slots__ = ("_cancelled", "_done", "deadline", "message", "sequence", "target")

    def __init__(self, deadline: float, sequence: int, target: Target, message: Any):
        self.deadline = deadline
        self.sequence = sequence
        self.target = target
        self.message = message
        self._cancelled = False
        self._done = False

    def __lt__(self, other: TimerHandle) -> bool:
        return (self.deadline, self.sequence) < (other.deadline, other.sequence)

    @property
    def cancelled(self) -> bool:
        return self._cancelled

    @property
    def done(self) -> bool:
        """True once the timer has been delivered or cancelled."""
        return self._done or self._cancelled

    def cancel(self) -> None:
        """Prevents delivery if it has not happened yet. Idempotent."""
        # The current process's scheduler: a handle inherited across a fork is
        # only marked cancelled (the parent's scheduler and its lock are gone).
        _scheduler().cancel(self)

    def __repr__(self) -> str:
        state = (
            "cancelled" if self._cancelled else f"due in {self.deadline - time.monotonic():.3f}s"
        )
        return f"<TimerHandle {type(self.message).__name__} {state}>"


class Scheduler:
    """A heap of pending timers served by one thread that lives while it is non-empty."""

    def __init__(self) -> None:
        self._condition = threading.Condition()
        self._heap: list[TimerHandle] = []
        self._sequence = itertools.count()
        self._thread: threading.Thread | None = None

    def schedule(self, delay: float, target: Target, message: Any) -> TimerHandle:
        # NaN would break the heap order; inf would crash the timer thread.
        if not math.isfinite(delay) or delay < 0:
            raise ValueError(f"delay must be a finite number >= 0, got {delay!r}")
        handle = TimerHandle(time.monotonic() + delay, next(self._sequence), target, message)
        with self._condition:
            heapq.heappush(self._heap, handle)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="grpcpool-timer", daemon=True
                )
                self._thread.start()
            elif self._heap[0] is handle:
                self._condition.notify()
        return handle

    def cancel(self, handle: TimerHandle) -> None:
        with self._condition:
            if handle._cancelled:
                return
            handle._cancelled = True
            # Removing it (rather than skipping it when due) lets the thread
            # exit as soon as nothing live is pending.
            try:
                self._heap.remove(handle)
            except ValueError:
                return
            heapq.heapify(self._heap)
            self._condition.notify()

    def _run(self) -> None:
        while True:
            with self._condition:
                while True:
                    if not self._heap:
                        self._thread = None
                        return
                    wait = self._heap[0].deadline - time.monotonic()
                    if wait <= 0:
                        handle = heapq.heappop(self._heap)
                        handle._done = True
                        break
                    # A wait over TIMEOUT_MAX raises OverflowError, which would
                    # end this thread and strand every timer in the process.
                    self._condition.wait(min(wait, threading.TIMEOUT_MAX))
            self._deliver(handle)

    @staticmethod
    def _deliver(handle: TimerHandle) -> None:
        if handle._cancelled:
            return
        try:
            handle.target()
        except Exception:
            _log.exception("delivering %r failed", handle)


def _scheduler() -> Scheduler:
    # Read without the lock on the hot path; created once under it.
    scheduler: Scheduler | None = PROCESS.scheduler
    if scheduler is None:
        with PROCESS.lock:
            scheduler = PROCESS.scheduler
            if scheduler is None:
                scheduler = PROCESS.scheduler = Scheduler()
    return scheduler


def call_later(delay: float, callback: Callable[[], object], message: Any = None) -> TimerHandle:
    """Calls ``callback()`` on the timer thread after ``delay`` seconds.

    For housekeeping that belongs to no actor (closing a drained channel, say).
    The callback must be quick and must not block: it delays every other
    timer. Its exceptions are logged.
    """
    return _scheduler().schedule(delay, callback, message)
