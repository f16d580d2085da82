"""Planning an even spread of a pool's connections over its resolved addresses.

A pool pins each worker (one connection) to one address. When the resolver's
answer changes, or a worker is pinned where it should not be, the pool moves
workers one at a time: replace one, let the replacement connect, look again.
This module decides the *one next move*; it is pure (no threads, grpc or
clock) so that the rules can be tested exhaustively and the actor that
applies them stays small.

The rules, in short:

* Each address should hold ``size // n`` or ``size // n + 1`` connections
  (:func:`targets`); with more addresses than connections, ``size`` of them
  hold one each, and a pool keeps the subset it has, so that many pools
  together cover all addresses instead of all picking the same few.
* The extra connections go where there are most already, so a change moves
  as few connections as it can.
* Workers on no address or on a vanished one move first, then workers on
  crowded addresses; not-ready ones before ready ones, since a ready
  connection is serving calls and one that is not costs nothing to replace.
* An address that recently failed to take a connection (``avoid``) is never
  a destination; the connections already there stay unless the spread over
  the other addresses needs them.

Each move strictly lowers the number of misplaced workers, so a pool of
``size`` reaches an even spread in at most ``size`` moves.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

__all__ = ["Move", "Placement", "next_move", "spread_is_even", "targets"]

STATES = ("connecting", "ready", "backoff", "stopped")
"""The worker states a :class:`Placement` may have."""


@dataclass(frozen=True)
class Placement:
    """Where one worker is pinned, and how it is doing.

    Attributes:
        worker_id: The worker's id in its pool.
        address: The address it connects to, or None when it started before
            any resolution (it connects to the endpoint's host and port).
        state: One of :data:`STATES`; anything but ``"ready"`` counts as
            not ready.
    """

    worker_id: str
    address: str | None
    state: str


@dataclass(frozen=True)
class Move:
    """Replace one worker by one connecting to another address.

    Attributes:
        worker_id: The worker to replace.
        address: Where its replacement connects.
        reason: Why; this module only plans ``"rebalance"`` moves.
    """

    worker_id: str
    address: str
    reason: str = "rebalance"


def _unique(addresses: Sequence[str]) -> list[str]:
    return list(dict.fromkeys(addresses))


def targets(
    addresses: Sequence[str], size: int, current: Mapping[str, int], rng: random.Random
) -> dict[str, int]:
    """How many connections each address should hold.

    Every address gets ``size // n`` and ``size % n`` of them one more, so
    the counts differ by at most one and sum to ``size``. The extra ones go
    to the addresses that hold most now (ties broken by ``rng``): they keep
    what they have, and fewer workers move. With more addresses than
    connections that picks ``size`` addresses with one each, those the pool
    already uses first, then others at random.

    Args:
        addresses: The addresses to spread over; duplicates count once.
        size: How many connections the pool has, at least 0.
        current: Address -> number of workers pinned there now; other
            addresses in it are ignored.
        rng: Breaks ties.

    Returns:
        Address -> target, for each of ``addresses`` in their order (an
        address not in it has target 0). Empty when ``addresses`` is.

    Raises:
        ValueError: ``size`` is negative.
    """
    if size < 0:
        raise ValueError(f"size must be at least 0, not {size}")
    order = _unique(addresses)
    if not order:
        return {}
    base, extra = divmod(size, len(order))
    ranked = order[:]
    rng.shuffle(ranked)  # the random tie-break; the sort below is stable
    ranked.sort(key=lambda address: current.get(address, 0), reverse=True)
    plus_one = set(ranked[:extra])
    return {address: base + (address in plus_one) for address in order}


def next_move(
    placements: Sequence[Placement],
    addresses: Sequence[str],
    rng: random.Random,
    avoid: Collection[str] = (),
    fixed: Collection[str] = (),
) -> Move | None:
    """The one next move towards an even spread, or None when there is none to make.

    The pool's size is ``len(placements)``; targets are computed over the
    addresses not in ``avoid`` (see :func:`targets`). The worker that moves
    is the first of:

    1. one on no address, or on one not in ``addresses`` (vanished);
    2. one on an address holding more than its target.

    Within each, not-ready workers come before ready ones, then the order of
    ``placements``. A worker on an avoided address is not moved for that
    alone: it is not over a target (avoided addresses have none), and moves
    only if its address vanishes. The destination is the address most under
    its target (ties: the first in ``addresses``).

    Args:
        placements: Every worker of the pool.
        addresses: The latest good resolver answer.
        rng: Breaks ties between addresses for the extra connections.
        avoid: Addresses that recently failed to take a connection; never a
            destination.
        fixed: Ids of workers that must not move (one already being replaced,
            or the replacement itself); they still count where they are.

    Returns:
        A :class:`Move`, or None when no address is under its target, no
        worker may move, or every address is avoided.
    """
    known = set(addresses)
    usable = [address for address in _unique(addresses) if address not in avoid]
    if not usable:
        return None
    held = Counter(placement.address for placement in placements)
    current = {address: count for address, count in held.items() if address is not None}
    goal = targets(usable, len(placements), current, rng)

    shortfall, destination = 0, None
    for address in usable:  # in the order given: the first wins a tie
        missing = goal[address] - held[address]
        if missing > shortfall:
            shortfall, destination = missing, address
    if destination is None:
        return None

    best: tuple[int, bool, int] | None = None
    mover = None
    for index, placement in enumerate(placements):
        if placement.worker_id in fixed:
            continue
        pinned = placement.address
        if pinned is None or pinned not in known:
            rule = 1
        elif pinned in goal and held[pinned] > goal[pinned]:
            rule = 2
        else:
            continue
        rank = (rule, placement.state == "ready", index)
        if best is None or rank < best:
            best, mover = rank, placement
    if mover is None:
        return None
    return Move(mover.worker_id, destination)


def spread_is_even(placements: Sequence[Placement], addresses: Sequence[str]) -> bool:
    """Whether the placements are as evenly spread over ``addresses`` as they can be.

    True when no worker is on no address or on one not in ``addresses``,
    and the counts per address (zero included) differ by at most one; with
    at least as many addresses as workers, that is at most one per address.
    No placements is even; placements with no addresses is not.
    """
    order = _unique(addresses)
    if not placements:
        return True
    if not order:
        return False
    known = set(order)
    if any(placement.address not in known for placement in placements):
        return False
    held = Counter(placement.address for placement in placements)
    counts = [held[address] for address in order]
    return max(counts) - min(counts) <= 1
