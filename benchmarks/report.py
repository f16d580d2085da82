"""The figures as a terminal table and as RESULTS.md.

Every row shows its median, the spread of its rounds and its verdict; a row
that could not be measured says "not measured" and why, in the same place.
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence

from benchmarks.harness import Figure, Settings, machine

__all__ = ["markdown", "render_markdown", "render_text", "summary"]

_HEADERS = (
    "#",
    "measure",
    "value",
    "baseline",
    "baseline value",
    "ratio",
    "spread (rounds)",
    "target",
    "verdict",
)


def _number(value: float | None, unit: str = "") -> str:
    if value is None:
        return ""
    if value != value:  # NaN
        return "n/a"
    magnitude = abs(value)
    if float(value).is_integer() and magnitude < 1000:
        text = f"{value:.0f}"  # a count (children, threads) reads as one
    elif magnitude >= 1000:
        text = f"{value:,.0f}"
    elif magnitude >= 100:
        text = f"{value:.0f}"
    elif magnitude >= 10:
        text = f"{value:.1f}"
    else:
        text = f"{value:.2f}"
    return f"{text} {unit}".strip()


def _ratio(value: float | None) -> str:
    if value is None:
        return ""
    if value != value:
        return "n/a"
    if value == float("inf"):
        return "inf"  # over a baseline of 0 (no failed call, say)
    return f"{value:.3f}x" if value < 10 else f"{value:.1f}x"


def _difference(value: float, unit: str) -> str:
    """A signed difference: ``+0.12 pp`` (a difference of two % is in percentage points)."""
    if value != value:
        return "n/a"
    points = "pp" if unit == "%" else unit
    return f"{value:+.2f} {points}".strip()


def _spread(figure: Figure) -> str:
    if figure.spread is None:
        return ""
    low, high = figure.spread
    if figure.spread_of == "ratio":
        text = f"{_ratio(low).rstrip('x')}..{_ratio(high)}"
    elif figure.spread_of == "difference":
        text = f"difference {_difference(low, '')}..{_difference(high, figure.unit)}"
    else:
        text = f"{_number(low)}..{_number(high, figure.unit)}"
    return f"{text} ({figure.rounds})"


def _verdict(figure: Figure) -> str:
    return f"not measured: {figure.error}" if figure.error else figure.verdict


def _rows(figures: Sequence[Figure]) -> list[tuple[str, ...]]:
    return [
        (
            figure.key,
            figure.measure,
            "" if figure.error else _number(figure.value, figure.unit),
            figure.baseline,
            _number(figure.baseline_value, figure.unit),
            _ratio(figure.ratio),
            _spread(figure),
            figure.target,
            _verdict(figure),
        )
        for figure in figures
    ]


def render_text(figures: Sequence[Figure]) -> str:
    """An aligned plain-text table for the terminal."""
    rows = [_HEADERS, *_rows(figures)]
    widths = [max(len(row[column]) for row in rows) for column in range(len(_HEADERS))]
    lines = []
    for number, row in enumerate(rows):
        lines.append("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))
        if number == 0:
            lines.append("  ".join("-" * width for width in widths))
    return "\n".join(line.rstrip() for line in lines)


def render_markdown(figures: Sequence[Figure]) -> str:
    """The same table as Markdown."""
    lines = [
        "| " + " | ".join(_HEADERS) + " |",
        "|" + "|".join("---" for _ in _HEADERS) + "|",
    ]
    for row in _rows(figures):
        cells = [cell.replace("|", "\\|") for cell in row]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _brief(figure: Figure) -> str:
    if figure.ratio is not None and figure.spread_of == "ratio":
        text = f"ratio {figure.ratio:.3f} against {figure.target}"
    elif figure.difference is not None:
        text = f"difference {_difference(figure.difference, figure.unit)} against {figure.target}"
    else:
        text = f"{_number(figure.value, figure.unit)} against {figure.target}"
    spread = _spread(figure)
    return f"{text}; rounds {spread}" if spread else text


def summary(figures: Sequence[Figure]) -> list[str]:
    """The verdict counts, then one line per target not met, within noise or not measured."""
    met = [f for f in figures if f.met is True and not f.noise and not f.error]
    missed = [f for f in figures if f.met is False and not f.noise and not f.error]
    noisy = [f for f in figures if f.noise and not f.error]
    failed = [f for f in figures if f.error]
    lines = [
        f"Targets met: {len(met)}; not met: {len(missed)}; within noise: {len(noisy)}; "
        f"not measured: {len(failed)}."
    ]
    lines.extend(f"- not met: {f.key} {f.measure}: {_brief(f)}" for f in missed)
    lines.extend(f"- within noise: {f.key} {f.measure}: {_brief(f)}" for f in noisy)
    lines.extend(f"- not measured: {f.key} {f.measure}: {f.error}" for f in failed)
    return lines


def markdown(figures: Sequence[Figure], settings: Settings, elapsed: float, command: str) -> str:
    """RESULTS.md: the machine, the table, the verdicts and how to read them."""
    lines = [
        "# Benchmark results",
        "",
        f"Measured by `{command}` on {datetime.date.today().isoformat()}, in {elapsed:.0f} s.",
        "",
        "## Machine",
        "",
        *(f"- {key}: {value}" for key, value in machine().items()),
        "",
        "## Figures",
        "",
        render_markdown(figures),
        "",
    ]
    counts, *details = summary(figures)
    lines.append(counts)
    if details:
        lines += ["", *details]
    notes = [f for f in figures if f.note]
    if notes:
        lines += ["", "## Notes", ""]
        lines.extend(f"- {f.key} {f.measure}: {f.note}" for f in notes)
    lines += ["", HOW_TO_READ]
    return "\n".join(lines) + "\n"


HOW_TO_READ = """## How to read the table

