"""One hedged call's run: what the sync and the asyncio pool channels share.

A :class:`HedgingRun` drives the pure machine of one call
(:class:`~grpcpool.core._hedging.HedgedAttempts`): it starts the first
attempt, arms a timer for the hedging delay, starts the next attempt on
another connection (:func:`~grpcpool.core._hedging.next_connection`) when the
machine says so and the pool's budget allows, and when the machine settles
the call cancels the other attempts, teaches the pool the method's latency
and emits ``call.hedged`` if more than one attempt went out.

Attempts end on whatever thread grpc calls back on (sync) or on the loop
(asyncio), and may end at once, inside the call that starts them. So every
event (an attempt ended, the timer fired, the caller cancelled) is queued and
handled by one thread at a time, the one that finds the queue idle; no lock
is held while grpc is called. The subclasses say how a grpc call is started,
how a timer is armed and how waiters are woken.
"""

from __future__ import annotations

import abc
import collections
import logging
import threading
import time
from typing import Any, Protocol

import grpc

from grpcpool import telemetry
from grpcpool._call_metrics import CallTrace
from grpcpool.connection._call_errors import status_code
from grpcpool.core._capacity import Gate
from grpcpool.core._hedging import (
    HedgedAttempts,
    HedgingState,
    Next,
    Outcome,
    classify,
    next_connection,
)
from grpcpool.core._ready import CallableKey, ReadyConnection
from grpcpool.core._view import PoolView

__all__ = ["PREVIOUS_ATTEMPTS", "HedgingRun", "Pool", "with_previous_attempts"]

_log = logging.getLogger(__name__)

#: gRFC A6's header: how many attempts of the call were sent before this one.
PREVIOUS_ATTEMPTS = "grpc-previous-rpc-attempts"

# The pools' budgets are stepped by callers on many threads: one lock for all
# (held for a few counter updates, only by calls of hedged methods).
_BUDGET_LOCK = threading.Lock()

_clock = time.monotonic


class Pool(Protocol):
    """What a run reads of its pool (a sync ``PoolEntry`` or an asyncio ``TaskPool``)."""

    name: str

    @property
    def view(self) -> PoolView: ...

    @property
    def capacity(self) -> Gate: ...


def with_previous_attempts(metadata: Any, index: int) -> Any:
    """The call's metadata for attempt ``index``: A6's header added from the second on."""
    if index == 0:
        return metadata
    return (*tuple(metadata or ()), (PREVIOUS_ATTEMPTS, str(index)))


