"""The Prometheus exporter, scraped after real pools ran against real servers."""

from __future__ import annotations

import concurrent.futures
import os
import signal
import threading
from collections.abc import Iterator
from typing import Any

import blinker
import prometheus_client
import pykka
import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

import grpcpool
from grpcpool import Config, PoolSpec, Supervisor, telemetry
from grpcpool.connection import _machine_types as machine_types
from grpcpool.metrics import prometheus
from grpcpool.metrics._instruments import CONNECT_DURATION_BUCKETS, PUBLISHED
from tests.pools import free_port, loopback_config, start_pool
from tests.servers import EchoServer, EchoStub
from tests.waiting import wait_until

# Every way a ready channel is lost (grpcio connectivity states, lower-cased, and a failed ping).
DISCONNECT_REASONS = set(machine_types.DISCONNECT_REASONS)


def local_config(port: int, size: int, **pool: Any) -> Config:
    """Quick backoff and pings, so a restart takes well under 1 s."""
    return loopback_config(port, size, pool=pool, backoff_max=0.3, ping_interval=0.1)


@pytest.fixture
def registry() -> Iterator[CollectorRegistry]:
    """A fresh registry with grpcpool's metrics registered; closed after the test."""
    registry = CollectorRegistry()
    metrics = prometheus.register(registry)
    try:
        yield registry
    finally:
        metrics.close()


