"""Tests for grpcpool.core._planner: the placement decisions both pool drivers make.

Pure logic: worker records in, a plan out, the clock passed in.
"""

from __future__ import annotations

import random
from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from grpcpool._config_timings import ADDRESS_RETRY_MAX, SLOW_CONNECT
from grpcpool._status import WorkerState, WorkerStatus
from grpcpool.core._planner import Candidate, Planner, Repin, is_failing

A, B, C = "10.0.0.1:80", "10.0.0.2:80", "10.0.0.3:80"


def worker(
    worker_id: str,
    address: str | None,
    state: WorkerState = "ready",
    since: float = 0.0,
    attempt: int = 0,
) -> WorkerStatus:
    """A worker record pinned to ``address``."""
    return WorkerStatus(worker_id, state, since, reconnect_attempt=attempt, address=address)


def planner(max_age: float | None = None, seed: int = 1) -> Planner:
    return Planner(max_age, 1.0, 30.0, random.Random(seed))


def test_an_uneven_spread_gives_a_rebalance_with_the_age_of_the_replaced() -> None:
    """Two ready workers on A and none on B: one moves to B; its age is how long it was ready."""
    workers = [worker("w1", A, since=100.0), worker("w2", A, since=100.0)]

    plan = planner().plan(workers, [A, B], now=0.0, wall=130.0)

    assert plan.repins == ()
    assert plan.move is not None
    assert (plan.move.address, plan.move.reason, plan.move.age) == (B, "rebalance", 30.0)


def test_an_even_spread_without_max_age_needs_nothing() -> None:
    """One worker per address and no max_age: no move, no repin, nothing to wake for."""
    plan = planner().plan([worker("w1", A), worker("w2", B)], [A, B], now=0.0, wall=1.0)
    assert (plan.repins, plan.move, plan.wake_in) == ((), None, None)


def test_workers_on_a_dead_address_move_at_once_to_live_ones() -> None:
    """Both workers on B back off while A's are ready: both are repinned now (no waiting for
    a replacement), spread over the live addresses; nothing ready is touched."""
    workers = [
        worker("w1", A),
        worker("w2", C),
        worker("w3", B, "backoff"),
        worker("w4", B, "backoff"),
    ]

    plan = planner().plan(workers, [A, B, C], now=0.0, wall=0.0)

    assert {r.worker_id for r in plan.repins} == {"w3", "w4"}
    assert Counter(r.address for r in plan.repins) == Counter({A: 1, C: 1})
    assert plan.move is None


def test_a_down_address_is_tried_again_after_its_backoff_and_back_off_further_if_still_dead() -> (
    None
):
    """B's workers failed: B gets nothing until its retry time (1-2 s for the first
    failure); then one connection is tried there; if that fails too, the next retry waits
    longer (2-4 s)."""
    plan_of = planner()
    failed = [worker("w1", A), worker("w2", A), worker("w3", B, "backoff", since=0.0)]
    first = plan_of.plan(failed, [A, B], now=0.0, wall=0.0)
    assert first.repins == (Repin("w3", A),)
    retry = plan_of.retry_at(B, 0.0)
    assert retry is not None and 1.0 <= retry <= 2.0
    assert first.wake_in is not None and first.wake_in <= retry

    moved = [worker("w1", A), worker("w2", A), worker("w3", A, "connecting", since=0.0)]
    assert plan_of.plan(moved, [A, B], now=0.5, wall=0.5).move is None  # not yet

    settled = [worker("w1", A), worker("w2", A), worker("w3", A)]
    due = plan_of.plan(settled, [A, B], now=retry, wall=retry)
    assert due.move is not None and due.move.address == B  # a replacement tries B

    failed_again = [*settled, worker("w9", B, "backoff", since=retry + 0.1)]
    plan_of.plan(failed_again, [A, B], now=retry + 0.2, wall=retry + 0.2, moving={"w3": "w9"})
    plan_of.plan(
        [*settled, worker("w9", B, "backoff", since=retry + 0.1)],
        [A, B],
        now=retry + 0.3,
        wall=retry + 0.3,
    )
    later = plan_of.retry_at(B, retry + 0.3)
    assert later is not None and later - (retry + 0.2) >= 2.0 - 1e-9


