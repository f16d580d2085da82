"""``python -m benchmarks``: measure every figure, print one table, write RESULTS.md.

Options: ``--quick`` (tiny counts, for the smoke test), ``--only 1,4`` (a
subset of the modules, by figure number), ``--output PATH`` (where the
Markdown goes; ``-`` for nowhere).

A figure that fails to measure is reported as "not measured" beside the
others, and RESULTS.md is written whatever happened; the exit status is 1
when some figure was not measured, so a broken benchmark is not missed.
"""

from __future__ import annotations

import argparse
import functools
import logging
import sys
import time
from collections.abc import Callable
from pathlib import Path

from benchmarks import (
    aio,
    backends,
    call_metrics,
    capacity,
    footprint,
    forking,
    hotpath,
    idle,
    lifecycle,
    outliers,
    routing,
    rpc,
)
from benchmarks.harness import Figure, Settings, guarded
from benchmarks.report import markdown, render_text, summary

__all__ = ["GROUPS", "main", "run"]

RESULTS = Path(__file__).with_name("RESULTS.md")

# (label, the figure numbers it measures, the module's run).
GROUPS: tuple[tuple[str, frozenset[str], Callable[[Settings], list[Figure]]], ...] = (
    ("hot path", frozenset({"1", "2", "3"}), hotpath.run),
    ("rpc", frozenset({"4", "5"}), rpc.run),
    ("lifecycle", frozenset({"6"}), lifecycle.run),
    ("footprint", frozenset({"7"}), footprint.run),
    ("forking", frozenset({"8"}), forking.run),
    ("routing", frozenset({"9"}), routing.run),
    ("backends", frozenset({"10"}), backends.run),
    ("asyncio pool", frozenset({"11"}), aio.run),
    ("idle cost", frozenset({"12"}), idle.run),
    ("slow and failing backends", frozenset({"13"}), outliers.run),
    ("capacity", frozenset({"14"}), capacity.run),
    ("per-call metrics", frozenset({"15"}), call_metrics.run),
)


def run(settings: Settings, only: frozenset[str] | None = None) -> list[Figure]:
    """Runs the selected groups (all by default) and returns their figures in order.

    Each module guards its own figures; a group that fails outside them (its
    server would not start, say) becomes one "not measured" row, and the
    next group runs as usual.
    """
    figures: list[Figure] = []
    for label, numbers, measure in GROUPS:
        if only is not None and not numbers & only:
            continue
        started = time.monotonic()
        listed = ", ".join(sorted(numbers, key=int))
        print(f"measuring {label} (figures {listed}) ...", flush=True)
        figures.extend(
            guarded("/".join(sorted(numbers, key=int)), label, functools.partial(measure, settings))
        )
        print(f"  done in {time.monotonic() - started:.1f}s", flush=True)
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="tiny counts (smoke test)")
    parser.add_argument("--only", default="", help="figure numbers, e.g. 1,4")
    parser.add_argument("--output", default=str(RESULTS), help="Markdown file, '-' for none")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    # Reconnects and kills are the point of figure 6; their logs are noise
    # here. Restored afterwards: main() also runs inside the test suite.
    library_logger = logging.getLogger("grpcpool")
    level = library_logger.level
    library_logger.setLevel(logging.CRITICAL)
    settings = Settings(quick=args.quick)
    only = frozenset(part.strip() for part in args.only.split(",") if part.strip()) or None
    started = time.monotonic()
    try:
        figures = run(settings, only)
    finally:
        library_logger.setLevel(level)
    elapsed = time.monotonic() - started
    print()
    print(render_text(figures))
    notes = [f for f in figures if f.note]
    if notes:
        print("\nnotes:")
        for figure in notes:
            print(f"  {figure.key} {figure.measure}: {figure.note}")
    print()
    print("\n".join(summary(figures)))
    missed = sum(1 for f in figures if f.met is False and not f.noise and not f.error)
    noisy = sum(1 for f in figures if f.noise and not f.error)
    failed = sum(1 for f in figures if f.error)
    print(
        f"\n{len(figures)} figures in {elapsed:.0f}s; targets not met: {missed}; "
        f"within noise: {noisy}; not measured: {failed}"
    )
    if args.output != "-":
        command = "python -m benchmarks" + "".join(
            f" {flag}"
            for flag in (argv if argv is not None else sys.argv[1:])
            if not flag.startswith("--output") and flag != args.output
        )
        Path(args.output).write_text(
            markdown(figures, settings, elapsed, command), encoding="utf-8"
        )
        print(f"wrote {args.output}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
