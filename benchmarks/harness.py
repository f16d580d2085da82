"""The small harness the benchmarks share: rounds, medians, figures, tables.

Every figure is the median of repeated rounds, and a figure and its baseline
are measured in the same rounds, interleaved (A, B, A, B, ...), so that a
slow moment of the machine hits both alike. Ratios are taken between the two
medians.
"""

from __future__ import annotations

import contextlib
import os
import platform
import statistics
import sys
import time
import timeit
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import metadata
from typing import Any

__all__ = [
    "Figure",
    "Settings",
    "deadline_wait",
    "interleave",
    "machine",
    "median",
    "ns_per_call",
    "percentile",
    "pinned",
    "render_markdown",
    "render_text",
    "split_cpus",
    "stopwatch",
]


@dataclass(frozen=True)
class Settings:
    """How hard to push: ``quick`` shrinks every count for the smoke test."""

    quick: bool = False

    def pick(self, full: Any, quick: Any) -> Any:
        """``full`` normally, ``quick`` in a quick run."""
        return quick if self.quick else full


@dataclass(frozen=True)
class Figure:
    """One measured figure beside its baseline.

    Attributes:
        key: The issue's figure number plus a letter (``"1a"``).
        measure: What was measured.
        value: The median, in ``unit``.
        unit: ``"ns/call"``, ``"calls/s"``, ``"ms"``, ...
        baseline: What it is compared with (empty if nothing).
        baseline_value: The baseline's median in the same unit.
        ratio: ``value / baseline_value`` (or as ``target`` says).
        target: The issue's target, in words (empty if none).
        met: Whether the target is met; ``None`` when there is no target.
        note: Anything a reader needs to interpret the row.
    """

    key: str
    measure: str
    value: float
    unit: str
    baseline: str = ""
    baseline_value: float | None = None
    ratio: float | None = None
    target: str = ""
    met: bool | None = None
    note: str = ""


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def percentile(values: list[float], fraction: float) -> float:
    """Nearest-rank percentile (``fraction`` in [0, 1]) of ``values``."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


def interleave(rounds: int, runs: Mapping[str, Callable[[], float]]) -> dict[str, list[float]]:
    """Runs every ``runs`` entry once per round, rotating the order each round.

    Returns each entry's results, one per round.
    """
    names = list(runs)
    results: dict[str, list[float]] = {name: [] for name in names}
    for round_number in range(rounds):
        shift = round_number % len(names)
        for name in names[shift:] + names[:shift]:
            results[name].append(runs[name]())
    return results


def ns_per_call(stmt: str, namespace: dict[str, Any], number: int) -> Callable[[], float]:
    """A round that runs ``stmt`` ``number`` times (timeit's loop) and returns ns per run."""
    timer = timeit.Timer(stmt, globals=namespace)

    def run() -> float:
        return timer.timeit(number) / number * 1e9

    return run


@contextmanager
def stopwatch() -> Iterator[list[float]]:
    """``with stopwatch() as elapsed:`` leaves the seconds taken in ``elapsed[0]``."""
    elapsed: list[float] = []
    started = time.perf_counter()
    try:
        yield elapsed
    finally:
        elapsed.append(time.perf_counter() - started)


def deadline_wait(predicate: Callable[[], bool], timeout: float, interval: float = 0.005) -> bool:
    """Polls ``predicate`` until true or ``timeout`` seconds pass; returns its last value."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() >= deadline:
            return predicate()
        time.sleep(interval)
    return True


def _set_affinity_all_threads(cpus: set[int]) -> None:
    for task in os.listdir("/proc/self/task"):
        with contextlib.suppress(ProcessLookupError, PermissionError):  # thread ended
            os.sched_setaffinity(int(task), cpus)


@contextmanager
def pinned(client: set[int]) -> Iterator[None]:
    """Pins every thread of this process (and threads they start) to ``client``.

    On exit every thread gets the process's original CPU set back. Does
    nothing where affinity cannot be set (not Linux).
    """
    if not hasattr(os, "sched_setaffinity"):
        yield
        return
    original = os.sched_getaffinity(0)
    _set_affinity_all_threads(client)
    try:
        yield
    finally:
        _set_affinity_all_threads(set(original))


def split_cpus() -> tuple[frozenset[int], frozenset[int]] | None:
    """(client CPUs, server CPUs): two disjoint halves, or ``None`` on one CPU."""
    if not hasattr(os, "sched_getaffinity"):
        return None
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return None
    half = len(cpus) // 2
    return frozenset(cpus[:half]), frozenset(cpus[half:])


def machine() -> dict[str, str]:
    """What the figures were measured on."""
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        usable = os.cpu_count() or 0

    def version(package: str) -> str:
        try:
            return metadata.version(package)
        except metadata.PackageNotFoundError:
            return "?"

    return {
        "cores": f"{usable} usable ({os.cpu_count()} online)",
        "cpu": _cpu_model(),
        "os": f"{platform.system()} {platform.release()} {platform.machine()}",
        "python": f"{platform.python_implementation()} {sys.version.split()[0]}",
        "grpcio": version("grpcio"),
        "pykka": version("pykka"),
        "blinker": version("blinker"),
        "grpcpool": version("grpcpool"),
    }


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"


# --- rendering -------------------------------------------------------------------

_HEADERS = ("#", "measure", "value", "baseline", "baseline value", "ratio", "target", "met")


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
    return f"{value:.3f}x" if value < 10 else f"{value:.1f}x"


def _met(value: bool | None) -> str:
    return "" if value is None else ("met" if value else "NOT MET")


def _rows(figures: list[Figure]) -> list[tuple[str, ...]]:
    return [
        (
            figure.key,
            figure.measure,
            _number(figure.value, figure.unit),
            figure.baseline,
            _number(figure.baseline_value, figure.unit),
            _ratio(figure.ratio),
            figure.target,
            _met(figure.met),
        )
        for figure in figures
    ]


def render_text(figures: list[Figure]) -> str:
    """An aligned plain-text table for the terminal."""
    rows = [_HEADERS, *_rows(figures)]
    widths = [max(len(row[column]) for row in rows) for column in range(len(_HEADERS))]
    lines = []
    for number, row in enumerate(rows):
        lines.append("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))
        if number == 0:
            lines.append("  ".join("-" * width for width in widths))
    return "\n".join(line.rstrip() for line in lines)


def render_markdown(figures: list[Figure]) -> str:
    """The same table as Markdown."""
    lines = [
        "| " + " | ".join(_HEADERS) + " |",
        "|" + "|".join("---" for _ in _HEADERS) + "|",
    ]
    for row in _rows(figures):
        cells = [cell.replace("|", "\\|") for cell in row]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
