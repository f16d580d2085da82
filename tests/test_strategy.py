"""Tests for grpcpool.strategy: built-in selection strategies and resolution."""

from __future__ import annotations

import random
import threading
from collections import Counter

import pytest

from grpcpool.strategy import (
    STRATEGY_NAMES,
    PowerOfTwo,
    Random,
    RoundRobin,
    Strategy,
    resolve_strategy,
    strategy_name,
)


class AlwaysLast:
    """A custom strategy: always the last index."""

    def select(self, count: int) -> int:
        return count - 1


def test_strategy_names() -> None:
    """The built-in names are round_robin, random and power_of_two."""
    assert STRATEGY_NAMES == ("round_robin", "random", "power_of_two")


def test_round_robin_spreads_evenly() -> None:
    """40 selects over 4 channels give each index exactly 10, in turn."""
    strategy = RoundRobin()
    picks = [strategy.select(4) for _ in range(40)]
    assert picks[:8] == [0, 1, 2, 3, 0, 1, 2, 3]
    assert Counter(picks) == {0: 10, 1: 10, 2: 10, 3: 10}


def test_round_robin_is_thread_safe() -> None:
    """8 threads x 10_000 selects on 4 channels: every index gets exactly 20_000."""
    strategy = RoundRobin()
    counts = [Counter() for _ in range(8)]
    barrier = threading.Barrier(8)

    def work(counter: Counter[int]) -> None:
        barrier.wait()
        for _ in range(10_000):
            counter[strategy.select(4)] += 1

    threads = [threading.Thread(target=work, args=(counter,)) for counter in counts]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    total = sum(counts, Counter())
    assert total == {0: 20_000, 1: 20_000, 2: 20_000, 3: 20_000}


def test_round_robin_instances_are_independent() -> None:
    """Two RoundRobin objects keep separate counters."""
    first, second = RoundRobin(), RoundRobin()
    assert [first.select(3) for _ in range(2)] == [0, 1]
    assert second.select(3) == 0


def test_round_robin_survives_shrinking_count() -> None:
    """RoundRobin stays in range when the number of channels shrinks."""
    strategy = RoundRobin()
    for _ in range(7):
        strategy.select(10)
    assert all(0 <= strategy.select(3) < 3 for _ in range(10))


@pytest.mark.parametrize("cls", [Random, PowerOfTwo], ids=["random", "power_of_two"])
def test_random_strategies_in_range(cls: type[Random] | type[PowerOfTwo]) -> None:
    """random and power_of_two always return an index in range(count) for counts 1..50."""
    strategy = cls(random.Random(11))
    for count in range(1, 51):
        for _ in range(50):
            assert 0 <= strategy.select(count) < count
    assert strategy.select(1) == 0


@pytest.mark.parametrize("cls", [Random, PowerOfTwo], ids=["random", "power_of_two"])
def test_random_strategies_survive_shrinking_count(cls: type[Random] | type[PowerOfTwo]) -> None:
    """select(10) then select(3) stays in range (the ready set shrank)."""
    strategy = cls(random.Random(5))
    for _ in range(200):
        strategy.select(10)
    picks = [strategy.select(3) for _ in range(300)]
    assert set(picks) == {0, 1, 2}


@pytest.mark.parametrize("cls", [Random, PowerOfTwo], ids=["random", "power_of_two"])
def test_random_strategies_reach_every_index(cls: type[Random] | type[PowerOfTwo]) -> None:
    """Over many picks every channel is chosen at least once."""
    strategy = cls(random.Random(3))
    assert {strategy.select(8) for _ in range(1000)} == set(range(8))


@pytest.mark.parametrize("cls", [Random, PowerOfTwo], ids=["random", "power_of_two"])
def test_seeded_strategies_reproducible(cls: type[Random] | type[PowerOfTwo]) -> None:
    """The same seeded rng gives the same picks."""
    first, second = cls(random.Random(42)), cls(random.Random(42))
    assert [first.select(16) for _ in range(100)] == [second.select(16) for _ in range(100)]


def test_power_of_two_keeps_counts_balanced() -> None:
    """power_of_two over 10_000 picks on 8 channels keeps max - min counts small."""
    strategy = PowerOfTwo(random.Random(1))
    counts = Counter(strategy.select(8) for _ in range(10_000))
    assert sum(counts.values()) == 10_000
    assert max(counts.values()) - min(counts.values()) <= 10


def test_power_of_two_is_more_balanced_than_random() -> None:
    """power_of_two is spread more evenly than uniform random picks."""
    p2 = PowerOfTwo(random.Random(9))
    uniform = Random(random.Random(9))
    p2_counts = Counter(p2.select(8) for _ in range(10_000))
    uniform_counts = Counter(uniform.select(8) for _ in range(10_000))
    p2_spread = max(p2_counts.values()) - min(p2_counts.values())
    uniform_spread = max(uniform_counts.values()) - min(uniform_counts.values())
    assert p2_spread < uniform_spread


def test_power_of_two_resets_counts_when_count_changes() -> None:
    """After the count changes, usage counts restart, so the new set is balanced."""
    strategy = PowerOfTwo(random.Random(2))
    for _ in range(1000):
        strategy.select(4)
    counts = Counter(strategy.select(6) for _ in range(600))
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


def test_resolve_custom_object() -> None:
    """A custom object with select() is returned as is and works as a Strategy."""
    custom = AlwaysLast()
    resolved = resolve_strategy(custom)
    assert resolved is custom
    assert isinstance(resolved, Strategy)
    assert resolved.select(5) == 4


def test_resolve_unknown_name() -> None:
    """An unknown name raises ValueError naming it and the known names."""
    with pytest.raises(ValueError, match="'least_loaded'") as info:
        resolve_strategy("least_loaded")
    assert "round_robin" in str(info.value)


@pytest.mark.parametrize("bad", [object(), 42, type("Sel", (), {"select": 3})()])
def test_resolve_object_without_select(bad: object) -> None:
    """An object with no callable select() raises ValueError."""
    with pytest.raises(ValueError, match="select"):
        resolve_strategy(bad)  # type: ignore[arg-type]


def test_strategy_name() -> None:
    """strategy_name gives the built-in short name, else the class name."""
    assert strategy_name(RoundRobin()) == "round_robin"
    assert strategy_name(Random()) == "random"
    assert strategy_name(PowerOfTwo()) == "power_of_two"
    assert strategy_name(AlwaysLast()) == "AlwaysLast"


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
