"""Tests for grpcpool.core._outliers: gRFC A50's outlier detection as a pure rule.

The judge's state, each unit's calls over an interval and the time go in;
the new state and what changed come out. Units are plain strings here; the
draws for ``enforcement_percentage`` come from a seeded ``random.Random``.
No server, pool or clock.
"""

from __future__ import annotations

import random
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from grpcpool._config_routing import (
    FailurePercentageEjection,
    OutlierDetection,
    SuccessRateEjection,
)
from grpcpool.core._outliers import (
    Ejected,
    Outliers,
    Unejected,
    ejection_time,
    judge,
    new_outliers,
)


def failure_only(**changes: Any) -> OutlierDetection:
    """Failure percentage alone: threshold 50, 2 hosts, 10 calls; base 10 s, max 100 s."""
    fields: dict[str, Any] = {
        "interval": 1.0,
        "base_ejection_time": 10.0,
        "max_ejection_time": 100.0,
        "max_ejection_percent": 100,
        "success_rate": None,
        "failure_percentage": FailurePercentageEjection(
            threshold=50, minimum_hosts=2, request_volume=10
        ),
    }
    fields.update(changes)
    return OutlierDetection(**fields)


def success_only(**changes: Any) -> OutlierDetection:
    """Success rate alone (A50's stdev_factor 1900), 5 hosts, 10 calls."""
    fields: dict[str, Any] = {
        "max_ejection_percent": 100,
        "success_rate": SuccessRateEjection(minimum_hosts=5, request_volume=10),
        "failure_percentage": None,
    }
    fields.update(changes)
    return OutlierDetection(**fields)


def fresh(detection: OutlierDetection, seed: int = 1) -> Outliers:
    return new_outliers(detection, random.Random(seed))


def healthy(*units: str, calls: int = 100) -> dict[str, tuple[int, int]]:
    return {unit: (calls, 0) for unit in units}


def ejections(effects: tuple[Any, ...]) -> list[Ejected]:
    return [e for e in effects if isinstance(e, Ejected)]


def returns(effects: tuple[Any, ...]) -> list[Unejected]:
    return [e for e in effects if isinstance(e, Unejected)]


# --- failure percentage --------------------------------------------------------------


def test_a_unit_failing_over_the_threshold_is_ejected_for_the_base_time() -> None:
    """failure_percentage: 60 of 100 calls failed (threshold 50) -> ejected for the base
    time, with its figures; the healthy one stays."""
    outliers, effects = judge(fresh(failure_only()), {"a": (40, 60), "b": (100, 0)}, 5.0)

    assert effects == (Ejected("a", "failure_percentage", 10.0, 40, 60, 50.0, again=False),)
    assert outliers.ejected == frozenset({"a"})
    assert outliers.units["a"].multiplier == 1


def test_a_unit_at_the_threshold_or_under_the_volume_is_not_ejected() -> None:
    """Exactly the threshold is not above it; 9 calls are under request_volume 10; and
    with only one unit over the volume, minimum_hosts 2 is not met."""
    judged = fresh(failure_only())
    assert judge(judged, {"a": (50, 50), "b": (100, 0)}, 1.0)[1] == ()
    assert judge(judged, {"a": (0, 9), "b": (100, 0)}, 1.0)[1] == ()
    assert judge(judged, {"a": (0, 50), "b": (5, 0)}, 1.0)[1] == ()


def test_every_unit_failing_is_ejected_up_to_the_cap() -> None:
    """max_ejection_percent 50 over 4 failing units: 2 go (0 % and 25 % out before each,
    both under 50 %); the worst go first."""
    outcomes = {"a": (30, 70), "b": (10, 90), "c": (20, 80), "d": (40, 60)}
    outliers, effects = judge(fresh(failure_only(max_ejection_percent=50)), outcomes, 1.0)
    assert [e.unit for e in ejections(effects)] == ["b", "c"]
    assert outliers.ejected == frozenset({"b", "c"})


def test_one_unit_may_go_when_the_percentage_rounds_to_zero() -> None:
    """10 % of 4 units rounds to none, yet one may be ejected (A50); 0 % ejects none."""
    outcomes = {"a": (0, 100), "b": (0, 100), "c": (100, 0), "d": (100, 0)}
    _, effects = judge(fresh(failure_only(max_ejection_percent=10)), outcomes, 1.0)
    assert len(ejections(effects)) == 1
    _, effects = judge(fresh(failure_only(max_ejection_percent=0)), outcomes, 1.0)
    assert effects == ()


