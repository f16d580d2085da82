"""The peak-EWMA latency rules (grpcpool.core._latency) and CallStats applying them, without servers.

Times are plain floats (seconds on a made-up monotonic clock); durations are
seconds, so 0.001 is a 1 ms call.
"""

from __future__ import annotations

import math

import grpc
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from grpcpool._strategy_latency import PoolLatency
from grpcpool.core._call_stats import CallStats
from grpcpool.core._latency import (
    FAILURE_FACTOR,
    MAX_FAILURE_FACTOR,
    PEAK_FADE_CALLS,
    UNKNOWN,
    estimate_at,
    failure_sample,
    kept,
    observe,
    typical_after,
)

OK = grpc.StatusCode.OK
UNAVAILABLE = grpc.StatusCode.UNAVAILABLE
CANCELLED = grpc.StatusCode.CANCELLED

latencies = st.floats(min_value=1e-5, max_value=10.0)
decays = st.floats(min_value=0.05, max_value=60.0)
gaps = st.floats(min_value=0.0, max_value=120.0)


def close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)


# --- the weight -------------------------------------------------------------------------


def test_kept_is_one_now_and_decays_by_e_per_decay() -> None:
    """Nothing is forgotten at once; a decay's time keeps 1/e; a clock read out of order
    (elapsed < 0) keeps everything rather than extrapolating."""
    assert kept(0.0, 10.0) == 1.0
    assert kept(-0.5, 10.0) == 1.0
    assert close(kept(10.0, 10.0), math.exp(-1))
    assert kept(1000.0, 1.0) < 1e-9


# --- observe: the peak EWMA -------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(latencies, latencies, latencies, gaps, decays)
def test_a_slower_sample_replaces_the_estimate_at_once(
    estimate: float, typical: float, sample: float, gap: float, decay: float
) -> None:
    """A sample at least as slow as the estimate read now becomes the estimate, whatever
    the weight: a backend that turns slow looks slow from its first slow answer."""
    current = estimate_at(estimate, 0.0, gap, decay, typical)
    assert current is not None
    slower = max(sample, current)
    assert observe(estimate, 0.0, slower, gap, decay, typical) == slower


@settings(max_examples=300, deadline=None)
@given(latencies, latencies, latencies, gaps, decays)
def test_a_faster_sample_pulls_the_estimate_down_part_way(
    estimate: float, typical: float, sample: float, gap: float, decay: float
) -> None:
    """A faster sample moves the estimate toward it, never past it: the result lies
    between the sample and the estimate read now, and is the weighted mean of the two
    with weight exp(-elapsed / decay) on the old value, at most 1 - 1/PEAK_FADE_CALLS."""
    current = estimate_at(estimate, 0.0, gap, decay, typical)
    assert current is not None
    result = observe(estimate, 0.0, sample, gap, decay, typical)
    assert result >= sample
    if sample < current:
        assert sample <= result <= current
        weight = min(kept(gap, decay), 1 - 1 / PEAK_FADE_CALLS)
        assert math.isclose(result, sample + (current - sample) * weight, rel_tol=1e-9)


def fade(every: float, seconds: float, decay: float = 10.0) -> float:
    """The excess over 1 ms left of one 50 ms peak, as a fraction, after ``seconds`` of
    1 ms answers every ``every`` seconds (typical 1 ms)."""
    typical = 0.001
    estimate, stamp, now = observe(None, 0.0, 0.050, 0.0, decay, typical), 0.0, 0.0
    for _ in range(round(seconds / every)):
        now += every
        estimate, stamp = observe(estimate, stamp, 0.001, now, decay, typical), now
    return (estimate - 0.001) / 0.049


@pytest.mark.parametrize("every", [0.0005, 0.001, 0.01, 0.1])
def test_on_a_busy_connection_a_peak_fades_within_a_few_calls(every: float) -> None:
    """One 50 ms peak on a connection then answering in the typical 1 ms, a call every
    0.5 to 100 ms (decay 10 s): each faster call pulls at least 1/PEAK_FADE_CALLS of the
    way, so after PEAK_FADE_CALLS calls at most 1/e of the excess is left, after five
    times as many under 1%, however soon the calls come. (Weighed by time alone, a
    connection answering every millisecond kept 99.99% of a peak per call, and its
    estimate was the slowest call of its last seconds, not its latency.)"""
    assert fade(every, every * PEAK_FADE_CALLS) <= math.exp(-1) + 1e-9
    assert fade(every, every * PEAK_FADE_CALLS * 5) < 0.01