class Scrape:
    """One ``generate_latest()`` of a registry, parsed back into samples."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.text = prometheus_client.generate_latest(registry).decode()
        self.samples = [
            sample
            for family in text_string_to_metric_families(self.text)
            for sample in family.samples
        ]

    def value(self, name: str, **labels: str) -> float:
        """The sum of the samples called ``name`` whose labels include ``labels``."""
        return sum(
            sample.value
            for sample in self.samples
            if sample.name == name and labels.items() <= sample.labels.items()
        )

    def labels(self, name: str, label: str) -> set[str]:
        """The values ``label`` takes on the samples called ``name``."""
        return {s.labels[label] for s in self.samples if s.name == name and label in s.labels}


def scraped(registry: CollectorRegistry, name: str, **labels: str) -> float:
    return Scrape(registry).value(name, **labels)


def test_server_restart_shows_in_every_metric(
    registry: CollectorRegistry, supervisors: list[pykka.ActorRef[Any]]
) -> None:
    """A server stop and restart on the same port: connects, disconnects, failures, gauges."""
    server = EchoServer()
    port = server.port
    try:
        supervisors.append(
            Supervisor.start(children=[PoolSpec(local_config(port, 3), name="prom")])
        )
        grpcpool.await_ready("prom", timeout=5, min_ready=3)
        assert wait_until(
            lambda: scraped(registry, "grpcpool_pool_current_channels", pool="prom") == 3, 2
        )
        assert wait_until(
            lambda: scraped(registry, "grpcpool_channel_pings_total", result="ok") >= 3, 2
        )

        server.stop()
        assert wait_until(
            lambda: scraped(registry, "grpcpool_pool_current_channels", pool="prom") == 0, 2
        )
        assert wait_until(
            lambda: scraped(registry, "grpcpool_channel_connection_failures_total") >= 1, 2
        )
        server = EchoServer(port=port)
        grpcpool.await_ready("prom", timeout=3, min_ready=3)
        assert wait_until(
            lambda: scraped(registry, "grpcpool_pool_current_channels", pool="prom") == 3, 2
        )
        scrape = Scrape(registry)  # before the server stops again
    finally:
        server.stop()

    connects = scrape.value("grpcpool_channel_connects_total", pool="prom")
    assert connects >= 3 * 2
    assert scrape.value("grpcpool_channel_disconnects_total", pool="prom") == 3
    assert scrape.labels("grpcpool_channel_disconnects_total", "reason") <= DISCONNECT_REASONS
    assert scrape.value("grpcpool_channel_reconnects_scheduled_total", pool="prom") >= 3
    assert scrape.value("grpcpool_channel_connection_failures_total", pool="prom") >= 1
    assert scrape.value("grpcpool_pool_expected_channels", pool="prom") == 3
    assert scrape.value("grpcpool_channel_connect_duration_seconds_count", pool="prom") == connects
    assert 0 < scrape.value("grpcpool_channel_connect_duration_seconds_sum", pool="prom") < connects
    assert scrape.value("grpcpool_channel_connect_duration_seconds_bucket", le="+Inf") == connects


def test_scaling_and_status_reports_set_both_gauges(
    echo_server: EchoServer, registry: CollectorRegistry, supervisors: list[pykka.ActorRef[Any]]
) -> None:
    """scale_up/scale_down move the expected gauge; pool.status brings current to the truth."""
    config = local_config(echo_server.port, 2, telemetry_interval=0.1)
    supervisors.append(Supervisor.start(children=[PoolSpec(config, name="scaled")]))
    grpcpool.await_ready("scaled", timeout=5, min_ready=2)

    def gauges() -> tuple[float, float]:
        scrape = Scrape(registry)
        return (
            scrape.value("grpcpool_pool_expected_channels", pool="scaled"),
            scrape.value("grpcpool_pool_current_channels", pool="scaled"),
        )

    assert wait_until(lambda: gauges() == (2, 2), 2)
    grpcpool.scale_up("scaled", 3)
    assert wait_until(lambda: gauges() == (5, 5), 3)
    # The three stopped workers were ready and emit no disconnect.
    grpcpool.scale_down("scaled", 3)
    assert wait_until(lambda: gauges() == (2, 2), 2)
    assert scraped(registry, "grpcpool_channel_disconnects_total", pool="scaled") == 0


def test_calls_in_flight_gauge_reads_the_pool_channels_calls(
    registry: CollectorRegistry, supervisors: list[pykka.ActorRef[Any]]
) -> None:
    """grpcpool_pool_calls_in_flight shows calls held on the pool channel, then 0 once they end."""

    def in_flight() -> float:
        return scraped(registry, "grpcpool_pool_calls_in_flight", pool="flight")

    # Each call takes 1.5 s; the status reports come every 0.05 s.
    with EchoServer(delay=1.5) as server:
        start_pool(supervisors, local_config(server.port, 2, telemetry_interval=0.05), "flight")
        grpcpool.await_ready("flight", timeout=5, min_ready=2)
        stub = EchoStub(grpcpool.channel("flight"))
        calls = [stub.Unary.future(b"held", timeout=10) for _ in range(3)]
        try:
            assert grpcpool.status("flight").in_flight == 3
            assert wait_until(lambda: in_flight() == 3, 1.2), in_flight()
        finally:
            replies = [call.result(timeout=10) for call in calls]
        assert replies == [b"held"] * 3
        assert wait_until(lambda: grpcpool.status("flight").in_flight == 0, 2)
        assert wait_until(lambda: in_flight() == 0, 2), in_flight()


def test_crashed_worker_counts_a_restart_and_its_channel_once(
    echo_server: EchoServer, registry: CollectorRegistry, supervisors: list[pykka.ActorRef[Any]]
) -> None:
    """A worker crash is one supervisor restart; its reconnect does not inflate current channels."""
    supervisors.append(
        Supervisor.start(children=[PoolSpec(local_config(echo_server.port, 2), name="crash")])
    )
    grpcpool.await_ready("crash", timeout=5, min_ready=2)
    assert wait_until(lambda: scraped(registry, "grpcpool_channel_connects_total") == 2, 2)
    worker = next(
        ref for ref in pykka.ActorRegistry.get_by_class(grpcpool.ChannelWorker) if ref.is_alive()
    )
    worker.tell("not a message a worker understands")
    assert wait_until(lambda: scraped(registry, "grpcpool_channel_connects_total") == 3, 3)
    scrape = Scrape(registry)
    assert scrape.value("grpcpool_supervisor_restarts_total", supervisor="pool:crash") == 1
    assert scrape.labels("grpcpool_supervisor_restarts_total", "child_id") <= {
        "worker-1",
        "worker-2",
    }
    # The default telemetry_interval (5 s) sends no status report during this test:
    # the gauge comes from connect/disconnect events alone, and two disconnects
    # empty it only if the restarted worker's connect was not counted twice.
    assert scrape.value("grpcpool_pool_current_channels", pool="crash") == 2
    echo_server.stop()
    assert wait_until(lambda: scraped(registry, "grpcpool_channel_disconnects_total") == 2, 2)
    assert scraped(registry, "grpcpool_pool_current_channels", pool="crash") == 0


def test_error_texts_never_become_label_values(
    registry: CollectorRegistry, supervisors: list[pykka.ActorRef[Any]]
) -> None:
    """Failed connects count without their error; an odd disconnect reason is labelled
    other (and its A94 grpc_disconnect_error unknown)."""
    supervisors.append(
        Supervisor.start(children=[PoolSpec(local_config(free_port(), 1), name="nowhere")])
    )
    assert wait_until(
        lambda: (
            scraped(registry, "grpcpool_channel_connection_failures_total", pool="nowhere") >= 2
        ),
        3,
    )
    telemetry.emit(
        telemetry.channel_disconnected,
        "fake",
        {"duration": 1.0},
        {"pool_name": "fake", "worker_id": "worker-1", "reason": "auth failed: token=s3cret"},
    )
    scrape = Scrape(registry)
    assert scrape.value("grpcpool_channel_disconnects_total", pool="fake", reason="other") == 1
    assert scrape.labels("grpc_subchannel_disconnections_total", "grpc_disconnect_error") == {
        "unknown"
    }
    assert "s3cret" not in scrape.text
    assert "refused" not in scrape.text.lower()
    a94 = {"grpc_target", "grpc_lb_backend_service", "grpc_disconnect_error"}
    for sample in scrape.samples:
        assert set(sample.labels) <= {"pool", "reason", "result", "supervisor", "child_id", "le"} | a94


def test_histogram_uses_second_buckets(registry: CollectorRegistry) -> None:
    """Connect durations land in second-sized buckets (5 ms to 20 s)."""
    telemetry.emit(
        telemetry.channel_connected, "h", {"duration": 0.02}, {"pool_name": "h", "worker_id": "w"}
    )
    scrape = Scrape(registry)
    bounds = scrape.labels("grpcpool_channel_connect_duration_seconds_bucket", "le")
    assert bounds == {str(b) for b in CONNECT_DURATION_BUCKETS} | {"+Inf"}
    bucket = "grpcpool_channel_connect_duration_seconds_bucket"
    assert scrape.value(bucket, pool="h", le="0.01") == 0
    assert scrape.value(bucket, pool="h", le="0.025") == 1


def test_close_is_idempotent_and_frees_the_registry() -> None:
    """close() twice disconnects every receiver and unregisters, so register() works again."""
    registry = CollectorRegistry()
    metrics = prometheus.register(registry)
    with pytest.raises(ValueError, match="already registered"):
        prometheus.register(registry)
    metrics.close()
    metrics.close()
    assert metrics.closed
    assert Scrape(registry).samples == []
    receivers = [r for name in telemetry.EVENTS for r in telemetry_receivers(name)]
    assert not any(getattr(r, "__self__", None) is metrics._bridge for r in receivers)
    telemetry.emit(telemetry.channel_connection_failed, "p", {"duration": 0.1}, {})

    with prometheus.register(registry) as again:
        telemetry.emit(telemetry.channel_connection_failed, "p", {"duration": 0.1}, {})
        assert scraped(registry, "grpcpool_channel_connection_failures_total", pool="p") == 1
        assert {family.name for family in registry.collect()} == {
            i.prometheus_name.removesuffix("_total") for i in PUBLISHED
        }
    assert again.closed


def test_default_registry_is_prometheus_clients() -> None:
    """register() without a registry uses prometheus_client.REGISTRY."""
    with prometheus.register() as metrics:
        assert metrics.registry is prometheus_client.REGISTRY
        telemetry.emit(telemetry.channel_reconnect_scheduled, "d", {"delay_ms": 5}, {})
        assert (
            scraped(prometheus_client.REGISTRY, "grpcpool_channel_reconnects_scheduled_total") == 1
        )


def telemetry_receivers(name: str) -> list[Any]:
    """The receiver callables connected to the signal called ``name``."""
    signal = blinker.signal(name)
    return [signal.receivers[key] for key in list(signal.receivers)]


def test_forked_child_updates_metrics_while_the_parent_held_the_lock() -> None:
    """A child forked while another thread held the exporter's lock still counts its events."""
    registry = CollectorRegistry()
    with prometheus.register(registry) as metrics:
        held, release = threading.Event(), threading.Event()

        def hold() -> None:
            with metrics._bridge._lock:
                held.set()
                release.wait(5)

        holder = threading.Thread(target=hold, name="lock-holder")
        holder.start()
        try:
            assert held.wait(5)
            pid = os.fork()
            if pid == 0:  # the child: report by exit code, never return into pytest
                code = 1
                try:
                    signal.alarm(5)  # a hang is a failure, not a stuck test run
                    telemetry.emit(telemetry.pool_init, "forked", {"pool_size": 2}, {})
                    code = 0 if scraped(registry, "grpcpool_pool_expected_channels") == 2 else 2
                finally:
                    os._exit(code)
            _, status = os.waitpid(pid, 0)
        finally:
            release.set()
            holder.join(5)
        assert os.waitstatus_to_exitcode(status) == 0