- Every value is the median of repeated rounds; a value and its baseline are
  measured in the same rounds, interleaved (A, B, A, B, ...), in one run.
  `ratio` is the median of the per-round ratios value / baseline (for calls/s
  a higher ratio is better, for ns and ms a lower one), so it need not equal
  the ratio of the two medians shown; over a baseline of 0 it reads "inf".
- `spread (rounds)` is the lowest and highest per-round number the target is
  judged on (the ratio, the value where the target is on the value, or the
  difference value - baseline where it is on that, in percentage points for
  shares in %) and how many rounds there were. A verdict is judged on the
  median; when the spread has rounds on both sides of the target it reads
  "within noise", with the median's verdict: the machine's noise is larger
  than the margin, and another run may judge the other way.
- A figure that could not be measured (its code raised, or a sample came back
  empty) reads "not measured" with the reason; the other figures are kept.
- Per-call costs (figures 1-3) come from a timeit loop and include the loop's
  own cost on both sides; nothing is subtracted.
- RPC figures (4, 5, 9, 11a) talk to an echo server in a separate process on
  127.0.0.1; every figure's servers run in processes of their own. Hand-made
  channels set `grpc.use_local_subchannel_pool`, as the pool does, so each is
  its own connection.
- Figure 6 uses pools with small backoff settings (see its notes) against a
  server process that is killed with SIGKILL and started again on the same
  port. The restart is timed from the moment the new server starts serving,
  as the server itself reports it (one system-wide monotonic clock).
- Figure 7 is measured in a fresh process. A pool cannot have 0 workers, so
  "pool of 64 minus pool of 0" is (pool of 64 - pool of 1) / 63: the cost of
  one more worker. 7c divides (pool of 64 - no pool) by 64, which also counts
  the pool's fixed actors and the timer and watcher threads. 7d is the
  connectivity watcher thread's CPU time while a ready pool of 1,024 idles,
  from the kernel's per-thread accounting (10 ms ticks), as a share of one core
  (figure 12 has the whole process's).
- Figure 8 counts children killed by a signal, of 40 forked one after another
  (each waited for before the next) from a fresh parent process holding 8
  idle ready channels, with and without `GRPC_ENABLE_FORK_SUPPORT=1`. The
  children never touch grpc. Its value is a count from one run, not a median.
- Figure 9 calls through `grpcpool.channel(name)` on stubs built once. In 9b
  the server delays each call on one connection (marked by a control call
  sent on it) by 50 ms and counts the slow share; more than 1% there puts p99
  at 50 ms or more. connectionScaling adds connections only when one runs out
  of streams, so it runs against a second server with max_concurrent_streams
  4, beside least_in_flight on that server. 9c's failed-calls row compares
  the share of calls the server refused, round by round.
- Figure 10 runs one server process per backend, on 127.0.0.1, 127.0.0.2, ...
  and one port; the pool's resolver returns their addresses, and each reply
  names the backend that served it. 10a's value and baseline are the busiest backend's
  calls over the idlest's (grpcio's pick_first puts every call on one). 10c's
  fewest ready connections is `status().current_size` sampled every 5 ms.
  10d and 10e kill backends with SIGKILL and start them again on the same
  address and port while 8 threads call, through a pool (default connection
  settings; 10e adds `max_age` 1 s) and, in alternate rounds, through one
  grpcio channel with the `round_robin` LB policy; both start each round only
  once every backend has answered a call. 10d times from the restarted
  server's bind until the last 120 calls hold 20% on it ("inf": not within
  30 s). In 10e each kill comes 3 s after the backend restarted before it
  listens again. Failed calls are every call that raised, however fast: a
  client that fails calls at once while nothing is ready counts many.
- Figure 11 is the asyncio pool (`grpcpool.aio`). 11a's tasks share one event
  loop, pinned as figure 4's client is; its multi-callable is built once on
  `pool.channel()`, and the hand-made `grpc.aio` channels are used round
  robin. 11b is measured in a fresh process after a plain `grpc.aio` channel
  was used, so grpcio's own poller thread is already there and not counted.
  11c uses one pool, killed under and restarted several times, with figure 6's
  backoff settings; "out of the view" is each worker's `connection_down`
  event. 11d runs its timeit loop inside the running loop.
- Figure 12 is each process's own CPU time (all threads) while it idles, as a
  share of one core, each reading in a fresh process against a server
  process, once everything was ready and had 3 s to settle; one reading per
  row, not a median. Rows with health pings are measured over exactly one
  ping interval (25 s), so every connection pings once in the window;
  the others over 10 s. Its ratios are over bare grpcio channels of the same
  kind, which cost next to nothing: read the values.
"""
