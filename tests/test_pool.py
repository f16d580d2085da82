"""The public pool API against real grpcio servers on 127.0.0.1."""

from __future__ import annotations

import collections
import dataclasses
import threading
from typing import Any

import pykka
import pytest

import grpcpool
from grpcpool import Config, PoolSpec, Supervisor
from grpcpool.errors import (
    ConfigError,
    NotConnectedError,
    PoolNotFoundError,
    PoolTimeoutError,
)
from tests.events import EventLog
from tests.pools import free_port, loopback_config, start_pool
from tests.servers import EchoServer, EchoStub
from tests.waiting import wait_until


def test_spec_example_works_as_written(echo_server: EchoServer) -> None:
    """The SPEC section 2 example: two named pools, await_ready, a channel, a stub, stop."""
    other = EchoServer()
    try:
        cfg_a = Config.local(host="127.0.0.1", port=echo_server.port, pool_size=3)
        cfg_b = Config.local(host="127.0.0.1", port=other.port, pool_size=2)
        sup = Supervisor.start(children=[PoolSpec(cfg_a, name="a"), PoolSpec(cfg_b, name="b")])
        try:
            pool_proxy = grpcpool.pool("a")
            grpcpool.await_ready("a", timeout=5.0)
            channel = pool_proxy.get_channel().get()
            stub = EchoStub(channel)
            assert stub.Unary(b"hello", timeout=5) == b"hello"
        finally:
            sup.stop()
        with pytest.raises(PoolNotFoundError):
            grpcpool.get_channel("a")
    finally:
        other.stop()


def test_pool_of_four_is_four_peers_and_round_robin_spreads_evenly(
    echo_server: EchoServer, supervisors: list[pykka.ActorRef[Any]]
) -> None:
    """A pool of 4 is 4 TCP connections, and round robin spreads 40 calls 10/10/10/10."""
    proxy = start_pool(supervisors, loopback_config(echo_server.port, size=4), "rr")
    grpcpool.await_ready("rr", timeout=5, min_ready=4)
    for _ in range(40):
        assert EchoStub(proxy.get_channel().get()).Unary(b"x", timeout=5) == b"x"
    counts = collections.Counter(echo_server.peers)
    assert sorted(counts.values()) == [10, 10, 10, 10]


def test_two_named_pools_route_to_their_own_servers(
    echo_server: EchoServer, plain_server: EchoServer, supervisors: list[pykka.ActorRef[Any]]
) -> None:
    """Each call goes to the server of the pool it was taken from."""
    supervisors.append(
        Supervisor.start(
            children=[
                PoolSpec(loopback_config(echo_server.port), name="one"),
                PoolSpec(loopback_config(plain_server.port), name="two"),
            ]
        )
    )
    grpcpool.await_ready("one", timeout=5, min_ready=2)
    grpcpool.await_ready("two", timeout=5, min_ready=2)
    for _ in range(5):
        EchoStub(grpcpool.get_channel("one")).Unary(b"1", timeout=5)
    for _ in range(3):
        EchoStub(grpcpool.get_channel("two")).Unary(b"2", timeout=5)
    assert echo_server.calls == 5
    assert plain_server.calls == 3


def test_server_stop_empties_pool_and_restart_refills_it(
    events: EventLog, supervisors: list[pykka.ActorRef[Any]]
) -> None:
    """A stopped server empties the snapshot within 1 s; a restart refills every worker."""
    server = EchoServer()
    port = server.port
    try:
        start_pool(supervisors, loopback_config(port, size=3, backoff_max=1.0), "restart")
        grpcpool.await_ready("restart", timeout=5, min_ready=3)
        server.stop()
        assert wait_until(lambda: grpcpool.status("restart").current_size == 0, timeout=1.0)
        with pytest.raises(NotConnectedError):
            grpcpool.get_channel("restart")
        for event in ("connection_down", "disconnected", "reconnect_scheduled"):
            assert wait_until(
                lambda e=event: (
                    {m["worker_id"] for _, _, m in events.of(f"channel.{e}")}
                    == {"worker-1", "worker-2", "worker-3"}
                ),
                timeout=2.0,
            ), event
        server = EchoServer(port=port)
        # backoff_max + 1 s
        grpcpool.await_ready("restart", timeout=2.0, min_ready=3)
        assert grpcpool.status("restart").status == "healthy"
    finally:
        server.stop()


def test_not_serving_takes_workers_out_and_serving_brings_them_back(
    echo_server: EchoServer, supervisors: list[pykka.ActorRef[Any]]
) -> None:
    """Health NOT_SERVING removes the workers from rotation; SERVING restores them."""
    config = loopback_config(echo_server.port, size=2, ping_interval=0.1)
    start_pool(supervisors, config, "health")
    grpcpool.await_ready("health", timeout=5, min_ready=2)
    echo_server.set_serving(False)
    assert wait_until(lambda: grpcpool.status("health").current_size == 0, timeout=3)
    echo_server.set_serving(True)
    grpcpool.await_ready("health", timeout=5, min_ready=2)


