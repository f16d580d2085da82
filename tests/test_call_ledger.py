"""CallLedger, the pure rule of when a retired connection closes, without servers.

The rule: a retired connection closes when the last call counted on it ends
(at once if none runs); a channel handed out raw is kept for its whole drain
unless the pool stopped; the drain's end cuts whatever runs; and
``Close.NOW`` is answered exactly once. Hypothesis interleaves the calls of
many callers with the retirement, the pool's stop and the drain's end; a
threaded run checks the lock-free claims under real thread switches. The
last tests drive the ReadyConnection and PoolView helpers both pool channels
use, over plain objects standing in for channels.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, consumes, invariant, rule

from grpcpool.connection._calls import CallLedger, Close
from grpcpool.core import ReadyConnection
from grpcpool.strategy import RoundRobin
from tests.pools import ready_connections


def test_an_idle_connection_closes_when_retired() -> None:
    """Retired with no call running: close now, once; later calls are refused."""
    ledger = CallLedger()
    assert ledger.retire() is Close.NOW
    assert ledger.closed and ledger.retired
    assert ledger.retire() is None
    assert ledger.cut() is None
    assert not ledger.started("late")
    assert ledger.ended("late") is None


def test_a_busy_connection_closes_when_its_last_call_ends() -> None:
    """Retired with calls running: close when the last ends, not before; the calls that
    started before the retirement keep running and count."""
    ledger = CallLedger()
    assert ledger.started(1) and ledger.started(2)
    assert ledger.in_flight == 2
    assert ledger.retire() is Close.WHEN_LAST_ENDS
    assert ledger.ended(1) is None
    assert not ledger.closed
    assert ledger.ended(2) is Close.NOW
    assert ledger.closed and ledger.in_flight == 0
    assert ledger.ended(2) is None  # an end told twice changes nothing


def test_calls_on_a_connection_in_the_pool_never_close_it() -> None:
    """Before its retirement, calls come and go and nothing closes."""
    ledger = CallLedger()
    for token in range(5):
        assert ledger.started(token)
        assert ledger.ended(token) is None
    assert not ledger.closed and not ledger.retired and ledger.in_flight == 0


def test_a_refused_call_that_was_seen_closes_the_connection() -> None:
    """A call that added itself just before the retirement read the calls, then saw
    the retirement and backs out: its end is the last, and closes."""
    ledger = CallLedger()
    ledger.calls.add("racing")  # the first half of started(), before the retirement
    assert ledger.retire() is Close.WHEN_LAST_ENDS
    assert not ledger.started("racing")  # the second half sees it retired
    assert ledger.ended("racing") is Close.NOW


def test_a_channel_handed_out_raw_waits_for_its_drain_or_the_pool_stop() -> None:
    """Handed out raw: held to the drain's end whatever the counted calls do; the pool's
    stop lets it close at its last counted call, and the drain end cuts it."""
    held = CallLedger()
    assert held.retire(handed_out=True) is Close.AT_DRAIN_END
    assert held.ended("unknown") is None
    assert not held.closed
    assert held.cut() is Close.NOW

    stopped = CallLedger()
    assert stopped.started("call")
    assert stopped.retire(handed_out=True) is Close.AT_DRAIN_END
    assert stopped.ended("call") is None
    assert stopped.pool_stopped() is Close.NOW

    busy = CallLedger()
    assert busy.started("call")
    assert busy.retire(handed_out=True) is Close.AT_DRAIN_END
    assert busy.pool_stopped() is None
    assert busy.ended("call") is Close.NOW

    late = CallLedger()  # retired after the pool stopped: nothing raw holds it
    assert late.pool_stopped() is None
    assert late.retire(handed_out=True) is Close.NOW


def test_the_pool_stop_leaves_a_connection_in_the_pool_alone() -> None:
    """pool_stopped() on a connection not retired closes nothing: its retirement will."""
    ledger = CallLedger()
    assert ledger.pool_stopped() is None
    assert ledger.retire() is Close.NOW


def test_a_cut_closes_whatever_runs() -> None:
    """cut() (the drain ended, or closing without a drain) closes now, calls or not, and
    refuses later calls; the running calls' ends then change nothing."""
    ledger = CallLedger()
    assert ledger.started("call")
    assert ledger.cut() is Close.NOW
    assert not ledger.started("next")
    assert ledger.ended("call") is None
    assert ledger.ended("next") is None