@pytest.mark.parametrize("every", [2.0, 5.0])
def test_on_a_quiet_connection_a_peak_fades_by_time(every: float) -> None:
    """Calls 2 or 5 s apart (decay 10 s): the time weight keeps less than the floor's
    1 - 1/PEAK_FADE_CALLS, so a peak fades by time as before: the drift toward typical
    and the fast samples both pull by exp(-elapsed / decay), so exp(-2) of the excess is
    left after a decay, under 0.3% after three decays."""
    assert kept(every, 10.0) < 1 - 1 / PEAK_FADE_CALLS
    assert math.isclose(fade(every, 10.0), math.exp(-2), rel_tol=1e-6)
    assert fade(every, 30.0) < 0.003


def test_calls_ending_at_once_each_pull_a_peak() -> None:
    """Fast answers ending at the same instant as the peak (elapsed 0, time weight 1)
    still pull it by the floor: eight of them leave about 1/e of the excess."""
    estimate = observe(None, 0.0, 0.050, 0.0, 10.0, 0.001)
    for _ in range(PEAK_FADE_CALLS):
        estimate = observe(estimate, 1.0, 0.001, 1.0, 10.0, 0.001)
    assert math.isclose(estimate - 0.001, 0.049 * (1 - 1 / PEAK_FADE_CALLS) ** PEAK_FADE_CALLS)


def test_a_sustained_slow_backend_keeps_its_peak() -> None:
    """The floor pulls only toward faster answers: a backend answering 50-55 ms on every
    call, 20 calls a second, keeps an estimate of at least 50 ms throughout."""
    estimate: float | None = None
    stamp = 0.0
    for step in range(200):
        now = step * 0.05
        sample = 0.050 + 0.005 * (step % 2)
        estimate, stamp = observe(estimate, stamp, sample, now, 10.0, 0.004), now
        assert estimate >= 0.050


def test_the_first_sample_is_taken_as_it_is() -> None:
    """A connection's first sample is its estimate, faster or slower than typical."""
    assert observe(None, 0.0, 0.003, 5.0, 10.0, 0.001) == 0.003
    assert observe(None, 0.0, 0.0005, 5.0, 10.0, 0.001) == 0.0005
    assert observe(None, 0.0, 0.002, 5.0, 10.0, None) == 0.002


# --- read at now: drifting toward typical -----------------------------------------------


@settings(max_examples=300, deadline=None)
@given(latencies, latencies, gaps, gaps, decays)
def test_an_idle_estimate_drifts_toward_typical_and_never_past_it(
    estimate: float, typical: float, first: float, more: float, decay: float
) -> None:
    """Read later, an estimate is never farther from the typical latency, always between
    its last value and typical: a connection that looked slow looks less so the longer
    it gets no call, so it is tried again."""
    early = estimate_at(estimate, 0.0, first, decay, typical)
    late = estimate_at(estimate, 0.0, first + more, decay, typical)
    assert early is not None and late is not None
    low, high = min(estimate, typical), max(estimate, typical)
    assert low - 1e-12 <= late <= high + 1e-12
    assert abs(late - typical) <= abs(early - typical) + 1e-12


def test_an_idle_estimate_reaches_typical_after_a_few_decays() -> None:
    """50 ms against a typical 1 ms: 1/e of the excess is left after one decay, under
    1% after five."""
    one = estimate_at(0.050, 0.0, 10.0, 10.0, 0.001)
    five = estimate_at(0.050, 0.0, 50.0, 10.0, 0.001)
    assert one is not None and five is not None
    assert math.isclose(one, 0.001 + 0.049 / math.e, rel_tol=1e-9)
    assert five - 0.001 < 0.01 * 0.049


def test_without_a_sample_the_estimate_is_typical_and_without_either_unknown() -> None:
    """A new connection reads as the pool's typical latency; with no typical latency yet
    the estimate is kept as it is (no drift target); with neither there is nothing."""
    assert estimate_at(None, 0.0, 3.0, 10.0, 0.002) == 0.002
    assert estimate_at(0.004, 0.0, 3.0, 10.0, None) == 0.004
    assert estimate_at(None, 0.0, 3.0, 10.0, None) is None


@settings(max_examples=200, deadline=None)
@given(
    latencies,
    st.lists(st.tuples(latencies, st.floats(min_value=0.0, max_value=5.0)), min_size=1),
    st.floats(min_value=0.0, max_value=50.0),
    decays,
)
def test_the_estimate_stays_within_the_samples_and_typical(
    typical: float, samples: list[tuple[float, float]], later: float, decay: float
) -> None:
    """After any run of successful samples (typical fixed), the estimate read at any
    later time is never below the fastest of those samples and typical, never above the
    slowest of them and typical, and right after a sample never below that sample."""
    estimate: float | None = None
    stamp = now = 0.0
    for sample, gap in samples:
        now += gap
        estimate, stamp = observe(estimate, stamp, sample, now, decay, typical), now
        assert estimate >= sample
    read = estimate_at(estimate, stamp, now + later, decay, typical)
    assert read is not None
    seen = [sample for sample, _ in samples] + [typical]
    assert min(seen) - 1e-12 <= read <= max(seen) + 1e-12