def test_resolutions_and_refreshes_count_without_addresses_in_labels(
    registry: CollectorRegistry,
) -> None:
    """pool.resolved counts and sets the address gauge; refreshes count by reason, never address."""
    answers = [
        (3, ["10.0.0.1:50051", "10.0.0.2:50051", "10.0.0.3:50051"], []),
        (4, ["10.0.0.4:50051"], []),
        (3, [], ["10.0.0.2:50051"]),
    ]
    for count, added, removed in answers:
        telemetry.emit(
            telemetry.pool_resolved,
            "many",
            {"addresses": count, "duration": 0.002},
            {"pool_name": "many", "added": added, "removed": removed},
        )
    refreshes = [("rebalance", "10.0.0.4:50051")] * 2 + [("max_age", "10.0.0.1:50051")]
    refreshes.append(("connection dropped by 10.0.0.9", "10.0.0.3:50051"))
    for reason, address in refreshes:
        telemetry.emit(
            telemetry.channel_refreshed,
            "many",
            {"age": 12.5},
            {"pool_name": "many", "worker_id": "worker-2", "address": address, "reason": reason},
        )
    scrape = Scrape(registry)
    assert scrape.value("grpcpool_pool_resolutions_total", pool="many") == 3
    assert scrape.value("grpcpool_pool_addresses", pool="many") == 3
    refreshed = "grpcpool_channel_refreshes_total"
    assert scrape.value(refreshed, pool="many", reason="rebalance") == 2
    assert scrape.value(refreshed, pool="many", reason="max_age") == 1
    assert scrape.value(refreshed, pool="many", reason="other") == 1
    assert scrape.labels(refreshed, "reason") == {"rebalance", "max_age", "other"}
    assert "10.0.0." not in scrape.text
    assert "dropped" not in scrape.text


