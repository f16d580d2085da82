"""Hedging (``pool.hedging``): the rules, with the time passed in.

A unary-unary call of a hedged method that has no answer after the hedging
delay is sent again to another connection, up to ``max_attempts`` in all, and
the first OK answer wins (gRFC A6's hedging, run by the pool channel across
the pool's connections instead of inside one grpc channel). Four rules:

* :class:`~grpcpool.core._hedging_counts.HedgeBudget`: hedged attempts stay
  under ``budget`` times the calls over a sliding window (A6's throttling,
  as a ratio).
* :class:`~grpcpool.core._hedging_counts.LatencyQuantile`: a method's learnt
  latency quantile, for ``delay: "p95"``; the method is not hedged until it
  has :data:`~grpcpool._config_routing.HEDGING_MIN_SAMPLES` samples.
* :func:`next_connection`: where the next attempt goes: an untried connection
  at an address no attempt went to if there is one, else any untried one.
* :class:`HedgedAttempts`: one call's attempts: when to send the next, which
  ending settles the call (the first OK answer wins; ``UNAVAILABLE`` lets the
  others go on; any other status commits at once, as A6 does on a fatal
  status), and what was learnt of the latency.

:class:`HedgingState` holds a pool's budget and estimators; each pool makes
one when it starts and its pool channel reads it on each call of a hedged
method. The drivers (:mod:`grpcpool.api._hedged_calls`,
:mod:`grpcpool.api._aio_hedged`) start and cancel the grpc calls.

The counts are plain ints and floats: the sync driver holds a lock around
the budget's steps, the asyncio driver runs on one loop; the estimators are
updated without one, where a lost update only skews a figure by one sample.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from typing import Protocol, TypeVar

import grpc

from grpcpool._config_routing import HEDGING_DELAY_P95, MAX_HEDGING_DELAY, Hedging
from grpcpool.connection._call_errors import REFUSED_STREAM
from grpcpool.core._hedging_counts import HedgeBudget, LatencyQuantile
from grpcpool.core._reroute import NEVER_SENT

__all__ = [
    "HedgeBudget",
    "HedgedAttempts",
    "HedgingState",
    "LatencyQuantile",
    "Next",
    "Outcome",
    "classify",
    "next_connection",
]

class _Connection(Protocol):
    """What :func:`next_connection` reads of a connection (a ReadyConnection)."""

    @property
    def address(self) -> str | None: ...

    @property
    def in_flight(self) -> int: ...


C = TypeVar("C", bound=_Connection)


def next_connection(connections: Sequence[C], tried: Sequence[C], turn: int = 0) -> C | None:
    """Where the next attempt of a call goes, or None if every connection was tried.

    An untried connection at an address no attempt went to comes first
    (another backend is the point of a hedge), else any untried one
    (another connection to the same backend). Among those the one with the
    fewest calls in flight; ties go to the first from position ``turn`` on
    (the caller turns it, so hedges spread over idle connections).

    Args:
        connections: The pool's ready connections (``view.connections``).
        tried: The connections the call's attempts went to.
        turn: Where the search for ties starts.
    """
    addresses = {c.address for c in tried}
    best: C | None = None
    best_key = (2, 0)
    size = len(connections)
    for step in range(size):
        candidate = connections[(turn + step) % size]
        if any(candidate is seen for seen in tried):
            continue
        key = (0 if candidate.address not in addresses else 1, candidate.in_flight)
        if key < best_key:
            best, best_key = candidate, key
    return best


class Outcome(enum.Enum):
    """How one attempt ended, as :meth:`HedgedAttempts.ended` weighs it."""

    #: It answered OK.
    OK = "ok"
    #: ``UNAVAILABLE`` (or cut with its connection): the others go on, and
    #: the next attempt is sent at once (as A6 does on a non-fatal status).
    RETRYABLE = "retryable"
    #: Failed before it reached a server (``core._reroute.never_sent``), or
    #: refused by its server at its stream limit (no handler saw it): it
    #: does not count as an attempt, and the attempt that replaces it is no
    #: hedge (the budget is not asked).
    NEVER_SENT = "never_sent"
    #: Any other status: the call fails with it at once.
    FATAL = "fatal"


def classify(code: grpc.StatusCode, details: str | None, by_caller: bool) -> Outcome:
    """How an attempt that ended with ``code`` (and ``details``) weighs.

    ``CANCELLED`` the caller did not ask for (``by_caller``) is a call cut
    with its connection (a drain ended, the channel closed): retryable.
    ``UNAVAILABLE`` worded as grpcio's pick failure never reached a server
    (:mod:`grpcpool.core._reroute`), nor did a stream the server refused
    (``REFUSED_STREAM``, :mod:`grpcpool.core._capacity`).
    """
    if code is grpc.StatusCode.OK:
        return Outcome.OK
    if code is grpc.StatusCode.UNAVAILABLE:
        if details is not None and (details.startswith(NEVER_SENT) or REFUSED_STREAM in details):
            return Outcome.NEVER_SENT
        return Outcome.RETRYABLE
    if code is grpc.StatusCode.CANCELLED and not by_caller:
        return Outcome.RETRYABLE
    return Outcome.FATAL


class Next(enum.Enum):
    """What the driver does after a step of :class:`HedgedAttempts`."""

    #: Nothing now (attempts are running; a hedge may be due at ``due``).
    WAIT = "wait"
    #: Start another attempt, if the budget and a connection allow
    #: (:meth:`HedgedAttempts.start`, else :meth:`HedgedAttempts.refused`).
    HEDGE = "hedge"
    #: Start another attempt in place of one that never reached a server,
    #: without asking the budget.
    RESEND = "resend"
    #: The call's answer is attempt ``settled``'s: cancel the others.
    WIN = "win"
    #: The call fails with attempt ``settled``'s error: cancel the others.
    FAIL = "fail"


class HedgedAttempts:
    """One hedged call's attempts: when the next is due and which ending settles the call.

    Args:
        max_attempts: Attempts in all, the first included.
        delay: Seconds without an answer before the next attempt; None: no
            hedge is sent on a timer (a failed attempt may still be replaced).
        deadline: When the call's timeout ends (the clock of ``now``), or None.
    """

    __slots__ = (
        "_counted",
        "_deadline",
        "_delay",
        "_ended_at",
        "_last_failed",
        "_max",
        "_never_sent",
        "_running",
        "_started_at",
        "decision",
        "due",
        "settled",
    )

    def __init__(self, max_attempts: int, delay: float | None, deadline: float | None) -> None:
        self._max = max_attempts
        self._delay = delay
        self._deadline = deadline
        self._started_at: list[float] = []
        self._ended_at: list[float | None] = []
        self._running = 0
        self._counted = 0  # attempts that count against max_attempts
        self._never_sent: list[int] = []  # attempts that failed before reaching a server
        self._last_failed: int | None = None
        #: When the next hedge is due (the clock of ``now``); None: none is.
        self.due: float | None = None
        #: The attempt whose ending settled the call, once one has.
        self.settled: int | None = None
        #: WIN or FAIL once settled.
        self.decision: Next | None = None

    @property
    def attempts(self) -> int:
        """How many attempts were started (sent again after a never-sent one included)."""
        return len(self._started_at)

    @property
    def sent(self) -> int:
        """How many attempts went out: those started, less those that never reached a server."""
        return len(self._started_at) - len(self._never_sent)

    def left(self, now: float) -> float | None:
        """Seconds left of the call's timeout at ``now`` (None: no timeout)."""
        return None if self._deadline is None else self._deadline - now

    def start(self, now: float) -> int:
        """An attempt starts at ``now``; returns its index (the attempts before it)."""
        index = len(self._started_at)
        self._started_at.append(now)
        self._ended_at.append(None)
        self._running += 1
        self._counted += 1
        if self._delay is not None and self._counted < self._max:
            self.due = now + self._delay
        else:
            self.due = None
        return index

    def timer(self, now: float) -> Next:
        """The hedging timer fired at ``now``: HEDGE if a hedge is due, else WAIT."""
        if self.settled is not None or self.due is None or self._running == 0:
            return Next.WAIT
        if now < self.due - 1e-3:
            return Next.WAIT  # early: the driver waits on for ``due``
        left = self.left(now)
        if self._counted >= self._max or (left is not None and left <= 0):
            self.due = None
            return Next.WAIT
        return Next.HEDGE

    def ended(self, index: int, outcome: Outcome, now: float) -> Next:
        """Attempt ``index`` ended at ``now`` with ``outcome``: what to do."""
        if self.settled is not None or self._ended_at[index] is not None:
            return Next.WAIT  # a loser ending after the call was settled
        self._ended_at[index] = now
        self._running -= 1
        if outcome is Outcome.OK:
            return self._settle(index, Next.WIN)
        if outcome is Outcome.FATAL:
            return self._settle(index, Next.FAIL)
        self._last_failed = index
        if outcome is Outcome.NEVER_SENT:
            self._counted -= 1
            self._never_sent.append(index)
        # As A6 has it: a non-fatal failure sends the next attempt at once.
        left = self.left(now)
        if self._counted < self._max and (left is None or left > 0):
            return Next.RESEND if outcome is Outcome.NEVER_SENT else Next.HEDGE
        if self._running > 0:
            return Next.WAIT
        return self._settle(index, Next.FAIL)

    def refused(self) -> Next:
        """The attempt HEDGE or RESEND asked for could not start (no budget, connection
        or time left): no more hedges; FAIL if nothing is running, else WAIT."""
        self.due = None
        if self.settled is None and self._running == 0:
            assert self._last_failed is not None  # only a failure leaves nothing running
            return self._settle(self._last_failed, Next.FAIL)
        return Next.WAIT

    def _settle(self, index: int, decision: Next) -> Next:
        self.settled = index
        self.decision = decision
        self.due = None
        return decision

    def running_for(self, now: float) -> tuple[tuple[int, float], ...]:
        """The attempts still running at ``now`` and how long each has run (the losers, once settled)."""
        return tuple(
            (index, now - started)
            for index, (started, ended) in enumerate(zip(self._started_at, self._ended_at, strict=True))
            if ended is None
        )

    def won(self) -> int:
        """The 0-based index of the winner among the attempts sent; -1 if the call failed.

        Attempts that never reached a server (and were sent again) are not
        counted: the index is the one ``call.hedged`` reports beside ``sent``.
        """
        if self.decision is not Next.WIN or self.settled is None:
            return -1
        return self.settled - sum(1 for index in self._never_sent if index < self.settled)

    def sample(self, now: float) -> float | None:
        """The latency the first attempt showed, for learning ``"p95"``; None if it says nothing.

        Its duration if it answered OK; how long it had run when another
        attempt won (a lower bound, but one above the current delay, so the
        quantile learnt is not pulled down by hedging); None if it failed
        or the call failed.
        """
        if self.decision is not Next.WIN or not self._started_at:
            return None
        first_end = self._ended_at[0]
        if self.settled == 0 and first_end is not None:
            return first_end - self._started_at[0]
        if first_end is None:
            return now - self._started_at[0]
        return None