# --- failures ---------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.none(), latencies), latencies, latencies)
def test_a_failure_counts_as_slower_than_the_estimate_and_typical(
    seconds: float | None, current: float, typical: float
) -> None:
    """A failure is at least twice the larger of the estimate and typical (up to the
    cap), never faster than the estimate now (a failure never makes a connection look
    faster) nor than its own duration, and never above the largest of those three and
    the cap."""
    slow = failure_sample(seconds, current, typical)
    assert slow is not None
    cap = MAX_FAILURE_FACTOR * typical
    doubled = FAILURE_FACTOR * max(current, typical)
    assert slow >= min(doubled, cap) - 1e-12
    assert slow >= current
    assert seconds is None or slow >= seconds
    assert slow <= max(doubled if doubled <= cap else cap, current, seconds or 0.0) + 1e-12


def test_a_failure_with_nothing_to_scale_it_by_is_its_own_duration() -> None:
    """No estimate and no typical latency: a failure counts as what it took (None for a
    stream: nothing to learn)."""
    assert failure_sample(0.0002, None, None) == 0.0002
    assert failure_sample(None, None, None) is None
    assert failure_sample(None, 0.003, None) == FAILURE_FACTOR * 0.003


def test_failures_in_a_row_double_the_estimate_up_to_the_cap() -> None:
    """Every call failing in 0.2 ms, typical 1 ms: 2, 4, 8 ... ms, then at most 1 s;
    a slow failure (a 5 s deadline) counts as its own duration."""
    typical, estimate, seen = 0.001, 0.001, []
    for step in range(15):
        slow = failure_sample(0.0002, estimate, typical)
        assert slow is not None
        estimate = observe(estimate, float(step), slow, float(step), 10.0, typical)
        seen.append(round(estimate * 1e3, 6))
    assert seen[:4] == [2.0, 4.0, 8.0, 16.0]
    assert max(seen) == MAX_FAILURE_FACTOR
    assert failure_sample(5.0, estimate, typical) == 5.0


def simulate_probes(in_flight: int, decay: float, seconds: float) -> int:
    """Calls a backend that fails every call at once gets, next to connections with
    ``in_flight`` calls each answering in 1 ms: it wins a draw whenever its estimate
    (its calls end at once: nothing in flight) is below a busy connection's cost, 1 ms x
    (in_flight + 1), and each of its calls fails. Virtual time, 1 ms steps."""
    typical, estimate, stamp, calls = 0.001, 0.001, 0.0, 0
    busy_cost = typical * (in_flight + 1)
    for step in range(int(seconds * 1000)):
        now = step / 1000
        current = estimate_at(estimate, stamp, now, decay, typical)
        assert current is not None
        if current < busy_cost:
            calls += 1
            slow = failure_sample(0.0002, current, typical)
            assert slow is not None
            estimate, stamp = observe(estimate, stamp, slow, now, decay, typical), now
    return calls


@pytest.mark.parametrize("in_flight", [0, 1, 4, 16, 64, 256])
def test_a_failing_backend_is_tried_about_once_per_decay_whatever_the_load(
    in_flight: int,
) -> None:
    """Next to healthy connections carrying 0 to 256 calls each, a backend that fails
    every call in 0.2 ms gets, over a minute (decay 10 s), the few calls that double
    its estimate past a busy connection's cost, then about one per decay x ln 2: each
    failure doubles the cost that let it win, so the load that made it look cheap
    cannot make it a black hole. (A fixed multiple of typical would lose at a load of
    that multiple.)"""
    calls = simulate_probes(in_flight, 10.0, 60.0)
    assert calls <= math.log2(in_flight + 1) + 60.0 / (10.0 * math.log(2)) + 2


# --- typical ----------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(latencies, latencies, gaps, decays)
def test_typical_is_a_plain_ewma_by_time(
    typical: float, sample: float, gap: float, decay: float
) -> None:
    """The pool's typical latency moves toward each sample by 1 - exp(-elapsed/decay),
    up or down alike (no peak), and starts at its first sample."""
    after = typical_after(typical, 0.0, sample, gap, decay)
    assert min(typical, sample) - 1e-12 <= after <= max(typical, sample) + 1e-12
    assert math.isclose(after, sample + (typical - sample) * kept(gap, decay), rel_tol=1e-9)
    assert typical_after(None, 0.0, sample, gap, decay) == sample


