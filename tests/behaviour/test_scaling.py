"""Scaling: scale_up, scale_down and resize, their answers, their events and bad counts."""

from __future__ import annotations

from typing import Any

import grpc
import pytest

from grpcpool.errors import PoolSizeError
from tests.behaviour.backends import Backends, settled
from tests.behaviour.harness import Driver
from tests.behaviour.signals import Signals
from tests.servers import HOLD


def test_scale_up_adds_workers_that_connect(
    driver: Driver, backends: Backends, signals: Signals
) -> None:
    """scale_up(3) on a pool of 2 returns 5; five distinct connections become ready; the
    pool.scale_up event says what was asked and done."""
    backend = backends.one()
    name = driver.start(backends.config(2))
    driver.await_ready(min_ready=2)
    assert driver.scale_up(3) == 5
    driver.await_ready(min_ready=5)
    status = driver.status()
    assert (status.expected_size, status.current_size, status.status) == (5, 5, "healthy")
    for _ in range(10):
        driver.call()
    assert len(set(backend.peers)) == 5
    [(_, measurements, metadata)] = signals.wait("pool.scale_up", sender=name)
    assert {k: measurements[k] for k in ("requested", "succeeded", "failed", "new_size")} == {
        "requested": 3,
        "succeeded": 3,
        "failed": 0,
        "new_size": 5,
    }
    assert measurements["duration"] >= 0 and metadata == {"pool_name": name}


def test_scale_down_removes_the_newest_workers(
    driver: Driver, backends: Backends, signals: Signals
) -> None:
    """scale_down(2) on a pool of 4 returns 2, leaves worker-1 and worker-2, and the
    pool.scale_down event reports 2 terminated."""
    backends.one()
    name = driver.start(backends.config(4))
    driver.await_ready(min_ready=4)
    assert driver.scale_down(2) == 2
    status = driver.wait_status(lambda s: settled(s, 2))
    assert [w.worker_id for w in status.workers] == ["worker-1", "worker-2"]
    [(_, measurements, metadata)] = signals.wait("pool.scale_down", sender=name)
    assert (measurements["requested"], measurements["terminated"]) == (2, 2)
    assert measurements["new_size"] == 2 and metadata == {"pool_name": name}


def test_resize_goes_both_ways_and_the_same_size_is_a_no_op(
    driver: Driver, backends: Backends
) -> None:
    """resize(4) grows a pool of 2, resize(4) again changes nothing, resize(1) shrinks it
    to one ready worker that still answers."""
    backends.one()
    driver.start(backends.config(2))
    driver.await_ready(min_ready=2)
    assert driver.resize(4) == 4
    driver.await_ready(min_ready=4)
    workers = [w.worker_id for w in driver.status().workers]
    assert driver.resize(4) == 4
    assert [w.worker_id for w in driver.status().workers] == workers
    assert driver.resize(1) == 1
    status = driver.wait_status(lambda s: settled(s, 1))
    assert status.expected_size == 1
    assert driver.call() == b"x"


BAD_COUNTS: list[tuple[str, Any, type[Exception]]] = [
    ("scale_up", 0, PoolSizeError),
    ("scale_up", -1, PoolSizeError),
    ("scale_up", 4, PoolSizeError),  # 2 + 4 is over max_size 5
    ("scale_down", 2, PoolSizeError),  # would leave no worker
    ("scale_down", 0, PoolSizeError),
    ("resize", 0, PoolSizeError),
    ("resize", 6, PoolSizeError),
    ("scale_up", True, TypeError),
    ("scale_up", "2", TypeError),
    ("scale_down", 1.0, TypeError),
    ("resize", 2.0, TypeError),
    ("resize", None, TypeError),
]


def test_bad_counts_raise_a_clear_error_and_change_nothing(
    driver: Driver, backends: Backends
) -> None:
    """Counts below 1, over pool.max_size or leaving no worker raise PoolSizeError (a
    ValueError naming the pool); non-int counts raise TypeError; each leaves the expected
    size and the workers as they were."""
    backends.one()
    name = driver.start(backends.config(2, pool={"max_size": 5}))
    driver.await_ready(min_ready=2)
    for method, count, error in BAD_COUNTS:
        with pytest.raises(error) as raised:
            getattr(driver, method)(count)
        if isinstance(raised.value, PoolSizeError):
            assert isinstance(raised.value, ValueError)
            assert raised.value.pool_name == name and name in str(raised.value)
        status = driver.status()
        assert (status.expected_size, len(status.workers)) == (2, 2), (method, count)


