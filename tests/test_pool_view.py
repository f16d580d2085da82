"""Tests for grpcpool.core._view: the immutable PoolView and how the next one
is built from the previous one.

Views only store channels, so plain ``object()`` instances stand in for them.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import Any

import grpc
import pytest

from grpcpool._status import WorkerStatus
from grpcpool.core._view import (
    Lifecycle,
    PoolView,
    build_view,
    connectivity_of,
    empty_view,
    unready_cause,
)
from grpcpool.errors import NotConnectedError, PoolNotFoundError, StrategyError
from grpcpool.strategy import LeastInFlight, PowerOfTwo, Random, RoundRobin, Strategy
from tests.pools import ready_connections

POOL = "view-test"


def record(worker_id: str, state: Any = "ready") -> WorkerStatus:
    """One worker record."""
    return WorkerStatus(worker_id, state, time.time())


def records(count: int) -> tuple[WorkerStatus, ...]:
    """``count`` ready worker records, worker-1 first."""
    return tuple(record(f"worker-{i}") for i in range(1, count + 1))


class CountingStrategy:
    """Round robin that counts how many pickers it built, and over what."""

    def __init__(self) -> None:
        self.built: list[tuple[Any, ...]] = []

    def picker(self, items: tuple[Any, ...]) -> Callable[[], Any]:
        self.built.append(items)
        return RoundRobin().picker(items)


def next_view(
    previous: PoolView,
    channels: tuple[Any, ...],
    *,
    strategy: Strategy | None = None,
    lifecycle: Lifecycle = "running",
    workers: tuple[WorkerStatus, ...] | None = None,
    expected_size: int = 3,
) -> PoolView:
    """build_view with one ready record per channel unless ``workers`` is given."""
    return build_view(
        POOL,
        strategy or RoundRobin(),
        previous,
        connections=ready_connections(channels),
        workers=records(len(channels)) if workers is None else workers,
        expected_size=expected_size,
        lifecycle=lifecycle,
    )


# --- empty views ------------------------------------------------------------------


@pytest.mark.parametrize("lifecycle", ["starting", "running", "restarting", "stopped"])
def test_empty_view_has_nothing_and_raises_not_connected_naming_the_pool(
    lifecycle: Lifecycle,
) -> None:
    """empty_view has no channel and no record, keeps size and lifecycle, and its pick
    raises NotConnectedError (not PoolNotFoundError) naming the pool."""
    view = empty_view(POOL, 3, lifecycle)

    assert (view.channels, view.workers) == ((), ())
    assert (view.expected_size, view.lifecycle) == (3, lifecycle)
    with pytest.raises(NotConnectedError, match=POOL) as caught:
        view.pick()
    assert caught.value.pool_name == POOL
    assert not isinstance(caught.value, PoolNotFoundError)
    assert "no ready channel" in str(caught.value)


# --- only a running pool hands out channels ---------------------------------------


def test_a_running_view_hands_out_its_ready_channels_in_order() -> None:
    """A running view keeps the channels in the order given and picks among them."""
    channels = (object(), object(), object())

    view = next_view(empty_view(POOL, 3, "starting"), channels)

    assert view.channels == channels
    assert view.lifecycle == "running"
    assert [view.pick() for _ in range(6)] == list(channels) * 2


@pytest.mark.parametrize("lifecycle", ["starting", "restarting", "stopped"])
def test_a_view_that_is_not_running_hands_out_nothing_and_says_why(
    lifecycle: Lifecycle,
) -> None:
    """A starting, restarting or stopped view has no channels even when workers report
    ready ones; its pick raises NotConnectedError whose message names the lifecycle."""
    ready = (object(), object())
    running = next_view(empty_view(POOL, 3, "starting"), ready)

    view = next_view(running, ready, lifecycle=lifecycle)

    assert view.channels == ()
    assert view.lifecycle == lifecycle
    assert [w.state for w in view.workers] == ["ready", "ready"]  # the records are kept
    assert view.expected_size == 3
    with pytest.raises(NotConnectedError, match=POOL) as caught:
        view.pick()
    assert lifecycle in str(caught.value)


def test_a_running_view_without_channels_raises_not_connected() -> None:
    """A running pool with nothing ready raises NotConnectedError on pick."""
    view = next_view(empty_view(POOL, 3, "starting"), (), workers=(record("worker-1", "backoff"),))

    assert view.channels == ()
    with pytest.raises(NotConnectedError, match="no ready channel"):
        view.pick()


# --- the picker is kept or rebuilt ------------------------------------------------


def test_picker_is_reused_while_the_channel_set_is_unchanged() -> None:
    """A routine report (same channels, new records) keeps the picker: round robin
    carries on with its turn instead of starting over."""
    strategy = CountingStrategy()
    a, b, c = object(), object(), object()
    first = next_view(empty_view(POOL, 3, "starting"), (a, b, c), strategy=strategy)
    assert [first.pick(), first.pick()] == [a, b]

    routine = next_view(
        first,
        (a, b, c),  # an equal tuple, built afresh as the registry does
        strategy=strategy,
        workers=(record("worker-1"), record("worker-2"), record("worker-3")),
        expected_size=4,
    )

    assert routine.pick is first.pick
    assert routine is not first
    assert routine.expected_size == 4
    assert [routine.pick() for _ in range(4)] == [c, a, b, c]
    assert strategy.built == [(a, b, c)]


def test_picker_is_rebuilt_when_the_channel_set_changes() -> None:
    """A channel leaving or joining gives a new picker over the new tuple, which starts afresh."""
    strategy = CountingStrategy()
    a, b, c = object(), object(), object()
    first = next_view(empty_view(POOL, 3, "starting"), (a, b, c), strategy=strategy)
    first.pick()

    smaller = next_view(first, (a, c), strategy=strategy)
    assert smaller.pick is not first.pick
    assert [smaller.pick() for _ in range(3)] == [a, c, a]

    reordered = next_view(smaller, (c, a), strategy=strategy)
    assert reordered.pick is not smaller.pick
    assert reordered.pick() is c

    assert strategy.built == [(a, b, c), (a, c), (c, a)]


def test_picker_is_rebuilt_when_the_pool_runs_again() -> None:
    """After a view that was not running, the same channels get a fresh picker."""
    strategy = CountingStrategy()
    a, b = object(), object()
    running = next_view(empty_view(POOL, 2, "starting"), (a, b), strategy=strategy)
    restarting = next_view(running, (a, b), strategy=strategy, lifecycle="restarting")

    again = next_view(restarting, (a, b), strategy=strategy)

    assert again.pick is not running.pick
    assert again.pick() is a
    assert strategy.built == [(a, b), (a, b)]


def test_a_single_channel_is_picked_every_time_by_each_built_in_strategy() -> None:
    """With one ready channel every built-in strategy hands out that channel."""
    only = object()
    for strategy in (RoundRobin(), Random(), PowerOfTwo()):
        view = next_view(empty_view(POOL, 1, "starting"), (only,), strategy=strategy)
        assert {id(view.pick()) for _ in range(5)} == {id(only)}


# --- status -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ready", "expected_size", "status"),
    [(3, 3, "healthy"), (4, 3, "healthy"), (2, 3, "degraded"), (1, 3, "degraded"), (0, 3, "down")],
)
def test_status_agrees_with_the_view(ready: int, expected_size: int, status: str) -> None:
    """status() reports the view's pool name, size, ready count and records, and is
    healthy with all expected channels ready, degraded with some, down with none."""
    channels = tuple(object() for _ in range(ready))
    workers = (*records(ready), record(f"worker-{ready + 1}", "backoff"))
    view = next_view(
        empty_view(POOL, expected_size, "starting"),
        channels,
        workers=workers,
        expected_size=expected_size,
    )

    result = view.status(POOL)

    assert result.pool_name == POOL
    assert result.expected_size == expected_size
    assert result.current_size == ready == len(view.channels)
    assert result.status == status
    assert result.workers is view.workers


def test_status_of_an_empty_view_is_down() -> None:
    """A fresh empty view is down with no workers."""
    result = empty_view(POOL, 2, "starting").status(POOL)

    assert (result.current_size, result.expected_size, result.status) == (0, 2, "down")
    assert result.workers == ()


# --- immutability -----------------------------------------------------------------


def test_views_are_frozen() -> None:
    """No field of a view can be reassigned and no attribute added; its sequences are tuples."""
    view = next_view(empty_view(POOL, 2, "starting"), (object(),))

    for name, value in [
        ("channels", ()),
        ("pick", view.pick),
        ("workers", ()),
        ("expected_size", 9),
        ("lifecycle", "stopped"),
    ]:
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(view, name, value)
    with pytest.raises((dataclasses.FrozenInstanceError, AttributeError, TypeError)):
        view.extra = 1  # type: ignore[attr-defined]
    assert isinstance(view.channels, tuple)
    assert isinstance(view.workers, tuple)


def test_views_compare_by_identity() -> None:
    """Two views with equal contents are still two pictures: equality is identity."""
    channels = (object(),)
    first = next_view(empty_view(POOL, 1, "starting"), channels)
    second = next_view(first, channels, workers=first.workers)

    assert first != second
    assert first is not second


# --- why nothing is ready -----------------------------------------------------------

REFUSED = (
    "unavailable: failed to connect to all addresses; last error: UNKNOWN: "
    "ipv4:127.0.0.1:9: Failed to connect to remote host: Connection refused"
)


def failing(worker_id: str, state: Any, error: str | None, since: float) -> WorkerStatus:
    """A worker record that is not ready, with its last error."""
    return WorkerStatus(worker_id, state, since, reconnect_attempt=1, last_error=error)


def test_unready_cause_counts_the_states_and_quotes_the_most_recent_error() -> None:
    """The summary counts the workers by state (ready ones left out) and quotes the
    error of the worker that failed last."""
    workers = (
        failing("worker-1", "backoff", "unavailable: older error", 10.0),
        failing("worker-2", "backoff", REFUSED, 20.0),
        failing("worker-3", "connecting", None, 30.0),
        record("worker-4"),
    )

    summary, last_error = unready_cause(workers)

    assert last_error == REFUSED
    assert summary == f"2 workers backing off, 1 worker connecting; last error: {REFUSED}"


def test_unready_cause_of_nothing_is_nothing() -> None:
    """All ready, or no records: nothing to say."""
    assert unready_cause(()) == (None, None)
    assert unready_cause(records(2)) == (None, None)


def test_unready_cause_shortens_the_error() -> None:
    """A long error text is cut to about 200 characters, keeping its head and tail."""
    long_error = "unavailable: " + "context " * 100 + "Connection refused"

    summary, last_error = unready_cause((failing("worker-1", "backoff", long_error, 1.0),))

    assert last_error is not None and len(last_error) <= 200
    assert last_error.startswith("unavailable: ")
    assert last_error.endswith("Connection refused")
    assert summary == f"1 worker backing off; last error: {last_error}"


def test_a_running_view_without_channels_says_what_its_workers_are_doing() -> None:
    """The NotConnectedError of a running view with failing workers names their states
    and last error, in the message and as last_error; each pick raises a new one."""
    workers = tuple(failing(f"worker-{i}", "backoff", REFUSED, float(i)) for i in (1, 2, 3))
    view = next_view(empty_view(POOL, 3, "starting"), (), workers=workers)

    errors = []
    for _ in range(2):
        with pytest.raises(NotConnectedError) as caught:
            view.pick()
        errors.append(caught.value)

    assert str(errors[0]) == (
        f"pool {POOL!r}: no ready channel (3 workers backing off; last error: {REFUSED})"
    )
    assert errors[0].last_error == REFUSED
    assert errors[0] is not errors[1] and str(errors[0]) == str(errors[1])


def test_a_starting_view_keeps_its_lifecycle_note_before_the_cause() -> None:
    """While the pool starts, the message says so first, then what the workers do."""
    workers = (failing("worker-1", "connecting", None, 1.0),)
    view = next_view(empty_view(POOL, 1, "starting"), (), workers=workers, lifecycle="starting")

    with pytest.raises(NotConnectedError) as caught:
        view.pick()

    assert str(caught.value) == (
        f"pool {POOL!r}: no ready channel (the pool is starting; 1 worker connecting)"
    )
    assert caught.value.last_error is None


def test_a_custom_picker_that_fails_to_build_does_not_fail_the_view() -> None:
    """build_view over a strategy whose picker() raises still publishes a view; its
    pick raises StrategyError (the registry that builds views must not crash)."""

    class Broken:
        def picker(self, items: tuple[Any, ...]) -> Callable[[], Any]:
            raise RuntimeError("broken")

    view = next_view(empty_view(POOL, 2, "starting"), (object(), object()), strategy=Broken())

    assert len(view.channels) == 2
    with pytest.raises(StrategyError, match="Broken"):
        view.pick()


# --- ready connections ---------------------------------------------------------------


def test_a_built_in_strategy_picks_connections_with_a_rotation_of_its_own() -> None:
    """Round robin over the connections (the pool channel) and over the channels
    (get_channel) each go through every item in turn, independently."""
    channels = (object(), object(), object())
    view = next_view(empty_view(POOL, 3, "starting"), channels)

    picked = [view.pick_connection() for _ in range(4)]

    assert [c.channel for c in picked] == [*channels, channels[0]]
    assert [view.pick() for _ in range(3)] == list(channels)
    assert view.connections == ready_connections(channels)


def test_a_custom_picker_sees_channels_and_the_pool_channel_gets_their_connections() -> None:
    """A custom picker(items) strategy is given channels only; the pool channel maps its
    pick to that channel's connection."""
    channels = (object(), object())
    strategy = CountingStrategy()
    view = next_view(empty_view(POOL, 2, "starting"), channels, strategy=strategy)

    assert view.pick_connection() is ready_connections(channels)[0]
    assert view.pick() is channels[1]  # one rotation shared with the pool channel
    assert strategy.built == [channels]


