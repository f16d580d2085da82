"""Stopping a pool, and supervision: calls in flight at stop, stopped names, worker crashes."""

from __future__ import annotations

import time

import grpc
import pytest

from grpcpool.errors import NotConnectedError, PoolCallError, PoolNotFoundError
from tests.behaviour.backends import Backends, settled
from tests.behaviour.harness import Driver
from tests.behaviour.signals import Event, Signals
from tests.servers import HOLD

DRAIN = 1.0


def test_stop_with_a_call_in_flight_ends_the_call_cancelled(
    driver: Driver, backends: Backends
) -> None:
    """A call held at the server when its pool stops ends with CANCELLED (a grpc.RpcError),
    no later than the drain period after the stop, and stop returns by then too."""
    backend = backends.one()
    driver.start(backends.config(2, drain_timeout=DRAIN))
    driver.await_ready(min_ready=2)
    held = driver.begin(HOLD, timeout=20)
    driver.wait_status(lambda s: s.in_flight == 1 and backend.calls == 1)
    started = time.monotonic()
    driver.stop()
    with pytest.raises(grpc.RpcError) as raised:
        held.result(timeout=DRAIN + 3)
    assert raised.value.code() is grpc.StatusCode.CANCELLED
    assert time.monotonic() - started < DRAIN + 3


def test_a_call_answering_within_the_drain_after_stop_succeeds(
    driver: Driver, backends: Backends
) -> None:
    """A call in flight when its pool stops, answered 0.2 s after the stop began (or once
    the stop returned, if sooner), well within drain_timeout 2 s, reaches its caller."""
    backend = backends.one()
    driver.start(backends.config(2, drain_timeout=2.0))
    driver.await_ready(min_ready=2)
    held = driver.begin(HOLD, timeout=10)
    driver.wait_status(lambda s: s.in_flight == 1 and backend.calls == 1)
    stopping = driver.other_thread(driver.stop)
    stopping.wait(0.2)
    backend.release_held()
    stopping.result(timeout=5)
    assert held.result(timeout=5) == HOLD


def test_stop_is_idempotent_and_every_use_afterwards_says_not_found(
    driver: Driver, backends: Backends
) -> None:
    """After stop, stopping again is a no-op; get_channel, status, await_ready and
    scaling raise PoolNotFoundError (a NotConnectedError and a LookupError) naming the
    pool; a call through the pool channel raises PoolCallError UNAVAILABLE."""
    backends.one()
    name = driver.start(backends.config(2))
    driver.await_ready(min_ready=2)
    stub = driver.stub()
    driver.stop()
    driver.stop()
    for use in (
        driver.get_channel,
        driver.status,
        lambda: driver.await_ready(timeout=0.5),
        lambda: driver.scale_up(1),
    ):
        with pytest.raises(PoolNotFoundError, match=f"'{name}'") as raised:
            use()
        assert isinstance(raised.value, NotConnectedError)
        assert isinstance(raised.value, LookupError)
    with pytest.raises(PoolCallError) as refused:
        stub.unary()
    assert refused.value.code() is grpc.StatusCode.UNAVAILABLE


def test_a_stopped_pool_says_it_was_shut_down(driver: Driver, backends: Backends) -> None:
    """Asked for after it stopped, a pool's name answers "was shut down" with the reason,
    not "no pool of this name is running"."""
    backends.one()
    name = driver.start(backends.config(1))
    driver.stop()
    with pytest.raises(PoolNotFoundError) as raised:
        driver.get_channel()
    assert f"pool '{name}' was shut down" in str(raised.value)
    assert raised.value.reason is not None


def test_await_ready_under_way_when_the_pool_stops_raises_not_found(
    driver: Driver, backends: Backends
) -> None:
    """A caller waiting in await_ready on a pool that cannot connect hears that the pool
    stopped (PoolNotFoundError) at once, not at the end of its 10 s timeout."""
    backend = backends.one()
    backend.kill()
    driver.start(backends.config(2))
    waiting = driver.begin_await_ready(timeout=10)
    driver.wait_status(lambda s: any(w.reconnect_attempt for w in s.workers))
    started = time.monotonic()
    driver.stop()
    with pytest.raises(PoolNotFoundError):
        waiting.result(timeout=5)
    assert time.monotonic() - started < 3


