"""Tests for grpcpool.backoff: exponential reconnect backoff with equal jitter."""

from __future__ import annotations

import dataclasses
import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from grpcpool.backoff import Backoff

# Bounds a real config could hold: milliseconds to hours.
minimums = st.floats(min_value=1e-3, max_value=60.0, allow_nan=False, allow_infinity=False)
ratios = st.floats(min_value=1.0, max_value=1e4, allow_nan=False, allow_infinity=False)
seeds = st.integers(min_value=0, max_value=2**32 - 1)


def delays(backoff: Backoff, count: int) -> list[float]:
    """The delays of `count` consecutive failures."""
    result = []
    for _ in range(count):
        delay, backoff = backoff.fail()
        result.append(delay)
    return result


@settings(max_examples=200, deadline=None)
@given(minimum=minimums, ratio=ratios, attempt=st.integers(0, 200), seed=seeds)
def test_delay_within_bounds(minimum: float, ratio: float, attempt: int, seed: int) -> None:
    """Every delay lies in [minimum, maximum] for any valid bounds and attempt count."""
    maximum = minimum * ratio
    backoff = Backoff(minimum, maximum, attempt=attempt, rng=random.Random(seed))
    delay, after = backoff.fail()
    assert minimum <= delay <= maximum
    assert after.attempt == attempt + 1


@settings(max_examples=100, deadline=None)
@given(minimum=minimums, ratio=ratios, seed=seeds)
def test_delays_within_bounds_over_a_run(minimum: float, ratio: float, seed: int) -> None:
    """A run of 40 consecutive failures never leaves [minimum, maximum]."""
    maximum = minimum * ratio
    for delay in delays(Backoff(minimum, maximum, rng=random.Random(seed)), 40):
        assert minimum <= delay <= maximum


@settings(max_examples=200, deadline=None)
@given(minimum=minimums, slack=ratios, attempt=st.integers(0, 20), seed=seeds)
def test_delays_grow_while_uncapped(minimum: float, slack: float, attempt: int, seed: int) -> None:
    """delay_k <= delay_{k+1} whenever minimum * 2**(k+2) <= maximum (ceiling not capped)."""
    maximum = minimum * 2 ** (attempt + 2) * slack
    # slack >= 1, so minimum * 2**(attempt + 2) <= maximum: the next ceiling is not capped.
    rng = random.Random(seed)
    first, backoff = Backoff(minimum, maximum, attempt=attempt, rng=rng).fail()
    second, _ = backoff.fail()
    assert first <= second


@settings(max_examples=100, deadline=None)
@given(minimum=minimums, attempt=st.integers(0, 30), seed=seeds)
def test_delay_in_equal_jitter_range(minimum: float, attempt: int, seed: int) -> None:
    """With an uncapped ceiling c = minimum * 2**(k+1), the delay lies in [c/2, c]."""
    ceiling = minimum * 2 ** (attempt + 1)
    backoff = Backoff(minimum, ceiling * 4, attempt=attempt, rng=random.Random(seed))
    assert backoff.ceiling() == ceiling
    delay, _ = backoff.fail()
    assert ceiling / 2 <= delay <= ceiling


def test_first_delays_double() -> None:
    """With defaults the first three ceilings are 2, 4 and 8 seconds."""
    backoff = Backoff()
    ceilings = []
    for _ in range(3):
        ceilings.append(backoff.ceiling())
        _, backoff = backoff.fail()
    assert ceilings == [2.0, 4.0, 8.0]


@settings(max_examples=100, deadline=None)
@given(minimum=minimums, ratio=ratios, failures=st.integers(1, 50))
def test_succeed_resets_attempt(minimum: float, ratio: float, failures: int) -> None:
    """succeed() after any number of failures brings the attempt back to 0."""
    backoff = Backoff(minimum, minimum * ratio, rng=random.Random(0))
    for _ in range(failures):
        _, backoff = backoff.fail()
    assert backoff.attempt == failures
    reset = backoff.succeed()
    assert reset.attempt == 0
    assert reset.ceiling() == min(minimum * ratio, minimum * 2)
    assert (reset.minimum, reset.maximum) == (backoff.minimum, backoff.maximum)