def test_a_replacement_that_failed_makes_its_address_avoided_as_a_destination_only() -> None:
    """avoid(C): C gets no new connection until its time is up, but keeps the ready one it
    has."""
    plan_of = planner(seed=5)
    workers = [worker("w1", A), worker("w2", A), worker("w3", C)]
    plan_of.avoid(B, now=0.0)

    assert plan_of.plan(workers, [A, B, C], now=0.5, wall=0.0).move is None
    later = plan_of.plan(workers, [A, B, C], now=2.5, wall=0.0)
    assert later.move is not None and later.move.address == B
    assert later.move.worker_id in {"w1", "w2"}


def test_a_healed_address_is_back_within_the_retry_cap() -> None:
    """However often an address failed, it is tried again within ADDRESS_RETRY_MAX seconds."""
    plan_of = planner()
    for round_ in range(12):
        plan_of.avoid(B, now=float(round_))
    retry = plan_of.plan([worker("w1", A)], [A, B], now=12.0, wall=0.0).wake_in
    assert retry is not None and retry <= ADDRESS_RETRY_MAX


def test_with_nothing_ready_a_failed_address_is_tried_again_within_half_a_backoff_min() -> None:
    """Every worker failing: an address that failed is due again within backoff_min / 2,
    since trying costs nothing then."""
    plan_of = planner()
    workers = [
        worker("w1", A, "backoff", since=0.0),
        worker("w2", A, "backoff", since=0.0),
        worker("w3", B, "backoff", since=0.0),
    ]
    plan_of.plan(workers, [A, B, C], now=0.0, wall=0.0)
    retry_a, retry_b = plan_of.retry_at(A, 0.0), plan_of.retry_at(B, 0.0)
    assert retry_a is not None and retry_a <= 0.5
    assert retry_b is not None and retry_b <= 0.5


def test_a_worker_nobody_has_placed_goes_to_a_live_address() -> None:
    """A worker with no address (waiting for the resolver's first answer) is repinned."""
    plan = planner().plan([worker("w1", None, "backoff")], [A], now=0.0, wall=0.0)
    assert plan.repins == (Repin("w1", A),)


def test_a_connect_that_hangs_counts_as_failing_after_slow_connect() -> None:
    """A first connect still going after SLOW_CONNECT (a black hole) makes its address
    down; before that, the plan says when to look again."""
    plan_of = planner()
    hanging = [worker("w1", A), worker("w2", B, "connecting", since=0.0)]
    early = plan_of.plan(hanging, [A, B], now=0.0, wall=1.0)
    assert early.repins == () and early.wake_in is not None
    assert abs(early.wake_in - (SLOW_CONNECT - 1.0)) < 1e-6
    assert not is_failing(hanging[1], 1.0) and is_failing(hanging[1], SLOW_CONNECT + 0.1)
    late = plan_of.plan(hanging, [A, B], now=SLOW_CONNECT + 0.1, wall=SLOW_CONNECT + 0.1)
    assert late.repins == (Repin("w2", A),)


def test_no_second_move_while_one_is_under_way_and_the_move_counts_as_done() -> None:
    """During a move (w1 -> its replacement r on B) no other move starts, and the spread
    sees the move as done: A 1, B 1 is even."""
    workers = [worker("w1", A), worker("w2", A), worker("r", B, "connecting", since=0.0)]
    plan = planner().plan(workers, [A, B], now=0.0, wall=0.0, moving={"w1": "r"})
    assert plan.move is None and plan.repins == ()


