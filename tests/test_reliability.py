"""Bad days on loopback: servers that die, restart, drain, and crash loops.

Each scenario prints its recovery time (run with ``-s`` to see it).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from typing import Any

import grpc
import pykka
import pytest

import grpcpool
from grpcpool import Config, PoolSpec, Supervisor
from grpcpool.errors import NotConnectedError, PoolTimeoutError
from tests.events import EventLog
from tests.pools import free_port, loopback_config
from tests.servers import EchoServer, EchoStub
from tests.test_keepalive import (
    OLD_IDLE_PINGS,
    STRUCK_OUT_TIMEOUT,
    Setup,
    proxied_pools,
)
from tests.waiting import wait_for, wait_until

pytestmark = pytest.mark.slow


def config_for(port: int, size: int = 3, **connection: Any) -> Config:
    return loopback_config(port, size, **{"backoff_min": 0.1, **connection})


def report(scenario: str, seconds: float) -> None:
    print(f"\n[recovery] {scenario}: {seconds * 1000:.0f} ms")


class Callers:
    """Threads calling the pool in a loop, recording outcomes by kind."""

    def __init__(self, pool_name: str, threads: int, timeout: float = 2.0) -> None:
        self.outcomes: dict[str, int] = {}
        self._oks = {f"caller-{i}": 0 for i in range(threads)}
        self.unexpected: list[BaseException] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._run, args=(pool_name, timeout), name=f"caller-{i}")
            for i in range(threads)
        ]

    def _count(self, kind: str) -> None:
        with self._lock:
            self.outcomes[kind] = self.outcomes.get(kind, 0) + 1
            if kind == "ok":
                self._oks[threading.current_thread().name] += 1

    def count(self, kind: str) -> int:
        """Outcomes of ``kind`` so far."""
        with self._lock:
            return self.outcomes.get(kind, 0)

    def oks(self) -> dict[str, int]:
        """Successful calls so far, by caller thread."""
        with self._lock:
            return dict(self._oks)

    def all_through_since(self, oks: dict[str, int]) -> bool:
        """Whether every caller has made a successful call since ``oks`` was taken."""
        return all(now > oks[name] for name, now in self.oks().items())

    def _run(self, pool_name: str, timeout: float) -> None:
        while not self._stop.is_set():
            try:
                EchoStub(grpcpool.get_channel(pool_name)).Unary(b"x", timeout=timeout)
                self._count("ok")
            except NotConnectedError:
                self._count("not_connected")
                time.sleep(0.005)  # pacing: a caller retries, it does not spin
            except grpc.RpcError as error:
                self._count(error.code().name)
            except BaseException as error:  # anything else is a defect
                with self._lock:
                    self.unexpected.append(error)

    def __enter__(self) -> Callers:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(10)


def test_endpoint_down_at_start_retries_at_backoff_pace(
    events: EventLog, supervisors: list[pykka.ActorRef[Any]]
) -> None:
    """Nothing listening: NotConnectedError, PoolTimeoutError, and attempts spaced by backoff."""
    config = config_for(free_port(), size=2, max_reconnect_attempts=100)
    supervisors.append(Supervisor.start(children=[PoolSpec(config, name="down")]))
    with pytest.raises(NotConnectedError):
        grpcpool.get_channel("down")
    with pytest.raises(PoolTimeoutError):
        grpcpool.await_ready("down", timeout=2.0)
    failures = len(events.of("channel.connection_failed"))
    # Per worker: attempts at 0, then after 0.1-0.2, 0.2-0.4 and 0.25-0.5 s
    # delays: 5 to 8 in 2 s. A busy loop would make thousands.
    assert 6 <= failures <= 20, failures
    delays = [m["delay_ms"] for _, m, _ in events.of("channel.reconnect_scheduled")]
    assert all(100 <= delay <= 500 for delay in delays), delays
    attempts = [
        m["attempt"]
        for _, m, md in events.of("channel.reconnect_scheduled")
        if md["worker_id"] == "worker-1"
    ]
    assert attempts == list(range(1, len(attempts) + 1))


def test_server_killed_mid_traffic_then_restarted_on_same_port(
    events: EventLog, supervisors: list[pykka.ActorRef[Any]]
) -> None:
    """Calls in flight fail cleanly when the server dies; the pool refills when it returns."""
    server = EchoServer(delay=0.05)
    port = server.port
    try:
        supervisors.append(Supervisor.start(children=[PoolSpec(config_for(port), name="kill")]))
        grpcpool.await_ready("kill", timeout=5, min_ready=3)
        with Callers("kill", threads=6) as callers:
            # Every caller is through (and, at 0.05 s a call, in flight) before the kill.
            at_start = callers.oks()
            assert wait_until(lambda: callers.all_through_since(at_start), timeout=5)
            killed = time.monotonic()
            server.kill()
            assert wait_until(
                lambda: grpcpool.status("kill").current_size == 0, timeout=1.0, interval=0.001
            )
            emptied = time.monotonic() - killed
            server.stop()
            # Down until the callers have met the empty pool and every worker
            # has failed to reconnect to the closed port.
            assert wait_until(
                lambda: callers.count("not_connected") > 0
                and {md["worker_id"] for _, _, md in events.of("channel.connection_failed")}
                >= {"worker-1", "worker-2", "worker-3"},
                timeout=5,
            )
            server = EchoServer(port=port, delay=0.05)
            restarted = time.monotonic()
            grpcpool.await_ready("kill", timeout=1.5, min_ready=3)
            refilled = time.monotonic() - restarted
            # Every caller gets through again after the refill.
            at_refill = callers.oks()
            assert wait_until(lambda: callers.all_through_since(at_refill), timeout=5)
        report("server kill -> snapshot empty", emptied)
        report("server restart -> all 3 ready", refilled)
        assert not callers.unexpected, callers.unexpected
        assert callers.outcomes.get("ok", 0) > 0
        assert callers.outcomes.get("not_connected", 0) > 0
        assert set(callers.outcomes) <= {"ok", "not_connected", "UNAVAILABLE", "CANCELLED"}
        assert len(events.of("channel.connection_down")) >= 3
    finally:
        server.stop()


def test_graceful_server_stop_lets_in_flight_calls_finish(
    supervisors: list[pykka.ActorRef[Any]],
) -> None:
    """A server draining with a grace period completes the calls already running."""
    server = EchoServer(delay=0.4)
    try:
        supervisors.append(
            Supervisor.start(children=[PoolSpec(config_for(server.port), name="drain")])
        )
        grpcpool.await_ready("drain", timeout=5, min_ready=3)
        stubs = [EchoStub(grpcpool.get_channel("drain")) for _ in range(6)]
        calls = [stub.Unary.future(b"in flight", timeout=5) for stub in stubs]
        assert wait_until(lambda: server.calls == 6, timeout=5)  # all six in the handler
        draining = threading.Thread(target=server.stop, kwargs={"grace": 2.0})
        draining.start()
        assert [call.result(timeout=5) for call in calls] == [b"in flight"] * 6
        assert wait_until(lambda: grpcpool.status("drain").current_size == 0, timeout=3)
        draining.join(10)
    finally:
        server.stop()


def test_crash_loop_escalates_and_the_parent_restarts_the_pool(
    echo_server: EchoServer, events: EventLog, supervisors: list[pykka.ActorRef[Any]]
) -> None:
    """Crashing workers past the pool's restart intensity restarts the whole pool, which refills."""
    config = config_for(echo_server.port, size=2)
    supervisors.append(Supervisor.start(children=[PoolSpec(config, name="loop")], max_restarts=5))
    grpcpool.await_ready("loop", timeout=5, min_ready=2)
    first_owner = grpcpool.api.lookup("loop").owner
    crash_workers_until(lambda: events.of("supervisor.shutdown"), timeout=10)
    _, measurements, metadata = events.of("supervisor.shutdown")[0]
    assert metadata["supervisor"] == "pool:loop"
    assert measurements["restarts"] > 3 + 2  # max_restarts plus one per worker
    assert wait_until(
        lambda: any(
            md["child_id"] == "pool:loop" for _, _, md in events.of("supervisor.child_restarted")
        ),
        timeout=5,
    )
    started = time.monotonic()
    grpcpool.await_ready("loop", timeout=5, min_ready=2)
    report("pool restart after crash loop -> all ready", time.monotonic() - started)
    assert grpcpool.api.lookup("loop").owner is not first_owner


