"""A pool outlives what servers and networks do to it, against real servers on loopback.

A server closing healthy connections (max connection age) is not an outage:
the pool stays full and no call fails. An outage of any length, under the
user's own Supervisor, never ends or shrinks the pool. A receiver of
``channel.connected`` can get the channel. A silent peer is noticed within
``ping_interval + ping_timeout``.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import pykka
import pytest

import grpcpool
from grpcpool import PoolSpec, Supervisor, telemetry
from grpcpool.api import lookup
from grpcpool.errors import GrpcPoolError
from tests.events import EventLog
from tests.faultproxy import FaultProxy
from tests.pools import loopback_config
from tests.servers import EchoServer, EchoStub
from tests.waiting import wait_until

pytestmark = pytest.mark.slow


class Sampler:
    """A thread noting, every ``interval`` seconds, whether the pool is at full size."""

    def __init__(self, pool_name: str, size: int, interval: float = 0.005) -> None:
        self.samples: list[bool] = []
        self._stop = threading.Event()

        def run() -> None:
            while not self._stop.wait(interval):
                self.samples.append(grpcpool.status(pool_name).current_size == size)

        self._thread = threading.Thread(target=run, name="size-sampler")

    def full_fraction(self) -> float:
        """The share of samples at full size."""
        return sum(self.samples) / len(self.samples)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(10)


class Callers:
    """Threads making echo calls through the pool without pause; any failure is kept."""

    def __init__(self, pool_name: str, threads: int) -> None:
        self.ok = 0
        self.failures: list[BaseException] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._run, args=(pool_name,), name=f"caller-{i}")
            for i in range(threads)
        ]

    def _run(self, pool_name: str) -> None:
        while not self._stop.is_set():
            try:
                EchoStub(grpcpool.get_channel(pool_name)).Unary(b"x", timeout=5)
            except BaseException as error:  # every failure counts, whatever it is
                with self._lock:
                    self.failures.append(error)
                self._stop.wait(0.01)  # pacing after a failure; the test fails anyway
            else:
                with self._lock:
                    self.ok += 1
            time.sleep(0.001)  # a caller does work between calls; spinning would starve the actors

    def __enter__(self) -> Callers:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(10)


def grpcpool_errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    """ERROR (and worse) lines and tracebacks logged so far, from any logger."""
    return [
        f"{record.name}: {record.getMessage()}"
        for record in caplog.records
        if record.levelno >= logging.ERROR or record.exc_info
    ]


# --- 13: a server closing connections is not an outage -------------------------------------


def test_max_connection_age_keeps_the_pool_full_and_every_call_working(
    events: EventLog, supervisors: list[pykka.ActorRef[Any]], caplog: pytest.LogCaptureFixture
) -> None:
    """A server closing every connection after 2 s: full size 95% of the time, no failed call.

    Each closed connection is connected again at once on the same channel,
    with no backoff and no failed attempt, and logged at INFO, not ERROR.
    """
    caplog.set_level(logging.INFO)
    options = (("grpc.max_connection_age_ms", 2000), ("grpc.max_connection_age_grace_ms", 1000))
    with EchoServer(options=options) as server:
        supervisors.append(
            Supervisor.start(children=[PoolSpec(loopback_config(server.port, 4), name="aged")])
        )
        grpcpool.await_ready("aged", timeout=5, min_ready=4)
        channels = set(lookup("aged").view.channels)
        with Sampler("aged", 4) as sampler:
            # Idle first: no call reconnects a closed channel before the pool
            # sees it, so the first close of each connection is the pool's.
            assert wait_until(
                lambda: (
                    len(events.of("channel.connection_down")) >= 4
                    and len(events.of("channel.connected")) >= 8
                ),
                timeout=5,
            )
            with Callers("aged", threads=3) as callers:
                # Steady calls while each connection reaches its age twice
                # more. A close that a call reconnects between two looks of
                # the watcher is never seen: the channel stays READY.
                time.sleep(5.0)
        assert callers.failures == []
        assert callers.ok > 100
        # Generous: a reconnect takes milliseconds, a backoff would cost seconds.
        assert sampler.full_fraction() >= 0.95, (sampler.full_fraction(), len(sampler.samples))
        # The same four channels all along: reconnected, never replaced.
        assert set(lookup("aged").view.channels) == channels
        # Stopped before its server, which would otherwise close it for good.
        supervisors.pop().stop()
    downs = events.of("channel.connection_down")
    assert {metadata["reason"] for _, _, metadata in downs} == {"connection_closed"}
    assert events.of("channel.connection_failed") == []
    assert events.of("channel.reconnect_scheduled") == []
    assert len(events.of("channel.connected")) == 4 + len(downs)
    assert grpcpool_errors(caplog) == []
    closed = [r for r in caplog.records if "connection closed" in r.getMessage()]
    assert len(closed) == len(downs) and {r.levelno for r in closed} == {logging.INFO}


# --- 1 and 3: an outage never ends the pool -----------------------------------------------


def test_outage_under_the_users_supervisor_never_ends_or_shrinks_the_pool(
    events: EventLog, caplog: pytest.LogCaptureFixture
) -> None:
    """4 s down with max_reconnect_attempts=2 and backoff 0.05-0.1 s: same pool, same size.

    No worker ends, so nothing counts towards any restart intensity, nothing
    escalates and no traceback is logged; each worker says once that it
    reached max_reconnect_attempts. The pool is healthy within backoff_max
    + 1 s of the server's return.
    """
    caplog.set_level(logging.DEBUG, logger="grpcpool")
    server = EchoServer()
    port = server.port
    config = loopback_config(port, 2, backoff_min=0.05, backoff_max=0.1, max_reconnect_attempts=2)
    sup = Supervisor.start(children=[PoolSpec(config, name="survivor")])
    try:
        grpcpool.scale_up("survivor", 1)
        grpcpool.await_ready("survivor", timeout=5, min_ready=3)
        entry = lookup("survivor")
        server.stop()
        time.sleep(4.0)  # the outage
        assert lookup("survivor") is entry
        assert grpcpool.status("survivor").expected_size == 3
        server = EchoServer(port=port)
        grpcpool.await_ready("survivor", timeout=0.1 + 1.0, min_ready=3)
        status = grpcpool.status("survivor")
        assert (status.status, status.expected_size, status.current_size) == ("healthy", 3, 3)
        assert lookup("survivor") is entry
        assert sup.is_alive()
        assert events.of("supervisor.child_restarted") == []
        assert events.of("supervisor.shutdown") == []
    finally:
        sup.stop()
        server.stop()
    failed = events.of("channel.connection_failed")
    # Every worker went far past max_reconnect_attempts.
    assert all(
        sum(md["worker_id"] == worker for _, _, md in failed) >= 10
        for worker in ("worker-1", "worker-2", "worker-3")
    ), failed
    assert [r for r in caplog.records if r.exc_info] == []
    limits = [r for r in caplog.records if "max_reconnect_attempts" in r.getMessage()]
    assert len(limits) == 3 and {r.levelno for r in limits} == {logging.WARNING}, limits


# --- 7: channel.connected comes after the channel is in the view -----------------------------


def test_a_receiver_of_connected_can_get_the_channel(
    echo_server: EchoServer, supervisors: list[pykka.ActorRef[Any]]
) -> None:
    """get_channel inside a channel.connected receiver returns the channel that connected."""
    got: list[str] = []

    def on_connected(sender: str, **_: Any) -> None:
        try:
            grpcpool.get_channel(sender)
        except GrpcPoolError as error:
            got.append(type(error).__name__)
        else:
            got.append("channel")

    telemetry.channel_connected.connect(on_connected, sender="first-in", weak=False)
    try:
        config = loopback_config(echo_server.port, 1)
        supervisors.append(Supervisor.start(children=[PoolSpec(config, name="first-in")]))
        grpcpool.await_ready("first-in", timeout=5)
        assert wait_until(lambda: got, timeout=5)
    finally:
        telemetry.channel_connected.disconnect(on_connected, sender="first-in")
    assert got == ["channel"]


# --- 15: ping_timeout bounds how long a silent peer goes unnoticed --------------------------


def test_black_hole_is_noticed_within_ping_interval_and_ping_timeout(
    echo_server: EchoServer, events: EventLog, supervisors: list[pykka.ActorRef[Any]]
) -> None:
    """Keepalive off, pings every 0.5 s with a 1 s deadline: a silent peer is out within 2.5 s.

    connect_timeout stays at 10 s: the ping's deadline is its own.
    """
    ping_interval, ping_timeout = 0.5, 1.0
    with FaultProxy(echo_server.port) as proxy:
        config = loopback_config(
            proxy.port,
            1,
            keepalive=None,
            ping_interval=ping_interval,
            ping_timeout=ping_timeout,
            connect_timeout=10.0,
        )
        supervisors.append(Supervisor.start(children=[PoolSpec(config, name="holed")]))
        grpcpool.await_ready("holed", timeout=5)
        proxy.black_hole()
        holed = time.monotonic()
        assert wait_until(
            lambda: events.of("channel.connection_down"), timeout=ping_interval + ping_timeout + 1
        )
        noticed = time.monotonic() - holed
        supervisors.pop().stop()
    (_, _, down) = events.of("channel.connection_down")[0]
    assert down["reason"] == "ping_failed"
    assert noticed <= ping_interval + ping_timeout + 1, noticed