# --- success rate --------------------------------------------------------------------


def test_a_unit_far_below_the_mean_success_rate_is_ejected() -> None:
    """success_rate: rates 100, 100, 100, 100, 50 -> mean 90, stdev 20, threshold
    90 - 20 * 1.9 = 52: the unit at 50 % is ejected, the others not."""
    outcomes = {**healthy("a", "b", "c", "d"), "e": (50, 50)}
    outliers, effects = judge(fresh(success_only()), outcomes, 1.0)
    [ejected] = ejections(effects)
    assert (ejected.unit, ejected.reason) == ("e", "success_rate")
    assert ejected.threshold == pytest.approx(52.0)
    assert outliers.ejected == frozenset({"e"})


def test_success_rate_needs_minimum_hosts_with_the_volume() -> None:
    """Four units with the volume (minimum_hosts 5): no judgement, whatever the rates."""
    outcomes = {**healthy("a", "b", "c"), "e": (0, 100), "f": (1, 0)}
    assert judge(fresh(success_only()), outcomes, 1.0)[1] == ()


def test_equal_success_rates_eject_nothing() -> None:
    """Units that all fail a third of their calls are all alike: none is an outlier."""
    outcomes = {unit: (20, 10) for unit in "abcdefg"}
    strict = SuccessRateEjection(stdev_factor=0, minimum_hosts=5, request_volume=10)
    assert judge(fresh(success_only(success_rate=strict)), outcomes, 1.0)[1] == ()


# --- enforcement ---------------------------------------------------------------------


def test_enforcement_percentage_draws_from_the_state_rng() -> None:
    """enforcement_percentage 0 never ejects; 50 ejects as the seeded draws say, the same
    each time for the same seed."""
    outcomes = {"a": (0, 100), "b": (100, 0)}
    never = failure_only(
        failure_percentage=FailurePercentageEjection(
            threshold=50, enforcement_percentage=0, minimum_hosts=2, request_volume=10
        )
    )
    assert judge(fresh(never), outcomes, 1.0)[1] == ()
    half = failure_only(
        failure_percentage=FailurePercentageEjection(
            threshold=50, enforcement_percentage=50, minimum_hosts=2, request_volume=10
        )
    )
    seen = {seed: bool(judge(fresh(half, seed), outcomes, 1.0)[1]) for seed in range(40)}
    assert set(seen.values()) == {True, False}
    assert all(bool(judge(fresh(half, s), outcomes, 1.0)[1]) == v for s, v in seen.items())


# --- ejection time and returns ---------------------------------------------------------


def test_an_ejected_unit_returns_at_the_first_interval_after_its_time() -> None:
    """Ejected at 1 for 10 s: still out at 10.5, back at 11 with reason expired."""
    outliers, _ = judge(fresh(failure_only()), {"a": (0, 100), "b": (100, 0)}, 1.0)
    outliers, effects = judge(outliers, healthy("a", "b", calls=0), 10.5)
    assert effects == () and outliers.ejected == frozenset({"a"})
    outliers, effects = judge(outliers, healthy("a", "b", calls=0), 11.0)
    assert effects == (Unejected("a", "expired", 10.0),)
    assert outliers.ejected == frozenset()


def test_ejected_again_at_once_is_twice_in_a_row_and_stays_out_longer() -> None:
    """Back, then ejected at its first judgement: again=True and twice the base time. After
    enough clean intervals the multiplier is back to 0 and the next ejection is a first."""
    bad = {"a": (0, 100), "b": (100, 0)}
    outliers, _ = judge(fresh(failure_only()), bad, 0.0)
    outliers, _ = judge(outliers, healthy("a", "b", calls=0), 10.0)  # back
    outliers, effects = judge(outliers, bad, 11.0)
    [again] = ejections(effects)
    assert again.again and again.ejection_time == 20.0
    assert outliers.units["a"].multiplier == 2
    outliers, _ = judge(outliers, healthy("a", "b", calls=0), 31.0)  # back
    for now in (32.0, 33.0):
        outliers, _ = judge(outliers, healthy("a", "b"), now)
    assert outliers.units["a"].multiplier == 0
    _, effects = judge(outliers, bad, 34.0)
    assert not ejections(effects)[0].again


