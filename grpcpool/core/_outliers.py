"""Outlier detection (gRFC A50), as a pure rule: which units to take out of routing, and when back.

Every ``pool.outlier_detection.interval`` the keeper of a pool's records
hands :func:`judge` how the calls of each *unit* ended since the last time
(successes and failures, summed over its connections) with the monotonic
time; the judge returns its new state and what changed, as data. A unit is
whatever the caller says it is (any hashable value): a backend address when
the pool spans several, a connection when it has one address
(:mod:`grpcpool.core._ejections` decides). Nothing here reads a clock or draws
from a global random source: the time comes in and the draws come from the
state's own ``rng``, so a test seeds it.

The rules, gRFC A50's, each interval, in this order:

1. Units not in the outcomes have left the pool: they are forgotten (one
   :class:`Unejected` with reason ``"gone"`` if they were ejected). New ones
   start with no history.
2. Success rate (if configured): over the units with at least
   ``request_volume`` calls, if there are at least ``minimum_hosts`` of them,
   a unit whose success rate is below ``mean - stdev * stdev_factor / 1000``
   is ejected, with ``enforcement_percentage`` chance.
3. Failure percentage (if configured): over the units with at least its
   ``request_volume`` calls, if at least its ``minimum_hosts``, a unit whose
   failure percentage is above ``threshold`` is ejected, with its
   ``enforcement_percentage`` chance.
4. Each unit not ejected has its ejection multiplier lowered by one (not
   below 0); each ejected unit whose ejection time has passed returns
   (:class:`Unejected`, reason ``"expired"``).

An ejection is allowed only while fewer than ``max_ejection_percent`` of the
units are ejected (counted before it), so with any percentage above zero at
least one unit may be ejected, however few units there are (A50); a
percentage of zero ejects nothing. A unit already ejected is not judged
again. Candidates are taken worst first (lowest success rate, highest failure
percentage), so the cap keeps out the worst units; A50 leaves the order open.

An ejection raises the unit's multiplier by one, and it stays out for
``base_ejection_time * multiplier``, at most ``max(base_ejection_time,
max_ejection_time)``; it returns at the first interval after that. A unit
ejected while its multiplier is still above zero was ejected again at its
first judgement after it returned (twice in a row): the :class:`Ejected`
effect says so (``again``), and for a connection the pool replaces it.
"""

from __future__ import annotations

import math
import random
from collections.abc import Hashable, Mapping
from dataclasses import dataclass, field, replace
from typing import Literal

from grpcpool._config_routing import OutlierDetection

__all__ = [
    "Ejected",
    "OutlierEffect",
    "Outliers",
    "Unejected",
    "Unit",
    "UnitState",
    "ejection_time",
    "judge",
    "new_outliers",
]

#: What is judged: a backend address (a str) or a connection; any hashable value.
Unit = Hashable

#: Success rates closer than this (in percent) to the threshold are not below it:
#: the mean and deviation of equal rates can differ from them in the last bit.
_EPSILON = 1e-9


@dataclass(frozen=True, slots=True)
class UnitState:
    """What the judge remembers of one unit.

    Attributes:
        multiplier: Raised by each ejection, lowered by one each interval
            the unit is not ejected; its ejection time is base times this.
        ejected_at: The monotonic time of its ejection, while it is ejected.
    """

    multiplier: int = 0
    ejected_at: float | None = None


@dataclass(frozen=True)
class Outliers:
    """The judge's state: its settings, its random source and each unit's record.

    The mapping is never changed in place: each judgement makes a new one.
    """

    settings: OutlierDetection
    rng: random.Random = field(compare=False, repr=False)
    units: Mapping[Unit, UnitState] = field(default_factory=dict)

    @property
    def ejected(self) -> frozenset[Unit]:
        """The units ejected now."""
        return frozenset(u for u, s in self.units.items() if s.ejected_at is not None)


def new_outliers(settings: OutlierDetection, rng: random.Random | None = None) -> Outliers:
    """A judge that knows no unit yet; ``rng`` draws the enforcement chances (seed it in tests)."""
    return Outliers(settings, rng if rng is not None else random.Random())


# --- effects -------------------------------------------------------------------------


@dataclass(frozen=True)
class Ejected:
    """``unit`` was ejected for ``ejection_time`` seconds.

    Attributes:
        unit: The unit.
        reason: ``"success_rate"`` or ``"failure_percentage"``.
        ejection_time: How long it stays out (it returns at the first
            interval after that).
        successes: Its calls that succeeded over the interval judged.
        failures: Its calls that failed over it.
        threshold: The percentage it was judged against: the success rate
            it fell below, or the failure percentage it exceeded.
        again: It was ejected at its first judgement after it returned
            (its multiplier was still above zero): twice in a row.
    """

    unit: Unit
    reason: Literal["success_rate", "failure_percentage"]
    ejection_time: float
    successes: int
    failures: int
    threshold: float
    again: bool


@dataclass(frozen=True)
class Unejected:
    """``unit`` is no longer ejected.

    Attributes:
        unit: The unit.
        reason: ``"expired"`` (its ejection time has passed) or ``"gone"``
            (it left the pool: its address was removed, its connection
            closed or replaced).
        ejected_for: How long it was out (seconds).
    """

    unit: Unit
    reason: Literal["expired", "gone"]
    ejected_for: float


