"""The autoscaling rule (grpcpool.core._autoscale) and the clamped scale calls, without servers."""

from __future__ import annotations

import math
import time
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from grpcpool import telemetry
from grpcpool._config_capacity import AUTOSCALE_SAMPLES, Autoscale, normalize_autoscale
from grpcpool._status import WorkerStatus
from grpcpool.core._autoscale import (
    LoadSource,
    Step,
    Window,
    autoscaled,
    clamp,
    grow_now,
    grow_step,
    look,
    next_size,
    target_range,
)
from grpcpool.core._capacity import Capacity
from grpcpool.core._scaling import resize_by, scale_up_by, workers_to_stop
from grpcpool.core._view import Lifecycle, PoolView, build_view, empty_view
from grpcpool.errors import PoolSizeError
from grpcpool.strategy import RoundRobin
from tests.pools import ready_connections


def settings(**keys: Any) -> Autoscale:
    """``pool.autoscale`` from ``keys`` as a pool of max_size 1024 settles it."""
    made = normalize_autoscale(keys, 1024)
    assert made is not None
    return made


@st.composite
def autoscales(draw: st.DrawFn) -> Autoscale:
    """Any valid, settled ``pool.autoscale``."""
    low_size = draw(st.integers(1, 20))
    low_calls = draw(st.integers(1, 10))
    return settings(
        min_size=low_size,
        max_size=draw(st.integers(low_size, 40)),
        low_calls=low_calls,
        high_calls=draw(st.integers(low_calls, 50)),
        max_step=draw(st.integers(1, 5)),
    )


SIZES = st.integers(1, 60)
PEAKS = st.integers(0, 3000)


def view(size: int, ready: int, lifecycle: Lifecycle = "running") -> PoolView:
    """A view of a pool of ``size`` with ``ready`` ready connections (plain objects as channels)."""
    channels = tuple(object() for _ in range(ready))
    workers = tuple(WorkerStatus(f"worker-{i}", "ready", time.time()) for i in range(1, ready + 1))
    return build_view(
        "autoscale-test",
        RoundRobin(),
        empty_view("autoscale-test", size, "starting"),
        connections=ready_connections(channels),
        workers=workers,
        expected_size=size,
        lifecycle=lifecycle,
    )


# --- the interval's decision ----------------------------------------------------------------


def test_the_range_is_peak_over_high_calls_to_peak_over_low_calls() -> None:
    """Peak 100, 25 and 5 calls per connection: 4 to 20 connections, clamped to the range."""
    rule = settings(min_size=2, max_size=16, low_calls=5, high_calls=25)
    assert target_range(100, rule) == (4, 16)
    assert target_range(0, rule) == (2, 2)
    assert target_range(51, rule) == (3, 11)


@given(autoscales(), SIZES, PEAKS)
def test_a_size_inside_the_range_stays(rule: Autoscale, size: int, peak: int) -> None:
    """No step when the size is already within [ceil(peak/high), ceil(peak/low)] clamped."""
    low, high = target_range(peak, rule)
    assert (next_size(size, peak, rule) is None) == (low <= size <= high)


@given(autoscales(), SIZES, PEAKS)
def test_a_step_moves_toward_the_range_by_at_most_max_step(
    rule: Autoscale, size: int, peak: int
) -> None:
    """A step goes toward the range, never past it, by 1 to max_step connections; from
    within [min_size, max_size] it stays within it."""
    target = next_size(size, peak, rule)
    if target is None:
        return
    low, high = target_range(peak, rule)
    assert 1 <= abs(target - size) <= rule.max_step
    if size < low:
        assert size < target <= low
    else:
        assert size > high and high <= target < size
    min_size, max_size = rule.bounds
    if min_size <= size <= max_size:
        assert min_size <= target <= max_size


@given(autoscales(), SIZES, PEAKS)
def test_steps_repeated_reach_the_range_and_stop(rule: Autoscale, size: int, peak: int) -> None:
    """Stepping again and again under the same peak ends inside the range, in at most
    ceil(distance / max_step) steps."""
    low, high = target_range(peak, rule)
    distance = max(low - size, size - high, 0)
    steps = 0
    while (target := next_size(size, peak, rule)) is not None:
        size, steps = target, steps + 1
    assert low <= size <= high
    assert steps == math.ceil(distance / rule.max_step)


def test_the_gax_example_grows_by_two_and_shrinks_to_min_size() -> None:
    """From 2 connections, 128 callers at 25 calls a connection ask for 6: 2 -> 4 -> 6; then 2
    callers ask for 1 to 2: 6 -> 4 -> 2 (min_size 2)."""
    rule = settings(min_size=2, max_size=32)
    sizes = [2]
    for peak in (128, 128, 128, 2, 2, 2):
        sizes.append(next_size(sizes[-1], peak, rule) or sizes[-1])
    assert sizes == [2, 4, 6, 6, 4, 2, 2]


# --- looks and waiting calls ------------------------------------------------------------------


@given(autoscales(), SIZES, st.lists(PEAKS, min_size=AUTOSCALE_SAMPLES, max_size=AUTOSCALE_SAMPLES))
def test_an_interval_decides_on_the_peak_of_its_looks(
    rule: Autoscale, size: int, loads: list[int]
) -> None:
    """Without waiting calls, only an interval's last look gives a step: next_size of the
    highest load seen; the window starts afresh after it."""
    window, seen = Window(), view(size, size)
    for number, load in enumerate(loads, start=1):
        window, step = look(window, rule, seen, load=load, queued=0)
        if number < AUTOSCALE_SAMPLES:
            assert step is None and window == Window(max(loads[:number]), number)
    assert window == Window()
    target = next_size(size, max(loads), rule)
    assert step == (None if target is None else Step(size, target, max(loads), 0))


