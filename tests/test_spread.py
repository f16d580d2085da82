"""Tests for grpcpool.core._spread: targets per address and the next rebalancing move.

The module is pure, so the tests drive it with plain Placement lists and
seeded random generators: the rules one by one, then properties over random
pools (a pool converges to an even spread in at most ``size`` moves and
never moves towards an avoided or unknown address).
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from grpcpool.core._spread import Move, Placement, next_move, spread_is_even, targets

A, B, C, D, E = (f"10.0.0.{i}:443" for i in range(1, 6))
GONE = "10.9.9.9:443"


def pool(*spec: tuple[str | None, str]) -> list[Placement]:
    """Placements w0, w1, ... from ``(address, state)`` pairs."""
    return [Placement(f"w{i}", address, state) for i, (address, state) in enumerate(spec)]


def ready(*addresses: str | None) -> list[Placement]:
    return pool(*((address, "ready") for address in addresses))


def apply(placements: list[Placement], move: Move) -> list[Placement]:
    """The pool after ``move``: the worker's replacement connects to the new address."""
    return [
        Placement(p.worker_id, move.address, "connecting") if p.worker_id == move.worker_id else p
        for p in placements
    ]


def settle(
    placements: list[Placement],
    addresses: Sequence[str],
    rng: random.Random,
    avoid: Sequence[str] = (),
) -> tuple[list[Placement], list[Move]]:
    """Applies next_move until it returns None, failing past len(placements) moves."""
    moves: list[Move] = []
    while (move := next_move(placements, addresses, rng, avoid)) is not None:
        moves.append(move)
        assert len(moves) <= len(placements), moves
        placements = apply(placements, move)
    return placements, moves


# targets


def test_targets_split_evenly_and_sum_to_size() -> None:
    """7 connections over 3 addresses: 2, 2 and 3, summing to 7."""
    goal = targets([A, B, C], 7, {}, random.Random(1))
    assert list(goal) == [A, B, C]
    assert sorted(goal.values()) == [2, 2, 3]


def test_targets_give_extras_to_the_fullest_addresses() -> None:
    """The extra connections go to the addresses holding most now, so fewer workers move."""
    goal = targets([A, B, C], 5, {C: 3, B: 2, GONE: 9}, random.Random(1))
    assert goal == {A: 1, B: 2, C: 2}


def test_targets_break_ties_with_the_rng() -> None:
    """Equal holdings: which address gets the extra one depends on the rng, and each can."""
    winners = set()
    for seed in range(50):
        goal = targets([A, B, C], 4, {A: 1, B: 1, C: 1}, random.Random(seed))
        winners |= {address for address, count in goal.items() if count == 2}
    assert winners == {A, B, C}


def test_targets_with_more_addresses_keep_the_used_ones() -> None:
    """More addresses than connections: the ones held now keep theirs, one each."""
    goal = targets([A, B, C, D, E], 2, {D: 1, B: 3}, random.Random(7))
    assert goal == {A: 0, B: 1, C: 0, D: 1, E: 0}


def test_targets_with_more_addresses_pick_fresh_subsets_at_random() -> None:
    """A new pool picks a random subset, so many new pools together cover every address."""
    covered: Counter[str] = Counter()
    for seed in range(40):
        goal = targets([A, B, C, D, E], 2, {}, random.Random(seed))
        assert sorted(goal.values()) == [0, 0, 0, 1, 1]
        covered.update(address for address, count in goal.items() if count)
    assert set(covered) == {A, B, C, D, E}


def test_targets_edges() -> None:
    """No addresses gives {}; size 0 gives zeros; duplicates count once; size < 0 is refused."""
    assert targets([], 3, {}, random.Random(0)) == {}
    assert targets([A, B], 0, {A: 2}, random.Random(0)) == {A: 0, B: 0}
    assert targets([A, B, A], 4, {}, random.Random(0)) == {A: 2, B: 2}
    with pytest.raises(ValueError, match="at least 0"):
        targets([A], -1, {}, random.Random(0))


# next_move


