"""Call capacity's pure rules (grpcpool.core._capacity), without servers.

Caps per connection (``pool.max_calls_per_connection``, and a connection's own
limit after its server refused a stream), admission by the strategy's pick or
the connection with the most room, the FIFO queue of waiting calls with its
bound, hand-outs oldest first, and the counts ``pool.autoscale`` will read.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence

import grpc
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from grpcpool import Config
from grpcpool.actors._capacity import SyncCapacity
from grpcpool.core import PoolView, ReadyConnection
from grpcpool.core._capacity import FULL, Capacity, in_flight, queue_full, queue_timed_out
from grpcpool.errors import ConfigError, NotConnectedError
from grpcpool.tasks._capacity import AioCapacity

NAME = "capacity"


def connections(count: int) -> list[ReadyConnection]:
    """``count`` ready connections over fake channels (nothing here calls them)."""
    return [ReadyConnection(object(), f"worker-{i + 1}") for i in range(count)]  # type: ignore[arg-type]


def none_ready() -> ReadyConnection:
    raise NotConnectedError(NAME, "no ready channel")


def view_of(ready: Sequence[ReadyConnection]) -> PoolView:
    """A running pool's view over ``ready``, picked round robin."""
    ready = tuple(ready)
    turn = itertools.cycle(ready)
    pick: Callable[[], ReadyConnection] = (lambda: next(turn)) if ready else none_ready
    return PoolView(
        tuple(c.channel for c in ready),
        lambda: pick().channel,
        (),
        len(ready),
        "running",
        ready,
        pick,
    )


class Pool:
    """A view that tests replace whole, as a pool's registry does, and a capacity over it."""

    def __init__(self, ready: Sequence[ReadyConnection], cap: int | None, queued: int = 10):
        self.view = view_of(ready)
        self.capacity: Capacity[str] = Capacity(NAME, cap, queued, lambda: self.view)

    def admit(self) -> tuple[ReadyConnection, int]:
        slot = self.capacity.admit()
        assert isinstance(slot, tuple), slot
        return slot


# --- limits -------------------------------------------------------------------------------


def test_a_pool_without_the_key_is_not_limited_until_a_refusal() -> None:
    """No key: not limited and every connection has room; a refused stream limits the pool
    (the first refusal says so, the next does not)."""
    ready = connections(2)
    pool = Pool(ready, None)
    assert not pool.capacity.limited
    assert pool.capacity.limit(ready[0]) is None and pool.capacity.has_room(ready[0])
    assert pool.capacity.refused(ready[0], 3) is True
    assert pool.capacity.limited and ready[0].limit == 3
    assert pool.capacity.refused(ready[1], 2) is False
    assert Pool(ready, 4).capacity.limited


def test_a_refusal_lowers_a_connections_limit_to_its_other_calls_never_below_one() -> None:
    """A connection refused with 5 other calls running may run 5; refused again with 2, 2;
    a later refusal with 4 others does not raise it; with none running it keeps 1."""
    [connection] = connections(1)
    capacity: Capacity[str] = Capacity(NAME, None, 10, lambda: view_of([connection]))
    capacity.refused(connection, 5)
    assert connection.limit == 5
    capacity.refused(connection, 2)
    capacity.refused(connection, 4)
    assert connection.limit == 2
    capacity.refused(connection, 0)
    assert connection.limit == 1


def test_a_connections_limit_is_the_lower_of_the_key_and_its_own() -> None:
    """pool.max_calls_per_connection 4: a connection limited to 2 by a refusal runs 2, one
    limited to 9 runs 4."""
    low, high = connections(2)
    capacity: Capacity[str] = Capacity(NAME, 4, 10, lambda: view_of([low, high]))
    low.limit, high.limit = 2, 9
    assert (capacity.limit(low), capacity.limit(high)) == (2, 4)


# --- admission ------------------------------------------------------------------------------


def test_admission_follows_the_pick_and_then_the_connection_with_most_room() -> None:
    """Cap 2 over 2 connections: round robin places the first calls; when the pick is full
    the call goes to the one with room; the fifth call finds every connection full."""
    first, second = connections(2)
    pool = Pool([first, second], 2)
    assert [pool.admit()[0] for _ in range(2)] == [first, second]
    first.limit = 1  # the next pick (first) is full: the call goes to second
    assert pool.admit()[0] is second
    assert pool.capacity.admit() is FULL
    assert [len(first.calls), len(second.calls)] == [1, 2]


def test_admission_with_nothing_ready_raises_not_connected() -> None:
    """No ready connection: admission raises NotConnectedError (the caller's wait_for_ready
    decides), it does not queue."""
    pool = Pool([], 2)
    with pytest.raises(NotConnectedError):
        pool.capacity.admit()
    assert pool.capacity.queued == 0