def test_a_leaving_worker_is_not_counted() -> None:
    """A retired worker still in the view does not make its address look crowded."""
    workers = [worker("w1", A), worker("w2", B), worker("old", A)]
    plan = planner().plan(workers, [A, B], now=0.0, wall=0.0, leaving={"old"})
    assert plan.move is None and plan.repins == ()


def test_max_age_picks_the_worker_longest_past_its_jittered_age_and_says_when_next() -> None:
    """With max_age 10, a worker ready since 0 falls due between 9 and 11; the longest due
    is replaced where it is."""
    plan_of = planner(max_age=10.0, seed=4)
    workers = [worker("w1", A, since=0.0), worker("w2", B, since=5.0)]

    early = plan_of.plan(workers, [A, B], now=0.0, wall=8.9)
    assert early.move is None
    due = plan_of.next_refresh()
    assert due is not None and 9.0 <= due <= 11.0
    assert early.wake_in is not None and abs(early.wake_in - (due - 8.9)) < 1e-9
    move = plan_of.plan(workers, [A, B], now=0.0, wall=11.0).move
    assert move == Candidate("w1", A, "max_age", 11.0)


def test_a_refresh_under_way_is_no_reason_to_wake_at_once() -> None:
    """A connection past its age whose move runs asks for no wake-up: the move's news or its
    deadline brings the next look (a plan saying 0 s would make its driver spin)."""
    plan_of = planner(max_age=10.0, seed=4)
    workers = [worker("w1", A, since=0.0), worker("w2", B, since=5.0)]
    first = plan_of.plan(workers, [A, B], now=0.0, wall=11.0)
    assert first.move is not None and first.move.worker_id == "w1"
    during = plan_of.plan(workers, [A, B], now=0.0, wall=11.5, moving={"w1": "w3"})
    assert during.move is None and during.wake_in is None


STATES: list[WorkerState] = ["connecting", "ready", "backoff"]


@st.composite
def pools(draw: st.DrawFn) -> tuple[list[WorkerStatus], list[str]]:
    addresses = [f"10.0.0.{i}:80" for i in range(1, draw(st.integers(1, 5)) + 1)]
    places = st.sampled_from([*addresses, "10.9.9.9:80", None])
    size = draw(st.integers(1, 12))
    workers = [
        worker(
            f"w{i}",
            draw(places),
            draw(st.sampled_from(STATES)),
            since=draw(st.floats(0.0, 10.0)),
            attempt=draw(st.integers(0, 3)),
        )
        for i in range(size)
    ]
    return workers, addresses


@settings(max_examples=300, deadline=None)
@given(pools(), st.floats(0.0, 20.0), st.integers(0, 2**16))
def test_a_plan_never_repins_a_ready_worker_nor_sends_one_where_it_may_not_go(
    pool: tuple[list[WorkerStatus], list[str]], now: float, seed: int
) -> None:
    """Whatever the pool looks like: repins are of workers that are not ready, each worker at
    most once, to addresses in the answer that are not down; at most one move, of a ready
    worker, to an address in the answer."""
    workers, addresses = pool
    plan_of = planner(seed=seed)
    plan_of.plan(workers, addresses, now=0.0, wall=now)  # learn which addresses are down
    plan = plan_of.plan(workers, addresses, now=now, wall=now)
    states = {w.worker_id: w.state for w in workers}
    moved = [r.worker_id for r in plan.repins]
    assert len(moved) == len(set(moved))
    for repin in plan.repins:
        assert states[repin.worker_id] != "ready"
        assert repin.address in addresses
        assert plan_of.retry_at(repin.address, now) is None
    if plan.move is not None:
        assert states[plan.move.worker_id] == "ready"
        assert plan.move.address in addresses
        assert plan.move.worker_id not in moved


