"""The OpenTelemetry exporter, read through the SDK's in-memory reader after real pool runs."""

from __future__ import annotations

import concurrent.futures
import inspect
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import blinker
import pykka
import pytest
from opentelemetry import metrics
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import HistogramDataPoint, InMemoryMetricReader

import grpcpool
from grpcpool import Config, PoolSpec, Supervisor, telemetry
from grpcpool.connection import _machine_types as machine_types
from grpcpool.metrics import opentelemetry as grpcpool_otel
from grpcpool.metrics._instruments import CONNECT_DURATION_BUCKETS, PUBLISHED
from tests.pools import loopback_config, start_pool
from tests.servers import EchoServer, EchoStub
from tests.waiting import wait_until

# opentelemetry-api 1.30 and later take bucket boundaries from the instrument;
# older ones fall back to the SDK's default (millisecond) buckets.
BUCKET_ADVICE = (
    "explicit_bucket_boundaries_advisory"
    in inspect.signature(metrics.Meter.create_histogram).parameters
)

# Every way a ready channel is lost (grpcio connectivity states, lower-cased, and a failed ping).
DISCONNECT_REASONS = set(machine_types.DISCONNECT_REASONS)


def local_config(port: int, size: int, **pool: Any) -> Config:
    """Quick backoff and pings, so a restart takes well under 1 s."""
    return loopback_config(port, size, pool=pool, backoff_max=0.3, ping_interval=0.1)


@dataclass
class Otel:
    """An SDK meter provider with an in-memory reader, and grpcpool's instruments on it."""

    reader: InMemoryMetricReader
    provider: MeterProvider
    metrics: grpcpool_otel.OpenTelemetryMetrics

    def read(self) -> Reading:
        return Reading(self.reader)


@pytest.fixture
def otel() -> Iterator[Otel]:
    """grpcpool's instruments on a fresh SDK provider; closed and shut down after the test."""
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader], shutdown_on_exit=False)
    metrics = grpcpool_otel.register(meter_provider=provider)
    try:
        yield Otel(reader, provider, metrics)
    finally:
        metrics.close()
        provider.shutdown()


class Reading:
    """One collection of the reader: metric name -> data points, for one meter's scope."""

    def __init__(self, reader: InMemoryMetricReader, scope_name: str = "grpcpool") -> None:
        self.points: dict[str, list[Any]] = {}
        self.units: dict[str, str | None] = {}
        self.version: str | None = None
        data = reader.get_metrics_data()
        for resource in data.resource_metrics if data else ():
            for scope in resource.scope_metrics:
                if scope.scope.name != scope_name:
                    continue
                self.version = scope.scope.version
                for metric in scope.metrics:
                    self.points[metric.name] = list(metric.data.data_points)
                    self.units[metric.name] = metric.unit

    def value(self, name: str, **attributes: str) -> float:
        """The sum of ``name``'s points whose attributes include ``attributes``."""
        return sum(
            point.count if isinstance(point, HistogramDataPoint) else point.value
            for point in self.points.get(name, ())
            if attributes.items() <= dict(point.attributes).items()
        )

    def attribute(self, name: str, key: str) -> set[str]:
        """The values attribute ``key`` takes on ``name``'s points."""
        return {str(p.attributes[key]) for p in self.points.get(name, ()) if key in p.attributes}


