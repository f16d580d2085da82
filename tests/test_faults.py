"""Network faults between the pool and a healthy server, made by a TCP proxy.

Each scenario prints its detection or recovery time (run with ``-s`` to see it).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pykka
import pytest

import grpcpool
from grpcpool import Config, PoolSpec, Supervisor
from grpcpool.errors import NotConnectedError
from tests.events import EventLog
from tests.faultproxy import FaultProxy
from tests.servers import EchoServer, EchoStub
from tests.waiting import wait_until

pytestmark = pytest.mark.slow


@pytest.fixture
def proxy(echo_server: EchoServer) -> Iterator[FaultProxy]:
    """A fault proxy in front of the echo server."""
    with FaultProxy(echo_server.port) as fault_proxy:
        yield fault_proxy


def start_pool(
    supervisors: list[pykka.ActorRef[Any]], port: int, name: str, size: int, **connection: Any
) -> None:
    config = Config.new(
        endpoint={"type": "local", "host": "127.0.0.1", "port": port},
        pool={"size": size},
        connection=connection,
    )
    supervisors.append(Supervisor.start(children=[PoolSpec(config, name=name)]))
    grpcpool.await_ready(name, timeout=5, min_ready=size)


def report(scenario: str, seconds: float) -> None:
    print(f"\n[recovery] {scenario}: {seconds * 1000:.0f} ms")


def test_reset_of_every_connection_empties_and_refills_with_spread_retries(
    proxy: FaultProxy, events: EventLog, supervisors: list[pykka.ActorRef[Any]]
) -> None:
    """All connections reset at once: the pool empties, then refills, retries spread by jitter."""
    start_pool(supervisors, proxy.port, "reset", size=6, backoff_min=0.2, backoff_max=1.0)
    proxy.reset()
    reset_at = time.monotonic()
    proxy.pass_through()
    assert wait_until(lambda: grpcpool.status("reset").current_size < 6, timeout=1)
    grpcpool.await_ready("reset", timeout=3, min_ready=6)
    report("reset of all connections -> all 6 ready", time.monotonic() - reset_at)
    delays = [m["delay_ms"] for _, m, _ in events.of("channel.reconnect_scheduled")]
    assert len(delays) >= 6
    assert all(200 <= delay <= 400 for delay in delays[:6]), delays
    # Jitter: the six retries do not all land within the same 10 ms.
    assert max(delays[:6]) - min(delays[:6]) > 10, delays
    assert EchoStub(grpcpool.get_channel("reset")).Unary(b"back", timeout=5) == b"back"


def test_black_hole_is_detected_by_keepalive(
    proxy: FaultProxy, events: EventLog, supervisors: list[pykka.ActorRef[Any]]
) -> None:
    """A silent peer leaves the view within keepalive + ping timeout + 1 s, when the
    pool pings idle connections (the opt-in; the server here permits it)."""
    keepalive, timeout = 0.5, 0.5
    start_pool(
        supervisors,
        proxy.port,
        "hole",
        size=3,
        keepalive=keepalive,
        keepalive_without_calls=True,
        keepalive_timeout=timeout,
        ping_interval=None,
        backoff_min=0.2,
        backoff_max=0.5,
        connect_timeout=1.0,
    )
    proxy.black_hole()
    holed = time.monotonic()
    assert wait_until(
        lambda: grpcpool.status("hole").current_size == 0, timeout=keepalive + timeout + 1
    )
    report("black hole -> snapshot empty", time.monotonic() - holed)
    with pytest.raises(NotConnectedError):
        grpcpool.get_channel("hole")
    proxy.pass_through()
    healed = time.monotonic()
    grpcpool.await_ready("hole", timeout=5, min_ready=3)
    report("black hole healed -> all 3 ready", time.monotonic() - healed)


def test_health_ping_detects_black_hole_without_keepalive(
    proxy: FaultProxy, events: EventLog, supervisors: list[pykka.ActorRef[Any]]
) -> None:
    """With keepalive off, the health ping's deadline takes a silent peer out of rotation."""
    start_pool(
        supervisors,
        proxy.port,
        "ping-hole",
        size=2,
        keepalive=None,
        ping_interval=0.2,
        ping_timeout=0.5,
        connect_timeout=0.5,
        backoff_min=0.2,
        backoff_max=0.5,
    )
    proxy.black_hole()
    holed = time.monotonic()
    assert wait_until(lambda: grpcpool.status("ping-hole").current_size == 0, timeout=3)
    report("black hole (health ping, no keepalive) -> snapshot empty", time.monotonic() - holed)
    reasons = {md["reason"] for _, _, md in events.of("channel.connection_down")}
    assert reasons == {"ping_failed"}
    assert "error" in {md["result"] for _, _, md in events.of("channel.ping")}
    proxy.pass_through()


def test_latency_does_not_flap_a_slow_healthy_server(
    proxy: FaultProxy, events: EventLog, supervisors: list[pykka.ActorRef[Any]]
) -> None:
    """300 ms each way is slow but healthy: pings within their deadline keep every worker in."""
    start_pool(supervisors, proxy.port, "slow", size=2, ping_interval=0.2, connect_timeout=2.0)
    before = len(events.of("channel.ping"))
    proxy.latency(up=0.3, down=0.3)

    def slow_pings_each() -> int:
        pings = events.of("channel.ping")[before:]
        # Over 0.5 s: it crossed the 0.3 s delay both ways.
        per_worker = Counter(md["worker_id"] for _, m, md in pings if m["duration"] > 0.5)
        return min(per_worker.values()) if len(per_worker) == 2 else 0

    # Three pings per worker through the slow link (what 3 s of it gives: a
    # 0.6 s round trip every 0.2 s), or a drop, whichever comes first.
    assert wait_until(
        lambda: events.of("channel.connection_down") or slow_pings_each() >= 3, timeout=10
    )
    assert events.of("channel.connection_down") == []
    results = [md["result"] for _, _, md in events.of("channel.ping")]
    assert results and set(results) == {"ok"}
    started = time.monotonic()
    assert EchoStub(grpcpool.get_channel("slow")).Unary(b"slow", timeout=5) == b"slow"
    assert time.monotonic() - started >= 0.5
    assert grpcpool.status("slow").current_size == 2
    proxy.pass_through()


def test_refused_connections_leave_live_ones_alone_and_back_off(
    proxy: FaultProxy, events: EventLog, supervisors: list[pykka.ActorRef[Any]]
) -> None:
    """A proxy refusing new connections keeps existing channels; new workers back off."""
    start_pool(supervisors, proxy.port, "refuse", size=2, backoff_min=0.1, backoff_max=0.3)
    proxy.refuse()
    assert grpcpool.scale_up("refuse", 1) == 3
    assert wait_until(lambda: len(events.of("channel.connection_failed")) >= 2, timeout=3)
    assert grpcpool.status("refuse").current_size == 2
    proxy.pass_through()
    grpcpool.await_ready("refuse", timeout=3, min_ready=3)