def test_least_in_flight_picks_connections_and_hands_out_their_channels() -> None:
    """A load-routing strategy picks among connections; get_channel gets the picked
    connection's channel, and neither ever picks a busier connection than the rest."""
    channels = (object(), object(), object())
    view = next_view(empty_view(POOL, 3, "starting"), channels, strategy=LeastInFlight())
    busy = view.connections[1]
    busy.calls.add(object())
    try:
        assert {view.pick() for _ in range(200)} == {channels[0], channels[2]}
        assert busy not in {view.pick_connection() for _ in range(200)}
    finally:
        busy.calls.clear()


def test_status_counts_calls_in_flight_per_worker_and_in_total() -> None:
    """status() reads the connections' calls when asked: per worker and summed; with
    nothing in flight the view's own records are returned as they are."""
    channels = (object(), object())
    view = next_view(empty_view(POOL, 2, "starting"), channels, expected_size=2)
    assert view.status(POOL).workers is view.workers
    first, second = view.connections
    first.calls.update({object(), object()})
    second.calls.add(object())
    try:
        status = view.status(POOL)
        assert [worker.in_flight for worker in status.workers] == [2, 1]
        assert status.in_flight == 3
    finally:
        first.calls.clear()
        second.calls.clear()


def test_connectivity_follows_readiness_failures_and_lifecycle() -> None:
    """A pool channel reports READY with a ready connection, TRANSIENT_FAILURE with none
    and a worker backing off, CONNECTING otherwise, IDLE when no pool runs."""
    connectivity = grpc.ChannelConnectivity
    start = empty_view(POOL, 2, "starting")
    backing_off = (record("worker-1", "backoff"), record("worker-2", "connecting"))

    assert connectivity_of(None) is connectivity.IDLE
    assert connectivity_of(empty_view(POOL, 2, "stopped")) is connectivity.IDLE
    assert connectivity_of(start) is connectivity.CONNECTING
    assert connectivity_of(next_view(start, (object(),))) is connectivity.READY
    assert connectivity_of(next_view(start, (), workers=backing_off)) is (
        connectivity.TRANSIENT_FAILURE
    )

