"""``status()``: the fields of a healthy and of a down pool, and ``await_ready``'s checks."""

from __future__ import annotations

import time

import pytest

from grpcpool.errors import PoolSizeError, PoolTimeoutError
from tests.behaviour.backends import Backends
from tests.behaviour.harness import Driver


def test_status_of_a_healthy_pool_lists_each_worker(driver: Driver, backends: Backends) -> None:
    """A ready pool of 3: name, sizes, "healthy", one record per worker (worker-1..3,
    ready since a moment ago, no error, connected to the backend), nothing in flight and
    no resolver error."""
    backend = backends.one()
    before = time.time()
    name = driver.start(backends.config(3), "looked-at")
    driver.await_ready(min_ready=3)
    status = driver.status()
    assert (status.pool_name, status.expected_size, status.current_size) == (name, 3, 3)
    assert (status.status, status.in_flight, status.resolver_error) == ("healthy", 0, None)
    assert sorted(w.worker_id for w in status.workers) == ["worker-1", "worker-2", "worker-3"]
    for worker in status.workers:
        assert (worker.state, worker.reconnect_attempt, worker.last_error) == ("ready", 0, None)
        assert worker.peer == worker.address == backend.address
        assert before - 1 <= worker.since <= time.time() + 1
        assert worker.in_flight == 0


def test_status_of_a_pool_that_cannot_connect_says_why(driver: Driver, backends: Backends) -> None:
    """With nothing listening: "down", no ready channel, and every worker connecting or
    backing off with a count of failed attempts and the last error."""
    backend = backends.one()
    backend.kill()
    driver.start(backends.config(2))
    status = driver.wait_status(lambda s: all(w.reconnect_attempt >= 1 for w in s.workers))
    assert (status.status, status.current_size, status.expected_size) == ("down", 0, 2)
    for worker in status.workers:
        assert worker.state in ("connecting", "backoff")
        assert worker.last_error and worker.peer is None


def test_await_ready_returns_once_enough_connections_are_ready(
    driver: Driver, backends: Backends
) -> None:
    """await_ready(min_ready=size) returns with every connection ready; asked again it
    returns at once."""
    backends.one()
    driver.start(backends.config(3))
    driver.await_ready(timeout=5, min_ready=3)
    assert driver.status().current_size == 3
    started = time.monotonic()
    driver.await_ready(timeout=5, min_ready=3)
    assert time.monotonic() - started < 1


def test_await_ready_times_out_saying_what_the_workers_do(
    driver: Driver, backends: Backends
) -> None:
    """Not ready in time: PoolTimeoutError, a TimeoutError, after about its timeout,
    naming the pool, with the workers' last error in .last_error."""
    backend = backends.one()
    backend.kill()
    name = driver.start(backends.config(2), "late")
    driver.wait_status(lambda s: any(w.last_error for w in s.workers))
    started = time.monotonic()
    with pytest.raises(PoolTimeoutError) as raised:
        driver.await_ready(timeout=0.3)
    assert 0.25 <= time.monotonic() - started < 3
    assert isinstance(raised.value, TimeoutError)
    assert f"'{name}'" in str(raised.value)
    assert raised.value.last_error


def test_await_ready_min_ready_out_of_range_fails_at_once(
    driver: Driver, backends: Backends
) -> None:
    """min_ready over the pool's size, or below 1, is a PoolSizeError (a ValueError)
    raised at once, not a wait that could only time out."""
    backends.one()
    driver.start(backends.config(2))
    for min_ready in (3, 0, -1):
        started = time.monotonic()
        with pytest.raises(PoolSizeError) as raised:
            driver.await_ready(timeout=5, min_ready=min_ready)
        assert isinstance(raised.value, ValueError)
        assert time.monotonic() - started < 1, min_ready


def test_await_ready_counts_a_scaled_up_pool_s_new_size(driver: Driver, backends: Backends) -> None:
    """After scale_up(2) on a pool of 2, min_ready=4 is a valid wait that returns once
    the new connections are ready."""
    backends.one()
    driver.start(backends.config(2))
    driver.await_ready(min_ready=2)
    driver.scale_up(2)
    driver.await_ready(min_ready=4)
    assert driver.status().current_size == 4


def test_await_ready_refuses_a_timeout_that_is_not_a_finite_number(
    driver: Driver, backends: Backends
) -> None:
    """A timeout that is negative, NaN, a bool or not a number is refused with ValueError
    saying what a timeout must be, even on a ready pool."""
    backends.one()
    driver.start(backends.config(1))
    driver.await_ready()
    for timeout in (-1, float("nan"), True, "5"):
        with pytest.raises(ValueError, match="timeout"):
            driver.await_ready(timeout=timeout)  # type: ignore[arg-type]


def test_await_ready_refuses_a_min_ready_that_is_not_an_int_with_type_error(
    driver: Driver, backends: Backends
) -> None:
    """min_ready of 1.5, "2" or True is a TypeError, as for the scaling counts."""
    backends.one()
    driver.start(backends.config(1))
    driver.await_ready()
    for min_ready in (1.5, "2", True):
        with pytest.raises(TypeError, match="min_ready"):
            driver.await_ready(timeout=1, min_ready=min_ready)  # type: ignore[arg-type]
