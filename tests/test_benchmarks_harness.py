"""The benchmark harness's pure logic: per-round ratios, spreads, verdicts, recoveries.

These are the rules that decide what RESULTS.md and the README may claim, so
they are pinned on fixed numbers here; tests/test_benchmarks_smoke.py runs
the real benchmarks end to end.
"""

from __future__ import annotations

import dataclasses
import math

import pytest

from benchmarks.callers import share_reached
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


def test_a_figure_without_a_baseline_is_judged_on_its_values() -> None:
    """No baseline rounds: the value's median, spread and verdict; no ratio, no difference."""
    figure = compared("6c", "pool start", [1.0, 3.0, 2.0], "ms", goal=Goal("<=", 5.0))

    assert (figure.value, figure.spread, figure.spread_of) == (2.0, (1.0, 3.0), "value")
    assert (figure.ratio, figure.difference, figure.verdict) == (None, None, "met")


def test_a_goal_on_the_difference_judges_each_rounds_difference_from_its_baseline() -> None:
    """judge="difference": value - baseline round by round; median, spread and verdict of those.

    Figure 10e's goal is "failed share at most one percentage point above
    grpcio's in the same round": 0.9 pp and 1.4 pp round differences
    straddle it, and the median (1.15 pp) misses it.
    """
    figure = compared(
        "10e",
        "failed share",
        [1.0, 2.0],
        "%",
        "round_robin",
        [0.1, 0.6],
        goal=Goal("<=", 1.0, "<= baseline + 1 pp"),
        judge="difference",
    )

    assert figure.spread_of == "difference"
    assert figure.spread == pytest.approx((0.9, 1.4))
    assert figure.difference == pytest.approx(1.15)
    assert figure.value == 1.5
    assert figure.baseline_value == pytest.approx(0.35)
    assert figure.verdict == "within noise (median not met)"


def test_a_difference_reads_in_percentage_points() -> None:
    """A difference of two shares in % is shown signed, in pp, in the table and the summary."""
    figure = compared(
        "10e",
        "failed share",
        [0.13, 0.14],
        "%",
        "round_robin",
        [1.2, 0.05],
        goal=Goal("<=", 1.0, "<= baseline + 1 pp"),
        judge="difference",
    )

    assert figure.verdict == "met"
    assert "difference -1.07..+0.09 pp (2)" in render_text([figure])
    assert "difference -1.07..+0.09 pp (2)" in render_markdown([figure])
    wrong = dataclasses.replace(figure, met=False)
    assert "difference -0.49 pp against <= baseline + 1 pp" in summary([wrong])[1]


def test_a_goal_on_the_difference_needs_a_baseline() -> None:
    """Without baseline rounds there is nothing to subtract: a ValueError naming the figure."""
    with pytest.raises(ValueError, match="figure 10e: a goal on the difference needs a baseline"):
        compared("10e", "failed share", [1.0], "%", judge="difference")


def test_a_ratio_over_a_zero_baseline_reads_inf() -> None:
    """Failed calls beside a baseline that had none: the ratio column reads "inf", not "infx"."""
    figure = compared("10d", "failed calls", [10.0, 12.0], "calls", "round_robin", [0.0, 0.0])

    row = render_markdown([figure]).splitlines()[-1]

    assert "| inf | inf..inf (2) |" in row
    assert "infx" not in row


def test_a_share_is_reached_at_the_call_that_fills_the_window() -> None:
    """The first moment at or after ``since`` when the last ``window`` calls hold the share.

    Ten calls on .3 then calls alternating .2/.3: with a window of 4 and a
    share of 50%, the window first holds two calls of .2 at the 4th call
    after the switch (t=13); one found earlier than ``since`` does not count.
    """
    log = [(float(t), "127.0.0.3") for t in range(10)]
    log += [(float(t), "127.0.0.2" if t % 2 else "127.0.0.3") for t in range(10, 20)]

    assert share_reached(log, "127.0.0.2", 0.0, 0.5, 4) == 13.0
    assert share_reached(list(reversed(log)), "127.0.0.2", 0.0, 0.5, 4) == 13.0
    assert share_reached(log, "127.0.0.2", 16.5, 0.5, 4) == 17.0
    assert share_reached(log, "127.0.0.2", 0.0, 0.75, 4) is None
    assert share_reached(log[:12], "127.0.0.2", 0.0, 0.5, 4) is None


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