def test_server_without_health_service_counts_as_healthy(
    plain_server: EchoServer, events: EventLog, supervisors: list[pykka.ActorRef[Any]]
) -> None:
    """UNIMPLEMENTED from the health check means "no health service": pings stay ok."""
    start_pool(supervisors, loopback_config(plain_server.port, ping_interval=0.05), "nohealth")
    grpcpool.await_ready("nohealth", timeout=5, min_ready=2)
    assert wait_until(lambda: len(events.of("channel.ping")) >= 4, timeout=3)
    assert {m["result"] for _, _, m in events.of("channel.ping")} == {"ok"}
    assert grpcpool.status("nohealth").current_size == 2


def test_endpoint_down_at_start_raises_not_connected_and_times_out(
    events: EventLog, supervisors: list[pykka.ActorRef[Any]]
) -> None:
    """With nothing listening, get_channel raises NotConnectedError and await_ready times out."""
    start_pool(supervisors, loopback_config(free_port(), max_reconnect_attempts=50), "down")
    with pytest.raises(NotConnectedError) as raised:
        grpcpool.get_channel("down")
    assert "'down'" in str(raised.value)
    with pytest.raises(PoolTimeoutError):
        grpcpool.await_ready("down", timeout=0.3)
    assert wait_until(lambda: len(events.of("channel.connection_failed")) >= 2, timeout=3)
    _, measurements, metadata = events.of("channel.connection_failed")[0]
    assert measurements["duration"] >= 0
    assert set(metadata) == {"pool_name", "worker_id", "error"}


def test_scaling_with_real_workers(
    echo_server: EchoServer, events: EventLog, supervisors: list[pykka.ActorRef[Any]]
) -> None:
    """scale_up, scale_down and resize change the workers and report the new size."""
    proxy = start_pool(supervisors, loopback_config(echo_server.port, size=2), "scale")
    grpcpool.await_ready("scale", timeout=5, min_ready=2)
    assert grpcpool.scale_up("scale", 3) == 5
    grpcpool.await_ready("scale", timeout=5, min_ready=5)
    assert proxy.scale_down(2).get(timeout=10) == 3
    assert wait_until(lambda: grpcpool.status("scale").current_size == 3, timeout=2)
    assert grpcpool.resize("scale", 4) == 4
    assert grpcpool.resize("scale", 4) == 4
    grpcpool.await_ready("scale", timeout=5, min_ready=4)
    assert grpcpool.resize("scale", 1) == 1
    assert wait_until(lambda: len(grpcpool.status("scale").workers) == 1, timeout=2)
    _, up, _ = events.of("pool.scale_up")[0]
    assert up["requested"] == 3 and up["succeeded"] == 3 and up["failed"] == 0
    assert up["new_size"] == 5 and up["duration"] >= 0
    _, down, metadata = events.of("pool.scale_down")[0]
    assert down == {**down, "requested": 2, "terminated": 2, "new_size": 3}
    assert metadata == {"pool_name": "scale"}


@pytest.mark.parametrize(
    ("call", "error"),
    [
        (lambda: grpcpool.scale_up("bad", 0), ValueError),
        (lambda: grpcpool.scale_up("bad", -1), ValueError),
        (lambda: grpcpool.scale_up("bad", True), TypeError),
        (lambda: grpcpool.scale_up("bad", "2"), TypeError),
        (lambda: grpcpool.scale_up("bad", 4), ValueError),
        (lambda: grpcpool.scale_down("bad", 2), ValueError),
        (lambda: grpcpool.scale_down("bad", 0), ValueError),
        (lambda: grpcpool.resize("bad", 0), ValueError),
        (lambda: grpcpool.resize("bad", 6), ValueError),
        (lambda: grpcpool.resize("bad", 2.0), TypeError),
    ],
)
def test_bad_scaling_input_raises_and_changes_nothing(
    echo_server: EchoServer,
    supervisors: list[pykka.ActorRef[Any]],
    call: Any,
    error: type[Exception],
) -> None:
    """Bad counts raise a clear error and leave expected_size and the workers alone."""
    config = loopback_config(echo_server.port, size=2)
    config = dataclasses.replace(config, pool=dataclasses.replace(config.pool, max_size=5))
    start_pool(supervisors, config, "bad")
    with pytest.raises(error):
        call()
    status = grpcpool.status("bad")
    assert status.expected_size == 2
    assert len(status.workers) == 2


