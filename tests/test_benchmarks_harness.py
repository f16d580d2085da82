"""The benchmark harness's pure logic: per-round ratios, spreads, verdicts, recoveries.

These are the rules that decide what RESULTS.md and the README may claim, so
they are pinned on fixed numbers here; tests/test_benchmarks_smoke.py runs
the real benchmarks end to end.
"""

from __future__ import annotations

import math

import pytest

from benchmarks.harness import Figure, Goal, compared, guarded, not_measured
from benchmarks.lifecycle import recovery, settled
from benchmarks.report import render_markdown, render_text, summary


def test_a_ratio_is_the_median_of_per_round_ratios_with_their_spread() -> None:
    """Each round's A is divided by the same round's B; the figure is their median, min..max."""
    figure = compared(
        "9a",
        "pool channel",
        [100.0, 90.0, 120.0],
        "calls/s",
        "hand-made",
        [100.0, 100.0, 100.0],
        goal=Goal(">=", 0.97),
    )

    assert figure.value == 100.0
    assert figure.baseline_value == 100.0
    assert figure.ratio == 1.0
    assert figure.spread == (0.9, 1.2)
    assert figure.rounds == 3


def test_rounds_that_fall_on_both_sides_of_the_goal_are_within_noise() -> None:
    """Median met but one round below the goal: "within noise (median met)", not plain "met"."""
    figure = compared(
        "9a", "pool", [96.8, 100.8, 99.0], "calls/s", "hand", [100.0] * 3, goal=Goal(">=", 0.97)
    )

    assert figure.met is True
    assert figure.noise is True
    assert figure.verdict == "within noise (median met)"


def test_a_spread_wholly_past_the_goal_is_a_plain_verdict() -> None:
    """Every round misses the goal: NOT MET, with no talk of noise; every round meets it: met."""
    missed = compared(
        "9c", "pool", [0.9, 0.92], "calls/s", "scaling", [1.0, 1.0], goal=Goal(">=", 1.1)
    )
    met = compared(
        "1a", "pool", [200.0, 210.0], "ns/call", "bare", [80.0, 90.0], goal=Goal("<=", 5.0)
    )

    assert (missed.met, missed.noise, missed.verdict) == (False, False, "NOT MET")
    assert (met.met, met.noise, met.verdict) == (True, False, "met")


def test_a_goal_on_the_value_judges_the_values_spread() -> None:
    """judge="value": the goal applies to the value's rounds, not to the ratio."""
    figure = compared(
        "9b",
        "share",
        [3.0, 12.0, 4.0],
        "%",
        "round_robin",
        [25.0] * 3,
        goal=Goal("<=", 10.0),
        judge="value",
    )

    assert figure.spread == (3.0, 12.0)
    assert figure.spread_of == "value"
    assert figure.verdict == "within noise (median met)"


def test_a_zero_baseline_round_gives_no_division_error() -> None:
    """A round whose baseline is 0 (no failed call at all) is inf, or left out when both are 0."""
    figure = compared(
        "9c", "failed", [1.0, 0.0, 2.0], "%", "scaling", [0.0, 0.0, 4.0], goal=Goal("<", 1.0)
    )

    assert figure.spread == (0.5, math.inf)
    assert figure.rounds == 3
    assert figure.noise is True


def test_a_figure_without_rounds_or_with_unpaired_rounds_is_refused() -> None:
    """No rounds, or A and B round counts that differ, raise a ValueError naming the figure."""
    with pytest.raises(ValueError, match="figure 11c: no rounds"):
        compared("11c", "kill", [], "ms")
    with pytest.raises(ValueError, match="figure 4a: 3 rounds measured but 2 of the baseline"):
        compared("4a", "pool", [1.0, 2.0, 3.0], "calls/s", "hand", [1.0, 2.0])


def test_a_goal_with_an_unknown_comparison_is_refused() -> None:
    """Goal("=>", ...) is a ValueError that names the comparisons it takes."""
    with pytest.raises(ValueError, match=r"Goal\.op must be one of"):
        Goal("=>", 1.0)


def test_a_figure_that_raises_becomes_a_not_measured_row() -> None:
    """guarded() turns the exception into a row saying "not measured" and why."""

    def broken() -> list[Figure]:
        raise ValueError("min() arg is an empty sequence")

    (row,) = guarded("11c", "aio server kill and restart", broken)

    assert row.error == "ValueError: min() arg is an empty sequence"
    assert row.verdict == "not measured"
    assert "not measured: ValueError: min() arg is an empty sequence" in render_text([row])
    assert "not measured: ValueError: min() arg is an empty sequence" in render_markdown([row])


def test_the_summary_counts_each_verdict_apart() -> None:
    """met, not met, within noise and not measured are counted and listed separately."""
    rows = [
        compared("1a", "a", [2.0], "x", "b", [1.0], goal=Goal("<=", 5.0)),
        compared("9c", "c", [0.9], "x", "d", [1.0], goal=Goal(">=", 1.1)),
        compared("9a", "e", [0.96, 1.01, 0.99], "x", "f", [1.0] * 3, goal=Goal(">=", 0.97)),
        not_measured("11c", "g", "RuntimeError: boom"),
    ]

    counts, *lines = summary(rows)

    assert counts == "Targets met: 1; not met: 1; within noise: 1; not measured: 1."
    assert [line.split(":")[0] for line in lines] == [
        "- not met",
        "- within noise",
        "- not measured",
    ]


def test_a_reconnect_seen_before_the_restart_was_read_is_an_instant_recovery() -> None:
    """A worker that reconnected before the parent read the server's READY line recovers in 0 s.

    The asyncio kill figure once crashed with "min() arg is an empty sequence"
    on exactly this: the reconnect carried a time before the restart's.
    """
    result = recovery(back_at=10.0, down_at=5.0, connected=[1.0, 9.999], scheduled=[(9.9, 0.05)])

    assert result == (0.0, 0.0)


def test_recovery_subtracts_the_backoff_still_pending_at_the_restart() -> None:
    """Reconnected 0.3 s after the restart with 0.2 s of backoff pending: 0.1 s excess."""
    result = recovery(back_at=10.0, down_at=5.0, connected=[1.0, 10.3], scheduled=[(9.95, 0.25)])

    assert result is not None
    assert result[0] == pytest.approx(0.3)
    assert result[1] == pytest.approx(0.1)


def test_a_worker_not_yet_reconnected_has_no_recovery_and_is_named() -> None:
    """No connected event after the kill: None, and settled() raises naming the worker."""
    assert recovery(back_at=10.0, down_at=5.0, connected=[1.0], scheduled=[]) is None

    with pytest.raises(RuntimeError, match=r"1 worker\(s\) ready again without .*w-7"):
        settled({"w-1": (0.1, 0.0), "w-7": None})