def test_server_restart_shows_in_every_instrument(
    otel: Otel, supervisors: list[pykka.ActorRef[Any]]
) -> None:
    """A server stop and restart on the same port: connects, disconnects, failures, gauges."""
    server = EchoServer()
    port = server.port

    def current() -> float:
        return otel.read().value("grpcpool.pool.channels.current", pool="otel")

    try:
        supervisors.append(
            Supervisor.start(children=[PoolSpec(local_config(port, 3), name="otel")])
        )
        grpcpool.await_ready("otel", timeout=5, min_ready=3)
        assert wait_until(lambda: current() == 3, 2)
        assert wait_until(lambda: otel.read().value("grpcpool.channel.pings", result="ok") >= 3, 2)

        server.stop()
        assert wait_until(lambda: current() == 0, 2)
        assert wait_until(lambda: otel.read().value("grpcpool.channel.connection_failures") >= 1, 2)
        server = EchoServer(port=port)
        grpcpool.await_ready("otel", timeout=3, min_ready=3)
        assert wait_until(lambda: current() == 3, 2)
        reading = otel.read()  # before the server stops again
    finally:
        server.stop()

    connects = reading.value("grpcpool.channel.connects", pool="otel")
    assert connects >= 3 * 2
    assert reading.value("grpcpool.channel.disconnects", pool="otel") == 3
    assert reading.attribute("grpcpool.channel.disconnects", "reason") <= DISCONNECT_REASONS
    assert reading.value("grpcpool.channel.reconnects_scheduled", pool="otel") >= 3
    assert reading.value("grpcpool.channel.connection_failures", pool="otel") >= 1
    assert reading.value("grpcpool.pool.channels.expected", pool="otel") == 3
    assert reading.value("grpcpool.channel.connect.duration", pool="otel") == connects
    (histogram,) = reading.points["grpcpool.channel.connect.duration"]
    assert 0 < histogram.sum < connects
    if BUCKET_ADVICE:
        assert tuple(histogram.explicit_bounds) == CONNECT_DURATION_BUCKETS
    assert reading.units["grpcpool.channel.connect.duration"] == "s"


def test_calls_in_flight_gauge_reads_the_pool_channels_calls(
    otel: Otel, supervisors: list[pykka.ActorRef[Any]]
) -> None:
    """grpcpool.pool.calls.in_flight shows calls held on the pool channel, then 0 once they end."""

    def in_flight() -> float:
        return otel.read().value("grpcpool.pool.calls.in_flight", pool="flight")

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
    assert otel.read().units["grpcpool.pool.calls.in_flight"] == "{call}"


def test_crashed_worker_counts_a_restart(
    echo_server: EchoServer, otel: Otel, supervisors: list[pykka.ActorRef[Any]]
) -> None:
    """A worker crash is one grpcpool.supervisor.restarts by supervisor and child_id."""
    supervisors.append(
        Supervisor.start(children=[PoolSpec(local_config(echo_server.port, 2), name="crash")])
    )
    grpcpool.await_ready("crash", timeout=5, min_ready=2)
    assert wait_until(lambda: otel.read().value("grpcpool.channel.connects") == 2, 2)
    worker = next(
        ref for ref in pykka.ActorRegistry.get_by_class(grpcpool.ChannelWorker) if ref.is_alive()
    )
    worker.tell("not a message a worker understands")
    assert wait_until(lambda: otel.read().value("grpcpool.channel.connects") == 3, 3)
    reading = otel.read()
    assert reading.value("grpcpool.supervisor.restarts", supervisor="pool:crash") == 1
    assert reading.attribute("grpcpool.supervisor.restarts", "child_id") <= {"worker-1", "worker-2"}
    assert reading.value("grpcpool.pool.channels.current", pool="crash") == 2


def test_every_instrument_exists_with_its_unit(otel: Otel) -> None:
    """After one event of each kind, the reader shows every instrument (grpcpool's and
    gRFC A94's) with its OTel unit."""
    sends: list[tuple[blinker.NamedSignal, dict[str, Any], dict[str, Any]]] = [
        (telemetry.pool_init, {"pool_size": 1}, {}),
        (
            telemetry.pool_status,
            {"expected_size": 1, "current_size": 0, "in_flight": 0, "queued": 0},
            {},
        ),
        (telemetry.call_queued, {"duration": 0.01}, {"outcome": "started"}),
        (telemetry.channel_connected, {"duration": 0.01}, {"worker_id": "w"}),
        (telemetry.channel_connection_failed, {"duration": 0.01}, {"error": "refused"}),
        (telemetry.channel_disconnected, {"duration": 1.0}, {"worker_id": "w", "reason": "idle"}),
        (telemetry.channel_reconnect_scheduled, {"delay_ms": 50, "attempt": 1}, {}),
        (telemetry.channel_ping, {"duration": 0.01}, {"result": "ok"}),
        (telemetry.supervisor_child_restarted, {"restarts": 1}, {"child_id": "worker-1"}),
        (
            telemetry.pool_resolved,
            {"addresses": 2, "duration": 0.001},
            {"added": [], "removed": []},
        ),
        (telemetry.channel_refreshed, {"age": 3.0}, {"worker_id": "w", "reason": "max_age"}),
        (
            telemetry.pool_ejected,
            {"ejection_time": 30.0},
            {"address": "10.0.0.1:443", "reason": "failure_percentage"},
        ),
        (telemetry.pool_panic, {"active": 1, "usable": 1, "ready": 4}, {}),
        (telemetry.call_hedged, {"attempts": 2, "won": 1}, {"method": "/kv.Store/Get"}),
        (telemetry.pool_autoscaled, {"from_size": 1, "to_size": 3}, {}),
    ]
    for signal, measurements, metadata in sends:
        telemetry.emit(signal, "units", measurements, metadata)
    reading = otel.read()
    assert reading.version == grpcpool.__version__
    assert reading.units == {i.otel_name: i.unit for i in PUBLISHED}
    assert reading.value("grpcpool.channel.disconnects", pool="units", reason="idle") == 1
    assert reading.value("grpcpool.pool.channels.current", pool="units") == 0


