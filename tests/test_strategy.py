"""Tests for grpcpool.strategy: the pickers each strategy builds, and resolution.

The pickers tested here are the very objects a pool's view calls on the hot
path; items are plain ints standing in for channels.
"""

from __future__ import annotations

import random
import threading
from collections import Counter
from typing import Any

import pytest

from grpcpool.errors import GrpcPoolError, StrategyError
from grpcpool.strategy import (
    STRATEGY_NAMES,
    LeastInFlight,
    PowerOfTwo,
    Random,
    RoundRobin,
    SelectStrategy,
    Strategy,
    make_picker,
    resolve_strategy,
    routes_by_load,
    strategy_name,
)


def indexes(count: int) -> tuple[int, ...]:
    """Items that are their own index."""
    return tuple(range(count))


class AlwaysLast:
    """A custom strategy: always the last index."""

    def select(self, count: int) -> int:
        return count - 1


def test_strategy_names() -> None:
    """The built-in names are round_robin, random, power_of_two, least_in_flight and
    peak_ewma."""
    assert STRATEGY_NAMES == (
        "round_robin",
        "random",
        "power_of_two",
        "least_in_flight",
        "peak_ewma",
    )


def test_round_robin_spreads_evenly() -> None:
    """40 selects over 4 channels give each index exactly 10, in turn."""
    pick = RoundRobin().picker(indexes(4))
    picks = [pick() for _ in range(40)]
    assert picks[:8] == [0, 1, 2, 3, 0, 1, 2, 3]
    assert Counter(picks) == {0: 10, 1: 10, 2: 10, 3: 10}


def test_round_robin_is_thread_safe() -> None:
    """8 threads x 10_000 selects on 4 channels: every index gets exactly 20_000."""
    pick = RoundRobin().picker(indexes(4))
    counts = [Counter() for _ in range(8)]
    barrier = threading.Barrier(8)

    def work(counter: Counter[int]) -> None:
        barrier.wait(timeout=10)
        for _ in range(10_000):
            counter[pick()] += 1

    threads = [threading.Thread(target=work, args=(counter,)) for counter in counts]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
        assert not thread.is_alive()
    total = sum(counts, Counter())
    assert total == {0: 20_000, 1: 20_000, 2: 20_000, 3: 20_000}


def test_round_robin_pickers_are_independent() -> None:
    """Two pickers (two views) keep separate turns, each starting at the first item."""
    strategy = RoundRobin()
    first, second = strategy.picker(indexes(3)), strategy.picker(indexes(3))
    assert [first() for _ in range(2)] == [0, 1]
    assert second() == 0


def test_single_item_needs_no_strategy() -> None:
    """Every strategy's picker over one item returns that item."""
    for strategy in (RoundRobin(), Random(), PowerOfTwo()):
        pick = strategy.picker(("only",))
        assert {pick() for _ in range(20)} == {"only"}


@pytest.mark.parametrize("cls", [Random, PowerOfTwo], ids=["random", "power_of_two"])
def test_random_strategies_in_range(cls: type[Random] | type[PowerOfTwo]) -> None:
    """random and power_of_two always return an index in range(count) for counts 1..50."""
    strategy = cls(random.Random(11))
    for count in range(1, 51):
        pick = strategy.picker(indexes(count))
        for _ in range(50):
            assert 0 <= pick() < count


@pytest.mark.parametrize("cls", [Random, PowerOfTwo], ids=["random", "power_of_two"])
def test_random_strategies_follow_a_new_view(cls: type[Random] | type[PowerOfTwo]) -> None:
    """A picker over 10 items, then one over 3 (the ready set shrank): the new one
    picks only among the 3."""
    strategy = cls(random.Random(5))
    old = strategy.picker(indexes(10))
    for _ in range(200):
        old()
    new = strategy.picker(indexes(3))
    assert {new() for _ in range(300)} == {0, 1, 2}