def test_a_retired_connection_takes_no_call() -> None:
    """A connection retired since the view was taken is passed over for one with room; when
    every connection with room was retired, admission says None (as PoolView.admit)."""
    first, second = connections(2)
    pool = Pool([first, second], 5)
    first.ledger.retire()
    assert pool.admit()[0] is second
    second.ledger.retire()
    assert pool.capacity.admit() is None


def test_start_on_a_given_connection_respects_its_limit() -> None:
    """A hedge or a resend aimed at one connection starts there only if it has room."""
    [connection] = connections(1)
    pool = Pool([connection], 1)
    assert pool.capacity.start_on(connection) is not None
    assert pool.capacity.start_on(connection) is None


# --- the queue ------------------------------------------------------------------------------


def test_waiting_calls_get_freed_slots_oldest_first_and_new_calls_queue_behind() -> None:
    """Cap 1 over 1 connection: a, b and c wait in that order; while they wait a new call
    is FULL even when a slot is free; each end hands the slot to the oldest waiter."""
    [connection] = connections(1)
    pool = Pool([connection], 1)
    _, running = pool.admit()
    for waiter in "abc":
        assert pool.capacity.admit() is FULL
        assert pool.capacity.wait(waiter)
    assert pool.capacity.queued == 3
    assert pool.capacity.hand_out() == []  # no room yet
    connection.end(running)
    assert pool.capacity.admit() is FULL  # a slot is free, but calls wait: behind them
    order = []
    for _ in range(3):
        [(waiter, (_, ticket))] = pool.capacity.hand_out()
        order.append(waiter)
        connection.end(ticket)
    assert order == ["a", "b", "c"]
    assert pool.capacity.queued == 0 and pool.capacity.hand_out() == []


def test_the_queue_is_bounded_and_the_error_names_the_key() -> None:
    """pool.max_queued_calls 2: a third waiter is refused; its error is RESOURCE_EXHAUSTED and
    names pool.max_queued_calls. 0 queues nothing."""
    pool = Pool(connections(1), 1, queued=2)
    assert pool.capacity.wait("a") and pool.capacity.wait("b")
    assert not pool.capacity.wait("c")
    error = queue_full(pool.capacity)
    assert error.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "pool.max_queued_calls" in error.details() and "2 calls wait" in error.details()
    assert not Pool(connections(1), 1, queued=0).capacity.wait("a")


def test_a_waiter_that_gives_up_leaves_the_queue_once() -> None:
    """A waiter whose deadline passed leaves (True); one already handed a slot cannot (False);
    the timeout's error is DEADLINE_EXCEEDED and says why calls waited."""
    [connection] = connections(1)
    pool = Pool([connection], 1)
    _, running = pool.admit()
    pool.capacity.wait("a")
    pool.capacity.wait("b")
    assert pool.capacity.leave("a") and not pool.capacity.leave("a")
    connection.end(running)
    assert [waiter for waiter, _ in pool.capacity.hand_out()] == ["b"]
    assert not pool.capacity.leave("b")
    error = queue_timed_out(pool.capacity, 1.25)
    assert error.code() is grpc.StatusCode.DEADLINE_EXCEEDED
    assert "1.250 s" in error.details() and "pool.max_calls_per_connection is 1" in error.details()


def test_a_stopped_pool_drops_every_waiter() -> None:
    """drop_all empties the queue and returns the waiters in order, for the driver to fail."""
    pool = Pool(connections(1), 1)
    for waiter in "xyz":
        pool.capacity.wait(waiter)
    assert pool.capacity.drop_all() == ["x", "y", "z"]
    assert pool.capacity.queued == 0


def test_a_new_connection_takes_waiting_calls() -> None:
    """Waiters on a full pool get slots on a connection that becomes ready (a new view)."""
    first, second = connections(2)
    pool = Pool([first], 1)
    pool.admit()
    pool.capacity.wait("a")
    pool.view = view_of([first, second])
    assert [(w, c) for w, (c, _) in pool.capacity.hand_out()] == [("a", second)]


# --- counts for pool.autoscale --------------------------------------------------------------


def test_take_peak_reads_the_peak_of_in_flight_plus_queued_since_the_last_read() -> None:
    """Two calls run and two wait (peak 4); after they end the next read says 4 once, then
    what runs now."""
    [connection] = connections(1)
    pool = Pool([connection], 2)
    tickets = [pool.admit()[1] for _ in range(2)]
    pool.capacity.wait("a")
    pool.capacity.wait("b")
    pool.capacity.drop_all()
    for ticket in tickets:
        connection.end(ticket)
    assert pool.capacity.take_peak() == 4
    assert pool.capacity.take_peak() == 0
    assert in_flight(pool.view) == 0


def test_on_wait_is_a_no_op_by_default() -> None:
    """The hook pool.autoscale will set does nothing until set."""
    capacity: Capacity[str] = Capacity(NAME, 1, 1, lambda: view_of([]))
    assert capacity.on_wait() is None