def test_close_stops_updates_and_is_idempotent(otel: Otel) -> None:
    """After close() (twice) events no longer count and the gauges report nothing."""
    telemetry.emit(telemetry.pool_init, "closing", {"pool_size": 2}, {})
    telemetry.emit(telemetry.channel_connection_failed, "closing", {"duration": 0.1}, {})
    assert otel.read().value("grpcpool.pool.channels.expected", pool="closing") == 2
    otel.metrics.close()
    otel.metrics.close()
    assert otel.metrics.closed
    telemetry.emit(telemetry.channel_connection_failed, "closing", {"duration": 0.1}, {})
    reading = otel.read()
    assert reading.value("grpcpool.channel.connection_failures", pool="closing") == 1
    assert reading.value("grpcpool.pool.channels.expected", pool="closing") == 0


def test_register_takes_a_meter_or_a_provider_not_both(otel: Otel) -> None:
    """register(meter=...) records on that meter; a meter and a provider together is a TypeError."""
    meter = otel.provider.get_meter("app")
    with pytest.raises(TypeError, match="not both"):
        grpcpool_otel.register(meter=meter, meter_provider=otel.provider)
    with grpcpool_otel.register(meter=meter) as second:
        assert second.meter is meter
        telemetry.emit(telemetry.channel_reconnect_scheduled, "two", {"delay_ms": 5}, {})
        app = Reading(otel.reader, scope_name="app")
        assert app.value("grpcpool.channel.reconnects_scheduled", pool="two") == 1
    assert second.closed


def test_resolutions_addresses_and_refreshes(otel: Otel) -> None:
    """pool.resolved counts and sets the address gauge; refreshes count by reason, not address."""
    for count, added in (
        (3, ["10.0.0.1:443", "10.0.0.2:443", "10.0.0.3:443"]),
        (4, ["10.0.0.4:443"]),
    ):
        telemetry.emit(
            telemetry.pool_resolved,
            "many",
            {"addresses": count, "duration": 0.002},
            {"pool_name": "many", "added": added, "removed": []},
        )
    for reason in ("rebalance", "rebalance", "max_age", "timeout talking to 10.0.0.9"):
        telemetry.emit(
            telemetry.channel_refreshed,
            "many",
            {"age": 4.0},
            {
                "pool_name": "many",
                "worker_id": "worker-1",
                "address": "10.0.0.4:443",
                "reason": reason,
            },
        )
    reading = otel.read()
    assert reading.value("grpcpool.pool.resolutions", pool="many") == 2
    assert reading.value("grpcpool.pool.addresses", pool="many") == 4
    assert reading.units["grpcpool.pool.addresses"] == "{address}"
    assert reading.value("grpcpool.channel.refreshes", pool="many", reason="rebalance") == 2
    assert reading.value("grpcpool.channel.refreshes", pool="many", reason="max_age") == 1
    assert reading.attribute("grpcpool.channel.refreshes", "reason") == {
        "rebalance",
        "max_age",
        "other",
    }
    for points in reading.points.values():
        for point in points:
            assert not any("10.0.0." in str(value) for value in dict(point.attributes).values())


