"""A backend killed and restarted, or down from the start: what callers see, and healing."""

from __future__ import annotations

import logging
import time

import grpc
import pytest

from grpcpool.connection import DISCONNECT_REASONS
from grpcpool.errors import NotConnectedError, PoolCallError, PoolTimeoutError
from tests.behaviour.backends import Backends
from tests.behaviour.harness import Driver
from tests.behaviour.signals import Signals


def test_a_killed_backend_empties_the_pool_and_calls_fail_as_grpc_calls(
    driver: Driver, backends: Backends
) -> None:
    """Once the only backend is killed no connection stays ready: get_channel raises
    NotConnectedError naming the pool, and a call through the pool channel raises
    PoolCallError, a grpc.RpcError with code UNAVAILABLE that is a NotConnectedError too."""
    backend = backends.one()
    name = driver.start(backends.config(2), "killed")
    driver.await_ready(min_ready=2)
    backend.kill()
    driver.wait_status(lambda s: s.current_size == 0, timeout=2)
    with pytest.raises(NotConnectedError, match=f"'{name}'"):
        driver.get_channel()
    with pytest.raises(PoolCallError) as raised:
        driver.call()
    assert isinstance(raised.value, grpc.RpcError)
    assert isinstance(raised.value, NotConnectedError)
    assert raised.value.code() is grpc.StatusCode.UNAVAILABLE
    assert name in (raised.value.details() or "")


def test_a_restarted_backend_heals_the_pool_and_a_kept_stub_answers_again(
    driver: Driver, backends: Backends
) -> None:
    """After the backend comes back on its port every worker is ready again within the
    backoff, and a stub built on the pool channel before the kill answers."""
    backend = backends.one()
    driver.start(backends.config(3))
    driver.await_ready(min_ready=3)
    stub = driver.stub()
    assert stub.unary(b"before") == b"before"
    backend.kill()
    driver.wait_status(lambda s: s.current_size == 0, timeout=2)
    backend.restart()
    driver.await_ready(timeout=5, min_ready=3)
    assert stub.unary(b"after") == b"after"
    assert driver.status().status == "healthy"


def test_a_kill_is_reported_per_worker_with_a_documented_reason(
    driver: Driver, backends: Backends, signals: Signals
) -> None:
    """Every worker of a killed backend fires connection_down, disconnected and
    reconnect_scheduled, each with a reason of DISCONNECT_REASONS."""
    backend = backends.one()
    name = driver.start(backends.config(2))
    driver.await_ready(min_ready=2)
    backend.kill()
    for event in ("connection_down", "disconnected"):
        events = signals.wait(
            f"channel.{event}",
            lambda found: {m["worker_id"] for _, _, m in found} == {"worker-1", "worker-2"},
            sender=name,
        )
        assert {m["reason"] for _, _, m in events} <= set(DISCONNECT_REASONS), event
    scheduled = signals.wait(
        "channel.reconnect_scheduled",
        lambda found: {m["worker_id"] for _, _, m in found} == {"worker-1", "worker-2"},
        sender=name,
    )
    assert all(m["delay_ms"] >= 0 and m["attempt"] >= 1 for _, m, _ in scheduled)


def test_a_pool_started_while_its_backend_is_down_says_why_and_retries_at_its_pace(
    driver: Driver, backends: Backends, signals: Signals
) -> None:
    """With nothing listening yet: get_channel raises NotConnectedError, await_ready raises
    PoolTimeoutError (a TimeoutError) naming the last error, connection_failed events
    carry the error, and the pool keeps retrying at the backoff pace, not in a busy loop."""
    backend = backends.one()
    backend.kill()
    name = driver.start(backends.config(2, backoff_min=0.1, backoff_max=0.2))
    with pytest.raises(NotConnectedError):
        driver.get_channel()
    with pytest.raises(PoolTimeoutError) as raised:
        driver.await_ready(timeout=0.3)
    assert isinstance(raised.value, TimeoutError)
    assert name in str(raised.value)
    failed = signals.wait("channel.connection_failed", lambda f: len(f) >= 4, sender=name)
    assert all(metadata["error"] for _, _, metadata in failed)
    started = time.monotonic()
    count = len(signals.of("channel.connection_failed", name))
    signals.wait("channel.connection_failed", lambda f: len(f) >= count + 4, sender=name)
    # Two workers retrying every 0.1-0.2 s make 4 more attempts in no less than ~0.1 s.
    assert time.monotonic() - started >= 0.09
    assert all(worker.last_error for worker in driver.status().workers)


def test_a_backend_that_comes_up_late_makes_the_pool_ready(
    driver: Driver, backends: Backends
) -> None:
    """A pool started before its backend listens becomes ready once it does, and
    await_ready is woken by that, well before its timeout."""
    backend = backends.one()
    backend.kill()
    driver.start(backends.config(2))
    waiting = driver.begin_await_ready(timeout=10, min_ready=2)
    driver.wait_status(lambda s: any(w.reconnect_attempt >= 1 for w in s.workers))
    started = time.monotonic()
    backend.restart()
    waiting.result(timeout=10)
    assert time.monotonic() - started < 5
    assert driver.call() == b"x"


