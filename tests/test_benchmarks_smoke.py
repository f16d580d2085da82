"""Smoke test: the benchmark harness runs end to end with tiny counts.

It checks that ``python -m benchmarks`` still works (servers start and stop,
every figure is produced, RESULTS.md is written), not how fast anything is:
no timing is asserted.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from benchmarks.__main__ import main


@pytest.mark.slow
def test_benchmarks_run_quick(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The benchmark harness runs end to end with tiny counts (no timing asserted)."""
    output = tmp_path / "RESULTS.md"

    assert main(["--quick", "--output", str(output)]) == 0

    printed = capsys.readouterr().out
    text = output.read_text(encoding="utf-8")
    figures = (
        *("1a", "1b", "1c", "2", "3", "4a", "5a", "5b", "6a", "6b", "6c", "7a", "7d", "8a", "8b"),
        *("9a", "9b", "9c", "10a", "10b", "10c"),
        *("11a", "11b", "11c", "11d"),
    )
    for figure in figures:
        assert f"| {figure} |" in text, figure
    assert "grpcio" in text
    assert "cores" in text
    assert "targets not met" in printed
    # The harness quiets the library's logs while it runs, and only then.
    assert logging.getLogger("grpcpool").level == logging.NOTSET