def test_ejections_panic_and_hedged_calls(otel: Otel) -> None:
    """Ejections count by reason and the ejected-units gauge follows them out and back; the
    panic gauge reads 1 then 0; hedged attempts and wins count by method; no address is an
    attribute value."""
    for address, reason in (
        ("10.0.0.1:443", "failure_percentage"),
        ("10.0.0.2:443", "success_rate"),
        ("10.0.0.3:443", "too slow at 10.0.0.3"),
    ):
        telemetry.emit(
            telemetry.pool_ejected,
            "routed",
            {"ejection_time": 30.0},
            {"pool_name": "routed", "address": address, "reason": reason},
        )
    telemetry.emit(
        telemetry.pool_unejected,
        "routed",
        {"ejected_for": 30.0},
        {"pool_name": "routed", "address": "10.0.0.2:443", "reason": "success_rate"},
    )
    telemetry.emit(telemetry.pool_panic, "routed", {"active": 1, "usable": 1, "ready": 4}, {})
    for attempts, won in ((2, 1), (2, 0), (3, 2), (2, -1)):
        telemetry.emit(
            telemetry.call_hedged,
            "routed",
            {"attempts": attempts, "won": won},
            {"pool_name": "routed", "method": "/kv.Store/Get"},
        )
    reading = otel.read()
    assert reading.value("grpcpool.pool.ejections", pool="routed") == 3
    assert reading.attribute("grpcpool.pool.ejections", "reason") == {
        "failure_percentage",
        "success_rate",
        "other",
    }
    assert reading.value("grpcpool.pool.ejected_units", pool="routed") == 2
    assert reading.value("grpcpool.pool.panic", pool="routed") == 1
    hedged_attempts = "grpcpool.call.hedged_attempts"
    assert reading.value(hedged_attempts, pool="routed", method="/kv.Store/Get") == 5
    assert reading.value("grpcpool.call.hedge_wins", pool="routed", method="/kv.Store/Get") == 2
    assert reading.units["grpcpool.pool.ejected_units"] == "{unit}"
    assert reading.units[hedged_attempts] == "{attempt}"
    telemetry.emit(telemetry.pool_panic, "routed", {"active": 0, "usable": 3, "ready": 4}, {})
    assert otel.read().value("grpcpool.pool.panic", pool="routed") == 0
    for points in reading.points.values():
        for point in points:
            assert not any("10.0.0." in str(value) for value in dict(point.attributes).values())


def test_autoscale_steps_count_by_direction(otel: Otel) -> None:
    """pool.autoscaled counts one step up or down by the sizes it moved between; an event
    that moved nothing (or carries no sizes) is not a step."""
    for before, after in ((2, 4), (4, 6), (6, 4), (4, 4)):
        telemetry.emit(
            telemetry.pool_autoscaled,
            "elastic",
            {"from_size": before, "to_size": after, "peak_in_flight": 90, "queued": 0},
            {"pool_name": "elastic"},
        )
    telemetry.emit(telemetry.pool_autoscaled, "elastic", {}, {"pool_name": "elastic"})
    reading = otel.read()
    steps = "grpcpool.pool.autoscale_steps"
    assert reading.value(steps, pool="elastic", direction="up") == 2
    assert reading.value(steps, pool="elastic", direction="down") == 1
    assert reading.attribute(steps, "direction") == {"up", "down"}
    assert reading.units[steps] == "{step}"


def test_queued_calls_gauge_and_queue_wait_histogram(
    otel: Otel, supervisors: list[pykka.ActorRef[Any]]
) -> None:
    """With pool.max_calls_per_connection 1 on a pool of 1, two calls wait while a third
    runs: grpcpool.pool.calls.queued reads 2 and then 0, and grpcpool.call.queue.wait (in
    seconds) counts the two waits."""

    def queued() -> float:
        return otel.read().value("grpcpool.pool.calls.queued", pool="queue")

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
    reading = otel.read()
    assert reading.value("grpcpool.call.queue.wait", pool="queue") == 2
    assert reading.units["grpcpool.call.queue.wait"] == "s"
    assert reading.units["grpcpool.pool.calls.queued"] == "{call}"
