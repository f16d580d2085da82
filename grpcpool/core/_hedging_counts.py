"""The counts behind hedging: the budget over a sliding window, and a latency quantile.

Pure and cheap per call (:mod:`grpcpool.core._hedging` uses them):

* :class:`HedgeBudget`: hedged attempts stay under ``budget`` times the calls
  over a sliding window (gRFC A6's throttling idea, as a ratio): a ring of
  per-slot counts with running totals, so each step costs the same whatever
  the rate, in memory bounded by the number of slots.
* :class:`LatencyQuantile`: a latency quantile learnt from samples: a
  log-bucket histogram (200 buckets, each 9 % wider than the one before,
  from 10 µs up) whose past halves every
  :data:`~grpcpool._config_routing.HEDGING_HALVE_EVERY` samples; it answers
  None until :data:`~grpcpool._config_routing.HEDGING_MIN_SAMPLES` samples.
"""

from __future__ import annotations

import math

from grpcpool._config_routing import (
    HEDGING_BUDGET_SLOTS,
    HEDGING_BUDGET_WINDOW,
    HEDGING_HALVE_EVERY,
    HEDGING_MIN_SAMPLES,
    HEDGING_QUANTILE,
)

__all__ = ["HedgeBudget", "LatencyQuantile"]

# Ratios are compared with this slack: 0.29 * 100 is 28.999999999999996.
_SLACK = 1e-9


class HedgeBudget:
    """Hedged attempts stay under ``ratio`` x calls over the last ``window`` seconds.

    The window is ``slots`` slots of ``window / slots`` seconds, aligned on
    multiples of that width; it slides by one slot, so a hedge is judged on
    the calls and hedges of the current slot and the ``slots - 1`` before it.
    A hedge is allowed while, counting it, the hedges so judged are at most
    ``ratio`` times the calls.

    Args:
        ratio: ``pool.hedging.budget``, > 0.
        window: Seconds the window spans.
        slots: How many slots it is counted in.
    """

    __slots__ = (
        "_calls",
        "_hedges",
        "_newest",
        "_ratio",
        "_total_calls",
        "_total_hedges",
        "_width",
    )

    def __init__(
        self,
        ratio: float,
        window: float = HEDGING_BUDGET_WINDOW,
        slots: int = HEDGING_BUDGET_SLOTS,
    ) -> None:
        self._ratio = ratio
        self._width = window / slots
        self._calls = [0] * slots
        self._hedges = [0] * slots
        self._newest: int | None = None  # the number of the newest slot counted in
        self._total_calls = 0
        self._total_hedges = 0

    def _slot(self, now: float) -> int:
        """The ring index of ``now``'s slot, clearing the slots that left the window."""
        number = math.floor(now / self._width)
        size = len(self._calls)
        newest = self._newest
        if newest is None or number - newest >= size:
            self._calls[:] = [0] * size
            self._hedges[:] = [0] * size
            self._total_calls = self._total_hedges = 0
        elif number > newest:
            for passed in range(newest + 1, number + 1):
                index = passed % size
                self._total_calls -= self._calls[index]
                self._total_hedges -= self._hedges[index]
                self._calls[index] = self._hedges[index] = 0
        else:  # the same slot (or a clock read a moment earlier by another caller)
            return newest % size
        self._newest = number
        return number % size

    def called(self, now: float) -> None:
        """A call of a hedged method started at ``now``."""
        index = self._slot(now)
        self._calls[index] += 1
        self._total_calls += 1

    def try_hedge(self, now: float) -> bool:
        """Takes one hedged attempt from the budget at ``now``; False if none is left."""
        index = self._slot(now)
        if self._total_hedges + 1 > self._ratio * self._total_calls + _SLACK:
            return False
        self._hedges[index] += 1
        self._total_hedges += 1
        return True

    def counts(self, now: float) -> tuple[int, int]:
        """The calls and hedged attempts in the window at ``now``."""
        self._slot(now)
        return self._total_calls, self._total_hedges


# The histogram's buckets: 8 per octave (each 9 % wider than the one
# before), from 10 µs up; 200 of them reach about 335 s (2^25 x 10 µs),
# far past any delay a hedge waits (at most 60 s).
_LOWEST = 1e-5
_PER_OCTAVE = 8
_BUCKETS = 200
# The quantile is worked out again after this many new samples.
_RECOMPUTE_EVERY = 16


class LatencyQuantile:
    """A latency quantile learnt from samples, cheap per sample, in bounded memory.

    Each sample adds one to its log-scale bucket; every ``halve_every``
    samples all counts halve, so the estimate follows a change of the
    latency within a few thousand calls. The answer is the upper bound of
    the bucket where the quantile falls: at most 9 % above the true one,
    which errs towards hedging less.

    Args:
        quantile: Which quantile (0.95 for ``"p95"``).
        min_samples: Samples needed before :meth:`value` answers.
        halve_every: Samples between two halvings.
    """

    __slots__ = ("_cached", "_counts", "_fresh", "_halve_every", "_min", "_quantile", "seen")

    def __init__(
        self,
        quantile: float = HEDGING_QUANTILE,
        min_samples: int = HEDGING_MIN_SAMPLES,
        halve_every: int = HEDGING_HALVE_EVERY,
    ) -> None:
        self._quantile = quantile
        self._min = min_samples
        self._halve_every = halve_every
        self._counts = [0.0] * _BUCKETS
        self._cached: float | None = None
        self._fresh = 0  # samples since the cached value was worked out
        self.seen = 0  # samples ever

    def record(self, seconds: float) -> None:
        """One latency sample, in seconds."""
        if seconds > _LOWEST:
            index = min(int(math.log2(seconds / _LOWEST) * _PER_OCTAVE), _BUCKETS - 1)
        else:
            index = 0
        self._counts[index] += 1.0
        self.seen += 1
        self._fresh += 1
        if self.seen % self._halve_every == 0:
            self._counts = [count / 2 for count in self._counts]

    def value(self) -> float | None:
        """The quantile in seconds; None before ``min_samples`` samples."""
        if self.seen < self._min:
            return None
        if self._cached is None or self._fresh >= _RECOMPUTE_EVERY:
            self._cached = self._compute()
            self._fresh = 0
        return self._cached

    def _compute(self) -> float:
        counts = self._counts
        wanted = self._quantile * sum(counts)
        running = 0.0
        for index, count in enumerate(counts):
            running += count
            if running >= wanted and running > 0:
                return float(_LOWEST * 2 ** ((index + 1) / _PER_OCTAVE))
        return float(_LOWEST * 2 ** (_BUCKETS / _PER_OCTAVE))
