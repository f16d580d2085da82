"""Hedging's pure rules (grpcpool.core._hedging, _hedging_counts), without servers.

The budget over its sliding window, the learnt latency quantile behind
``delay: "p95"``, where the next attempt goes, one call's attempts machine,
and the channel options a hedging pool opens its channels with.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

import grpc
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from grpcpool import Config
from grpcpool._config_routing import HEDGING_MIN_SAMPLES, Hedging
from grpcpool.core._hedging import (
    HedgedAttempts,
    HedgingState,
    Next,
    Outcome,
    classify,
    next_connection,
)
from grpcpool.core._hedging_counts import HedgeBudget, LatencyQuantile
from grpcpool.core._reroute import NEVER_SENT

METHOD = "/test.Echo/Unary"

# --- the budget ---------------------------------------------------------------------------


def test_the_budget_allows_one_hedge_per_ten_calls_at_ten_percent() -> None:
    """budget 0.1: nine calls allow no hedge, the tenth allows one, the next nine no
    second, the twentieth a second."""
    budget = HedgeBudget(0.1, window=10.0, slots=10)
    for _ in range(9):
        budget.called(0.0)
    assert not budget.try_hedge(0.0)
    budget.called(0.0)
    assert budget.try_hedge(0.0)
    assert not budget.try_hedge(0.0)
    for _ in range(9):
        budget.called(0.5)
    assert not budget.try_hedge(0.5)
    budget.called(0.5)
    assert budget.try_hedge(0.5)
    assert budget.counts(0.5) == (20, 2)


def test_the_window_slides_calls_and_hedges_out() -> None:
    """Calls older than the window no longer pay for hedges: after 10 s without calls
    nothing is allowed; new calls allow hedges again."""
    budget = HedgeBudget(0.5, window=10.0, slots=10)
    for _ in range(4):
        budget.called(1.0)
    assert budget.try_hedge(1.0) and budget.try_hedge(1.5)
    assert not budget.try_hedge(2.0)
    assert budget.counts(10.5) == (4, 2)  # slot [1, 2) is still in the window
    assert budget.counts(11.0) == (0, 0)  # now it left
    assert not budget.try_hedge(11.0)
    budget.called(30.0)
    budget.called(30.0)
    assert budget.try_hedge(30.0)
    assert not budget.try_hedge(30.0)


def test_a_clock_read_a_moment_earlier_counts_in_the_newest_slot() -> None:
    """Callers on several threads read the clock before they count: a time a little
    behind the newest slot counts there instead of clearing anything."""
    budget = HedgeBudget(1.0, window=10.0, slots=10)
    budget.called(5.5)
    budget.called(4.9)
    assert budget.counts(5.5) == (2, 0)


@dataclass
class _Event:
    at: float
    hedge: bool


@settings(max_examples=300, deadline=None)
@given(
    ratio=st.floats(min_value=0.01, max_value=1.0),
    slots=st.integers(min_value=1, max_value=12),
    steps=st.lists(
        st.tuples(st.floats(min_value=0.0, max_value=3.0), st.booleans()),
        min_size=1,
        max_size=200,
    ),
)
def test_hedges_stay_under_the_budget_over_every_window(
    ratio: float, slots: int, steps: list[tuple[float, bool]]
) -> None:
    """Whatever the calls and hedge requests over time, the budget allows a hedge exactly
    when, counting it, the hedges of the window's slots are at most ratio x its calls;
    so over any span of one window's length less a slot, the hedges allowed are at most
    ratio x the calls of the full window before them."""
    window = 10.0
    width = window / slots
    budget = HedgeBudget(ratio, window=window, slots=slots)
    now = 0.0
    log: list[_Event] = []
    for gap, hedge in steps:
        now += gap
        if not hedge:
            budget.called(now)
            log.append(_Event(now, False))
            continue
        current = math.floor(now / width)
        in_window = [e for e in log if current - slots < math.floor(e.at / width) <= current]
        calls = sum(not e.hedge for e in in_window)
        hedges = sum(e.hedge for e in in_window)
        expected = hedges + 1 <= ratio * calls + 1e-9
        assert budget.try_hedge(now) is expected
        if expected:
            log.append(_Event(now, True))
            recent = [e for e in log if e.at > now - window + width and e.hedge]
            before = [e for e in log if e.at > now - window and not e.hedge]
            assert len(recent) <= ratio * len(before) + 1e-9


# --- the latency quantile -----------------------------------------------------------------


def test_no_quantile_before_enough_samples() -> None:
    """The estimate answers None until min_samples samples, then a value."""
    quantile = LatencyQuantile(min_samples=20)
    for _ in range(19):
        quantile.record(0.01)
        assert quantile.value() is None
    quantile.record(0.01)
    value = quantile.value()
    assert value is not None and 0.01 <= value <= 0.01 * 1.1


def test_p95_ignores_a_five_percent_tail_and_sees_a_larger_one() -> None:
    """With exactly 5% of calls stalled at 200 ms the p95 stays at the healthy 1 ms;
    with 10% stalled it is the stall."""
    five = LatencyQuantile()
    for index in range(400):
        five.record(0.2 if index % 20 == 0 else 0.001)
    assert five.value() is not None and five.value() <= 0.0011  # type: ignore[operator]
    ten = LatencyQuantile()
    for index in range(400):
        ten.record(0.2 if index % 10 == 0 else 0.001)
    assert ten.value() is not None and 0.2 <= ten.value() <= 0.22  # type: ignore[operator]


def test_the_estimate_forgets_past_latencies() -> None:
    """After a long run at 50 ms the latency drops to 1 ms: some thousands of samples
    later the p95 follows it."""
    quantile = LatencyQuantile(halve_every=500)
    for _ in range(2000):
        quantile.record(0.05)
    for _ in range(4000):
        quantile.record(0.001)
    assert quantile.value() is not None and quantile.value() <= 0.0011  # type: ignore[operator]


def test_samples_outside_the_range_are_kept_at_its_ends() -> None:
    """A zero, a negative (a clock step) and an hour land in the first and last buckets
    without error."""
    quantile = LatencyQuantile(min_samples=3, quantile=0.5)
    for seconds in (0.0, -1.0, 3600.0):
        quantile.record(seconds)
    assert quantile.value() is not None and quantile.value() <= 2e-5  # type: ignore[operator]


@settings(max_examples=200, deadline=None)
@given(
    samples=st.lists(st.floats(min_value=1e-4, max_value=10.0), min_size=20, max_size=300),
    q=st.sampled_from([0.5, 0.9, 0.95, 0.99]),
)
def test_the_quantile_is_within_one_bucket_above_the_true_one(
    samples: list[float], q: float
) -> None:
    """Without forgetting, the answer is the upper bound of the bucket holding the true
    quantile (the ceil(q x n)-th smallest sample): never below it, at most 9.06% above."""
    quantile = LatencyQuantile(quantile=q, min_samples=1, halve_every=10**9)
    for seconds in samples:
        quantile.record(seconds)
    ordered = sorted(samples)
    true = ordered[max(1, math.ceil(q * len(samples) - 1e-9)) - 1]
    value = quantile.value()
    assert value is not None
    assert true * (1 - 1e-9) <= value <= true * 2 ** (1 / 8) * (1 + 1e-9)


# --- where the next attempt goes ----------------------------------------------------------


@dataclass(eq=False)
class Conn:
    name: str
    address: str | None
    in_flight: int = 0


def test_the_next_attempt_prefers_another_address() -> None:
    """The first attempt went to address A: an untried connection at B comes before an
    untried one at A, even a busier one."""
    a1, a2, b1 = Conn("a1", "A"), Conn("a2", "A"), Conn("b1", "B", in_flight=5)
    assert next_connection([a1, a2, b1], [a1]) is b1
    assert next_connection([a1, a2, b1], [a1, b1]) is a2
    assert next_connection([a1, a2, b1], [a1, a2, b1]) is None
    assert next_connection([], [a1]) is None


def test_the_least_busy_untried_connection_wins_and_ties_turn() -> None:
    """Among connections at new addresses the one with the fewest calls in flight; ties
    go to the first from ``turn`` on; unpinned connections (address None) share one
    address."""
    a, b, c, d = Conn("a", "A"), Conn("b", "B", 2), Conn("c", "C", 1), Conn("d", "D", 1)
    assert next_connection([a, b, c, d], [a]) is c
    assert next_connection([a, b, c, d], [a], turn=3) is d
    x, y = Conn("x", None), Conn("y", None)
    assert next_connection([x, y], [x]) is y


# --- classifying an attempt's end ----------------------------------------------------------


def test_how_an_attempt_ending_weighs() -> None:
    """OK wins; UNAVAILABLE lets others go on (never-sent when worded as a pick failure);
    CANCELLED is retryable unless the caller cancelled; anything else is fatal."""
    codes = grpc.StatusCode
    assert classify(codes.OK, None, False) is Outcome.OK
    assert classify(codes.UNAVAILABLE, "Socket closed", False) is Outcome.RETRYABLE
    assert classify(codes.UNAVAILABLE, f"{NEVER_SENT}; x", False) is Outcome.NEVER_SENT
    assert classify(codes.UNAVAILABLE, None, False) is Outcome.RETRYABLE
    assert classify(codes.CANCELLED, "Channel closed!", False) is Outcome.RETRYABLE
    assert classify(codes.CANCELLED, None, True) is Outcome.FATAL
    assert classify(codes.DEADLINE_EXCEEDED, None, False) is Outcome.FATAL
    assert classify(codes.INVALID_ARGUMENT, None, False) is Outcome.FATAL


# --- one call's attempts --------------------------------------------------------------------


def test_an_answer_before_the_delay_wins_unhedged() -> None:
    """The first attempt answers before the delay: it wins, one attempt, and its duration
    is the latency sample."""
    machine = HedgedAttempts(2, delay=0.05, deadline=None)
    assert machine.start(0.0) == 0
    assert machine.due == pytest.approx(0.05)
    assert machine.ended(0, Outcome.OK, 0.01) is Next.WIN
    assert (machine.settled, machine.won(), machine.attempts, machine.due) == (0, 0, 1, None)
    assert machine.sample(0.02) == pytest.approx(0.01)


def test_a_hedge_that_wins_teaches_a_censored_sample() -> None:
    """No answer by the delay: HEDGE; the second attempt wins; the sample is how long
    the first had run, and the first ending later changes nothing."""
    machine = HedgedAttempts(3, delay=0.05, deadline=10.0)
    machine.start(0.0)
    assert machine.timer(0.02) is Next.WAIT  # early
    assert machine.timer(0.05) is Next.HEDGE
    assert machine.start(0.05) == 1
    assert machine.due == pytest.approx(0.10)
    assert machine.ended(1, Outcome.OK, 0.06) is Next.WIN
    assert machine.won() == 1 and machine.attempts == 2
    assert machine.sample(0.06) == pytest.approx(0.06)
    assert machine.ended(0, Outcome.FATAL, 0.07) is Next.WAIT


def test_unavailable_sends_the_next_at_once_and_lets_the_others_go_on() -> None:
    """UNAVAILABLE with attempts left asks for the next at once; once max_attempts are
    out, one UNAVAILABLE waits for the attempt still running, which may win."""
    machine = HedgedAttempts(2, delay=1.0, deadline=None)
    machine.start(0.0)
    assert machine.ended(0, Outcome.RETRYABLE, 0.01) is Next.HEDGE
    machine.start(0.01)
    assert machine.ended(1, Outcome.OK, 0.02) is Next.WIN
    assert machine.won() == 1 and machine.sample(0.02) is None  # the first failed

    machine = HedgedAttempts(2, delay=0.05, deadline=None)
    machine.start(0.0)
    assert machine.timer(0.05) is Next.HEDGE
    machine.start(0.05)
    assert machine.due is None  # max_attempts out
    assert machine.ended(1, Outcome.RETRYABLE, 0.06) is Next.WAIT
    assert machine.ended(0, Outcome.OK, 0.2) is Next.WIN
    assert machine.won() == 0


def test_the_last_unavailable_fails_the_call_when_nothing_is_left() -> None:
    """Every attempt UNAVAILABLE: the call fails with the last one."""
    machine = HedgedAttempts(2, delay=0.05, deadline=None)
    machine.start(0.0)
    machine.start(0.05)
    assert machine.ended(0, Outcome.RETRYABLE, 0.06) is Next.WAIT
    assert machine.ended(1, Outcome.RETRYABLE, 0.07) is Next.FAIL
    assert machine.settled == 1 and machine.won() == -1


def test_a_fatal_status_commits_at_once() -> None:
    """A status other than OK and UNAVAILABLE fails the call at once, attempts running or
    not."""
    machine = HedgedAttempts(3, delay=0.05, deadline=None)
    machine.start(0.0)
    machine.start(0.05)
    assert machine.ended(1, Outcome.FATAL, 0.06) is Next.FAIL
    assert machine.settled == 1 and machine.due is None


def test_a_refused_hedge_stops_hedging_or_fails() -> None:
    """No budget (or connection) for a timer's hedge: no more hedges, the first attempt
    goes on; for the replacement of a failed attempt: the call fails with that failure."""
    machine = HedgedAttempts(3, delay=0.05, deadline=None)
    machine.start(0.0)
    assert machine.timer(0.05) is Next.HEDGE
    assert machine.refused() is Next.WAIT
    assert machine.due is None
    assert machine.ended(0, Outcome.RETRYABLE, 0.1) is Next.HEDGE
    assert machine.refused() is Next.FAIL
    assert machine.settled == 0


def test_a_never_sent_attempt_is_replaced_without_counting() -> None:
    """An attempt that never reached a server asks for a RESEND and does not count
    against max_attempts: with max 2, a never-sent first attempt leaves room for two."""
    machine = HedgedAttempts(2, delay=0.05, deadline=None)
    machine.start(0.0)
    assert machine.ended(0, Outcome.NEVER_SENT, 0.001) is Next.RESEND
    machine.start(0.001)
    assert machine.due == pytest.approx(0.051)
    assert machine.timer(0.051) is Next.HEDGE
    machine.start(0.051)
    assert machine.attempts == 3 and machine.sent == 2 and machine.due is None
    # The hedge (started third, sent second) wins: index 1 among the attempts sent.
    assert machine.ended(2, Outcome.OK, 0.06) is Next.WIN
    assert machine.won() == 1


def test_the_deadline_bounds_hedges() -> None:
    """A hedge due after the call's deadline is not sent, and a failure then fails the
    call; ``left`` says what each attempt gets."""
    machine = HedgedAttempts(3, delay=0.05, deadline=0.04)
    machine.start(0.0)
    assert machine.left(0.01) == pytest.approx(0.03)
    assert machine.timer(0.05) is Next.WAIT and machine.due is None
    assert machine.ended(0, Outcome.RETRYABLE, 0.05) is Next.FAIL


def test_without_a_delay_nothing_is_hedged_on_a_timer() -> None:
    """delay None (p95 not learnt yet): no timer; a failure may still be replaced."""
    machine = HedgedAttempts(2, delay=None, deadline=None)
    machine.start(0.0)
    assert machine.due is None and machine.timer(5.0) is Next.WAIT
    assert machine.ended(0, Outcome.RETRYABLE, 0.01) is Next.HEDGE


@settings(max_examples=300, deadline=None)
@given(
    max_attempts=st.integers(min_value=2, max_value=5),
    delay=st.one_of(st.none(), st.floats(min_value=0.001, max_value=0.1)),
    deadline=st.one_of(st.none(), st.floats(min_value=0.01, max_value=1.0)),
    events=st.lists(
        st.tuples(
            st.sampled_from(["timer", "end"]),
            st.integers(min_value=0, max_value=10),
            st.sampled_from(list(Outcome)),
            st.booleans(),  # the driver could start what was asked for
            st.floats(min_value=0.0, max_value=0.1),
        ),
        max_size=40,
    ),
)
def test_the_machine_never_exceeds_max_attempts_and_never_sticks(
    max_attempts: int,
    delay: float | None,
    deadline: float | None,
    events: list[tuple[str, int, Outcome, bool, float]],
) -> None:
    """Driven as a driver does (starting or refusing what it asks for), the machine never
    has more than max_attempts counted attempts, settles at most once, and is never left
    with nothing running and nothing settled."""
    machine = HedgedAttempts(max_attempts, delay, deadline)
    now = 0.0
    running: list[int] = [machine.start(now)]
    never_sent = 0
    settled_at: int | None = None
    for kind, pick, outcome, can_start, gap in events:
        now += gap
        if kind == "timer":
            step = machine.timer(now)
        else:
            if not running:
                break
            index = running.pop(pick % len(running))
            never_sent += outcome is Outcome.NEVER_SENT
            step = machine.ended(index, outcome, now)
        while step in (Next.HEDGE, Next.RESEND):
            if can_start:
                running.append(machine.start(now))
                step = Next.WAIT
            else:
                step = machine.refused()
        assert machine.attempts - never_sent <= max_attempts
        if step in (Next.WIN, Next.FAIL):
            assert settled_at is None
            settled_at = machine.settled
            for index in running:  # cancelled losers end later, changing nothing
                assert machine.ended(index, Outcome.FATAL, now) is Next.WAIT
            running = []
        if machine.settled is None:
            assert running, "nothing running and nothing settled"


# --- a pool's hedging state -----------------------------------------------------------------


def test_a_fixed_delay_is_used_as_given() -> None:
    """delay 0.05: every call of a hedged method gets 0.05 and counts in the budget."""
    state = HedgingState(Hedging(methods=(METHOD,), delay=0.05, budget=0.5))
    machine = state.attempts(METHOD, timeout=2.0, now=1.0)
    assert state.delay(METHOD) == 0.05
    assert machine.left(1.5) == pytest.approx(1.5)
    assert state.budget.counts(1.0) == (1, 0)
    assert state.methods == frozenset({METHOD})


def test_p95_is_not_hedged_until_learnt() -> None:
    """delay "p95": no delay (no hedging) until the method has HEDGING_MIN_SAMPLES samples,
    then the learnt p95; samples of None are ignored."""
    state = HedgingState(Hedging(methods=(METHOD,), delay="p95"))
    for _ in range(HEDGING_MIN_SAMPLES - 1):
        state.learn(METHOD, 0.01)
        state.learn(METHOD, None)
    assert state.delay(METHOD) is None
    assert state.attempts(METHOD, None, 0.0).due is None
    state.learn(METHOD, 0.01)
    delay = state.delay(METHOD)
    assert delay is not None and 0.01 <= delay <= 0.011


# --- the channel options of a hedging pool ------------------------------------------------

RETRY_CONFIG = json.dumps(
    {
        "methodConfig": [
            {
                "name": [{"service": "test.Echo"}],
                "retryPolicy": {
                    "maxAttempts": 3,
                    "initialBackoff": "0.01s",
                    "maxBackoff": "0.1s",
                    "backoffMultiplier": 2,
                    "retryableStatusCodes": ["UNAVAILABLE"],
                },
            }
        ]
    }
)


def _options(hedging: bool, options: dict[str, object] | None = None) -> dict[str, object]:
    pool: dict[str, object] = {"size": 1}
    if hedging:
        pool["hedging"] = {"methods": [METHOD], "delay": 0.05}
    config = Config.new(
        endpoint={"type": "local", "host": "127.0.0.1", "port": 1, "options": options or {}},
        pool=pool,
    )
    return dict(config.channel_options())


def test_a_hedging_pool_turns_grpcio_retries_off_only_when_nothing_is_lost() -> None:
    """Hedging on, no retry policy: grpc.enable_retries 0 (so grpcio lets the A6 header
    through). Hedging off, a retryPolicy or hedgingPolicy in the service config, one
    that cannot be read, or the user's own grpc.enable_retries: left as the user has it."""
    assert "grpc.enable_retries" not in _options(False)
    assert _options(True)["grpc.enable_retries"] == 0
    no_policy = json.dumps({"methodConfig": [{"name": [{}], "timeout": "5s"}]})
    assert _options(True, {"grpc.service_config": no_policy})["grpc.enable_retries"] == 0
    assert "grpc.enable_retries" not in _options(True, {"grpc.service_config": RETRY_CONFIG})
    hedging_policy = RETRY_CONFIG.replace("retryPolicy", "hedgingPolicy")
    assert "grpc.enable_retries" not in _options(True, {"grpc.service_config": hedging_policy})
    assert "grpc.enable_retries" not in _options(True, {"grpc.service_config": "{not json"})
    assert _options(True, {"grpc.enable_retries": 1})["grpc.enable_retries"] == 1


def test_running_for_names_the_attempts_still_running() -> None:
    """Once the hedge wins, the first attempt is still running: running_for says so, with
    how long it has run (what its connection's estimate learns as a lower bound)."""
    machine = HedgedAttempts(2, delay=0.05, deadline=None)
    machine.start(0.0)
    assert machine.timer(0.05) is Next.HEDGE
    machine.start(0.05)
    assert machine.ended(1, Outcome.OK, 0.06) is Next.WIN
    assert machine.running_for(0.06) == ((0, pytest.approx(0.06)),)
