"""Tests for grpcpool.pools._planner: the replacement decisions both pool drivers make.

Pure logic: worker records in, a candidate out, the clock passed in.
"""

from __future__ import annotations

import random

from grpcpool._status import WorkerState, WorkerStatus
from grpcpool.pools._planner import Candidate, Planner

A, B, C = "10.0.0.1:80", "10.0.0.2:80", "10.0.0.3:80"


def worker(
    worker_id: str, address: str | None, state: WorkerState = "ready", since: float = 0.0
) -> WorkerStatus:
    """A worker record pinned to ``address``."""
    return WorkerStatus(worker_id, state, since, address=address)


def test_an_uneven_spread_gives_a_rebalance_with_the_age_of_the_replaced() -> None:
    """Two workers on A and none on B: one moves to B; its age is how long it was ready."""
    planner = Planner(None, 5.0, random.Random(1))
    workers = [worker("w1", A, since=100.0), worker("w2", A, since=100.0)]

    move = planner.next(workers, [A, B], now=0.0, wall=130.0)

    assert move is not None and (move.address, move.reason, move.age) == (B, "rebalance", 30.0)


def test_an_even_spread_without_max_age_needs_nothing() -> None:
    """One worker per address and no max_age: no candidate."""
    planner = Planner(None, 5.0)
    assert planner.next([worker("w1", A), worker("w2", B)], [A, B], now=0.0, wall=1.0) is None


def test_an_avoided_address_is_no_target_until_its_time_is_up() -> None:
    """After avoid(B), B gets no connection; once the avoid time has passed it does."""
    planner = Planner(None, 5.0, random.Random(2))
    workers = [worker("w1", A), worker("w2", A)]
    planner.avoid(B, now=10.0)

    assert planner.next(workers, [A, B], now=12.0, wall=0.0) is None
    later = planner.next(workers, [A, B], now=15.5, wall=0.0)
    assert later is not None and later.address == B


def test_an_address_whose_workers_all_back_off_while_others_work_is_left() -> None:
    """Every worker on B backs off while A's are ready: B is avoided and its worker moves."""
    planner = Planner(None, 5.0, random.Random(3))
    workers = [worker("w1", A), worker("w2", B, state="backoff")]

    move = planner.next(workers, [A, B], now=0.0, wall=0.0)

    assert move == Candidate("w2", A, "rebalance", 0.0)
    assert planner.next([worker("w1", A), worker("w3", C)], [A, B, C], now=1.0, wall=0.0) is None


def test_max_age_picks_the_worker_longest_past_its_jittered_age_and_says_when_next() -> None:
    """With max_age 10, a worker ready since 0 falls due between 9 and 11; the longest due
    is replaced where it is; next_refresh names the next due time."""
    planner = Planner(10.0, 5.0, random.Random(4))
    workers = [worker("w1", A, since=0.0), worker("w2", B, since=5.0)]

    assert planner.next(workers, [A, B], now=0.0, wall=8.9) is None
    due = planner.next_refresh()
    assert due is not None and 9.0 <= due <= 11.0
    move = planner.next(workers, [A, B], now=0.0, wall=11.0)
    assert move is not None and (move.worker_id, move.address, move.reason) == ("w1", A, "max_age")
    assert move.age == 11.0


def test_an_avoided_address_keeps_the_connections_it_has() -> None:
    """Avoiding an address stops new connections going there, but does not move away the
    ready ones it already has."""
    planner = Planner(None, 5.0, random.Random(5))
    workers = [worker("w1", A), worker("w2", B), worker("w3", C)]
    planner.avoid(C, now=0.0)

    assert planner.next(workers, [A, B, C], now=1.0, wall=0.0) is None