def test_unknown_pool_raises_pool_not_found() -> None:
    """Every entry point names the missing pool with PoolNotFoundError."""
    for call in (
        lambda: grpcpool.pool("nope"),
        lambda: grpcpool.get_channel("nope"),
        lambda: grpcpool.status("nope"),
        lambda: grpcpool.await_ready("nope", timeout=0.1),
        lambda: grpcpool.scale_up("nope", 1),
        lambda: grpcpool.PoolProxy("nope").get_channel().get(),
    ):
        with pytest.raises(PoolNotFoundError, match="nope"):
            call()


def test_name_clash_raises_in_caller_and_leaves_running_pool_alone(
    echo_server: EchoServer, supervisors: list[pykka.ActorRef[Any]]
) -> None:
    """Starting a second pool with a taken name raises ConfigError; the first keeps working."""
    start_pool(supervisors, loopback_config(echo_server.port), "taken")
    grpcpool.await_ready("taken", timeout=5, min_ready=2)
    actors_before = len(pykka.ActorRegistry.get_all())
    with pytest.raises(ConfigError, match="taken"):
        Supervisor.start(children=[PoolSpec(loopback_config(echo_server.port), name="taken")])
    with pytest.raises(ConfigError, match="taken"):
        grpcpool.start(loopback_config(echo_server.port), name="taken")
    assert len(pykka.ActorRegistry.get_all()) == actors_before
    assert grpcpool.status("taken").current_size == 2
    EchoStub(grpcpool.get_channel("taken")).Unary(b"ok", timeout=5)


def test_default_supervisor_start_and_idempotent_stop(echo_server: EchoServer) -> None:
    """grpcpool.start runs a pool under the default supervisor; stop removes it, twice is fine."""
    proxy = grpcpool.start(loopback_config(echo_server.port), name="dflt")
    try:
        proxy.await_ready(timeout=5).get()
        assert EchoStub(grpcpool.get_channel("dflt")).Unary(b"d", timeout=5) == b"d"
    finally:
        grpcpool.stop("dflt")
    grpcpool.stop("dflt")
    proxy.stop().get()
    with pytest.raises(PoolNotFoundError):
        grpcpool.get_channel("dflt")


def test_stopped_pool_is_not_restarted_and_its_name_is_free(
    echo_server: EchoServer, supervisors: list[pykka.ActorRef[Any]]
) -> None:
    """stop(name) under a user supervisor terminates the pool for good and frees the name."""
    sup = Supervisor.start(children=[PoolSpec(loopback_config(echo_server.port), name="gone")])
    supervisors.append(sup)
    grpcpool.stop("gone")
    assert sup.proxy().count_children().get() == {
        "specs": 0,
        "active": 0,
        "supervisors": 0,
        "workers": 0,
    }
    proxy = grpcpool.start(loopback_config(echo_server.port), name="gone")
    try:
        proxy.await_ready(timeout=5).get()
    finally:
        proxy.stop().get()


def test_proxy_returns_resolved_futures_and_shows_live_state(
    echo_server: EchoServer, supervisors: list[pykka.ActorRef[Any]]
) -> None:
    """PoolProxy methods return pykka futures; repr shows status, sizes and strategy."""
    proxy = start_pool(supervisors, loopback_config(echo_server.port, size=2), "proxy")
    proxy.await_ready(timeout=5, min_ready=2).get()
    future = proxy.get_channel()
    assert isinstance(future, pykka.Future)
    assert future.get(timeout=0) is future.get()
    assert proxy.status().get().status == "healthy"
    assert repr(proxy) == "<PoolProxy 'proxy' healthy 2/2 round_robin>"
    stubs = {id(proxy.stub(EchoStub).get()) for _ in range(10)}
    assert len(stubs) == 1  # one stub on the pool channel, reused
    assert proxy.stub(EchoStub).get().Unary(b"s", timeout=5) == b"s"


def test_status_reports_each_worker(
    echo_server: EchoServer, supervisors: list[pykka.ActorRef[Any]]
) -> None:
    """status() lists one record per worker with its state, time and peer."""
    start_pool(supervisors, loopback_config(echo_server.port, size=3), "status")
    grpcpool.await_ready("status", timeout=5, min_ready=3)
    status = grpcpool.status("status")
    assert (status.pool_name, status.expected_size, status.current_size) == ("status", 3, 3)
    assert [w.worker_id for w in status.workers] == ["worker-1", "worker-2", "worker-3"]
    assert {w.state for w in status.workers} == {"ready"}
    assert {w.peer for w in status.workers} == {f"127.0.0.1:{echo_server.port}"}