def test_crash_loop_past_every_level_stops_the_tree_without_hanging(
    echo_server: EchoServer, events: EventLog
) -> None:
    """When the top supervisor gives up too, everything stops and nothing hangs."""
    config = config_for(echo_server.port, size=1)
    sup = Supervisor.start(children=[PoolSpec(config, name="doomed")], max_restarts=0)
    try:
        grpcpool.await_ready("doomed", timeout=5)
        crash_workers_until(lambda: not sup.is_alive(), timeout=10)
        assert {md["supervisor"] for _, _, md in events.of("supervisor.shutdown")} >= {
            "pool:doomed"
        }
        assert wait_until(lambda: "doomed" not in grpcpool.actors.names(), timeout=5)
    finally:
        sup.stop()


def crash_workers_until(done: Callable[[], Any], timeout: float) -> None:
    """Tells every live worker a message it does not understand until ``done()``."""
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, "condition not reached"
        for ref in pykka.ActorRegistry.get_by_class(grpcpool.ChannelWorker):
            with contextlib.suppress(pykka.ActorDeadError):
                ref.tell("crash")
        time.sleep(0.02)  # pacing: each round lets the restarts happen


# Every combination of health_check and ping_interval (None, faster and slower
# than the keepalive), with the default keepalive policy.
HEALTH_AND_PING_INTERVALS = [
    (True, 0.5),
    (True, 5.0),
    (True, None),
    (False, 0.5),
    (False, None),
]


