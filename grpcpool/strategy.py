"""Channel selection strategies, and the pickers they build.

A strategy does not pick from a live list. Each time a pool's set of ready
channels changes, its HealthRegistry asks the strategy for a *picker* over
that fixed tuple: a zero-argument callable returning one of its items. The
hot path (``get_channel``) calls the picker of the pool's current view and
nothing else, from any thread, without a lock. So a picker must be O(1) in
the tuple's size and may tolerate races that only skew the spread a little,
never an index out of range.

This module is the only selection code: tests exercise the same picker
objects the hot path calls.

A custom strategy is either an object with ``picker(items) -> callable`` or,
simpler, one with ``select(count) -> index`` (called with the number of ready
channels); either may have ``init(pool_name, size)``, called once when its
pool starts.
"""

from __future__ import annotations

import functools
import itertools
import operator
import random as _random
from collections.abc import Callable
from typing import Any, Protocol, TypeVar, cast, runtime_checkable

__all__ = [
    "STRATEGY_NAMES",
    "Picker",
    "PowerOfTwo",
    "Random",
    "RoundRobin",
    "SelectStrategy",
    "Strategy",
    "resolve_strategy",
    "strategy_name",
]

T = TypeVar("T")

#: Picks one item of the tuple it was built for.
Picker = Callable[[], T]


@runtime_checkable
class Strategy(Protocol):
    """What a pool needs from a selection strategy."""

    def picker(self, items: tuple[T, ...]) -> Callable[[], T]:
        """A picker over ``items`` (never empty), for the hot path."""
        ...


@runtime_checkable
class SelectStrategy(Protocol):
    """The short form of a custom strategy: an index for a count."""

    def select(self, count: int) -> int:
        """Returns an index in ``range(count)``; ``count`` is at least 1."""
        ...


def _single(items: tuple[T, ...]) -> Callable[[], T]:
    # One item: no strategy can choose anything else. A C call, no frame.
    return cast("Callable[[], T]", functools.partial(operator.getitem, items, 0))


class RoundRobin:
    """Hands out the items in turn.

    The picker is ``itertools.cycle(items).__next__``: one C call, atomic
    under the GIL, so concurrent callers never get the same turn and no lock
    is needed. It starts afresh with each new tuple.
    """

    name = "round_robin"

    def picker(self, items: tuple[T, ...]) -> Callable[[], T]:
        if len(items) == 1:
            return _single(items)
        return itertools.cycle(items).__next__

    def __repr__(self) -> str:
        return "RoundRobin()"


class Random:
    """Picks an item uniformly at random."""

    name = "random"

    def __init__(self, rng: _random.Random | None = None) -> None:
        self._uniform = (rng or _random.Random()).random

    def picker(self, items: tuple[T, ...]) -> Callable[[], T]:
        if len(items) == 1:
            return _single(items)
        uniform, count = self._uniform, len(items)

        def pick() -> T:
            # uniform() is in [0, 1), so the index is always below count.
            return items[int(uniform() * count)]

        return pick

    def __repr__(self) -> str:
        return "Random()"


class PowerOfTwo:
    """Draws two items at random and returns the one handed out less often.

    Usage counts belong to one picker, so they start afresh with each new
    tuple (index ``i`` may name another channel then). Two concurrent callers
    may both increment a count from the same old value; that only makes the
    counts approximate, which the "power of two choices" rule tolerates.
    """

    name = "power_of_two"

    def __init__(self, rng: _random.Random | None = None) -> None:
        self._uniform = (rng or _random.Random()).random

    def picker(self, items: tuple[T, ...]) -> Callable[[], T]:
        if len(items) == 1:
            return _single(items)
        uniform, count, uses = self._uniform, len(items), [0] * len(items)

        def pick() -> T:
            first, second = int(uniform() * count), int(uniform() * count)
            if uses[second] < uses[first]:
                first = second
            uses[first] += 1
            return items[first]

        return pick

    def __repr__(self) -> str:
        return "PowerOfTwo()"


class _FromSelect:
    """Adapts a ``select(count)`` strategy to the picker protocol."""

    def __init__(self, custom: SelectStrategy) -> None:
        self.custom = custom

    def picker(self, items: tuple[T, ...]) -> Callable[[], T]:
        select, count = self.custom.select, len(items)

        def pick() -> T:
            return items[select(count)]

        return pick

    def init(self, pool_name: str, size: int) -> None:
        init = getattr(self.custom, "init", None)
        if callable(init):
            init(pool_name, size)

    def __repr__(self) -> str:
        return repr(self.custom)


_BUILT_IN: dict[str, type[RoundRobin] | type[Random] | type[PowerOfTwo]] = {
    RoundRobin.name: RoundRobin,
    Random.name: Random,
    PowerOfTwo.name: PowerOfTwo,
}

STRATEGY_NAMES: tuple[str, ...] = tuple(_BUILT_IN)


def resolve_strategy(strategy: str | Strategy | SelectStrategy) -> Strategy:
    """Turns a strategy name or object into an object with ``picker``.

    A name gives a fresh instance, so two pools never share state. An object
    with ``picker`` is returned as it is; one with only ``select`` is adapted.

    Raises:
        ValueError: The name is unknown or the object has neither method.
    """
    if isinstance(strategy, str):
        try:
            return _BUILT_IN[strategy]()
        except KeyError:
            known = ", ".join(STRATEGY_NAMES)
            raise ValueError(f"unknown strategy {strategy!r} (known: {known})") from None
    if callable(getattr(strategy, "picker", None)):
        return strategy  # type: ignore[return-value]
    if callable(getattr(strategy, "select", None)):
        return _FromSelect(strategy)  # type: ignore[arg-type]
    raise ValueError(f"strategy {strategy!r} has neither picker(items) nor select(count)")


def strategy_name(strategy: Any) -> str:
    """The short name shown in reprs and status: built-in name or class name."""
    if isinstance(strategy, _FromSelect):
        strategy = strategy.custom
    name = getattr(strategy, "name", None)
    return name if isinstance(name, str) else type(strategy).__name__