def test_a_pool_over_two_backends_reports_its_addresses(
    registry: CollectorRegistry, supervisors: list[pykka.ActorRef[Any]]
) -> None:
    """A real pool re-resolving to two loopback servers shows 2 addresses and counts resolutions."""
    port = free_port()
    with EchoServer(port), EchoServer(port, host="127.0.0.2"):
        answer = [f"127.0.0.1:{port}", f"127.0.0.2:{port}"]
        config = Config.new(
            endpoint={
                "type": "local",
                "host": "kv.test",
                "port": port,
                "resolver": grpcpool.static_resolver(answer),
                "resolve_interval": 0.2,
            },
            pool={"size": 2},
            connection={"backoff_min": 0.05, "backoff_max": 0.5, "connect_timeout": 2.0},
        )
        start_pool(supervisors, config, "two")
        grpcpool.await_ready("two", timeout=5, min_ready=2)
        assert wait_until(
            lambda: scraped(registry, "grpcpool_pool_resolutions_total", pool="two") >= 1, 2
        )
        assert scraped(registry, "grpcpool_pool_addresses", pool="two") == 2
        assert "127.0.0.2" not in Scrape(registry).text
        supervisors.pop().stop()  # before the servers go, so no worker reconnects


def ejected(pool: str, address: str, reason: str = "failure_percentage") -> None:
    telemetry.emit(
        telemetry.pool_ejected,
        pool,
        {"ejection_time": 30.0},
        {"pool_name": pool, "address": address, "reason": reason},
    )