class HedgingState:
    """A pool's hedging: its config, budget and latency estimators (one per pool).

    Args:
        config: ``pool.hedging``.
    """

    __slots__ = ("_latency", "_turn", "budget", "config", "max_attempts", "methods")

    def __init__(self, config: Hedging) -> None:
        self.config = config
        self.methods = frozenset(config.methods)
        self.max_attempts = config.max_attempts
        self.budget = HedgeBudget(config.budget)
        self._latency: dict[str, LatencyQuantile] | None = (
            {method: LatencyQuantile() for method in config.methods}
            if config.delay == HEDGING_DELAY_P95
            else None
        )
        self._turn = 0

    def delay(self, method: str) -> float | None:
        """Seconds a call of ``method`` waits before a hedge; None: not hedged (yet).

        ``"p95"`` answers None until the method has
        :data:`~grpcpool._config_routing.HEDGING_MIN_SAMPLES` samples.
        """
        if self._latency is None:
            return float(self.config.delay)
        learnt = self._latency[method].value()
        return None if learnt is None else min(learnt, MAX_HEDGING_DELAY)

    def learn(self, method: str, seconds: float | None) -> None:
        """A latency sample of ``method`` (:meth:`HedgedAttempts.sample`); None is ignored."""
        if seconds is not None and self._latency is not None:
            self._latency[method].record(seconds)

    def attempts(self, method: str, timeout: float | None, now: float) -> HedgedAttempts:
        """A call of ``method`` with ``timeout`` starts at ``now``: counted, and its machine.

        The sync driver calls it under its budget lock.
        """
        self.budget.called(now)
        deadline = None if timeout is None else now + timeout
        return HedgedAttempts(self.max_attempts, self.delay(method), deadline)

    def turn(self) -> int:
        """Where the next :func:`next_connection` starts looking (turns on each call)."""
        self._turn += 1
        return self._turn
