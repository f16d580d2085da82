"""Outlier detection and panic (``pool.outlier_detection``, ``pool.panic_threshold``).

Backends on 127.0.0.2..5 behind a resolver of the test's; a backend "fails"
by answering every echo call with UNAVAILABLE while its health service keeps
saying SERVING, so its connections stay ready (each failed call has its
connection checked, which passes) and only outlier detection can take them
out of routing. Intervals are short (0.2-0.25 s) so that a scenario runs in a
few seconds; the bounds are generous, the figures belong to the benchmarks.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import grpc

from grpcpool.errors import NotConnectedError
from tests.behaviour.backends import HOSTS, Answer, Backend, Backends, settled
from tests.behaviour.harness import Driver
from tests.behaviour.signals import Signals
from tests.servers import EchoServer


def detection(**changes: Any) -> dict[str, Any]:
    """Failure percentage alone (over 50 %, 2 units with 10 calls), judged every 0.25 s;
    out for 30 s (longer than any scenario) unless a scenario says otherwise."""
    settings: dict[str, Any] = {
        "interval": 0.25,
        "base_ejection_time": 30.0,
        "max_ejection_time": 60.0,
        "max_ejection_percent": 50,
        "success_rate": None,
        "failure_percentage": {"threshold": 50, "minimum_hosts": 2, "request_volume": 10},
    }
    settings.update(changes)
    return settings


def start_four(
    driver: Driver, backends: Backends, **pool: Any
) -> tuple[str, list[Backend]]:
    """A pool of 4 over 4 backends, one connection on each, all ready."""
    four = backends.start(4)
    answer = Answer([backend.address for backend in four])
    name = driver.start(backends.config(4, resolver=answer, pool=pool))
    driver.await_ready(min_ready=4)
    driver.wait_status(lambda s: settled(s, 4))
    return name, four


def traffic(driver: Driver, done: Callable[[], bool], timeout: float = 8.0) -> int:
    """Unary calls through the pool channel until ``done()``; returns how many failed.

    A call the pool could not start (NotConnectedError) fails the scenario:
    the pool must always route somewhere while a connection is ready.
    """
    failed = 0
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, f"not done within {timeout}s: {driver.status()}"
        try:
            driver.call(b"traffic")
        except grpc.RpcError as error:
            assert not isinstance(error, NotConnectedError), error
            failed += 1
    return failed


def calls_for(driver: Driver, count: int) -> int:
    """``count`` calls through the pool channel; how many failed (never NotConnectedError)."""
    made = iter(range(count + 1))
    return traffic(driver, lambda: next(made) == count)


def ejected_workers(driver: Driver) -> set[str]:
    return {w.worker_id for w in driver.status().workers if w.ejected}


def test_a_backend_failing_every_call_is_ejected_and_calls_stop_reaching_it(
    driver: Driver, backends: Backends, signals: Signals
) -> None:
    """One of 4 backends fails every call: within seconds pool.ejected names its address
    (reason failure_percentage), status marks its worker ejected, and the next 40 calls
    all succeed without reaching it."""
    name, four = start_four(driver, backends, outlier_detection=detection())
    bad = four[2]
    assert bad.server is not None
    bad.server.failing = grpc.StatusCode.UNAVAILABLE
    faulted = time.monotonic()

    traffic(driver, lambda: bool(signals.of("pool.ejected", name)))

    took = time.monotonic() - faulted
    [(_, measurements, metadata)] = signals.of("pool.ejected", name)
    assert metadata == {"pool_name": name, "address": bad.address, "reason": "failure_percentage"}
    assert measurements["failures"] >= 10 and measurements["ejection_time"] == 30.0
    assert took < 5.0
    status = driver.status()
    assert [w.address for w in status.workers if w.ejected] == [bad.address]
    assert status.current_size == 4  # still connected, only out of routing
    before = bad.calls
    assert calls_for(driver, 40) == 0
    assert bad.calls == before


def test_an_ejected_backend_returns_after_its_ejection_time(
    driver: Driver, backends: Backends, signals: Signals
) -> None:
    """Ejected for 0.5 s, then healed: pool.unejected (reason expired, about 0.5 s out)
    brings it back, and calls reach it again."""
    name, four = start_four(driver, backends, outlier_detection=detection(base_ejection_time=0.5))
    bad = four[0]
    assert bad.server is not None
    bad.server.failing = grpc.StatusCode.UNAVAILABLE
    traffic(driver, lambda: bool(signals.of("pool.ejected", name)))
    bad.server.failing = None

    [(_, measurements, metadata)] = signals.wait("pool.unejected", sender=name, timeout=5.0)

    assert (metadata["address"], metadata["reason"]) == (bad.address, "expired")
    assert 0.5 <= measurements["ejection_time"] < 3.0
    driver.wait_status(lambda s: not any(w.ejected for w in s.workers))
    before = bad.calls
    assert calls_for(driver, 40) == 0
    assert bad.calls > before


class OneConnectionFails(EchoServer):
    """An echo server that fails every call (UNAVAILABLE) on the first connection that makes
    one, and serves the others: one bad connection behind one address."""

    def __init__(self, port: int, host: str) -> None:
        self.bad_peer: str | None = None
        self.bad_calls = 0
        super().__init__(port, host=host)

    def _echo(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        peer = context.peer()
        with self._lock:
            if self.bad_peer is None:
                self.bad_peer = peer
            bad = peer == self.bad_peer
            self.bad_calls += bad
        if bad:
            context.abort(grpc.StatusCode.UNAVAILABLE, "this connection fails every call")
        return super()._echo(request, context)


def test_one_address_ejects_the_failing_connection_and_renews_it_when_ejected_twice(
    driver: Driver, backends: Backends, signals: Signals
) -> None:
    """A pool of 3 on one address, one of its connections failing every call: that
    connection (not the address) is ejected, pool.ejected naming its worker; back after
    0.5 s it fails again, is ejected again at once and its worker connects afresh
    (connection_down, reason renewed); the fresh connection serves every call."""
    server = OneConnectionFails(backends.port, host=HOSTS[0])
    try:
        address = f"{HOSTS[0]}:{server.port}"
        outliers = detection(interval=0.2, base_ejection_time=0.5)
        name = driver.start(
            backends.config(3, resolver=Answer([address]), pool={"outlier_detection": outliers})
        )
        driver.await_ready(min_ready=3)
        driver.wait_status(lambda s: settled(s, 3))

        traffic(driver, lambda: bool(signals.of("pool.ejected", name)))
        [(_, _, first)] = signals.of("pool.ejected", name)
        worker = first["worker_id"]
        assert first["address"] == address
        assert ejected_workers(driver) == {worker}

        def renewed() -> bool:
            downs = signals.metadata("channel.connection_down", name)
            return any((m["worker_id"], m["reason"]) == (worker, "renewed") for m in downs)

        traffic(driver, renewed)
        ejections = signals.metadata("pool.ejected", name)
        assert len([m for m in ejections if m["worker_id"] == worker]) >= 2
        driver.wait_status(lambda s: settled(s, 3) and not any(w.ejected for w in s.workers))
        bad_calls = server.bad_calls
        assert calls_for(driver, 30) == 0
        assert server.bad_calls == bad_calls
    finally:
        driver.close()
        server.stop(None)


def test_the_ejection_cap_holds_while_three_of_four_backends_fail(
    driver: Driver, backends: Backends, signals: Signals
) -> None:
    """max_ejection_percent 50 over 4 addresses, 3 failing: exactly 2 are ejected, and a
    dozen intervals later still 2 (the third keeps failing its share of calls). With 2 of
    4 routable (50 %, not fewer) the pool does not panic."""
    name, four = start_four(driver, backends, outlier_detection=detection(interval=0.1))
    for backend in four[1:]:
        assert backend.server is not None
        backend.server.failing = grpc.StatusCode.UNAVAILABLE
    traffic(driver, lambda: len(signals.of("pool.ejected", name)) >= 2)
    settle_until = time.monotonic() + 1.2

    traffic(driver, lambda: time.monotonic() >= settle_until)

    assert len(signals.of("pool.ejected", name)) == 2
    assert len(ejected_workers(driver)) == 2
    assert not signals.of("pool.panic", name)


def test_when_most_backends_fail_the_pool_panics_and_routes_over_every_connection(
    driver: Driver, backends: Backends, signals: Signals
) -> None:
    """3 of 4 backends failing, no cap: all 3 are ejected, 1 of 4 routable is under the
    panic threshold (50 %), so pool.panic says active 1 and calls reach all four backends
    (never NotConnectedError). Healed, they return and pool.panic says active 0."""
    outliers = detection(interval=0.2, base_ejection_time=0.6, max_ejection_percent=100)
    name, four = start_four(driver, backends, outlier_detection=outliers)
    for backend in four[1:]:
        assert backend.server is not None
        backend.server.failing = grpc.StatusCode.UNAVAILABLE

    traffic(driver, lambda: bool(signals.of("pool.panic", name)))

    [(_, entered, _)] = signals.of("pool.panic", name)[:1]
    assert entered["active"] == 1
    before = [backend.calls for backend in four]
    calls_for(driver, 40)
    assert all(backend.calls > seen for backend, seen in zip(four, before, strict=True))
    for backend in four[1:]:
        assert backend.server is not None
        backend.server.failing = None

    def left_panic() -> bool:
        return [m["active"] for m in signals.measurements("pool.panic", name)][-1] == 0

    traffic(driver, left_panic)
    driver.wait_status(lambda s: not any(w.ejected for w in s.workers))


def test_nothing_is_ejected_without_a_fault(
    driver: Driver, backends: Backends, signals: Signals
) -> None:
    """Healthy backends, both ways of judging on (success rate over 4 units, failure
    percentage over 2), judged every 0.1 s for 1.5 s of traffic: nothing is ejected and
    the pool never panics."""
    outliers = detection(
        interval=0.1,
        success_rate={"minimum_hosts": 4, "request_volume": 5},
        failure_percentage={"minimum_hosts": 2, "request_volume": 5},
    )
    name, _ = start_four(driver, backends, outlier_detection=outliers)
    until = time.monotonic() + 1.5

    assert traffic(driver, lambda: time.monotonic() >= until) == 0

    assert not signals.of("pool.ejected", name)
    assert not signals.of("pool.panic", name)
    assert not ejected_workers(driver)