@pytest.mark.parametrize("cls", [Random, PowerOfTwo], ids=["random", "power_of_two"])
def test_random_strategies_reach_every_index(cls: type[Random] | type[PowerOfTwo]) -> None:
    """Over many picks every channel is chosen at least once."""
    pick = cls(random.Random(3)).picker(indexes(8))
    assert {pick() for _ in range(1000)} == set(range(8))


@pytest.mark.parametrize("cls", [Random, PowerOfTwo], ids=["random", "power_of_two"])
def test_seeded_strategies_reproducible(cls: type[Random] | type[PowerOfTwo]) -> None:
    """The same seeded rng gives the same picks."""
    first = cls(random.Random(42)).picker(indexes(16))
    second = cls(random.Random(42)).picker(indexes(16))
    assert [first() for _ in range(100)] == [second() for _ in range(100)]


def test_power_of_two_keeps_counts_balanced() -> None:
    """power_of_two over 10_000 picks on 8 channels keeps max - min counts small."""
    pick = PowerOfTwo(random.Random(1)).picker(indexes(8))
    counts = Counter(pick() for _ in range(10_000))
    assert sum(counts.values()) == 10_000
    assert max(counts.values()) - min(counts.values()) <= 10


def test_power_of_two_is_more_balanced_than_random() -> None:
    """power_of_two is spread more evenly than uniform random picks."""
    p2 = PowerOfTwo(random.Random(9)).picker(indexes(8))
    uniform = Random(random.Random(9)).picker(indexes(8))
    p2_counts = Counter(p2() for _ in range(10_000))
    uniform_counts = Counter(uniform() for _ in range(10_000))
    p2_spread = max(p2_counts.values()) - min(p2_counts.values())
    uniform_spread = max(uniform_counts.values()) - min(uniform_counts.values())
    assert p2_spread < uniform_spread


def test_power_of_two_counts_start_afresh_with_a_new_view() -> None:
    """A new picker (a new view) has fresh usage counts, so the new set is balanced."""
    strategy = PowerOfTwo(random.Random(2))
    old = strategy.picker(indexes(4))
    for _ in range(1000):
        old()
    new = strategy.picker(indexes(6))
    counts = Counter(new() for _ in range(600))
    assert max(counts.values()) - min(counts.values()) <= 10


def test_resolve_names_give_fresh_instances() -> None:
    """Each built-in name resolves to a fresh instance of its class."""
    for name, cls in [
        ("round_robin", RoundRobin),
        ("random", Random),
        ("power_of_two", PowerOfTwo),
    ]:
        first, second = resolve_strategy(name), resolve_strategy(name)
        assert type(first) is cls
        assert first is not second


def test_resolve_custom_select_object() -> None:
    """A custom object with only select() is adapted: its picker calls select(count)."""
    custom = AlwaysLast()
    assert isinstance(custom, SelectStrategy)
    resolved = resolve_strategy(custom)
    assert isinstance(resolved, Strategy)
    pick = resolved.picker(("a", "b", "c", "d", "e"))
    assert [pick() for _ in range(3)] == ["e", "e", "e"]
    assert repr(resolved) == repr(custom)


def test_resolve_custom_picker_object() -> None:
    """A custom object with picker() is returned as it is."""

    class First:
        def picker(self, items: tuple[object, ...]) -> object:
            return lambda: items[0]

    custom = First()
    assert resolve_strategy(custom) is custom  # type: ignore[arg-type]


def test_adapted_select_strategy_gets_init() -> None:
    """init(pool_name, size) of a select() strategy is reachable through the adapter."""
    calls: list[tuple[str, int]] = []

    class WithInit(AlwaysLast):
        def init(self, pool_name: str, size: int) -> None:
            calls.append((pool_name, size))

    resolved = resolve_strategy(WithInit())
    resolved.init("p", 3)  # type: ignore[attr-defined]
    assert calls == [("p", 3)]


def test_resolve_unknown_name() -> None:
    """An unknown name raises ValueError naming it and the known names."""
    with pytest.raises(ValueError, match="'least_loaded'") as info:
        resolve_strategy("least_loaded")
    assert "round_robin" in str(info.value)