OutlierEffect = Ejected | Unejected


def ejection_time(settings: OutlierDetection, multiplier: int) -> float:
    """How long a unit with ``multiplier`` stays out: base times it, capped (A50)."""
    cap = max(settings.base_ejection_time, settings.max_ejection_time)
    return min(settings.base_ejection_time * multiplier, cap)


# --- the judgement ---------------------------------------------------------------------


def judge(
    outliers: Outliers, outcomes: Mapping[Unit, tuple[int, int]], now: float
) -> tuple[Outliers, tuple[OutlierEffect, ...]]:
    """Judges one interval.

    Args:
        outliers: The judge's state.
        outcomes: Every unit of the pool now, with its ``(successes,
            failures)`` over the interval (``(0, 0)`` for a unit without
            calls). A unit left out has left the pool.
        now: The monotonic time.

    Returns:
        The new state and what changed, in order: units gone, ejections,
        returns.

    Raises:
        ValueError: A count is negative (a driver's bug).
    """
    settings = outliers.settings
    effects: list[OutlierEffect] = []
    for unit, state in outliers.units.items():
        if unit not in outcomes and state.ejected_at is not None:
            effects.append(Unejected(unit, "gone", now - state.ejected_at))
    units: dict[Unit, UnitState] = {}
    for unit, (successes, failures) in outcomes.items():
        if successes < 0 or failures < 0:
            raise ValueError(f"call counts are never negative, got {successes}, {failures}")
        units[unit] = outliers.units.get(unit, UnitState())
    run = _Run(settings, outliers.rng, units, now, effects)
    run.success_rate(outcomes)
    run.failure_percentage(outcomes)
    run.release()
    return replace(outliers, units=units), tuple(effects)


class _Run:
    """One judgement's working copy of the units, and the effects it decides, in order."""

    def __init__(
        self,
        settings: OutlierDetection,
        rng: random.Random,
        units: dict[Unit, UnitState],
        now: float,
        effects: list[OutlierEffect],
    ) -> None:
        self.settings = settings
        self.rng = rng
        self.units = units
        self.now = now
        self.effects = effects
        self.ejected = sum(1 for s in units.values() if s.ejected_at is not None)

    def success_rate(self, outcomes: Mapping[Unit, tuple[int, int]]) -> None:
        rule = self.settings.success_rate
        if rule is None:
            return
        judged = [(u, s, f) for u, (s, f) in outcomes.items() if s + f >= rule.request_volume]
        if not judged or len(judged) < rule.minimum_hosts:
            return
        rates = [100.0 * s / (s + f) for _, s, f in judged]
        mean = math.fsum(rates) / len(rates)
        stdev = math.sqrt(math.fsum((r - mean) ** 2 for r in rates) / len(rates))
        threshold = mean - stdev * rule.stdev_factor / 1000
        below = [(r, c) for r, c in zip(rates, judged, strict=True) if r < threshold - _EPSILON]
        below.sort(key=lambda pair: pair[0])  # the worst first
        for _, (unit, successes, failures) in below:
            self.eject(
                unit, "success_rate", successes, failures, threshold, rule.enforcement_percentage
            )

    def failure_percentage(self, outcomes: Mapping[Unit, tuple[int, int]]) -> None:
        rule = self.settings.failure_percentage
        if rule is None:
            return
        judged = [(u, s, f) for u, (s, f) in outcomes.items() if s + f >= rule.request_volume]
        if not judged or len(judged) < rule.minimum_hosts:
            return
        above = [(100.0 * f / (s + f), (u, s, f)) for u, s, f in judged]
        above = [pair for pair in above if pair[0] > rule.threshold]
        above.sort(key=lambda pair: -pair[0])  # the worst first
        for _, (unit, successes, failures) in above:
            self.eject(
                unit,
                "failure_percentage",
                successes,
                failures,
                float(rule.threshold),
                rule.enforcement_percentage,
            )

    def eject(
        self,
        unit: Unit,
        reason: Literal["success_rate", "failure_percentage"],
        successes: int,
        failures: int,
        threshold: float,
        enforcement: int,
    ) -> None:
        state = self.units[unit]
        if state.ejected_at is not None:
            return  # out already: judged again once it is back
        # Counted before this one: with any percentage above zero one unit may go.
        if self.ejected * 100 >= self.settings.max_ejection_percent * len(self.units):
            return
        if enforcement < 100 and self.rng.random() * 100 >= enforcement:
            return
        multiplier = state.multiplier + 1
        self.units[unit] = UnitState(multiplier, self.now)
        self.ejected += 1
        self.effects.append(
            Ejected(
                unit,
                reason,
                ejection_time(self.settings, multiplier),
                successes,
                failures,
                threshold,
                again=state.multiplier > 0,
            )
        )

    def release(self) -> None:
        """Step 4: multipliers of units in routing go down; units whose time is up return."""
        for unit, state in self.units.items():
            if state.ejected_at is None:
                if state.multiplier > 0:
                    self.units[unit] = UnitState(state.multiplier - 1)
            elif self.now >= state.ejected_at + ejection_time(self.settings, state.multiplier):
                self.units[unit] = UnitState(state.multiplier)
                self.effects.append(Unejected(unit, "expired", self.now - state.ejected_at))
