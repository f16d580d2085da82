"""Tests for grpcpool.core._scaling: what scale_up, scale_down and resize mean for a pool.

Pure logic: the pool's size and workers in, the counts, ids and signals out.
The sync PoolSupervisor (tests/test_pool_supervisor.py, tests/test_pool_sizes.py)
and the asyncio pool (tests/test_aio.py) run these decisions against real
servers.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from grpcpool import telemetry
from grpcpool.connection._machine_types import Emit
from grpcpool.core._scaling import (
    is_worker,
    resize_by,
    scale_up_by,
    scaled_down,
    scaled_up,
    thinnest_address,
    worker_id,
    workers_to_stop,
)
from grpcpool.errors import PoolSizeError

NAME = "scaling"
WORKERS = ["worker-1", "worker-2", "worker-4", "worker-7"]


def test_worker_ids_are_numbered_and_recognised() -> None:
    """A worker's id is "worker-" and its number; other parts of a pool are not workers."""
    assert worker_id(3) == "worker-3"
    assert is_worker("worker-3")
    assert not any(is_worker(part) for part in ("registry", "telemetry", "balancer"))


def test_scale_up_takes_a_positive_count_within_max_size() -> None:
    """scale_up's count is an int of at least 1 that keeps the pool within pool.max_size."""
    assert scale_up_by(NAME, 2, 3, 5) == 3

    with pytest.raises(PoolSizeError, match=r"scaling 2 up by 4 is over pool.max_size \(5\)"):
        scale_up_by(NAME, 2, 4, 5)
    with pytest.raises(PoolSizeError, match="count must be >= 1, got 0"):
        scale_up_by(NAME, 2, 0, 5)
    for bad in (True, "2", 1.0, None):
        with pytest.raises(TypeError, match="count must be an int, got"):
            scale_up_by(NAME, 2, bad, 5)


def test_scale_down_stops_the_newest_workers_newest_first() -> None:
    """scale_down stops the ``count`` newest workers, the newest first, and never the last."""
    assert workers_to_stop(NAME, 4, WORKERS, 1) == ["worker-7"]
    assert workers_to_stop(NAME, 4, WORKERS, 3) == ["worker-7", "worker-4", "worker-2"]

    with pytest.raises(PoolSizeError, match=r"scaling 4 down by 4 would leave no worker"):
        workers_to_stop(NAME, 4, WORKERS, 4)
    with pytest.raises(PoolSizeError, match="count must be >= 1, got -1"):
        workers_to_stop(NAME, 4, WORKERS, -1)
    with pytest.raises(TypeError, match="count must be an int, got bool"):
        workers_to_stop(NAME, 4, WORKERS, True)


def test_resize_is_a_scale_up_a_scale_down_or_nothing() -> None:
    """resize says how many workers to add (above 0) or stop (below 0); the same size is 0."""
    assert [resize_by(NAME, 3, target, 5) for target in (5, 3, 1)] == [2, 0, -2]

    with pytest.raises(PoolSizeError, match=r"resizing to 6 is over pool.max_size \(5\)"):
        resize_by(NAME, 3, 6, 5)
    with pytest.raises(PoolSizeError, match="target must be >= 1, got 0"):
        resize_by(NAME, 3, 0, 5)
    with pytest.raises(TypeError, match="target must be an int, got float"):
        resize_by(NAME, 3, 2.0, 5)


def test_a_new_worker_goes_where_the_fewest_are() -> None:
    """The thinnest address, the first one seen on a tie; unpinned workers do not count;
    None when no worker is pinned."""
    assert thinnest_address(["a", "b", "a", None, "b", "c", "c", "c"]) == "a"
    assert thinnest_address(["b", "a", "a"]) == "b"
    assert thinnest_address([None, None]) is None
    assert thinnest_address([]) is None


def test_the_signals_carry_the_counts_and_the_new_size() -> None:
    """pool.scale_up and pool.scale_down with their measurements in the order they always had;
    the driver adds the pool's name."""
    assert scaled_up(3, 2, 0.5, 4) == Emit(
        telemetry.pool_scale_up.name,
        {"duration": 0.5, "requested": 3, "succeeded": 2, "failed": 1, "new_size": 4},
        {},
    )
    down = scaled_down(2, 0.25, 3)
    assert down == Emit(
        telemetry.pool_scale_down.name,
        {"duration": 0.25, "requested": 2, "terminated": 2, "new_size": 3},
        {},
    )
    assert list(down.measurements) == ["duration", "requested", "terminated", "new_size"]


@settings(max_examples=300, deadline=None)
@given(size=st.integers(1, 20), count=st.integers(-3, 25), limit=st.integers(1, 20))
def test_scaling_never_leaves_the_pool_empty_or_over_its_limit(
    size: int, count: int, limit: int
) -> None:
    """Any count: a scale-down that is allowed stops exactly that many of the newest and
    leaves at least one; a scale-up or resize that is allowed ends within 1..max_size;
    anything else is a PoolSizeError (a ValueError) before anything changes."""
    workers = [worker_id(number) for number in range(1, size + 1)]
    try:
        stopping = workers_to_stop(NAME, size, workers, count)
    except PoolSizeError:
        assert count < 1 or size - count < 1
    else:
        assert stopping == workers[::-1][:count]
        assert size - len(stopping) >= 1
    try:
        added = scale_up_by(NAME, size, count, limit)
    except PoolSizeError:
        assert count < 1 or size + count > limit
    else:
        assert added == count and 1 <= size + added <= limit
    try:
        change = resize_by(NAME, size, count, limit)
    except PoolSizeError:
        assert count < 1 or count > limit
    else:
        assert 1 <= size + change == count <= limit