def test_get_channel_from_many_threads_never_fails_while_ready(
    echo_server: EchoServer, supervisors: list[pykka.ActorRef[Any]]
) -> None:
    """Concurrent get_channel callers all get channels of the snapshot."""
    start_pool(supervisors, loopback_config(echo_server.port, size=4), "threads")
    grpcpool.await_ready("threads", timeout=5, min_ready=4)
    snapshot = set(grpcpool.pool("threads").status().get().workers)
    assert len(snapshot) == 4
    seen: list[Any] = []
    errors: list[BaseException] = []

    def take() -> None:
        try:
            for _ in range(2000):
                seen.append(grpcpool.get_channel("threads"))
        except BaseException as error:  # recorded for the assertion below
            errors.append(error)

    threads = [threading.Thread(target=take) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert not errors
    assert len(seen) == 16000
    assert len(set(map(id, seen))) == 4


def test_every_event_fires_with_documented_keys(
    echo_server: EchoServer, events: EventLog, supervisors: list[pykka.ActorRef[Any]]
) -> None:
    """pool.* and channel.* events fire with the SPEC's measurements and metadata keys."""
    config = loopback_config(echo_server.port, size=2, ping_interval=0.05)
    config = dataclasses.replace(
        config, pool=dataclasses.replace(config.pool, telemetry_interval=0.05)
    )
    start_pool(supervisors, config, "events")
    grpcpool.await_ready("events", timeout=5, min_ready=2)
    grpcpool.get_channel("events")
    grpcpool.scale_up("events", 1)
    grpcpool.scale_down("events", 1)
    assert wait_until(lambda: events.of("pool.status") and events.of("channel.ping"), timeout=3)
    expected = {
        "pool.init": ({"pool_size"}, {"pool_name", "endpoint"}),
        "pool.get_channel": (set(), {"pool_name", "available_channels"}),
        "pool.scale_up": (
            {"duration", "requested", "succeeded", "failed", "new_size"},
            {"pool_name"},
        ),
        "pool.scale_down": ({"duration", "requested", "terminated", "new_size"}, {"pool_name"}),
        "pool.status": ({"expected_size", "current_size", "in_flight", "queued"}, {"pool_name"}),
        "channel.connected": ({"duration"}, {"pool_name", "worker_id"}),
        "channel.ping": ({"duration"}, {"pool_name", "worker_id", "result"}),
    }
    for name, (measurement_keys, metadata_keys) in expected.items():
        sender, measurements, metadata = events.of(name)[0]
        assert sender == "events", name
        assert set(measurements) == measurement_keys, name
        assert set(metadata) == metadata_keys, name
    assert events.of("pool.init")[0][2]["endpoint"] == f"127.0.0.1:{echo_server.port}"


def test_crashed_worker_is_restarted_and_pool_refills(
    echo_server: EchoServer, events: EventLog, supervisors: list[pykka.ActorRef[Any]]
) -> None:
    """An exception inside a worker's message restarts that worker; child_restarted fires."""
    start_pool(supervisors, loopback_config(echo_server.port, size=2), "crash")
    grpcpool.await_ready("crash", timeout=5, min_ready=2)
    worker = next(
        ref for ref in pykka.ActorRegistry.get_by_class(grpcpool.ChannelWorker) if ref.is_alive()
    )
    worker.tell("not a message a worker understands")
    assert wait_until(lambda: events.of("supervisor.child_restarted"), timeout=3)
    _, measurements, metadata = events.of("supervisor.child_restarted")[0]
    assert measurements["restarts"] == 1
    assert metadata["supervisor"] == "pool:crash"
    assert metadata["child_id"] in {"worker-1", "worker-2"}
    assert "TypeError" in metadata["reason"]
    grpcpool.await_ready("crash", timeout=5, min_ready=2)


def test_sample_rate_zero_silences_get_channel_event(
    echo_server: EchoServer, events: EventLog, supervisors: list[pykka.ActorRef[Any]]
) -> None:
    """telemetry_sample_rate=0 never emits pool.get_channel; 3 emits about 1 in 3."""
    config = loopback_config(echo_server.port)
    silent = dataclasses.replace(
        config, pool=dataclasses.replace(config.pool, telemetry_sample_rate=0)
    )
    sampled = dataclasses.replace(
        config, pool=dataclasses.replace(config.pool, telemetry_sample_rate=3)
    )
    supervisors.append(
        Supervisor.start(
            children=[PoolSpec(silent, name="silent"), PoolSpec(sampled, name="sampled")]
        )
    )
    grpcpool.await_ready("silent", timeout=5)
    grpcpool.await_ready("sampled", timeout=5)
    for _ in range(30):
        grpcpool.get_channel("silent")
        grpcpool.get_channel("sampled")
    senders = collections.Counter(sender for sender, _, _ in events.of("pool.get_channel"))
    assert senders["silent"] == 0
    assert senders["sampled"] == 10