@pytest.mark.parametrize("server", ["grpcio", "etcd"])
def test_default_keepalive_never_draws_too_many_pings(
    request: pytest.FixtureRequest, server: str, events: EventLog, capfd: pytest.CaptureFixture[str]
) -> None:
    """No combination of health_check and ping_interval draws a too_many_pings GOAWAY
    from a server with default settings (grpcio, or etcd for grpc-go) while the pools
    are idle.

    Scaled as in tests/test_keepalive.py: a 1 s keepalive, grpcio's limit on
    pings without data lifted. Health pings are calls, so they never strike;
    keepalive pings on connections without calls would, and the defaults send
    none. A pool with the old settings (keepalive pings on idle connections)
    runs alongside and must be struck out, showing the pools were idle long
    enough: with the old defaults the pool pinging health every 5 s (a ping
    interval above ~2 minutes, scaled) was struck out as well.
    """
    scenario = {
        f"health={health}-ping={interval}": (
            Setup(connection={"health_check": health, "ping_interval": interval}, size=1)
        )
        for health, interval in HEALTH_AND_PING_INTERVALS
    }
    scenario["old-pings"] = Setup(options=OLD_IDLE_PINGS, size=1)
    with contextlib.ExitStack() as stack:
        if server == "etcd":
            port = request.getfixturevalue("etcd_server").port
        else:
            port = stack.enter_context(EchoServer()).port
        pools_at = {name: (port, setup) for name, setup in scenario.items()}
        pools = stack.enter_context(proxied_pools(events, pools_at))
        wait_for(pools["old-pings"].dropped, timeout=STRUCK_OUT_TIMEOUT)
        dropped = [name for name, pool in pools.items() if pool.dropped()]
    assert dropped == ["old-pings"]
    stderr = capfd.readouterr().err
    assert [name for name, pool in pools.items() if pool.struck_out_in(stderr)] in (
        [],  # grpcio told to log nothing
        ["old-pings"],
    )


def test_concurrent_callers_during_scaling_and_restart_get_only_live_channels(
    supervisors: list[pykka.ActorRef[Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """16 threads calling get_channel through resizes and a server restart never get a
    channel closed more than 100 ms earlier, nor any error but NotConnectedError."""
    closes: list[float] = []
    original_close = grpc._channel.Channel.close

    def recording_close(channel: grpc.Channel) -> None:
        # On the object itself: ids of freed channels get reused.
        if not hasattr(channel, "closed_at_for_test"):
            channel.closed_at_for_test = time.monotonic()  # type: ignore[attr-defined]
            closes.append(channel.closed_at_for_test)  # type: ignore[attr-defined]
        original_close(channel)

    monkeypatch.setattr(grpc._channel.Channel, "close", recording_close)

    def is_closed(channel: grpc.Channel) -> bool:
        return hasattr(channel, "closed_at_for_test")

    server = EchoServer()
    port = server.port
    stale: list[float] = []
    errors: list[BaseException] = []
    stop = threading.Event()

    def take() -> None:
        while not stop.is_set():
            try:
                channel = grpcpool.get_channel("busy")
            except NotConnectedError:
                time.sleep(0.001)  # pacing: a caller retries, it does not spin
                continue
            except BaseException as error:  # anything else is a defect
                errors.append(error)
                return
            closed = getattr(channel, "closed_at_for_test", None)
            if closed is not None and time.monotonic() - closed > 0.1:
                stale.append(time.monotonic() - closed)
            time.sleep(0.0005)  # a caller does work between calls; spinning would starve the actors

    try:
        config = config_for(port, size=4, drain_timeout=0.2)
        supervisors.append(Supervisor.start(children=[PoolSpec(config, name="busy")]))
        grpcpool.await_ready("busy", timeout=5, min_ready=4)
        threads = [threading.Thread(target=take, name=f"taker-{i}") for i in range(16)]
        for thread in threads:
            thread.start()
        try:
            for target in (8, 2, 6, 1, 4):
                grpcpool.resize("busy", target)
                time.sleep(0.1)  # pacing: takers run at each size while channels come and go
            grpcpool.await_ready("busy", timeout=5)  # worker-1 at least has been ready all along
            dropped = grpcpool.api.lookup("busy").view.channels
            server.stop()
            # The outage lasts until the channels it dropped have drained
            # (drain_timeout 0.2 s) and closed, with the takers running.
            assert dropped
            assert wait_until(lambda: all(is_closed(channel) for channel in dropped), timeout=5)
            server = EchoServer(port=port)
            grpcpool.await_ready("busy", timeout=5, min_ready=4)
            kept = grpcpool.api.lookup("busy").view.channels
            grpcpool.scale_down("busy", 2)
            # The two retired channels drain (0.2 s) and close while the takers run.
            assert wait_until(lambda: sum(is_closed(channel) for channel in kept) >= 2, timeout=5)
        finally:
            stop.set()
            for thread in threads:
                thread.join(10)
    finally:
        server.stop()
    assert errors == []
    assert stale == []
    assert closes, "channels were closed during the run"