def unejected(pool: str, address: str) -> None:
    telemetry.emit(
        telemetry.pool_unejected,
        pool,
        {"ejected_for": 30.0},
        {"pool_name": pool, "address": address, "reason": "failure_percentage"},
    )


def hedged(pool: str, method: str, attempts: int, won: int) -> None:
    telemetry.emit(
        telemetry.call_hedged,
        pool,
        {"attempts": attempts, "won": won},
        {"pool_name": pool, "method": method},
    )


def test_ejections_count_by_reason_and_the_gauge_follows_the_units_out(
    registry: CollectorRegistry,
) -> None:
    """pool.ejected counts by reason and puts a unit out, pool.unejected brings it back,
    a unit ejected twice is out once, and no address becomes a label."""
    ejected("routed", "10.0.0.1:443")
    ejected("routed", "10.0.0.2:443", "success_rate")
    ejected("routed", "10.0.0.3:443", "ejected by 10.0.0.3's bad luck")
    ejected("routed", "10.0.0.3:443")  # again, before any pool.unejected: still one unit
    scrape = Scrape(registry)
    ejections = "grpcpool_pool_ejections_total"
    assert scrape.value(ejections, pool="routed") == 4
    assert scrape.value(ejections, pool="routed", reason="failure_percentage") == 2
    assert scrape.labels(ejections, "reason") == {"failure_percentage", "success_rate", "other"}
    assert scrape.value("grpcpool_pool_ejected_units", pool="routed") == 3

    unejected("routed", "10.0.0.1:443")
    unejected("routed", "10.0.0.9:443")  # ejected before the exporter subscribed
    scrape = Scrape(registry)
    assert scrape.value("grpcpool_pool_ejected_units", pool="routed") == 2
    assert scrape.value(ejections, pool="routed") == 4
    assert "10.0.0." not in scrape.text
    assert "luck" not in scrape.text


def test_panic_gauge_and_hedged_attempts_and_wins_by_method(registry: CollectorRegistry) -> None:
    """pool.panic sets a 1/0 gauge; call.hedged counts the attempts after the first and the
    calls a later attempt won, by method (a value that is no method name reads "other")."""
    telemetry.emit(telemetry.pool_panic, "routed", {"active": 1, "usable": 1, "ready": 4}, {})
    assert scraped(registry, "grpcpool_pool_panic", pool="routed") == 1
    telemetry.emit(telemetry.pool_panic, "routed", {"active": 0, "usable": 3, "ready": 4}, {})
    assert scraped(registry, "grpcpool_pool_panic", pool="routed") == 0

    hedged("routed", "/kv.Store/Get", attempts=2, won=1)
    hedged("routed", "/kv.Store/Get", attempts=2, won=0)
    hedged("routed", "/kv.Store/Get", attempts=3, won=-1)  # every attempt failed
    hedged("routed", "/kv.Store/Scan", attempts=2, won=1)
    hedged("routed", "GET /kv?key=secret", attempts=2, won=0)
    scrape = Scrape(registry)
    attempts, wins = "grpcpool_call_hedged_attempts_total", "grpcpool_call_hedge_wins_total"
    assert scrape.value(attempts, pool="routed", method="/kv.Store/Get") == 4
    assert scrape.value(attempts, pool="routed", method="/kv.Store/Scan") == 1
    assert scrape.value(attempts, pool="routed", method="other") == 1
    assert scrape.value(wins, pool="routed", method="/kv.Store/Get") == 1
    assert scrape.value(wins, pool="routed", method="/kv.Store/Scan") == 1
    assert scrape.value(wins, pool="routed") == 2
    assert scrape.labels(attempts, "method") == {"/kv.Store/Get", "/kv.Store/Scan", "other"}
    assert "secret" not in scrape.text