class LedgerMachine(RuleBasedStateMachine):
    """Many callers, one connection: calls start and end in any order around its
    retirement, the pool's stop and the drain's end, against a model."""

    running = Bundle("running")

    def __init__(self) -> None:
        super().__init__()
        self.ledger = CallLedger()
        self.tokens = iter(range(10**9))
        self.admitted: set[int] = set()  # started, accepted, not ended
        self.closes = 0
        self.cut = False  # closed by the drain's end, not by the rule
        self.retired = False
        self.handed_out = False
        self.stopped = False

    def _closed(self, effect: Close | None, *, cutting: bool = False) -> None:
        if effect is Close.NOW:
            self.closes += 1
            self.cut = cutting
            if not cutting:
                # The rule closes only a retired connection no counted call
                # holds, and a raw hand-out only after the pool stopped.
                assert self.retired and not self.admitted
                assert not self.handed_out or self.stopped

    @rule(target=running)
    def start(self) -> int | None:
        token = next(self.tokens)
        if self.ledger.started(token):
            assert not self.retired and not self.closes
            self.admitted.add(token)
            return token
        assert self.retired or self.closes
        self._closed(self.ledger.ended(token))  # the caller backs out at once
        return None

    @rule(token=consumes(running))
    def end(self, token: int | None) -> None:
        if token is None:
            return
        self.admitted.discard(token)
        self._closed(self.ledger.ended(token))

    @rule(handed_out=st.booleans())
    def retire(self, handed_out: bool) -> None:
        effect = self.ledger.retire(handed_out=handed_out)
        if self.retired or self.closes:
            assert effect is None
            return
        self.retired, self.handed_out = True, handed_out
        if handed_out and not self.stopped:
            assert effect is Close.AT_DRAIN_END
        elif self.admitted:
            assert effect is Close.WHEN_LAST_ENDS
        self._closed(effect)

    @rule()
    def pool_stopped(self) -> None:
        self.stopped = True
        self._closed(self.ledger.pool_stopped())

    @rule()
    def drain_ended(self) -> None:
        self.retired = True
        effect = self.ledger.cut()
        assert (effect is Close.NOW) == (self.closes == 0)
        self._closed(effect, cutting=True)

    @invariant()
    def counts_and_closes_once(self) -> None:
        assert self.ledger.in_flight == len(self.admitted)
        assert self.closes <= 1
        assert self.ledger.closed == (self.closes == 1)

    @invariant()
    def never_left_open_for_nothing(self) -> None:
        """Retired, nothing counted running, nothing raw holding it: it is closed."""
        free = not self.handed_out or self.stopped
        if self.retired and free and not self.admitted:
            assert self.closes == 1


LedgerMachine.TestCase.settings = settings(
    max_examples=300, stateful_step_count=40, deadline=None, derandomize=True
)
test_ledger_interleavings = LedgerMachine.TestCase


@contextmanager
def frequent_thread_switches() -> Iterator[None]:
    """Makes CPython hand the GIL on every few bytecodes, so races show up."""
    before = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        yield
    finally:
        sys.setswitchinterval(before)


@pytest.mark.parametrize("round_", range(20))
def test_threads_racing_a_retirement_close_once_and_never_under_a_call(round_: int) -> None:
    """Threads start and end calls without a lock while another retires the
    connection: no admitted call ever sees it closed before it ends, and once every
    call has ended it has been closed exactly once."""
    ledger = CallLedger()
    closes: list[str] = []
    violations: list[int] = []
    go = threading.Barrier(5)

    def caller(base: int) -> None:
        go.wait(timeout=10)
        for n in range(2000):
            token = base + n
            admitted = ledger.started(token)
            if admitted and ledger.closed:
                violations.append(token)  # closed under a running call
            if ledger.ended(token) is Close.NOW:
                closes.append("ended")
            if not admitted:
                return

    def retirer() -> None:
        go.wait(timeout=10)
        for _ in range(50 * (round_ + 1)):
            pass  # let the callers get going, a different while each round
        if ledger.retire() is Close.NOW:
            closes.append("retire")

    with frequent_thread_switches():
        threads = [threading.Thread(target=caller, args=(k * 10**6,)) for k in range(4)]
        threads.append(threading.Thread(target=retirer))
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
    assert not any(thread.is_alive() for thread in threads)
    assert not violations
    assert len(closes) == 1, closes
    assert ledger.closed and ledger.in_flight == 0


def test_a_ready_connection_counts_calls_and_has_its_channel_closed_after_the_last() -> None:
    """ReadyConnection.start/end keep the count on the channel's ledger, refuse calls
    once it is retired, and call on_last_call once, when the last call ends."""
    closed: list[str] = []
    ledger = CallLedger()
    connection = ReadyConnection(
        object(), "worker-1", ledger=ledger, on_last_call=lambda: closed.append("c")
    )
    first, second = connection.start(), connection.start()
    assert first is not None and second is not None and first != second
    assert connection.in_flight == 2 and connection.calls is ledger.calls
    assert ledger.retire() is Close.WHEN_LAST_ENDS
    assert connection.start() is None
    connection.end(first)
    assert closed == []
    connection.end(second)
    assert closed == ["c"]
    assert connection.in_flight == 0


def test_a_view_admits_a_call_past_a_connection_retired_meanwhile() -> None:
    """PoolView.admit: the strategy's pick takes the call; a pick retired since the view
    was taken is passed over for another connection; with every one retired, None."""
    from grpcpool.core._view import build_view, empty_view

    connections = ready_connections((object(), object()))
    view = build_view(
        "admit",
        RoundRobin(),
        empty_view("admit", 2, "running"),
        connections=connections,
        workers=(),
        expected_size=2,
        lifecycle="running",
    )
    try:
        connections[0].ledger.retire()
        for _ in range(4):
            admitted = view.admit()
            assert admitted is not None and admitted[0] is connections[1]
            connections[1].end(admitted[1])
        connections[1].ledger.retire()
        assert view.admit() is None
        assert connections[0].in_flight == connections[1].in_flight == 0
    finally:
        for connection in connections:
            connection.calls.clear()