def test_different_seeds_give_different_sequences() -> None:
    """Two Backoffs with differently seeded rngs produce different delay sequences."""
    first = delays(Backoff(1.0, 30.0, rng=random.Random(1)), 8)
    second = delays(Backoff(1.0, 30.0, rng=random.Random(2)), 8)
    assert first != second


def test_delays_are_jittered_from_the_first_retry() -> None:
    """Workers failing together draw different first delays (jitter from attempt 0)."""
    firsts = {Backoff(1.0, 30.0, rng=random.Random(seed)).fail()[0] for seed in range(20)}
    assert len(firsts) > 1


@settings(max_examples=50, deadline=None)
@given(seed=seeds)
def test_seeded_sequence_is_reproducible(seed: int) -> None:
    """The same seed gives the same delay sequence."""
    first = delays(Backoff(0.5, 60.0, rng=random.Random(seed)), 12)
    second = delays(Backoff(0.5, 60.0, rng=random.Random(seed)), 12)
    assert first == second


def test_default_rng_is_per_instance() -> None:
    """Each Backoff gets its own rng by default, so defaults are not in lockstep."""
    assert Backoff().rng is not Backoff().rng


@pytest.mark.parametrize(
    ("minimum", "maximum", "attempt"),
    [
        (0.0, 1.0, 0),
        (-1.0, 1.0, 0),
        (math.nan, 1.0, 0),
        (2.0, 1.0, 0),
        (1.0, math.nan, 0),
        (1.0, 2.0, -1),
    ],
)
def test_invalid_bounds_raise(minimum: float, maximum: float, attempt: int) -> None:
    """Non-positive or NaN minimum, maximum below minimum, negative attempt: ValueError."""
    with pytest.raises(ValueError, match="backoff"):
        Backoff(minimum, maximum, attempt=attempt)


def test_equal_bounds_are_valid() -> None:
    """minimum == maximum is allowed and always yields exactly that delay."""
    for delay in delays(Backoff(3.0, 3.0), 5):
        assert delay == 3.0


def test_fail_returns_new_object_and_leaves_old_unchanged() -> None:
    """fail() and succeed() return new Backoffs; the original keeps its attempt."""
    original = Backoff(1.0, 30.0, rng=random.Random(7))
    _, failed = original.fail()
    assert failed is not original
    assert original.attempt == 0
    assert failed.attempt == 1
    reset = failed.succeed()
    assert reset is not failed
    assert failed.attempt == 1
    assert failed.rng is original.rng


def test_backoff_is_frozen() -> None:
    """A Backoff cannot be mutated in place."""
    backoff = Backoff()
    with pytest.raises(dataclasses.FrozenInstanceError):
        backoff.attempt = 3  # type: ignore[misc]
    assert backoff.attempt == 0


def test_equality_ignores_rng() -> None:
    """Backoffs compare by bounds and attempt, not by their rng."""
    assert Backoff(1.0, 2.0, 3, random.Random(1)) == Backoff(1.0, 2.0, 3, random.Random(2))
    assert Backoff(1.0, 2.0, 3) != Backoff(1.0, 2.0, 4)


@pytest.mark.parametrize(("minimum", "maximum"), [(1.0, 30.0), (0.001, 3600.0), (5.0, 5.0)])
def test_huge_attempt_count_is_finite_and_capped(minimum: float, maximum: float) -> None:
    """After 10_000 failures the delay is finite and in the top band [maximum/2, maximum]."""
    backoff = Backoff(minimum, maximum, attempt=10_000, rng=random.Random(3))
    assert backoff.ceiling() == maximum
    delay, after = backoff.fail()
    assert math.isfinite(delay)
    assert max(minimum, maximum / 2) <= delay <= maximum
    assert after.attempt == 10_001


def test_huge_attempt_reached_by_failing() -> None:
    """Failing 10_000 times in a row never overflows and stays at the maximum ceiling."""
    backoff = Backoff(0.1, 10.0, rng=random.Random(5))
    for _ in range(10_000):
        delay, backoff = backoff.fail()
        assert 0.1 <= delay <= 10.0
    assert backoff.ceiling() == 10.0
