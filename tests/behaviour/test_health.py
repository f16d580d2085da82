"""Health: the gRPC health service gates and pings connections; passive checks after UNAVAILABLE."""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

import grpc
import pytest

from grpcpool._config_timings import SUSPECT_CHECK_INTERVAL
from grpcpool.errors import NotConnectedError
from tests.behaviour.backends import Answer, Backends, settled, spread
from tests.behaviour.harness import Driver
from tests.behaviour.signals import Signals
from tests.faultproxy import FaultProxy
from tests.servers import UNAVAILABLE, EchoServer


def test_not_serving_takes_connections_out_and_serving_brings_them_back(
    driver: Driver, backends: Backends, signals: Signals
) -> None:
    """Health NOT_SERVING takes every connection out at the next ping (disconnected with
    reason ping_failed); get_channel raises; SERVING brings them all back."""
    backend = backends.one()
    name = driver.start(backends.config(2, ping_interval=0.1))
    driver.await_ready(min_ready=2)
    backend.set_serving(False)
    driver.wait_status(lambda s: s.current_size == 0, timeout=3)
    with pytest.raises(NotConnectedError):
        driver.get_channel()
    down = signals.wait("channel.disconnected", lambda found: len(found) >= 2, sender=name)
    assert {m["reason"] for _, _, m in down} == {"ping_failed"}
    backend.set_serving(True)
    driver.await_ready(min_ready=2)
    assert driver.call() == b"x"


def test_pings_report_ok_while_the_backend_serves(
    driver: Driver, backends: Backends, signals: Signals
) -> None:
    """Each health ping fires channel.ping with its duration and result "ok"."""
    backends.one()
    name = driver.start(backends.config(2, ping_interval=0.05))
    driver.await_ready(min_ready=2)
    pings = signals.wait("channel.ping", lambda found: len(found) >= 4, sender=name)
    assert {m["result"] for _, _, m in pings} == {"ok"}
    assert all(measurements["duration"] >= 0 for _, measurements, _ in pings)
    assert {m["worker_id"] for _, _, m in pings} == {"worker-1", "worker-2"}


def test_a_server_without_the_health_service_counts_as_healthy(
    driver: Driver, backends: Backends, signals: Signals
) -> None:
    """A server that does not implement grpc.health.v1.Health (UNIMPLEMENTED) is
    healthy: the pool becomes ready and its pings stay "ok"."""
    backend = backends.one()
    backend.kill()
    plain = EchoServer(backend.port, host=backend.host, with_health=False)
    try:
        name = driver.start(backends.config(2, ping_interval=0.05))
        driver.await_ready(min_ready=2)
        pings = signals.wait("channel.ping", lambda found: len(found) >= 4, sender=name)
        assert {m["result"] for _, _, m in pings} == {"ok"}
        assert driver.status().current_size == 2
    finally:
        driver.stop()
        plain.stop()


def test_a_not_serving_backend_is_never_put_into_rotation(
    driver: Driver, backends: Backends
) -> None:
    """The first health check is part of connecting: a pool started on a NOT_SERVING
    backend has nothing ready (and calls fail UNAVAILABLE) until it serves."""
    backend = backends.one()
    backend.set_serving(False)
    driver.start(backends.config(2, ping_interval=0.1))
    driver.wait_status(lambda s: any(w.last_error for w in s.workers), timeout=5)
    assert driver.status().current_size == 0
    with pytest.raises(grpc.RpcError) as raised:
        driver.call()
    assert raised.value.code() is grpc.StatusCode.UNAVAILABLE
    backend.set_serving(True)
    driver.await_ready(min_ready=2)


def test_the_health_service_name_is_the_one_checked(
    driver: Driver, backends: Backends, signals: Signals
) -> None:
    """With connection.health_service set, that service's status counts: NOT_SERVING for
    another service changes nothing, NOT_SERVING for it takes the connections out."""
    backend = backends.one()
    backend.set_serving(True, "echo")
    name = driver.start(backends.config(2, ping_interval=0.05, health_service="echo"))
    driver.await_ready(min_ready=2)
    backend.set_serving(False, "other")
    backend.set_serving(False, "")
    seen = len(signals.of("channel.ping", name))
    pings = signals.wait("channel.ping", lambda found: len(found) >= seen + 4, sender=name)
    assert {m["result"] for _, _, m in pings[seen:]} == {"ok"}
    assert driver.status().current_size == 2
    backend.set_serving(False, "echo")
    driver.wait_status(lambda s: s.current_size == 0, timeout=3)


def test_with_health_checks_off_a_not_serving_backend_stays_in_use(
    driver: Driver, backends: Backends
) -> None:
    """connection.health_check=False: the pool connects to and keeps using a backend
    whose health service says NOT_SERVING."""
    backend = backends.one()
    backend.set_serving(False)
    driver.start(backends.config(2, ping_interval=0.05, health_check=False))
    driver.await_ready(min_ready=2)
    for _ in range(5):
        assert driver.call() == b"x"
    assert driver.status().current_size == 2


def test_not_serving_on_one_backend_moves_its_connections_to_the_other(
    driver: Driver, backends: Backends
) -> None:
    """Two backends, a pool of 4: the one turning NOT_SERVING loses its connections to
    the other, and calls then reach the serving backend only."""
    sick, well = backends.start(2)
    answer = Answer([sick.address, well.address])
    driver.start(backends.config(4, resolver=answer, ping_interval=0.1))
    driver.await_ready(min_ready=4)
    driver.wait_status(lambda s: settled(s, 4))
    sick.set_serving(False)
    driver.wait_status(lambda s: settled(s, 4) and set(spread(s)) == {well.address}, timeout=10)
    before = (sick.calls, well.calls)
    for _ in range(8):
        driver.call()
    assert (sick.calls, well.calls) == (before[0], before[1] + 8)