@pytest.mark.parametrize("bad", [object(), 42, type("Sel", (), {"select": 3})()])
def test_resolve_object_without_select(bad: object) -> None:
    """An object with neither a callable picker() nor select() raises ValueError."""
    with pytest.raises(ValueError, match="select"):
        resolve_strategy(bad)  # type: ignore[arg-type]


def test_strategy_name() -> None:
    """strategy_name gives the built-in short name, else the class name."""
    assert strategy_name(RoundRobin()) == "round_robin"
    assert strategy_name(Random()) == "random"
    assert strategy_name(PowerOfTwo()) == "power_of_two"
    assert strategy_name(AlwaysLast()) == "AlwaysLast"
    assert strategy_name(resolve_strategy(AlwaysLast())) == "AlwaysLast"


def test_strategy_name_ignores_non_str_name() -> None:
    """A custom strategy whose `name` is not a str is named by its class."""

    class Named:
        name = 7

        def select(self, count: int) -> int:
            return 0

    assert strategy_name(Named()) == "Named"


def test_reprs() -> None:
    """Built-in strategies have short reprs."""
    assert [repr(s) for s in (RoundRobin(), Random(), PowerOfTwo())] == [
        "RoundRobin()",
        "Random()",
        "PowerOfTwo()",
    ]


# --- power_of_two compares two different items ----------------------------------------


class Constant(random.Random):
    """An rng whose every draw is the same number: the worst case for two draws."""

    def __init__(self, value: float) -> None:
        super().__init__()
        self.value = value

    def random(self) -> float:
        return self.value


@pytest.mark.parametrize("count", [2, 3, 5, 8])
@pytest.mark.parametrize("value", [0.0, 0.5, 0.999])
def test_power_of_two_never_compares_an_item_with_itself(count: int, value: float) -> None:
    """Even when both draws give the same number, the second names another item: the
    picks alternate between two items, the less used one winning each time."""
    pick = PowerOfTwo(Constant(value)).picker(indexes(count))
    picks = [pick() for _ in range(20)]
    first, second = picks[0], picks[1]
    assert first != second
    assert picks == [first, second] * 10


def test_power_of_two_in_a_pool_of_two_always_compares_both() -> None:
    """With two items, every pick compares both, so every pair of picks hands out each
    item once (equal usage, then the less used wins)."""
    pick = PowerOfTwo(random.Random(7)).picker(("a", "b"))
    for _ in range(500):
        assert {pick(), pick()} == {"a", "b"}


class Scripted(random.Random):
    """An rng that returns the given numbers, in order."""

    def __init__(self, *values: float) -> None:
        super().__init__()
        self.values = list(values)

    def random(self) -> float:
        return self.values.pop(0)


@pytest.mark.parametrize(("second", "expected"), [(0.0, 1), (0.34, 2), (0.67, 3), (0.99, 3)])
def test_power_of_two_second_draw_ranges_over_the_other_items(second: float, expected: int) -> None:
    """Over 4 items, with item 0 drawn first and already used more, the second draw
    maps [0, 1) onto items 1..3: every other item, and never item 0."""
    pick = PowerOfTwo(Scripted(0.1, 0.5, 0.1, second)).picker(indexes(4))
    assert pick() == 0  # draws items 0 and 2 on equal usage: the first draw wins
    assert pick() == expected  # draws item 0 (used once) and an unused one


# --- a custom strategy's answer is checked ----------------------------------------------


class Answers:
    """A select() strategy whose answer is ``answer(count)``."""

    def __init__(self, answer: Any) -> None:
        self.answer = answer

    def select(self, count: int) -> Any:
        return self.answer(count)


class Index:
    """An int-like that is not an int (as numpy.int64 is)."""

    def __init__(self, value: int) -> None:
        self.value = value

    def __index__(self) -> int:
        return self.value

    def __repr__(self) -> str:
        return f"Index({self.value})"