# --- CallStats applying the rules -------------------------------------------------------


def test_untracked_stats_count_outcomes_and_keep_no_estimate() -> None:
    """Without a peak_ewma picker the stats count outcomes only, as before; latency()
    is UNKNOWN."""
    stats = CallStats()
    stats.record(0.001, OK, 1.0)
    stats.record(0.002, UNAVAILABLE, 2.0)
    stats.record(None, CANCELLED, 3.0)
    assert stats.estimate is None and stats.latency(4.0) == UNKNOWN
    assert stats.take_outcomes() == (1, 1)
    assert stats.take_outcomes() == (0, 0)


def test_tracked_stats_keep_an_estimate_and_the_pool_s_typical_latency() -> None:
    """Tracked: a success is a sample for the connection and the pool's typical latency;
    a cancelled call is neither counted nor a sample; a successful stream (no duration)
    counts but teaches no latency; outcomes are counted as before."""
    pool, stats = PoolLatency(10.0), CallStats()
    stats.track(pool)
    stats.record(0.004, OK, 1.0)
    assert stats.estimate == 0.004 and pool.typical == 0.004 and pool.stamp == 1.0
    stats.record(0.5, CANCELLED, 2.0)
    stats.record(None, OK, 2.0)
    assert stats.estimate == 0.004 and stats.stamp == 1.0
    stats.record(0.002, OK, 11.0)
    assert 0.002 < stats.estimate < 0.004
    assert 0.002 < (pool.typical or 0.0) < 0.004
    assert stats.take_outcomes() == (3, 0)


def test_a_failed_stream_counts_as_a_slow_sample() -> None:
    """A stream of responses that fails has no duration to learn from, but it failed:
    it counts as twice the estimate."""
    pool, stats = PoolLatency(10.0), CallStats()
    stats.track(pool)
    stats.record(0.001, OK, 1.0)
    stats.record(None, UNAVAILABLE, 1.0)
    assert stats.estimate == pytest.approx(0.002)


def test_before_any_success_the_first_duration_sets_the_scale() -> None:
    """Nothing succeeded yet in the pool: the first failed call's duration seeds the
    typical latency, and failures in a row on a connection still double its estimate."""
    pool, stats = PoolLatency(10.0), CallStats()
    stats.track(pool)
    stats.record(0.0002, UNAVAILABLE, 1.0)
    assert pool.typical == 0.0002
    first = stats.estimate
    stats.record(0.0002, UNAVAILABLE, 1.0)
    assert first is not None and stats.estimate == pytest.approx(2 * first)


def test_a_backend_failing_fast_looks_slower_than_healthy_ones() -> None:
    """One connection fails every call in 0.2 ms, another answers in about 1 ms; calls
    alternate every millisecond for 10 s. From the first failure on, the failing one's
    estimate read at any moment is above the healthy one's: fast failures look slow."""
    pool, healthy, failing = PoolLatency(10.0), CallStats(), CallStats()
    healthy.track(pool)
    failing.track(pool)
    now = 0.0
    for step in range(10_000):
        now = step / 1000
        if step % 2:
            failing.record(0.0002, UNAVAILABLE, now)
        else:
            healthy.record(0.001 + 0.0002 * (step % 3), OK, now)
        if step >= 1:
            assert failing.latency(now) > healthy.latency(now)
    assert failing.latency(now + 30.0) > healthy.latency(now + 30.0)


def test_a_new_connection_reads_as_typical() -> None:
    """A connection tracked after others have samples has no estimate of its own: it
    reads as the pool's typical latency, so it is neither shunned nor flooded."""
    pool, old, new = PoolLatency(10.0), CallStats(), CallStats()
    old.track(pool)
    new.track(pool)
    old.record(0.003, OK, 1.0)
    assert new.latency(5.0) == pool.typical == 0.003


def test_a_hedge_loser_raises_the_estimate_to_what_it_outlasted() -> None:
    """A call cancelled after 1 s without an answer (it lost to a hedge) raises a 5 ms
    estimate to 1 s at once; one cancelled sooner than the estimate leaves it; neither
    is counted as an outcome."""
    pool, stats = PoolLatency(10.0), CallStats()
    stats.track(pool)
    stats.record(0.005, grpc.StatusCode.OK, 100.0)
    stats.outlasted(1.0, 100.5)
    assert stats.latency(100.5) == pytest.approx(1.0)
    stats.outlasted(0.2, 100.6)
    assert stats.latency(100.6) == pytest.approx(1.0, rel=0.02)
    assert (stats.successes, stats.failures) == (1, 0)