def test_the_ejection_time_is_capped_at_the_max() -> None:
    """base 10 s, max 25 s: 10, 20, then 25 however many ejections."""
    detection = failure_only(max_ejection_time=25.0)
    assert [ejection_time(detection, m) for m in (1, 2, 3, 9)] == [10.0, 20.0, 25.0, 25.0]


def test_a_unit_that_left_the_pool_is_forgotten() -> None:
    """A unit missing from the outcomes has left: an ejected one says so (gone); a unit of
    that name coming back later starts with no history."""
    outliers, _ = judge(fresh(failure_only()), {"a": (0, 100), "b": (100, 0)}, 1.0)
    outliers, effects = judge(outliers, healthy("b"), 2.0)
    assert effects == (Unejected("a", "gone", 1.0),)
    assert "a" not in outliers.units
    outliers, _ = judge(outliers, healthy("a", "b"), 3.0)
    assert outliers.units["a"].multiplier == 0


def test_negative_counts_are_a_driver_bug() -> None:
    """A negative count raises ValueError."""
    with pytest.raises(ValueError, match="never negative"):
        judge(fresh(failure_only()), {"a": (-1, 0)}, 1.0)


# --- invariants over random histories ---------------------------------------------------

_UNITS = ["u0", "u1", "u2", "u3", "u4", "u5"]

_counts = st.tuples(st.integers(0, 120), st.integers(0, 120))
_interval = st.fixed_dictionaries({}, optional=dict.fromkeys(_UNITS, _counts))


@settings(max_examples=200, deadline=None)
@given(
    intervals=st.lists(st.tuples(_interval, st.floats(0.1, 20.0)), max_size=25),
    max_percent=st.integers(0, 100),
    enforcement=st.sampled_from([0, 50, 100]),
    seed=st.integers(0, 2**16),
    with_success_rate=st.booleans(),
)
def test_invariants_hold_over_random_histories(
    intervals: list[tuple[dict[str, tuple[int, int]], float]],
    max_percent: int,
    enforcement: int,
    seed: int,
    with_success_rate: bool,
) -> None:
    """Whatever the calls: an interval ejects only while under the cap (one unit may go
    whatever the percentage above 0), never a unit under the request volume or already
    out; no unit returns before its time; multipliers never go negative; ejection times
    stay within the max; a unit whose calls all succeed is never ejected."""
    detection = OutlierDetection(
        interval=1.0,
        base_ejection_time=5.0,
        max_ejection_time=30.0,
        max_ejection_percent=max_percent,
        success_rate=SuccessRateEjection(
            enforcement_percentage=enforcement, minimum_hosts=3, request_volume=20
        )
        if with_success_rate
        else None,
        failure_percentage=FailurePercentageEjection(
            threshold=60, enforcement_percentage=enforcement, minimum_hosts=2, request_volume=10
        ),
    )
    outliers = fresh(detection, seed)
    now = 0.0
    for outcomes, step in intervals:
        now += step
        before = outliers
        outliers, effects = judge(before, outcomes, now)

        assert set(outliers.units) == set(outcomes)
        out_before = {u for u in before.ejected if u in outcomes}
        new = ejections(effects)
        if max_percent == 0 or enforcement == 0:
            assert not new
        for index, ejected in enumerate(new):
            # Room under the cap, counted before this ejection.
            assert (len(out_before) + index) * 100 < max_percent * len(outcomes)
            assert ejected.unit not in out_before
            successes, failures = outcomes[ejected.unit]
            assert failures > 0
            assert successes + failures >= 10
            if ejected.reason == "success_rate":
                assert successes + failures >= 20
            assert 0 < ejected.ejection_time <= 30.0
            previous = before.units.get(ejected.unit)
            assert ejected.again == (previous is not None and previous.multiplier > 0)
        for back in returns(effects):
            if back.reason == "expired":
                state = before.units[back.unit]
                assert state.ejected_at is not None
                assert now - state.ejected_at >= ejection_time(detection, state.multiplier)
            else:
                assert back.unit not in outcomes
        for state in outliers.units.values():
            assert state.multiplier >= 0
            if state.ejected_at is not None:
                assert state.multiplier >= 1
                assert now - state.ejected_at < ejection_time(detection, state.multiplier)