class HedgingRun(abc.ABC):
    """The attempts of one call of a hedged method, sent and settled.

    Args:
        pool: The pool (for its view and name).
        hedging: The pool's hedging state.
        key: The method's multi-callable key.
        options: The call's keyword arguments (``timeout`` counted from now).
        trace: The call's per-call metrics, if a recorder listens: each
            attempt is one of its attempts, and the call ends with the
            status of the attempt that settled it.
    """

    def __init__(
        self,
        pool: Pool,
        hedging: HedgingState,
        key: CallableKey,
        options: dict[str, Any],
        trace: CallTrace | None = None,
    ) -> None:
        self._pool = pool
        self._trace = trace
        #: How each attempt ended, by index (for the call's status).
        self._codes: dict[int, grpc.StatusCode] = {}
        self._hedging = hedging
        self._key = key
        self._options = options
        now = _clock()
        with _BUDGET_LOCK:
            self._machine: HedgedAttempts = hedging.attempts(key[1], options.get("timeout"), now)
        self._connections: list[ReadyConnection] = []
        #: The grpc call of each attempt (None: it could not start).
        self._calls: list[Any] = []
        #: What starting an attempt raised, by index.
        self._raised: dict[int, BaseException] = {}
        self._cancelled = False
        self._timer: Any = None
        self._armed: float | None = None
        self._lock = threading.Lock()
        self._events: collections.deque[tuple[Any, ...]] = collections.deque()
        # Set while a thread handles the events (at first: the constructor's).
        self._busy = True

    # --- what a subclass provides ---------------------------------------------------------

    @abc.abstractmethod
    def _start_call(
        self, index: int, connection: ReadyConnection, ticket: int, options: dict[str, Any]
    ) -> Any:
        """Starts attempt ``index`` on ``connection`` (counted there as ``ticket``).

        Returns the grpc call; when it ends, :meth:`ended` must be told. If
        this raises, the ticket is ended and nothing was sent.
        """

    @abc.abstractmethod
    def _schedule(self, delay: float) -> Any:
        """Arms a timer that calls :meth:`fired` after ``delay`` seconds; returns its handle."""

    @abc.abstractmethod
    def _settled(self) -> None:
        """The call is settled (:attr:`outcome` says how): wake whoever waits on it."""

    # --- the first attempt ------------------------------------------------------------------

    def begin(self, connection: ReadyConnection, ticket: int) -> None:
        """Starts the first attempt on ``connection``; raises what starting it raised."""
        now = _clock()
        index = self._machine.start(now)
        self._connections.append(connection)
        self._calls.append(None)
        self._calls[index] = self._start_call(index, connection, ticket, self._options)
        self._arm()
        self._drain()

    # --- events -------------------------------------------------------------------------------

    def ended(self, index: int, code: grpc.StatusCode, details: str | None) -> None:
        """Attempt ``index`` ended with ``code`` (any thread; at once or later)."""
        self._post(("ended", index, code, details))

    def fired(self) -> None:
        """The hedging timer fired."""
        self._post(("timer",))

    def cancel_all(self) -> bool:
        """The caller cancels the call: every attempt is cancelled. False if it was settled."""
        if self._machine.settled is not None:
            return False
        self._post(("cancel",))
        return True

    def _post(self, event: tuple[Any, ...]) -> None:
        with self._lock:
            self._events.append(event)
            if self._busy:
                return
            self._busy = True
        self._drain()

    def _drain(self) -> None:
        while True:
            with self._lock:
                if not self._events:
                    self._busy = False
                    return
                event = self._events.popleft()
            try:
                self._handle(event)
            except Exception:  # a bug must not leave the caller waiting forever
                _log.exception("hedged call of %s: handling %r failed", self._key[1], event)

    def _handle(self, event: tuple[Any, ...]) -> None:
        machine = self._machine
        now = _clock()
        if event[0] == "ended":
            _, index, code, details = event
            self._codes[index] = code
            outcome = classify(code, details, self._cancelled)
            step = machine.ended(index, outcome, now)
        elif event[0] == "timer":
            self._armed = None
            step = machine.timer(now)
        else:  # cancel (a call settled meanwhile stays as it settled)
            if machine.settled is None:
                self._cancelled = True
                self._cancel_calls(None)
            step = Next.WAIT
        while step is Next.HEDGE or step is Next.RESEND:
            step = self._next_attempt(step, now)
        if step is Next.WIN or step is Next.FAIL:
            self._finish(now)
        else:
            self._arm()

    # --- the next attempt -----------------------------------------------------------------

    def _next_attempt(self, step: Next, now: float) -> Next:
        """Starts the attempt ``step`` asks for, if the budget, a connection and time allow."""
        machine = self._machine
        left = machine.left(now)
        target = next_connection(self._pool.view.connections, self._connections, self._turn())
        if target is None or self._cancelled or (left is not None and left <= 0):
            return machine.refused()
        if step is Next.HEDGE:
            with _BUDGET_LOCK:
                allowed = self._hedging.budget.try_hedge(now)
            if not allowed:
                return machine.refused()
        ticket = self._pool.capacity.try_start(target)
        if ticket is None:  # no room there (a limited pool), or it left the pool just now
            return machine.refused()
        index = machine.start(now)
        self._connections.append(target)
        self._calls.append(None)
        options = dict(self._options)
        if left is not None:
            options["timeout"] = left
        options["metadata"] = with_previous_attempts(options.get("metadata"), index)
        try:
            self._calls[index] = self._start_call(index, target, ticket, options)
        except Exception as error:  # not sent: as a call that failed at pick time
            self._raised[index] = error
            return machine.ended(index, Outcome.NEVER_SENT, now)
        # Its ending, even one at once, is an event handled after this one.
        return Next.WAIT

    def _turn(self) -> int:
        with _BUDGET_LOCK:
            return self._hedging.turn()

    # --- timer and settling -----------------------------------------------------------------

    def _arm(self) -> None:
        """Keeps one timer armed for the machine's ``due``, if any."""
        due = self._machine.due
        if due == self._armed:
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._armed = due
        if due is not None:
            self._timer = self._schedule(max(0.0, due - _clock()))

    def _cancel_calls(self, keep: int | None) -> None:
        for index, call in enumerate(self._calls):
            if index != keep and call is not None:
                call.cancel()

    def _finish(self, now: float) -> None:
        machine = self._machine
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._cancel_calls(machine.settled)
        for index, elapsed in machine.running_for(now):
            if index != machine.settled:  # a loser: its backend took at least this long
                self._connections[index].stats.outlasted(elapsed, now)
        hedging = self._hedging
        method = self._key[1]
        hedging.learn(method, machine.sample(now))
        if machine.sent > 1:
            telemetry.emit(
                telemetry.call_hedged,
                self._pool.name,
                {"attempts": machine.sent, "won": machine.won()},
                {"pool_name": self._pool.name, "method": method},
            )
        if self._trace is not None:
            self._trace.finish(self._settling_code())
        self._settled()

    def _settling_code(self) -> grpc.StatusCode:
        """The status the call ends with: OK if it won, else that of the attempt that
        settled it (one that could not start: its error's, UNKNOWN if not a grpc one)."""
        machine = self._machine
        if machine.decision is Next.WIN:
            return grpc.StatusCode.OK
        index = machine.settled
        assert index is not None
        raised = self._raised.get(index)
        if raised is not None:
            return status_code(raised) or grpc.StatusCode.UNKNOWN
        return self._codes.get(index, grpc.StatusCode.UNKNOWN)

    # --- the outcome ------------------------------------------------------------------------

    @property
    def is_settled(self) -> bool:
        return self._machine.decision is not None

    @property
    def outcome(self) -> tuple[bool, Any, ReadyConnection | None, BaseException | None]:
        """Once settled: (won, the settling attempt's grpc call or None, its connection,
        what starting it raised if it did not start)."""
        machine = self._machine
        index = machine.settled
        assert index is not None
        return (
            machine.decision is Next.WIN,
            self._calls[index],
            self._connections[index],
            self._raised.get(index),
        )

    def time_remaining(self) -> float | None:
        left = self._machine.left(_clock())
        return None if left is None else max(0.0, left)