@pytest.mark.parametrize(
    ("answer", "shown"),
    [
        (lambda count: count, "returned 3,"),
        (lambda count: count + 10, "returned 13,"),
        (lambda count: -1, "returned -1,"),
        (lambda count: 1.0, "returned 1.0,"),
        (lambda count: None, "returned None,"),
        (lambda count: slice(0, 2), "returned slice(0, 2, None),"),
        (lambda count: True, "returned True,"),
        (lambda count: False, "returned False,"),
        (lambda count: "1", "returned '1',"),
        (lambda count: Index(3), "returned Index(3),"),
    ],
    ids=["count", "beyond", "minus-one", "float", "none", "slice", "true", "false", "str", "index"],
)
def test_a_bad_select_answer_is_a_strategy_error(answer: Any, shown: str) -> None:
    """An answer that is not an int in range(count) raises StrategyError naming the
    strategy class, the call and the answer; no item is handed out."""
    pick = resolve_strategy(Answers(answer)).picker(("a", "b", "c"))
    with pytest.raises(StrategyError) as caught:
        pick()
    message = str(caught.value)
    assert message.startswith("strategy Answers: select(3) ")
    assert shown in message
    assert "not an int in range(3)" in message
    assert caught.value.strategy == "Answers"
    assert isinstance(caught.value, GrpcPoolError)


def test_an_int_like_select_answer_in_range_is_accepted() -> None:
    """An index with __index__ (a numpy integer, say) in range picks that item."""
    pick = resolve_strategy(Answers(lambda count: Index(count - 1))).picker(("a", "b", "c"))
    assert [pick(), pick()] == ["c", "c"]


def test_a_select_that_raises_is_a_strategy_error_with_the_cause_chained() -> None:
    """An exception from select becomes StrategyError naming it; the original is the cause."""

    def fail(count: int) -> int:
        raise ZeroDivisionError("no shard")

    pick = resolve_strategy(Answers(fail)).picker(("a", "b"))
    with pytest.raises(StrategyError, match=r"select\(2\) raised ZeroDivisionError: no shard") as e:
        pick()
    assert isinstance(e.value.__cause__, ZeroDivisionError)


def test_a_long_answer_is_shortened_in_the_message() -> None:
    """A huge answer's repr is cut, so the message stays short."""
    pick = resolve_strategy(Answers(lambda count: "x" * 10_000)).picker(("a", "b"))
    with pytest.raises(StrategyError) as caught:
        pick()
    assert len(str(caught.value)) < 200
    assert " ... " in str(caught.value)


class Picks:
    """A picker() strategy whose picker returns ``choose(items)``."""

    def __init__(self, choose: Any) -> None:
        self.choose = choose

    def picker(self, items: tuple[Any, ...]) -> Any:
        return lambda: self.choose(items)


def test_a_custom_picker_returning_an_object_not_in_items_is_a_strategy_error() -> None:
    """A picker returning an object it was not given, even one equal to an item, raises
    StrategyError naming the strategy and the object; its own items pass."""
    items = ([1], [2])
    good = make_picker(Picks(lambda got: got[1]), items)
    assert good() is items[1]
    for foreign in (object(), [1], None):
        pick = make_picker(Picks(lambda got, foreign=foreign: foreign), items)
        with pytest.raises(StrategyError) as caught:
            pick()
        assert str(caught.value).startswith("strategy Picks: its picker returned ")
        assert "not one of the 2 ready channels" in str(caught.value)


def test_a_custom_picker_that_raises_is_a_strategy_error() -> None:
    """An exception from the picker becomes StrategyError with the cause chained."""

    def fail(items: tuple[Any, ...]) -> Any:
        raise IndexError("tuple index out of range")

    pick = make_picker(Picks(fail), ("a", "b"))
    with pytest.raises(StrategyError, match="its picker raised IndexError") as caught:
        pick()
    assert isinstance(caught.value.__cause__, IndexError)


