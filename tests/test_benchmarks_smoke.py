"""Smoke test: the benchmark harness runs end to end with tiny counts.

It checks that ``python -m benchmarks`` still works (servers start and stop,
every figure is produced with its spread and verdict, RESULTS.md is written,
and a figure that fails is reported without losing the others), not how fast
anything is: no timing is asserted.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

import benchmarks.__main__
from benchmarks import aio
from benchmarks.__main__ import main
from benchmarks.harness import Figure, Settings
from grpcpool._call_metrics import HOOK
from grpcpool.strategy import STRATEGY_NAMES

# Figure 13 has a test of its own (below): its pools need strategy peak_ewma.
UP_TO_12 = ",".join(str(number) for number in range(1, 13))


@pytest.mark.slow
def test_benchmarks_run_quick(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The benchmark harness runs end to end with tiny counts (no timing asserted)."""
    output = tmp_path / "RESULTS.md"

    assert main(["--quick", "--only", UP_TO_12, "--output", str(output)]) == 0

    printed = capsys.readouterr().out
    text = output.read_text(encoding="utf-8")
    figures = (
        *("1a", "1b", "1c", "2", "3", "4a", "5a", "5b", "6a", "6b", "6c", "7a", "7d", "8a", "8b"),
        *("9a", "9b", "9c", "10a", "10b", "10c", "10d", "10e"),
        *("11a", "11b", "11c", "11d"),
        *("12a", "12b", "12c"),
    )
    for figure in figures:
        assert f"| {figure} |" in text, figure
    assert "grpcio" in text
    assert "cores" in text
    assert "spread (rounds)" in text
    assert "not measured: 0." in text
    assert "| not measured" not in text
    assert "targets not met" in printed
    # The harness quiets the library's logs while it runs, and only then.
    assert logging.getLogger("grpcpool").level == logging.NOTSET


@pytest.mark.slow
@pytest.mark.skipif(
    "peak_ewma" not in STRATEGY_NAMES,
    reason="figure 13 measures strategy 'peak_ewma', which grpcpool.strategy.STRATEGY_NAMES "
    "does not have yet: its pools would not start",
)
def test_figure_13_runs_quick(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Figure 13 (slow and failing backends, ejection, panic, hedging) runs end to end with
    tiny counts against its four backend processes: every figure measured, no timing asserted."""
    output = tmp_path / "RESULTS.md"

    assert main(["--quick", "--only", "13", "--output", str(output)]) == 0

    printed = capsys.readouterr().out
    text = output.read_text(encoding="utf-8")
    for figure in ("13a", "13b", "13c", "13d", "13e", "13f", "13g", "13h"):
        assert f"| {figure} |" in text, figure
    assert "not measured: 0." in text
    assert "| not measured" not in text
    assert "targets not met" in printed


@pytest.mark.slow
def test_figure_15_runs_quick(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Figure 15 (what per-call metrics cost a call: in process with each recorder, and
    on real RPCs) runs end to end with tiny counts: every figure measured, no timing
    asserted, and no per-call recorder left installed."""
    output = tmp_path / "RESULTS.md"

    assert main(["--quick", "--only", "15", "--output", str(output)]) == 0

    text = output.read_text(encoding="utf-8")
    for figure in ("15a", "15b", "15c", "15d"):
        assert f"| {figure} |" in text, figure
    assert "not measured: 0." in text
    assert HOOK.recorder is None
    capsys.readouterr()


@pytest.mark.slow
def test_a_figure_that_fails_is_reported_and_the_others_are_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """11c failing mid-measurement, and a whole group failing, read "not measured: <why>";
    11a, 11b and 11d are still measured and written, and the exit status says 1."""
    output = tmp_path / "RESULTS.md"

    def lost_events(recoveries: object) -> list[tuple[float, float]]:
        # Fails where the figure once did: servers and the pool are running.
        raise ValueError("min() arg is an empty sequence")

    def broken_group(settings: Settings) -> list[Figure]:
        raise RuntimeError("echo server did not start: ''")

    monkeypatch.setattr(aio, "settled", lost_events)
    monkeypatch.setattr(
        benchmarks.__main__,
        "GROUPS",
        (*benchmarks.__main__.GROUPS, ("broken", frozenset({"12"}), broken_group)),
    )

    assert main(["--quick", "--only", "11,12", "--output", str(output)]) == 1

    printed = capsys.readouterr().out
    text = output.read_text(encoding="utf-8")
    for figure in ("11a", "11b", "11d"):
        rows = [line for line in text.splitlines() if line.startswith(f"| {figure} |")]
        assert rows, figure
        assert all("not measured" not in row for row in rows), rows
    (failed,) = [line for line in text.splitlines() if line.startswith("| 11c |")]
    assert "not measured: ValueError: min() arg is an empty sequence" in failed
    (group,) = [line for line in text.splitlines() if line.startswith("| 12 |")]
    assert "not measured: RuntimeError: echo server did not start" in group
    assert "not measured: 2." in text
    assert "not measured: ValueError: min() arg is an empty sequence" in printed
    assert "not measured: 2" in printed