def test_ending_a_call_tells_on_end_but_a_call_that_never_started_does_not() -> None:
    """ReadyConnection.on_end hears each call that ended, not one refused by a retired
    connection (it never held a slot)."""
    [connection] = connections(1)
    heard: list[int] = []
    connection.on_end = lambda: heard.append(1)
    ticket = connection.start()
    assert ticket is not None
    connection.end(ticket)
    connection.ledger.retire()
    assert connection.start() is None
    assert heard == [1]


# --- config ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("max_calls_per_connection", 0),
        ("max_calls_per_connection", True),
        ("max_calls_per_connection", 2.5),
        ("max_calls_per_connection", 2**31),
        ("max_queued_calls", -1),
        ("max_queued_calls", None),
        ("max_queued_calls", 10_000_000),
    ],
)
def test_bad_capacity_keys_are_config_errors_naming_the_key(key: str, value: object) -> None:
    """Out-of-range or mistyped capacity keys raise ConfigError naming pool.<key>."""
    with pytest.raises(ConfigError) as raised:
        Config.new(endpoint={"host": "h", "port": 1, "type": "local"}, pool={key: value})
    assert raised.value.key == f"pool.{key}"


def test_the_capacity_keys_default_to_no_cap_and_a_queue_of_ten_thousand() -> None:
    """Defaults: no cap per connection, at most 10,000 calls waiting."""
    pool = Config.local().pool
    assert (pool.max_calls_per_connection, pool.max_queued_calls) == (None, 10_000)


# --- the rules hold whatever happens --------------------------------------------------------

operations = st.lists(
    st.one_of(
        st.tuples(st.just("call"), st.integers(0, 3)),
        st.tuples(st.just("end"), st.integers(0, 50)),
        st.tuples(st.just("leave"), st.integers(0, 50)),
        st.tuples(st.just("refuse"), st.integers(0, 3)),
    ),
    max_size=80,
)


@settings(max_examples=300, deadline=None)
@given(
    size=st.integers(1, 4),
    cap=st.one_of(st.none(), st.integers(1, 4)),
    bound=st.integers(0, 6),
    steps=operations,
)
def test_caps_fifo_and_the_bound_hold_for_any_sequence(
    size: int, cap: int | None, bound: int, steps: list[tuple[str, int]]
) -> None:
    """Calls arrive, end, give up and are refused in any order, as a driver steps the rules
    (each arrival admitted or queued, hand-outs after each end): no connection ever runs
    more calls than its limit, the queue never exceeds its bound, waiters are handed slots
    in the order they queued, and no call waits while a connection has room."""
    ready = connections(size)
    pool = Pool(ready, cap, queued=bound)
    capacity = pool.capacity
    running: list[tuple[ReadyConnection, int]] = []
    queued: list[int] = []
    handed: list[int] = []
    names = itertools.count()

    def started(slot: tuple[ReadyConnection, int]) -> None:
        connection = slot[0]
        limit = capacity.limit(connection)
        assert limit is None or len(connection.calls) <= limit  # the start kept the limit
        running.append(slot)

    def settle() -> None:
        for waiter, slot in capacity.hand_out():
            handed.append(int(waiter))
            started(slot)

    for kind, number in steps:
        if kind == "call":
            slot = capacity.admit()
            if isinstance(slot, tuple):
                started(slot)
            elif capacity.wait(name := str(next(names))):
                queued.append(int(name))
                settle()
        elif kind == "end" and running:
            connection, ticket = running.pop(number % len(running))
            connection.end(ticket)
            settle()
        elif kind == "leave" and queued:
            waiter = queued[number % len(queued)]
            if capacity.leave(str(waiter)):
                queued.remove(waiter)
        elif kind == "refuse" and running:
            connection, ticket = running.pop(number % len(running))
            capacity.refused(connection, len(connection.calls) - 1)
            connection.end(ticket)
            settle()
        queued = [w for w in queued if w not in handed]
        assert capacity.queued == len(queued) <= bound
        if capacity.queued:
            assert not any(capacity.has_room(c) for c in ready)
    assert handed == sorted(handed)


# --- the drivers' gates ---------------------------------------------------------------------


@pytest.mark.parametrize("gate", [SyncCapacity, AioCapacity])
def test_a_hedge_or_resend_starts_only_where_there_is_room_once_limited(
    gate: type[SyncCapacity] | type[AioCapacity],
) -> None:
    """try_start (hedged attempts, calls sent again) starts anywhere in a pool that is not
    limited; once a refusal limits it, only on a connection below its limit, and the
    connection then tells the gate when its calls end."""
    [connection] = connections(1)
    capacity = gate(NAME, None, 10, lambda: view_of([connection]))
    first = capacity.try_start(connection)
    assert first is not None and connection.on_end is None
    capacity.note_refused(connection, 0)  # limit 1, and the pool is limited
    assert connection.limit == 1 and capacity.limited
    assert connection.on_end is not None
    assert capacity.try_start(connection) is None
    connection.end(first)
    assert capacity.try_start(connection) is not None
