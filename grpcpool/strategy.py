"""Channel selection strategies.

A strategy picks an index into the tuple of ready channels. It is called on
the hot path of every ``get_channel``, from any thread, without a lock, so each
built-in strategy is O(1) in the pool size and tolerates races that only skew
the spread a little (never an index out of range).

A custom strategy is any object with ``select(count) -> index`` and,
optionally, ``init(pool_name, size)``, called once when its pool starts.
"""

from __future__ import annotations

import itertools
import random as _random
from typing import Protocol, runtime_checkable

__all__ = [
    "STRATEGY_NAMES",
    "PowerOfTwo",
    "Random",
    "RoundRobin",
    "Strategy",
    "resolve_strategy",
    "strategy_name",
]


@runtime_checkable
class Strategy(Protocol):
    """What a pool needs from a selection strategy."""

    def select(self, count: int) -> int:
        """Returns an index in ``range(count)``; ``count`` is at least 1."""
        ...


class RoundRobin:
    """Hands out channels in turn.

    ``itertools.count`` advances atomically under the GIL, so concurrent
    callers never get the same ticket and no lock is needed.
    """

    name = "round_robin"

    def __init__(self) -> None:
        self._tickets = itertools.count()

    def select(self, count: int) -> int:
        return next(self._tickets) % count

    def __repr__(self) -> str:
        return "RoundRobin()"


class Random:
    """Picks a channel uniformly at random."""

    name = "random"

    def __init__(self, rng: _random.Random | None = None) -> None:
        #: A number in [0, 1); pools call it directly on their hot path.
        self.uniform = (rng or _random.Random()).random

    def select(self, count: int) -> int:
        # uniform() is in [0, 1), so the product is always below count.
        return int(self.uniform() * count)

    def __repr__(self) -> str:
        return "Random()"


class PowerOfTwo:
    """Picks two channels at random and returns the one handed out less often.

    The usage counters restart whenever the number of ready channels changes,
    because index ``i`` then names a different channel. Two concurrent callers
    may both increment the same counter from the same old value; that only
    makes the counts approximate, which the "power of two choices" rule
    tolerates by design.
    """

    name = "power_of_two"

    def __init__(self, rng: _random.Random | None = None) -> None:
        #: A number in [0, 1); pools call it directly on their hot path.
        self.uniform = (rng or _random.Random()).random
        self._uses: list[int] = []

    def select(self, count: int) -> int:
        uses = self._uses
        if len(uses) != count:
            uses = [0] * count
            self._uses = uses
        first = int(self.uniform() * count)
        second = int(self.uniform() * count)
        chosen = first if uses[first] <= uses[second] else second
        uses[chosen] += 1
        return chosen

    def __repr__(self) -> str:
        return "PowerOfTwo()"


_BUILT_IN: dict[str, type[RoundRobin] | type[Random] | type[PowerOfTwo]] = {
    RoundRobin.name: RoundRobin,
    Random.name: Random,
    PowerOfTwo.name: PowerOfTwo,
}

STRATEGY_NAMES: tuple[str, ...] = tuple(_BUILT_IN)


def resolve_strategy(strategy: str | Strategy) -> Strategy:
    """Turns a strategy name or object into a strategy object.

    A name gives a fresh instance, so two pools never share counters. An
    object is returned as it is.

    Raises:
        ValueError: The name is unknown or the object has no ``select``.
    """
    if isinstance(strategy, str):
        try:
            return _BUILT_IN[strategy]()
        except KeyError:
            known = ", ".join(STRATEGY_NAMES)
            raise ValueError(f"unknown strategy {strategy!r} (known: {known})") from None
    if not callable(getattr(strategy, "select", None)):
        raise ValueError(f"strategy {strategy!r} has no select(count) method")
    return strategy


def strategy_name(strategy: Strategy) -> str:
    """The short name shown in reprs and status: built-in name or class name."""
    name = getattr(strategy, "name", None)
    return name if isinstance(name, str) else type(strategy).__name__