def test_a_wait_for_ready_call_under_way_when_the_pool_stops_fails_at_once(
    driver: Driver, backends: Backends
) -> None:
    """A wait_for_ready call waiting for a connection when its pool stops fails
    UNAVAILABLE at once rather than waiting out its 10 s timeout."""
    backend = backends.one()
    backend.kill()
    driver.start(backends.config(2))
    waiting = driver.begin(b"never", timeout=10, wait_for_ready=True)
    driver.wait_status(lambda s: any(w.reconnect_attempt for w in s.workers))
    started = time.monotonic()
    driver.stop()
    with pytest.raises(grpc.RpcError) as raised:
        waiting.result(timeout=5)
    assert raised.value.code() is grpc.StatusCode.UNAVAILABLE
    assert time.monotonic() - started < 3


def test_a_stub_kept_across_a_new_pool_of_the_same_name_answers(
    driver: Driver, backends: Backends
) -> None:
    """A stub built on the pool channel, kept while its pool is stopped and a new pool of
    the same name starts, answers through the new pool."""
    backends.one()
    name = driver.start(backends.config(2))
    driver.await_ready(min_ready=2)
    stub = driver.new_stub()
    assert stub.unary(b"old") == b"old"
    driver.stop()
    driver.start(backends.config(2), name)
    driver.await_ready(min_ready=2)
    assert stub.unary(b"new") == b"new"


def test_stopping_one_pool_leaves_another_running(driver: Driver, backends: Backends) -> None:
    """Two pools side by side, each on its own backend: stopping one leaves the other
    serving, on its own backend."""
    first, second = backends.start(2)
    driver.start(backends.config(1, endpoint={"host": first.host}), "first")
    driver.start(backends.config(1, endpoint={"host": second.host}), "second")
    driver.await_ready(name="first")
    driver.await_ready(name="second")
    driver.stop("first")
    assert driver.call(b"still", name="second") == b"still"
    assert (first.calls, second.calls) == (0, 1)
    assert not driver.running("first")


def test_a_crashed_worker_is_restarted_and_the_pool_refills(
    driver: Driver, backends: Backends, signals: Signals
) -> None:
    """A worker that crashes (a bug, not an outage) is restarted with its id:
    supervisor.child_restarted names it, and the pool is back at full size."""
    backends.one()
    driver.start(backends.config(2))
    driver.await_ready(min_ready=2)
    driver.crash_worker("worker-1")
    [(_, measurements, metadata)] = signals.wait("supervisor.child_restarted")
    assert metadata["child_id"] == "worker-1" and measurements["restarts"] == 1
    assert metadata["reason"]
    status = driver.wait_status(lambda s: settled(s, 2))
    assert sorted(w.worker_id for w in status.workers) == ["worker-1", "worker-2"]
    assert driver.call() == b"x"


def test_a_pool_scaled_up_keeps_its_size_through_a_worker_crash(
    driver: Driver, backends: Backends, signals: Signals
) -> None:
    """A worker of a pool scaled from 2 to 3 crashes: the pool comes back at 3, the size
    it had, not at pool.size."""
    backends.one()
    driver.start(backends.config(2))
    assert driver.scale_up(1) == 3
    driver.await_ready(min_ready=3)
    driver.crash_worker("worker-3")
    signals.wait("supervisor.child_restarted")
    status = driver.wait_status(lambda s: settled(s, 3))
    assert status.expected_size == 3


def test_worker_crashes_past_the_restart_intensity_end_the_pool(
    driver: Driver, backends: Backends, signals: Signals
) -> None:
    """Workers crashing again and again (more than 3 + workers restarts within 5 s)
    end the pool: supervisor.shutdown fires, the name no longer answers, and the
    pool's last error says the supervisor gave up."""
    backends.one()
    name = driver.start(backends.config(1))
    driver.await_ready()
    deadline = time.monotonic() + 10
    while driver.running(name):
        assert time.monotonic() < deadline, "the pool never gave up"
        restarts = len(signals.of("supervisor.child_restarted"))
        try:
            driver.crash_worker("worker-1", name)
        except (LookupError, PoolNotFoundError):
            pass  # between its crash and its restart, or the pool has just ended
        else:

            def restarted_or_ended(found: list[Event], seen: int = restarts) -> bool:
                return len(found) > seen or bool(signals.of("supervisor.shutdown"))

            signals.wait("supervisor.child_restarted", restarted_or_ended)
    shutdown = signals.wait("supervisor.shutdown")
    [(_, measurements, metadata)] = [
        event for event in shutdown if event[2]["supervisor"] == f"pool:{name}"
    ]
    assert measurements["restarts"] > 3 + 1
    assert "TypeError" in metadata["reason"]  # the last crash: a message a worker cannot take
    with pytest.raises(PoolNotFoundError):
        driver.status(name)
