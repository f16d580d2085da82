"""``python -m benchmarks``: measure every figure, print one table, write RESULTS.md.

Options: ``--quick`` (tiny counts, for the smoke test), ``--only 1,4`` (a
subset of the modules, by figure number), ``--output PATH`` (where the
Markdown goes; ``-`` for nowhere).
"""

from __future__ import annotations

import argparse
import datetime
import logging
import sys
import time
from collections.abc import Callable
from pathlib import Path

from benchmarks import aio, backends, footprint, forking, hotpath, lifecycle, routing, rpc
from benchmarks.harness import Figure, Settings, machine, render_markdown, render_text

__all__ = ["main", "run"]

RESULTS = Path(__file__).with_name("RESULTS.md")

# Module -> the figure numbers it measures.
_GROUPS: tuple[tuple[str, frozenset[str], Callable[[Settings], list[Figure]]], ...] = (
    ("hot path", frozenset({"1", "2", "3"}), hotpath.run),
    ("rpc", frozenset({"4", "5"}), rpc.run),
    ("lifecycle", frozenset({"6"}), lifecycle.run),
    ("footprint", frozenset({"7"}), footprint.run),
    ("forking", frozenset({"8"}), forking.run),
    ("routing", frozenset({"9"}), routing.run),
    ("backends", frozenset({"10"}), backends.run),
    ("asyncio pool", frozenset({"11"}), aio.run),
)


def run(settings: Settings, only: frozenset[str] | None = None) -> list[Figure]:
    """Runs the selected groups (all by default) and returns their figures in order."""
    figures: list[Figure] = []
    for label, numbers, measure in _GROUPS:
        if only is not None and not numbers & only:
            continue
        started = time.monotonic()
        print(f"measuring {label} (figures {', '.join(sorted(numbers))}) ...", flush=True)
        figures.extend(measure(settings))
        print(f"  done in {time.monotonic() - started:.1f}s", flush=True)
    return figures


def markdown(figures: list[Figure], settings: Settings, elapsed: float) -> str:
    """RESULTS.md: the machine, the table, and how to read it."""
    about = machine()
    lines = [
        "# Benchmark results",
        "",
        "Measured by `make bench` (`python -m benchmarks"
        + (" --quick" if settings.quick else "")
        + f"`) on {datetime.date.today().isoformat()}, in {elapsed:.0f} s.",
        "",
        "## Machine",
        "",
        *(f"- {key}: {value}" for key, value in about.items()),
        "",
        "## Figures",
        "",
        render_markdown(figures),
        "",
    ]
    met = [f for f in figures if f.met is True]
    missed = [f for f in figures if f.met is False]
    lines.append(f"Targets met: {len(met)}; not met: {len(missed)}.")
    if missed:
        lines.append("")
        lines.extend(f"- not met: {f.key} {f.measure}: {_brief(f)}" for f in missed)
    notes = [f for f in figures if f.note]
    if notes:
        lines += ["", "## Notes", ""]
        lines.extend(f"- {f.key} {f.measure}: {f.note}" for f in notes)
    lines += ["", _HOW_TO_READ]
    return "\n".join(lines) + "\n"


def _brief(figure: Figure) -> str:
    if figure.ratio is not None:
        return f"ratio {figure.ratio:.3f} against {figure.target}"
    return f"{figure.value:.2f} {figure.unit} against {figure.target}"


_HOW_TO_READ = """## How to read the table

- Every value is the median of repeated rounds; a value and its baseline are
  measured in the same rounds, interleaved, in one run. `ratio` is value /
  baseline (for calls/s a higher ratio is better, for ns and ms a lower one).
- Per-call costs (figures 1-3) come from a timeit loop and include the loop's
  own cost on both sides; nothing is subtracted.
- RPC figures (4, 5, 9) talk to an echo server in a separate process on
  127.0.0.1. Hand-made channels set `grpc.use_local_subchannel_pool`, as the
  pool does, so each is its own connection.
- Figure 6 uses pools with small backoff settings (see its notes) against a
  server process that is killed with SIGKILL and started again on the same
  port.
- Figure 7 is measured in a fresh process. A pool cannot have 0 workers, so
  "pool of 64 minus pool of 0" is (pool of 64 - pool of 1) / 63: the cost of
  one more worker. 7c divides (pool of 64 - no pool) by 64, which also counts
  the pool's fixed actors and the timer and watcher threads. 7d is the
  connectivity watcher thread's CPU time while a ready pool of 1,024 idles,
  from the kernel's per-thread accounting (10 ms ticks), as a share of one core.
- Figure 8 counts children killed by a signal, of 40 forked one after another
  (each waited for before the next) from a fresh parent process holding 8
  idle ready channels, with and without `GRPC_ENABLE_FORK_SUPPORT=1`. The
  children never touch grpc. Its value is a count from one run, not a median.
- Figure 9 calls through `grpcpool.channel(name)` on stubs built once. In 9b
  the server delays each call on one connection (marked by a control call
  sent on it) by 50 ms and counts the slow share; more than 1% there puts p99
  at 50 ms or more. connectionScaling adds connections only when one runs out
  of streams, so it runs against a second server with max_concurrent_streams
  4, beside least_in_flight on that server.
- Figure 10 runs one server process per backend, on 127.0.0.1, 127.0.0.2, ...
  and one port; the pool's resolver returns their addresses, and each call's
  backend is its `peer()`. 10a's value and baseline are the busiest backend's
  calls over the idlest's (grpcio's pick_first puts every call on one). 10c's
  fewest ready connections is `status().current_size` sampled every 5 ms.
- Figure 11 is the asyncio pool (`grpcpool.aio`). 11a's tasks share one event
  loop, pinned as figure 4's client is; its multi-callable is built once on
  `pool.channel()`, and the hand-made `grpc.aio` channels are used round
  robin. 11b is measured in a fresh process after a plain `grpc.aio` channel
  was used, so grpcio's own poller thread is already there and not counted.
  11c uses one pool, killed under and restarted several times, with figure 6's
  backoff settings; "out of the view" is each worker's `connection_down`
  event. 11d runs its timeit loop inside the running loop.
"""


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
    missed = sum(1 for f in figures if f.met is False)
    print(f"\n{len(figures)} figures in {elapsed:.0f}s; targets not met: {missed}")
    if args.output != "-":
        Path(args.output).write_text(markdown(figures, settings, elapsed), encoding="utf-8")
        print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