def test_a_pool_that_is_not_running_is_not_scaled() -> None:
    """A starting, restarting or stopped pool: no step and the window unchanged."""
    rule = settings(min_size=1, max_size=8, high_calls=1)
    for lifecycle in ("starting", "restarting", "stopped"):
        seen = view(2, 0, lifecycle)  # type: ignore[arg-type]
        assert look(Window(3, 9), rule, seen, load=100, queued=5) == (Window(3, 9), None)
        assert grow_step(Window(), rule, seen, 5) is None


@given(autoscales(), SIZES, st.integers(0, 500))
def test_waiting_calls_grow_a_ready_pool_at_once_by_what_they_need(
    rule: Autoscale, size: int, queued: int
) -> None:
    """Calls waiting grow a pool whose connections are all ready: one connection per
    high_calls waiting calls, at least one, up to max_size, max_step or not."""
    target = grow_now(size, size, queued, rule)
    _, max_size = rule.bounds
    if queued == 0 or size >= max_size:
        assert target is None
        return
    assert target is not None
    wanted = max(1, math.ceil(queued / rule.calls[1]))
    assert target == min(max_size, size + wanted)


def test_waiting_calls_do_not_grow_a_pool_whose_new_connections_are_connecting() -> None:
    """4 expected, 2 ready: the 2 coming take the wait, so no growth until they are ready."""
    rule = settings(min_size=1, max_size=8, high_calls=2)
    assert grow_now(4, 2, 10, rule) is None
    assert grow_now(4, 4, 10, rule) == 8  # 5 wanted, max_size 8
    assert grow_now(4, 4, 3, rule) == 6
    assert grow_step(Window(7, 3), rule, view(4, 4), 3) == Step(4, 6, 7, 3)
    assert grow_step(Window(), rule, view(4, 2), 10) is None


def test_a_look_with_calls_waiting_grows_before_the_interval_ends() -> None:
    """The first look that sees calls waiting gives a step; at the interval's end the bigger
    of the two steps wins."""
    rule = settings(min_size=1, max_size=10, high_calls=4, max_step=2)
    window, step = look(Window(), rule, view(2, 2), load=12, queued=4)
    assert step == Step(2, 3, 12, 4) and window == Window(12, 1)
    window, step = look(Window(40, AUTOSCALE_SAMPLES - 1), rule, view(2, 2), load=0, queued=1)
    assert step == Step(2, 4, 40, 1) and window == Window()  # the interval's 2 -> 4 wins


# --- the sampled load -------------------------------------------------------------------------


def test_the_capacity_load_sums_the_calls_of_every_ready_connection() -> None:
    """The pool's Capacity, the autoscaler's load, counts the calls on routed and ejected
    ready connections, plus the calls waiting."""
    channels = tuple(object() for _ in range(3))
    connections = ready_connections(channels)
    for connection, calls in zip(connections, (2, 0, 3), strict=True):
        connection.calls.clear()
        connection.calls.update(range(calls))
    workers = tuple(WorkerStatus(f"worker-{i}", "ready", time.time()) for i in (1, 2, 3))
    ejected = build_view(
        "autoscale-test",
        RoundRobin(),
        empty_view("autoscale-test", 3, "starting"),
        connections=connections,
        workers=workers,
        expected_size=3,
        lifecycle="running",
        ejected=frozenset(connections[2:]),
        panic_threshold=0.0,
    )
    assert len(ejected.unrouted) == 1
    load: LoadSource = Capacity("autoscale-test", None, 10, lambda: ejected)
    assert (load.take_peak(), load.queued) == (5, 0)
    load.on_wait()  # no autoscaler set it: a no-op
    for connection in connections:
        connection.calls.clear()


def test_the_signal_carries_the_step_and_the_size_reached() -> None:
    """pool.autoscaled: from_size, to_size (as reached), the peak and the calls waiting."""
    effect = autoscaled(Step(2, 4, 90, 3), 4)
    assert effect.signal == telemetry.pool_autoscaled.name
    assert effect.measurements == {"from_size": 2, "to_size": 4, "peak_in_flight": 90, "queued": 3}


# --- scale calls on an autoscaled pool ----------------------------------------------------------


@given(autoscales(), st.integers(1, 40), st.integers(1, 100))
def test_scale_calls_clamp_into_the_range(rule: Autoscale, size: int, count: int) -> None:
    """scale_up, scale_down and resize never take an autoscaled pool past its range, and never
    raise for going past it: they stop at its end."""
    low, high = rule.bounds
    size = clamp(size, rule)
    assert size + scale_up_by("p", size, count, 1024, rule) == min(size + count, high)
    workers = [f"worker-{i}" for i in range(1, size + 1)]
    stopping = workers_to_stop("p", size, workers, count, rule)
    assert size - len(stopping) == max(size - count, low)
    assert stopping == list(reversed(workers[len(workers) - len(stopping) :]))
    assert size + resize_by("p", size, count, 1024, rule) == clamp(count, rule)


def test_scale_calls_still_refuse_bad_counts() -> None:
    """A count below 1 is a PoolSizeError and a non-int a TypeError, autoscaled or not."""
    rule = settings(min_size=2, max_size=4)
    for call in (
        lambda value: scale_up_by("p", 2, value, 8, rule),
        lambda value: workers_to_stop("p", 2, ["worker-1", "worker-2"], value, rule),
        lambda value: resize_by("p", 2, value, 8, rule),
    ):
        with pytest.raises(PoolSizeError):
            call(0)
        with pytest.raises(TypeError):
            call(2.0)