def test_even_spread_needs_no_move() -> None:
    """A pool already spread as evenly as it can be gets None."""
    assert next_move(ready(A, B, C, A), [A, B, C], random.Random(0)) is None
    assert next_move(ready(C, A), [A, B, C, D], random.Random(0)) is None


def test_unpinned_workers_move_first_not_ready_before_ready() -> None:
    """A worker on no address moves before one on a crowded address; a not-ready one first."""
    placements = pool((A, "backoff"), (A, "backoff"), (None, "ready"), (None, "connecting"))
    move = next_move(placements, [A, B], random.Random(0))
    assert move == Move("w3", B, "rebalance")


def test_vanished_address_workers_move() -> None:
    """A worker on an address the resolver no longer lists moves to one that is short."""
    move = next_move(ready(A, GONE, B), [A, B, C], random.Random(0))
    assert move == Move("w1", C)


def test_crowded_address_gives_up_a_not_ready_worker_first() -> None:
    """Over target, the first not-ready worker there moves; with all ready, the first one."""
    placements = pool((A, "ready"), (A, "connecting"), (A, "ready"), (B, "backoff"))
    assert next_move(placements, [A, B], random.Random(0)) == Move("w1", B)
    assert next_move(ready(A, A, A, B), [A, B], random.Random(0)) == Move("w0", B)


def test_stopped_counts_as_not_ready() -> None:
    """A stopped worker on a crowded address moves before a ready one."""
    placements = pool((A, "ready"), (A, "stopped"), (B, "ready"))
    assert next_move(placements, [A, B, C], random.Random(0)) == Move("w1", C)


def test_destination_is_the_address_most_under_target() -> None:
    """The move goes where most connections are missing; on a tie, to the first listed."""
    # 6 over A, B, C: targets 2 each. B has 1, C has 0: C is most under.
    assert next_move(ready(A, A, A, A, A, B), [A, B, C], random.Random(0)) == Move("w0", C)
    # B and C both miss 2: the first listed in addresses wins.
    assert next_move(ready(A, A, A, A), [A, C, B], random.Random(0)) == Move("w0", C)


def test_new_address_takes_connections_from_the_crowded_ones() -> None:
    """A replica added to the answer gets its share, one move at a time, from the crowded ones."""
    placements, moves = settle(ready(A, B, A, B), [A, B, C], random.Random(3))
    assert len(moves) == 1
    assert moves[0].address == C
    assert spread_is_even(placements, [A, B, C])


def test_fresh_pool_spreads_in_size_moves() -> None:
    """Workers started before resolution are all moved, one each, onto an even spread."""
    placements, moves = settle(ready(None, None, None, None, None), [A, B], random.Random(0))
    assert len(moves) == 5
    assert sorted(Counter(p.address for p in placements).values()) == [2, 3]


def test_avoided_address_is_never_a_destination() -> None:
    """An address that failed lately gets no move, even when it holds nothing."""
    move = next_move(ready(A, A, None), [A, B, C], random.Random(0), avoid={B})
    assert move == Move("w2", C)
    # With B avoided, A takes the whole pool.
    assert next_move(ready(A, None), [A, B], random.Random(0), avoid=[B]) == Move("w1", A)


def test_connections_on_an_avoided_address_stay() -> None:
    """Workers already on an avoided address are not moved away for that alone."""
    assert next_move(ready(B, B, A), [A, B], random.Random(0), avoid={B}) is None


def test_avoided_vanished_address_still_moves() -> None:
    """A worker on an address that vanished moves, whether or not it is also avoided."""
    assert next_move(ready(GONE, A), [A, B], random.Random(0), avoid={GONE}) == Move("w0", B)


def test_nothing_usable_means_no_move() -> None:
    """Every address avoided, no addresses, or no workers: None."""
    assert next_move(ready(None), [A], random.Random(0), avoid={A}) is None
    assert next_move(ready(None, GONE), [], random.Random(0)) is None
    assert next_move([], [A, B], random.Random(0)) is None


# spread_is_even