@settings(max_examples=200, deadline=None)
@given(pools(), st.integers(0, 2**16))
def test_repins_and_moves_reach_an_even_spread_when_every_address_works(
    pool: tuple[list[WorkerStatus], list[str]], seed: int
) -> None:
    """Applying each plan (repins at once, a move's replacement ready at once) to workers that
    all connect: within size + 1 plans the spread is even and the plan is empty."""
    workers, addresses = pool
    plan_of = planner(seed=seed)
    current = {w.worker_id: w.address for w in workers}
    numbers = iter(range(1000))
    for _ in range(len(workers) + 2):
        ready = [worker(wid, address) for wid, address in current.items()]
        plan = plan_of.plan(ready, addresses, now=100.0, wall=100.0)
        if not plan.repins and plan.move is None:
            break
        for repin in plan.repins:
            current[repin.worker_id] = repin.address
        if plan.move is not None:
            del current[plan.move.worker_id]
            current[f"r{next(numbers)}"] = plan.move.address
    else:
        raise AssertionError("the plans did not settle")
    counts = Counter(current.values())
    assert len(current) == len(workers)  # never more, never fewer
    assert set(counts) <= set(addresses)
    held = [counts.get(a, 0) for a in addresses]
    assert max(held) - min(held) <= 1 or len(addresses) > len(workers)


def test_with_nothing_ready_an_avoided_address_still_takes_workers_that_serve_nothing() -> None:
    """A replacement failed on B a moment ago (B avoided), then every worker on A fails: the
    workers serving nothing move to B at once anyway (B may have healed; trying costs
    nothing), rather than the pool waiting out B's avoid time with nothing ready."""
    plan_of = planner()
    plan_of.avoid(B, now=0.0)
    failing = [worker(f"w{i}", A, "backoff", since=1.0, attempt=1) for i in range(4)]
    plan = plan_of.plan(failing, [A, B], now=1.0, wall=1.0)
    assert {r.address for r in plan.repins} == {B}
    assert len(plan.repins) >= 1


def test_with_something_ready_one_worker_tries_a_failed_address_first() -> None:
    """B failed and is due again while A serves: one worker that serves nothing tries B, the
    others wait for its outcome; with nothing ready at all, every such worker may go."""
    plan_of = planner()
    plan_of.plan([worker("w0", B, "backoff", since=0.0)], [A, B], now=0.0, wall=0.0)
    stuck = [worker(f"w{i}", C, "backoff", since=0.0) for i in range(3)]
    serving = [worker("r1", A), worker("r2", A)]
    plan = plan_of.plan([*serving, *stuck], [A, B, C], now=10.0, wall=10.0)
    assert sum(r.address == B for r in plan.repins) == 1
    alone = planner()
    alone.plan([worker("w0", B, "backoff", since=0.0)], [A, B], now=0.0, wall=0.0)
    everyone = alone.plan(stuck, [B, C], now=10.0, wall=10.0)
    assert sum(r.address == B for r in everyone.repins) >= 2


def test_a_connect_under_way_is_not_moved_for_an_even_spread() -> None:
    """Every worker just moved to B and is connecting there while A is due again: none is
    sent back to A for evenness (that would restart connects that may be about to work)."""
    plan_of = planner()
    plan_of.plan([worker("w0", A, "backoff", since=0.0)], [A, B], now=0.0, wall=0.0)
    connecting = [worker(f"w{i}", B, "connecting", since=9.9) for i in range(4)]
    plan = plan_of.plan(connecting, [A, B], now=10.0, wall=10.0)
    assert plan.repins == () and plan.move is None


def test_a_placed_worker_waiting_to_reconnect_asks_for_a_fresh_answer() -> None:
    """A worker on an address that backs off makes the plan say the answer may be stale;
    one waiting for its first address, or a pool whose workers connect, does not."""
    plan_of = planner()
    assert plan_of.plan([worker("w1", A, "backoff")], [A, B], now=0.0, wall=0.0).reconnecting
    assert not plan_of.plan([worker("w1", None, "backoff")], [A], now=0.0, wall=0.0).reconnecting
    assert not plan_of.plan([worker("w1", A, "connecting")], [A], now=0.0, wall=0.0).reconnecting