def test_an_unavailable_call_asks_for_a_health_check_at_once(
    driver: Driver, backends: Backends, signals: Signals
) -> None:
    """Passive health: with pings every 60 s, a call failing UNAVAILABLE makes its
    connection's worker run a health check now (a channel.ping); it passes, so the
    connection stays in rotation."""
    backends.one()
    name = driver.start(backends.config(1, ping_interval=60.0))
    driver.await_ready(min_ready=1)
    with pytest.raises(grpc.RpcError):
        driver.call(UNAVAILABLE)
    [(_, _, ping)] = signals.wait("channel.ping", sender=name, timeout=3)
    assert ping["result"] == "ok"
    assert driver.status().current_size == 1
    assert driver.call() == b"x"


def test_a_passive_check_that_fails_takes_the_connection_out(
    driver: Driver, backends: Backends, signals: Signals
) -> None:
    """Without pings, a NOT_SERVING backend goes unnoticed until a call fails UNAVAILABLE:
    the check that failure asks for fails, and only then the connection leaves."""
    backend = backends.one()
    name = driver.start(backends.config(1, ping_interval=None))
    driver.await_ready(min_ready=1)
    backend.set_serving(False)
    assert driver.call() == b"x"  # nothing checks health yet
    assert driver.status().current_size == 1
    with pytest.raises(grpc.RpcError):
        driver.call(UNAVAILABLE)
    driver.wait_status(lambda s: s.current_size == 0, timeout=3)
    assert signals.wait("channel.ping", sender=name)[0][2]["result"] == "error"


def test_passive_checks_are_at_most_one_a_second_per_connection(
    driver: Driver, backends: Backends, signals: Signals
) -> None:
    """Twenty UNAVAILABLE failures on one connection in quick succession ask for one
    health check, not twenty (SUSPECT_CHECK_INTERVAL, 1 s)."""
    backends.one()
    name = driver.start(backends.config(1, ping_interval=60.0))
    driver.await_ready(min_ready=1)
    started = time.monotonic()
    for _ in range(20):
        with pytest.raises(grpc.RpcError):
            driver.call(UNAVAILABLE)
    signals.wait("channel.ping", sender=name)
    elapsed = time.monotonic() - started
    pings = Counter(m["worker_id"] for m in signals.metadata("channel.ping", name))
    assert pings["worker-1"] <= 1 + int(elapsed / SUSPECT_CHECK_INTERVAL), (pings, elapsed)


def calls_for(driver: Driver, seconds: float, **options: Any) -> list[str]:
    """Calls through the pool channel for ``seconds``; returns the failures.

    The calls are the scenario (steady traffic while the server closes
    connections), so the loop is paced by them.
    """
    failures: list[str] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            driver.call(b"steady", **options)
        except grpc.RpcError as error:
            failures.append(f"{error.code()}: {error.details()}")
    return failures


#: A server closing every connection (GOAWAY) 300 ms (+-10%) after it opened.
AGED = (("grpc.max_connection_age_ms", 300),)


def test_a_server_closing_connections_by_age_is_not_an_outage(
    driver: Driver, backends: Backends, signals: Signals
) -> None:
    """A server that closes every connection after 300 ms: calls (wait_for_ready) over
    1.5 s all succeed, the server sees new connections, and the pool reconnects without
    the backoff path (no reconnect_scheduled, no failed connect)."""
    [backend] = backends.start(1, options=AGED)
    name = driver.start(backends.config(2))
    driver.await_ready(min_ready=2)
    assert calls_for(driver, 1.5, wait_for_ready=True, timeout=5) == []
    assert len(set(backend.peers)) > 2  # the server did close connections
    assert signals.of("channel.reconnect_scheduled", name) == []
    assert signals.of("channel.connection_failed", name) == []


def test_each_connection_the_server_closes_is_reported(
    driver: Driver, backends: Backends, signals: Signals
) -> None:
    """Under steady calls against a server closing connections every 300 ms, each
    connection closed is reported as disconnected with reason connection_closed: when
    the calls stop, all but the last two of those the server saw replaced are."""
    [backend] = backends.start(1, options=AGED)
    name = driver.start(backends.config(2))
    driver.await_ready(min_ready=2)
    calls_for(driver, 1.5, wait_for_ready=True, timeout=5)
    # Counted at once: an idle connection's close is seen by both kinds of pool.
    down = signals.of("channel.disconnected", name)
    closed = len(set(backend.peers)) - 2
    assert closed >= 6  # 2 connections, each closed every ~0.3 s for 1.5 s
    assert len(down) >= closed - 2, (len(down), closed)
    assert {metadata["reason"] for _, _, metadata in down} == {"connection_closed"}


def test_a_black_holed_connection_leaves_at_the_ping_deadline_and_comes_back(
    driver: Driver, backends: Backends
) -> None:
    """Through a proxy that stops forwarding anything, the health ping's deadline takes
    the silent connections out (with their last error); once traffic flows again they
    come back and answer."""
    backend = backends.one()
    with FaultProxy(backend.port, backend.host) as proxy:
        config = backends.config(
            2,
            endpoint={"host": "127.0.0.1", "port": proxy.port},
            keepalive=None,
            ping_interval=0.2,
            ping_timeout=0.5,
            connect_timeout=0.5,
            backoff_min=0.2,
        )
        driver.start(config)
        driver.await_ready(min_ready=2)
        proxy.black_hole()
        status = driver.wait_status(lambda s: s.current_size == 0, timeout=5)
        assert any(worker.last_error for worker in status.workers)
        proxy.pass_through()
        driver.await_ready(min_ready=2, timeout=10)
        assert driver.call(b"healed") == b"healed"
        driver.stop()
