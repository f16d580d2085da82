"""The small harness the benchmarks share: rounds, medians, goals, figures.

Every figure is the median of repeated rounds, and a figure and its baseline
are measured in the same rounds, interleaved (A, B, A, B, ...), so that a
slow moment of the machine hits both alike. A ratio is taken round by round
(A over the B of the same round), and the figure reports the median of those
ratios with their spread (lowest..highest): on a shared machine one run's
rounds can disagree by more than the margin a goal leaves, and a verdict
judged on one number would then flip from run to run. So a goal is judged
on the median, and called "within noise" when the spread straddles it.

A figure that cannot be measured (its code raised, or it got no sample) is
reported as "not measured" with the reason, beside the others:
:func:`guarded` turns the exception into such a figure.
"""

from __future__ import annotations

import contextlib
import operator
import os
import platform
import statistics
import sys
import time
import timeit
import traceback
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import metadata
from typing import Any

__all__ = [
    "Figure",
    "Goal",
    "Settings",
    "compared",
    "deadline_wait",
    "describe_error",
    "failed",
    "guarded",
    "guarded_async",
    "interleave",
    "machine",
    "median",
    "not_measured",
    "ns_per_call",
    "percentile",
    "pinned",
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


_OPERATORS: dict[str, Callable[[float, float], bool]] = {
    "<=": operator.le,
    "<": operator.lt,
    ">=": operator.ge,
    ">": operator.gt,
}


@dataclass(frozen=True)
class Goal:
    """A target a number must meet: ``number <op> bound`` (``op`` one of <=, <, >=, >).

    Attributes:
        op: The comparison.
        bound: The number it compares with.
        text: How the table shows it (``"<= 5x"``); ``op`` and ``bound`` by default.
    """

    op: str
    bound: float
    text: str = ""

    def __post_init__(self) -> None:
        if self.op not in _OPERATORS:
            raise ValueError(f"Goal.op must be one of {sorted(_OPERATORS)}, got {self.op!r}")

    def __str__(self) -> str:
        return self.text or f"{self.op} {self.bound:g}"

    def holds(self, number: float) -> bool:
        """Whether ``number`` meets the goal (never for NaN)."""
        return number == number and _OPERATORS[self.op](number, self.bound)

    def straddled(self, low: float, high: float) -> bool:
        """Whether a spread from ``low`` to ``high`` has rounds on both sides of the goal."""
        return self.holds(low) != self.holds(high)


@dataclass(frozen=True)
class Figure:
    """One measured figure beside its baseline.

    Attributes:
        key: The issue's figure number plus a letter (``"1a"``).
        measure: What was measured.
        value: The median, in ``unit`` (NaN when not measured).
        unit: ``"ns/call"``, ``"calls/s"``, ``"ms"``, ...
        baseline: What it is compared with (empty if nothing).
        baseline_value: The baseline's median in the same unit.
        ratio: The median of the per-round ``value / baseline_value``.
        target: The issue's target, in words (empty if none).
        met: Whether the target is met (judged on the median); ``None`` when
            there is no target or nothing was measured.
        note: Anything a reader needs to interpret the row.
        spread: The lowest and highest per-round number the target is judged
            on (the ratio's, the value's, or the difference's); ``None`` for
            a figure without rounds.
        spread_of: ``"ratio"``, ``"value"`` or ``"difference"``: which
            number ``spread`` is of.
        rounds: How many rounds ``spread`` covers.
        noise: The spread straddles the target: some rounds met it and some
            did not, so the verdict is within noise.
        error: Why the figure was not measured (empty when it was).
        difference: The median of the per-round ``value - baseline_value``,
            when the target is on the difference (``None`` otherwise).
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
    spread: tuple[float, float] | None = None
    spread_of: str = "ratio"
    rounds: int = 0
    noise: bool = False
    error: str = ""
    difference: float | None = None

    @property
    def verdict(self) -> str:
        """``met``, ``NOT MET``, ``within noise (median met)``, ..., or empty without a target."""
        if self.error:
            return "not measured"
        if self.met is None:
            return ""
        judged = "met" if self.met else "not met"
        if self.noise:
            return f"within noise (median {judged})"
        return "met" if self.met else "NOT MET"


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def percentile(values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile (``fraction`` in [0, 1]) of ``values``."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


def _ratio(numerator: float, denominator: float) -> float:
    """``numerator / denominator``; over 0 it is inf (or NaN for 0 / 0), never an error."""
    if denominator:
        return numerator / denominator
    return float("nan") if numerator == 0 else float("inf")


def compared(
    key: str,
    measure: str,
    values: Sequence[float],
    unit: str,
    baseline: str = "",
    baselines: Sequence[float] = (),
    *,
    goal: Goal | None = None,
    judge: str = "ratio",
    note: str = "",
) -> Figure:
    """A figure from per-round samples: medians, per-round ratios, spread and verdict.

    ``values[i]`` and ``baselines[i]`` must come from the same round of an
    interleaved run, so each round's ratio compares two measurements taken
    moments apart. ``judge`` says whether ``goal`` applies to the ratio, to
    the value itself, or to the per-round difference value - baseline (for
    a goal such as "at most one percentage point above the baseline");
    either way the verdict is the median's, and the spread of the same
    per-round numbers says whether it is within noise.

    Raises:
        ValueError: No rounds, or the two sides have different round counts
            (a figure must not be built from a partial run), or a goal on
            the difference without a baseline.
    """
    if not values:
        raise ValueError(f"figure {key}: no rounds measured")
    if baselines and len(baselines) != len(values):
        raise ValueError(
            f"figure {key}: {len(values)} rounds measured but {len(baselines)} of the baseline"
        )
    if judge not in ("ratio", "value", "difference"):
        raise ValueError(f"judge must be 'ratio', 'value' or 'difference', got {judge!r}")
    if judge == "difference" and not baselines:
        raise ValueError(f"figure {key}: a goal on the difference needs a baseline")
    ratios = [_ratio(a, b) for a, b in zip(values, baselines, strict=True)] if baselines else []
    if judge == "difference":
        judged = [a - b for a, b in zip(values, baselines, strict=True)]
        spread_of = "difference"
    elif judge == "ratio" and ratios:
        judged, spread_of = ratios, "ratio"
    else:
        judged, spread_of = list(values), "value"
    known = [number for number in judged if number == number]
    spread = (min(known), max(known)) if known else None
    centre = median(known)
    met = goal.holds(centre) if goal is not None else None
    return Figure(
        key,
        measure,
        median(values),
        unit,
        baseline,
        median(baselines) if baselines else None,
        median([r for r in ratios if r == r]) if ratios else None,
        str(goal) if goal is not None else "",
        met,
        note,
        spread,
        spread_of,
        len(judged),
        goal is not None and spread is not None and goal.straddled(*spread),
        difference=centre if judge == "difference" else None,
    )


def not_measured(key: str, measure: str, why: str) -> Figure:
    """A row saying that figure ``key`` could not be measured, and why."""
    return Figure(key, measure, float("nan"), "", error=why)


def guarded(key: str, measure: str, run: Callable[[], list[Figure]]) -> list[Figure]:
    """``run()``'s figures, or one "not measured" row for ``key`` if it raised.

    One figure's failure (a server that would not start, a sample that came
    back empty) must not cost the figures measured before or after it. The
    traceback goes to stderr for whoever debugs it; the row gets the one-line
    reason.
    """
    try:
        return run()
    except Exception as error:
        return failed(key, measure, error)


async def guarded_async(
    key: str, measure: str, run: Callable[[], Awaitable[list[Figure]]]
) -> list[Figure]:
    """:func:`guarded` for a coroutine, awaited on the running loop."""
    try:
        return await run()
    except Exception as error:
        return failed(key, measure, error)


def failed(key: str, measure: str, error: Exception) -> list[Figure]:
    """The "not measured" row for ``error``; its traceback goes to stderr."""
    traceback.print_exception(error, file=sys.stderr)
    return [not_measured(key, measure, describe_error(error))]


def describe_error(error: BaseException) -> str:
    """``ValueError: min() arg is an empty sequence``, on one line, not too long."""
    text = " ".join(f"{type(error).__name__}: {error}".split())
    return text if len(text) <= 300 else text[:297] + "..."


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
