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

A strategy whose class sets ``routes_by_load = True`` (the built-in
``least_in_flight`` does) gets the pool's ready connections as items instead
of bare channels: :class:`~grpcpool.core.ReadyConnection` objects, whose
``in_flight`` (and ``calls`` set) count the calls running on each through the
pool channel. ``get_channel`` then hands out the picked connection's channel.
``peak_ewma`` (:class:`PeakEwma`, in :mod:`grpcpool._strategy_latency`) also
reads each connection's latency estimate (its ``stats``).

A custom strategy is user code on the hot path, so its answers are checked
before anything is handed out: an index that is not an int in
``range(count)``, an object its picker did not get, or an exception, becomes
a :class:`~grpcpool.errors.StrategyError` naming the strategy. The checks
live in the adapters for custom strategies only (:class:`_FromSelect` and
:func:`make_picker`); the built-in pickers stay as they are, unchecked,
because they are correct by construction and their cost is the hot path's.
"""

from __future__ import annotations

import functools
import itertools
import operator
import random as _random
from collections.abc import Callable
from typing import Any, Protocol, TypeVar, cast, runtime_checkable

from grpcpool._config_routing import DEFAULT_EWMA_DECAY
from grpcpool._strategy_latency import PeakEwma
from grpcpool.errors import StrategyError, shorten

__all__ = [
    "STRATEGY_NAMES",
    "LeastInFlight",
    "PeakEwma",
    "PowerOfTwo",
    "Random",
    "RoundRobin",
    "SelectStrategy",
    "Strategy",
    "make_picker",
    "picks_any_items",
    "resolve_strategy",
    "routes_by_load",
    "strategy_name",
]

T = TypeVar("T")


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
    """Draws two different items at random and returns the one handed out less often.

    The two are always distinct (Elixir's ``pick_different``): the second is
    drawn among the other ``count - 1`` items, in O(1), so a pool of two
    always compares both. Comparing an item with itself would be a wasted
    choice, which in a pool of two is half of them.

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
        others = count - 1

        def pick() -> T:
            first, second = int(uniform() * count), int(uniform() * others)
            if second >= first:
                second += 1  # skips ``first``: uniform over the others
            if uses[second] < uses[first]:
                first = second
            uses[first] += 1
            return items[first]

        return pick

    def __repr__(self) -> str:
        return "PowerOfTwo()"


class LeastInFlight:
    """Draws two different ready connections at random; the one with fewer calls in flight wins.

    A call is in flight through the pool channel (:func:`grpcpool.channel`)
    from its start until its response, error, cancellation or the end of its
    response stream, so a connection that turned slow keeps its calls longer,
    shows a higher count, and loses most draws: new calls go around it while
    it stays in rotation. Ties go to the first draw, so equal loads spread at
    random. Comparing two random connections, not scanning all, keeps a pick
    O(1) and avoids sending every caller to the same momentary minimum.

    Items without a ``calls`` set (a picker over bare channels, or calls made
    on channels from ``get_channel``, which nothing counts) have no load to
    compare, and the picker is a uniform random choice.
    """

    name = "least_in_flight"
    routes_by_load = True

    def __init__(self, rng: _random.Random | None = None) -> None:
        self._uniform = (rng or _random.Random()).random

    def picker(self, items: tuple[T, ...]) -> Callable[[], T]:
        if len(items) == 1:
            return _single(items)
        uniform, count = self._uniform, len(items)
        others = count - 1
        loads: list[Any] = [getattr(item, "calls", None) for item in items]
        if any(load is None for load in loads):
            return Random(_random.Random(uniform())).picker(items)

        def pick() -> T:
            first, second = int(uniform() * count), int(uniform() * others)
            if second >= first:
                second += 1  # skips ``first``: uniform over the others
            if len(loads[second]) < len(loads[first]):
                first = second
            return items[first]

        return pick

    def __repr__(self) -> str:
        return "LeastInFlight()"


def routes_by_load(strategy: object) -> bool:
    """True if ``strategy`` picks among ready connections (with their loads), not channels."""
    if isinstance(strategy, _FromSelect):
        return False
    return getattr(type(strategy), "routes_by_load", False) is True


def picks_any_items(strategy: object) -> bool:
    """True if ``strategy``'s pickers never look at their items, only at how many there are.

    The built-ins and ``select(count)`` strategies; a custom ``picker(items)``
    may inspect what it is given, so it is given channels only.
    """
    return type(strategy) in _BLIND


def _short_repr(value: object) -> str:
    """``repr(value)`` cut to a readable length; never raises."""
    try:
        text = repr(value)
    except Exception:
        text = f"<{type(value).__name__} object with a failing repr>"
    return shorten(text, 80)


def _raised(strategy: str, call: str, error: Exception) -> StrategyError:
    return StrategyError(strategy, _raised_problem(call, error))


def _raised_problem(call: str, error: Exception) -> str:
    return f"{call} raised {type(error).__name__}: {shorten(str(error), 120)}"


def _index_or_error(strategy: str, index: object, count: int) -> int:
    """``index`` if it is an int in ``range(count)`` (bool excluded), else an error.

    The slow path of a ``select`` answer: anything with ``__index__`` (a numpy
    integer, say) is accepted; floats, None, slices, negative or too large
    numbers are not. A negative index would pick from the end, silently.
    """
    if not isinstance(index, bool) and hasattr(type(index), "__index__"):
        try:
            number = operator.index(index)  # type: ignore[arg-type]
        except Exception as error:
            raise _raised(strategy, f"__index__ of what select({count}) returned", error) from error
        if 0 <= number < count:
            return number
    raise StrategyError(
        strategy,
        f"select({count}) returned {_short_repr(index)}, not an int in range({count})",
    )


class _FromSelect:
    """Adapts a ``select(count)`` strategy to the picker protocol, checking its answers."""

    def __init__(self, custom: SelectStrategy) -> None:
        self.custom = custom

    def picker(self, items: tuple[T, ...]) -> Callable[[], T]:
        select, count, name = self.custom.select, len(items), type(self.custom).__name__

        def pick() -> T:
            try:
                index = select(count)
            except Exception as error:
                raise _raised(name, f"select({count})", error) from error
            if type(index) is int and 0 <= index < count:
                return items[index]
            return items[_index_or_error(name, index, count)]

        return pick

    def init(self, pool_name: str, size: int) -> None:
        init = getattr(self.custom, "init", None)
        if callable(init):
            init(pool_name, size)

    def __repr__(self) -> str:
        return repr(self.custom)


_BUILT_IN: dict[
    str, type[RoundRobin] | type[Random] | type[PowerOfTwo] | type[LeastInFlight] | type[PeakEwma]
] = {
    RoundRobin.name: RoundRobin,
    Random.name: Random,
    PowerOfTwo.name: PowerOfTwo,
    LeastInFlight.name: LeastInFlight,
    PeakEwma.name: PeakEwma,
}

STRATEGY_NAMES: tuple[str, ...] = tuple(_BUILT_IN)


def resolve_strategy(
    strategy: str | Strategy | SelectStrategy, *, ewma_decay: float = DEFAULT_EWMA_DECAY
) -> Strategy:
    """Turns a strategy name or object into an object with ``picker``.

    A name gives a fresh instance, so two pools never share state; the name
    ``"peak_ewma"`` gives one with ``ewma_decay`` (the pool's
    ``pool.ewma_decay``). An object with ``picker`` is returned as it is;
    one with only ``select`` is adapted.

    Raises:
        ValueError: The name is unknown or the object has neither method.
    """
    if isinstance(strategy, str):
        if strategy == PeakEwma.name:
            return PeakEwma(ewma_decay)
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


# Pickers whose answers need no check: the built-ins, correct by
# construction, and the select adapter, which checks on its own.
_TRUSTED: frozenset[type] = frozenset(
    {RoundRobin, Random, PowerOfTwo, LeastInFlight, PeakEwma, _FromSelect}
)
_BLIND: frozenset[type] = frozenset({RoundRobin, Random, PowerOfTwo, _FromSelect})


def make_picker(strategy: Strategy, items: tuple[T, ...]) -> Callable[[], T]:
    """The picker over ``items`` that a pool's view calls on the hot path.

    A built-in strategy's picker is returned as it is. A custom
    ``picker(items)`` strategy's is wrapped, so that whatever it does, a
    caller gets one of ``items`` or a :class:`StrategyError`: if
    ``picker(items)`` itself raises or returns something not callable, the
    wrapper raises that error on every pick (the pool's registry, which
    builds the picker, must not crash on a strategy's bug). Membership is
    checked by identity, in O(1).
    """
    if type(strategy) in _TRUSTED:
        return strategy.picker(items)
    name, count = type(strategy).__name__, len(items)
    try:
        inner: Any = strategy.picker(items)
    except Exception as error:
        return _always(name, _raised_problem(f"picker() over {count} channels", error), error)
    if not callable(inner):
        return _always(name, f"picker() returned {_short_repr(inner)}, not a callable", None)
    members = frozenset(map(id, items))

    def pick() -> T:
        try:
            item = inner()
        except Exception as error:
            raise _raised(name, "its picker", error) from error
        if id(item) in members:
            return cast("T", item)
        raise StrategyError(
            name,
            f"its picker returned {_short_repr(item)}, "
            f"which is not one of the {count} ready channels",
        )

    return pick


def _always(strategy: str, problem: str, cause: Exception | None) -> Callable[[], Any]:
    """A picker that fails every time: the strategy could not build one."""

    def pick() -> Any:
        # A fresh exception per call: one instance raised from many threads
        # would share (and grow) one traceback.
        raise StrategyError(strategy, problem) from cause

    return pick


def strategy_name(strategy: Any) -> str:
    """The short name shown in reprs and status: built-in name or class name."""
    if isinstance(strategy, _FromSelect):
        strategy = strategy.custom
    name = getattr(strategy, "name", None)
    return name if isinstance(name, str) else type(strategy).__name__