def test_a_pool_started_again_has_nothing_ejected_and_no_panic(
    registry: CollectorRegistry,
) -> None:
    """pool.init of a pool name the exporter saw ejecting and panicking zeroes both gauges
    (a new pool starts with every unit in rotation); the ejection counter keeps its total."""
    ejected("again", "10.0.0.1:443")
    telemetry.emit(telemetry.pool_panic, "again", {"active": 1, "usable": 0, "ready": 2}, {})
    telemetry.emit(telemetry.pool_init, "again", {"pool_size": 2}, {"pool_name": "again"})
    scrape = Scrape(registry)
    assert scrape.value("grpcpool_pool_ejected_units", pool="again") == 0
    assert scrape.value("grpcpool_pool_panic", pool="again") == 0
    assert scrape.value("grpcpool_pool_ejections_total", pool="again") == 1
    telemetry.emit(telemetry.pool_init, "calm", {"pool_size": 2}, {"pool_name": "calm"})
    scrape = Scrape(registry)
    assert not [s for s in scrape.samples if s.labels.get("pool") == "calm" and "panic" in s.name]


def test_connections_of_one_address_are_ejected_one_by_one(registry: CollectorRegistry) -> None:
    """In a pool with one address a connection is the unit: ejections naming the same address
    but different workers count as that many units out, and each comes back on its own."""
    for worker in ("worker-1", "worker-2"):
        telemetry.emit(
            telemetry.pool_ejected,
            "single",
            {"ejection_time": 30.0},
            {"pool_name": "single", "worker_id": worker, "address": "10.0.0.1:443",
             "reason": "failure_percentage"},
        )
    assert scraped(registry, "grpcpool_pool_ejected_units", pool="single") == 2
    telemetry.emit(
        telemetry.pool_unejected,
        "single",
        {"ejected_for": 30.0},
        {"pool_name": "single", "worker_id": "worker-2", "address": "10.0.0.1:443",
         "reason": "failure_percentage"},
    )
    assert scraped(registry, "grpcpool_pool_ejected_units", pool="single") == 1
    assert "worker-" not in Scrape(registry).text


def test_autoscale_steps_count_by_direction(registry: CollectorRegistry) -> None:
    """pool.autoscaled counts one step up or down by the sizes it moved between; an event
    that moved nothing is not a step."""
    for before, after in ((2, 4), (4, 6), (6, 4), (4, 4)):
        telemetry.emit(
            telemetry.pool_autoscaled,
            "elastic",
            {"from_size": before, "to_size": after, "peak_in_flight": 90, "queued": 0},
            {"pool_name": "elastic"},
        )
    scrape = Scrape(registry)
    steps = "grpcpool_pool_autoscale_steps_total"
    assert scrape.value(steps, pool="elastic", direction="up") == 2
    assert scrape.value(steps, pool="elastic", direction="down") == 1
    assert scrape.labels(steps, "direction") == {"up", "down"}


def test_queued_calls_gauge_and_queue_wait_histogram(
    registry: CollectorRegistry, supervisors: list[pykka.ActorRef[Any]]
) -> None:
    """With pool.max_calls_per_connection 1 on a pool of 1, two calls wait while a third
    runs: grpcpool_pool_calls_queued reads 2 and then 0, and
    grpcpool_call_queue_wait_seconds counts the two waits."""

    def queued() -> float:
        return scraped(registry, "grpcpool_pool_calls_queued", pool="queue")

    with EchoServer(delay=0.4) as server:
        pool = {"telemetry_interval": 0.05, "max_calls_per_connection": 1}
        start_pool(supervisors, local_config(server.port, 1, **pool), "queue")
        grpcpool.await_ready("queue", timeout=5)
        stub = EchoStub(grpcpool.channel("queue"))
        with concurrent.futures.ThreadPoolExecutor(3) as callers:
            calls = [callers.submit(stub.Unary, b"q", timeout=10) for _ in range(3)]
            assert wait_until(lambda: queued() == 2, 2), queued()
            assert [call.result(timeout=10) for call in calls] == [b"q"] * 3
        assert wait_until(lambda: queued() == 0, 2), queued()
    scrape = Scrape(registry)
    assert scrape.value("grpcpool_call_queue_wait_seconds_count", pool="queue") == 2
    assert scrape.value("grpcpool_call_queue_wait_seconds_sum", pool="queue") >= 0.3