def test_spread_is_even_cases() -> None:
    """Even means counts differ by at most one and nobody is unpinned or on a vanished address."""
    assert spread_is_even(ready(A, B, A), [A, B])
    assert not spread_is_even(ready(A, A, A), [A, B])
    assert not spread_is_even(ready(A, B, None), [A, B, C])
    assert not spread_is_even(ready(A, GONE), [A, B])
    assert spread_is_even(ready(C, A), [A, B, C, D])
    assert not spread_is_even(ready(A, A), [A, B, C])
    assert spread_is_even([], [A])
    assert spread_is_even([], [])
    assert not spread_is_even(ready(A), [])


# properties

ADDRESSES = [f"10.0.0.{i}:443" for i in range(1, 9)]
VANISHED = ["10.9.9.1:443", "10.9.9.2:443", None]
STATES = ["connecting", "ready", "backoff", "stopped"]

address_lists = st.lists(st.sampled_from(ADDRESSES), min_size=1, max_size=8, unique=True)
placement_lists = st.lists(
    st.tuples(st.sampled_from([*ADDRESSES, *VANISHED]), st.sampled_from(STATES)),
    max_size=12,
).map(lambda spec: pool(*spec))


@settings(max_examples=200, deadline=None)
@given(placements=placement_lists, addresses=address_lists, rng=st.randoms(use_true_random=False))
def test_next_move_reaches_an_even_spread(
    placements: list[Placement], addresses: list[str], rng: random.Random
) -> None:
    """Applying next_move repeatedly evens the spread within len(placements) moves, then stops."""
    settled, moves = settle(placements, addresses, rng)
    assert spread_is_even(settled, addresses)
    assert next_move(settled, addresses, rng) is None
    assert all(move.reason == "rebalance" for move in moves)


@settings(max_examples=200, deadline=None)
@given(
    placements=placement_lists,
    addresses=address_lists,
    avoid=st.sets(st.sampled_from([*ADDRESSES, *VANISHED[:2]])),
    rng=st.randoms(use_true_random=False),
)
def test_no_move_targets_an_avoided_or_unknown_address(
    placements: list[Placement], addresses: list[str], avoid: set[str], rng: random.Random
) -> None:
    """Every move goes to a listed, non-avoided address, and moving stops within size moves."""
    settled, moves = settle(placements, addresses, rng, sorted(avoid))
    for move in moves:
        assert move.address in addresses
        assert move.address not in avoid
    usable = [address for address in addresses if address not in avoid]
    stuck = avoid & set(addresses) & {p.address for p in placements}
    if usable and not stuck:
        # Nobody sits on a listed, avoided address: the spread over the usable ones is even.
        assert spread_is_even(settled, usable)


@settings(max_examples=200, deadline=None)
@given(
    addresses=address_lists,
    size=st.integers(min_value=0, max_value=30),
    current=st.dictionaries(st.sampled_from([*ADDRESSES, "10.9.9.1:443"]), st.integers(0, 10)),
    rng=st.randoms(use_true_random=False),
)
def test_targets_sum_to_size_and_differ_by_at_most_one(
    addresses: list[str], size: int, current: dict[str, int], rng: random.Random
) -> None:
    """targets covers exactly the given addresses, sums to size, and its counts differ by <= 1."""
    goal = targets(addresses, size, current, rng)
    assert list(goal) == addresses
    assert sum(goal.values()) == size
    assert max(goal.values()) - min(goal.values()) <= 1


@settings(max_examples=200, deadline=None)
@given(data=st.data(), rng=st.randoms(use_true_random=False))
def test_targets_keep_their_subset(data: st.DataObject, rng: random.Random) -> None:
    """With more addresses than size, the result fed back as current keeps the same subset.

    The first call keeps the addresses held most: none it passes over holds more.
    """
    addresses = data.draw(st.lists(st.sampled_from(ADDRESSES), min_size=2, unique=True))
    size = data.draw(st.integers(min_value=0, max_value=len(addresses) - 1))
    current = data.draw(st.dictionaries(st.sampled_from(ADDRESSES), st.integers(0, 3)))
    first = targets(addresses, size, current, rng)
    assert targets(addresses, size, first, rng) == first
    chosen = [current.get(address, 0) for address, count in first.items() if count]
    passed = [current.get(address, 0) for address, count in first.items() if not count]
    if chosen and passed:
        assert min(chosen) >= max(passed)  # the addresses held most were kept