def test_a_custom_picker_that_cannot_be_built_fails_every_pick_not_the_builder() -> None:
    """picker(items) raising or returning a non-callable does not raise where the pool
    builds it; every pick raises StrategyError instead (a fresh one each time)."""

    class Broken:
        def picker(self, items: tuple[Any, ...]) -> Any:
            raise RuntimeError("not today")

    class NotCallable:
        def picker(self, items: tuple[Any, ...]) -> Any:
            return items

    broken = make_picker(Broken(), ("a", "b"))
    raised = []
    for _ in range(2):
        with pytest.raises(StrategyError, match=r"strategy Broken: picker\(\) over 2") as caught:
            broken()
        assert isinstance(caught.value.__cause__, RuntimeError)
        raised.append(caught.value)
    assert raised[0] is not raised[1]
    with pytest.raises(StrategyError, match=r"returned \('a', 'b'\), not a callable"):
        make_picker(NotCallable(), ("a", "b"))()


def test_built_in_pickers_are_not_wrapped() -> None:
    """make_picker hands the built-in and select strategies' own pickers to the hot
    path, with no check around them."""
    for strategy in (RoundRobin(), Random(), PowerOfTwo(), resolve_strategy(AlwaysLast())):
        pick = make_picker(strategy, indexes(3))
        assert "make_picker" not in getattr(pick, "__qualname__", "")
    assert "make_picker" in make_picker(Picks(lambda got: got[0]), indexes(3)).__qualname__


# --- least_in_flight ----------------------------------------------------------------


class Loaded:
    """An item with calls in flight, as a ready connection has."""

    def __init__(self, name: str, in_flight: int = 0) -> None:
        self.name = name
        self.calls: set[object] = {object() for _ in range(in_flight)}

    def __repr__(self) -> str:
        return f"Loaded({self.name}, {len(self.calls)})"


def test_least_in_flight_never_picks_a_busier_item_when_the_rest_are_idle() -> None:
    """Each pick compares two distinct items and the one with fewer calls wins, so an
    item busier than all the others is never picked."""
    items = (Loaded("a"), Loaded("busy", 2), Loaded("b"), Loaded("c"))
    pick = LeastInFlight(random.Random(3)).picker(items)

    picked = Counter(pick().name for _ in range(3000))

    assert picked["busy"] == 0
    assert set(picked) == {"a", "b", "c"}


def test_least_in_flight_follows_the_counts_as_they_change() -> None:
    """The picker reads the live call sets: a call ending on an item makes it eligible."""
    busy, idle = Loaded("busy", 1), Loaded("idle")
    pick = LeastInFlight(random.Random(5)).picker((busy, idle))
    assert {pick().name for _ in range(50)} == {"idle"}

    busy.calls.clear()
    idle.calls.add(object())

    assert {pick().name for _ in range(50)} == {"busy"}


def test_least_in_flight_spreads_equal_loads_over_every_item() -> None:
    """Equal loads: ties go to the first draw, so picks spread over all items."""
    pick = LeastInFlight(random.Random(9)).picker(tuple(Loaded(str(i)) for i in range(5)))
    picked = Counter(pick().name for _ in range(5000))

    assert set(picked) == {str(i) for i in range(5)}
    assert max(picked.values()) < 2 * min(picked.values())


def test_least_in_flight_over_items_without_loads_is_a_random_choice() -> None:
    """Items with no call counts (bare channels): a uniform pick over all of them."""
    pick = LeastInFlight(random.Random(1)).picker(indexes(4))
    picked = Counter(pick() for _ in range(4000))

    assert set(picked) == {0, 1, 2, 3}
    assert max(picked.values()) < 2 * min(picked.values())


def test_only_strategies_that_say_so_route_by_load() -> None:
    """routes_by_load: least_in_flight and custom classes that set the flag; not the
    other built-ins, not select strategies, not an instance attribute."""

    class ByLoad:
        routes_by_load = True

        def picker(self, items: tuple[Any, ...]) -> Any:
            return lambda: items[0]

    flagged_instance = RoundRobin()
    flagged_instance.routes_by_load = True  # type: ignore[attr-defined]

    assert routes_by_load(LeastInFlight()) and routes_by_load(ByLoad())
    assert resolve_strategy("least_in_flight").__class__ is LeastInFlight
    assert not routes_by_load(flagged_instance)
    for other in (RoundRobin(), Random(), PowerOfTwo(), resolve_strategy(AlwaysLast())):
        assert not routes_by_load(other)