def test_a_wait_for_ready_call_made_while_down_answers_after_the_restart(
    driver: Driver, backends: Backends
) -> None:
    """A call with wait_for_ready=True made while no connection is ready waits, and
    answers once the backend is back."""
    backend = backends.one()
    driver.start(backends.config(2))
    driver.await_ready(min_ready=2)
    backend.kill()
    driver.wait_status(lambda s: s.current_size == 0, timeout=2)
    waiting = driver.begin(b"later", timeout=10, wait_for_ready=True)
    backend.restart()
    assert waiting.result(timeout=10) == b"later"


def test_wait_for_ready_with_nothing_ready_waits_out_its_timeout(
    driver: Driver, backends: Backends
) -> None:
    """With nothing listening, a wait_for_ready call waits up to its timeout, then fails
    DEADLINE_EXCEEDED; without wait_for_ready the call fails at once, UNAVAILABLE."""
    backend = backends.one()
    backend.kill()
    driver.start(backends.config(2))
    started = time.monotonic()
    with pytest.raises(grpc.RpcError) as raised:
        driver.call(timeout=0.3, wait_for_ready=True)
    waited = time.monotonic() - started
    assert raised.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
    assert 0.25 <= waited < 3.0, waited
    started = time.monotonic()
    with pytest.raises(grpc.RpcError) as raised:
        driver.call(timeout=5)
    assert raised.value.code() is grpc.StatusCode.UNAVAILABLE
    assert time.monotonic() - started < 1.0


def test_an_outage_past_max_reconnect_attempts_does_not_end_the_pool(
    driver: Driver, backends: Backends, signals: Signals
) -> None:
    """A backend down for more failed connects than max_reconnect_attempts: the pool keeps
    its name, size and workers (no worker restarted, nothing escalated) and heals when
    the backend returns."""
    backend = backends.one()
    name = driver.start(backends.config(2, max_reconnect_attempts=1, backoff_max=0.1))
    driver.await_ready(min_ready=2)
    backend.kill()
    driver.wait_status(lambda s: all(w.reconnect_attempt >= 3 for w in s.workers), timeout=10)
    status = driver.status()
    assert (status.expected_size, len(status.workers), status.status) == (2, 2, "down")
    backend.restart()
    driver.await_ready(min_ready=2)
    assert signals.of("supervisor.child_restarted", name) == []
    assert signals.of("supervisor.shutdown") == []


def connection_logs(records: list[logging.LogRecord]) -> list[tuple[str, str]]:
    """(level, message) of each grpcpool log record at INFO or above."""
    return [
        (record.levelname, record.getMessage())
        for record in records
        if record.name.startswith("grpcpool") and record.levelno >= logging.INFO
    ]


def test_an_outage_logs_one_error_one_warning_and_one_line_when_back(
    driver: Driver, backends: Backends, caplog: pytest.LogCaptureFixture
) -> None:
    """A connection that goes down logs one ERROR; failed reconnects past
    max_reconnect_attempts log one WARNING (not one per attempt); being back logs INFO."""
    caplog.set_level(logging.DEBUG, logger="grpcpool")
    backend = backends.one()
    driver.start(backends.config(1, max_reconnect_attempts=2, backoff_max=0.1))
    driver.await_ready()
    backend.kill()
    driver.wait_status(lambda s: all(w.reconnect_attempt >= 5 for w in s.workers), timeout=10)
    backend.restart()
    driver.await_ready()
    driver.wait_until(lambda: any(r.levelno == logging.INFO for r in caplog.records))
    levels = [level for level, _ in connection_logs(caplog.records)]
    assert levels == ["ERROR", "WARNING", "INFO"], connection_logs(caplog.records)
    assert "max_reconnect_attempts" in connection_logs(caplog.records)[1][1]


def test_suppressed_connection_errors_are_logged_at_debug(
    driver: Driver, backends: Backends, caplog: pytest.LogCaptureFixture
) -> None:
    """connection.suppress_connection_errors=True: an outage logs nothing at WARNING or
    above, the trouble is still there at DEBUG."""
    caplog.set_level(logging.DEBUG, logger="grpcpool")
    backend = backends.one()
    driver.start(
        backends.config(
            1, suppress_connection_errors=True, max_reconnect_attempts=2, backoff_max=0.1
        )
    )
    driver.await_ready()
    backend.kill()
    driver.wait_status(lambda s: all(w.reconnect_attempt >= 4 for w in s.workers), timeout=10)
    loud = [level for level, _ in connection_logs(caplog.records) if level != "INFO"]
    assert loud == []
    assert any(
        r.name.startswith("grpcpool") and r.levelno == logging.DEBUG and "down" in r.getMessage()
        for r in caplog.records
    )