def test_calls_on_a_scaled_down_connection_finish_within_the_drain(
    driver: Driver, backends: Backends
) -> None:
    """Held calls on both connections of a pool of 2; scale_down(1) retires one of them,
    and its call still answers once released (drain_timeout 5 s)."""
    backend = backends.one()
    driver.start(backends.config(2, drain_timeout=5.0))
    driver.await_ready(min_ready=2)
    held = [driver.begin(HOLD), driver.begin(HOLD)]
    driver.wait_status(lambda s: [w.in_flight for w in s.workers] == [1, 1])
    assert driver.scale_down(1) == 1
    driver.wait_status(lambda s: len(s.workers) == 1)
    backend.release_held()
    assert [call.result(timeout=5) for call in held] == [HOLD, HOLD]


def test_a_pool_scaled_while_its_backend_is_down_comes_back_at_its_new_size(
    driver: Driver, backends: Backends
) -> None:
    """Scaled up from 2 to 4 while nothing listens, the pool keeps its 4 workers backing
    off, and once the backend is back all 4 become ready."""
    backend = backends.one()
    driver.start(backends.config(2))
    driver.await_ready(min_ready=2)
    backend.kill()
    driver.wait_status(lambda s: s.current_size == 0, timeout=2)
    assert driver.scale_up(2) == 4
    status = driver.wait_status(lambda s: len(s.workers) == 4)
    assert (status.expected_size, status.status) == (4, "down")
    backend.restart()
    driver.await_ready(min_ready=4)
    assert driver.status().status == "healthy"


def test_scaling_up_while_a_backend_is_not_serving_leaves_the_pool_degraded(
    driver: Driver, backends: Backends
) -> None:
    """Without pings, a ready connection stays while its backend turns NOT_SERVING, but a
    new one is health-gated: after scale_up(1) the pool is "degraded", 1 of 2 ready,
    until the backend serves again."""
    backend = backends.one()
    driver.start(backends.config(1, ping_interval=None))
    driver.await_ready(min_ready=1)
    backend.set_serving(False)
    assert driver.scale_up(1) == 2
    status = driver.wait_status(lambda s: any(w.last_error for w in s.workers), timeout=5)
    assert (status.status, status.current_size, status.expected_size) == ("degraded", 1, 2)
    backend.set_serving(True)
    driver.await_ready(min_ready=2)
    assert driver.status().status == "healthy"


def test_a_call_outliving_its_connection_s_drain_is_cut_cancelled(
    driver: Driver, backends: Backends
) -> None:
    """Held calls on both connections; scale_down(1) retires one, and drain_timeout
    (0.3 s) later the call still running there fails CANCELLED (a grpc.RpcError), while
    the call on the connection kept answers once released."""
    backend = backends.one()
    driver.start(backends.config(2, drain_timeout=0.3))
    driver.await_ready(min_ready=2)
    held = [driver.begin(HOLD), driver.begin(HOLD)]
    driver.wait_status(lambda s: s.in_flight == 2 and backend.calls == 2)
    assert driver.scale_down(1) == 1
    driver.wait_until(lambda: any(call.done() for call in held), timeout=5)
    [cut] = [call for call in held if call.done()]
    [kept] = [call for call in held if call is not cut]
    with pytest.raises(grpc.RpcError) as raised:
        cut.result(timeout=1)
    assert raised.value.code() is grpc.StatusCode.CANCELLED
    backend.release_held()
    assert kept.result(timeout=5) == HOLD


def test_resize_reports_what_it_changed_and_nothing_for_the_same_size(
    driver: Driver, backends: Backends, signals: Signals
) -> None:
    """resize to a bigger size is reported as pool.scale_up of the difference, to a
    smaller one as pool.scale_down, and to the same size not at all."""
    backends.one()
    name = driver.start(backends.config(2))
    driver.await_ready(min_ready=2)
    assert driver.resize(2) == 2
    assert driver.resize(5) == 5
    assert driver.resize(3) == 3
    ups = signals.measurements("pool.scale_up", name)
    downs = signals.measurements("pool.scale_down", name)
    assert [(m["requested"], m["new_size"]) for m in ups] == [(3, 5)]
    assert [(m["requested"], m["terminated"], m["new_size"]) for m in downs] == [(2, 2, 3)]
