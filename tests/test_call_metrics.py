"""Per-call metrics (gRFC A66) beyond the behaviour suite: opt-in, Prometheus, resends, sizes.

The behaviour suite (tests/behaviour/test_grpc_metrics.py) checks what both
kinds of pool record for each call kind. Here: that nothing is recorded (or
installed) unless ``per_call=True`` is asked for, the Prometheus names,
labels and buckets, a call that never left and was sent again (two
attempts, one call), protobuf messages measured by their serialized size,
and the pure rules (A66's method name, A94's disconnect errors).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import prometheus_client
import pykka
import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

import grpcpool
import grpcpool.aio
from grpcpool import WorkerStatus, telemetry
from grpcpool._call_metrics import HOOK
from grpcpool.api import lookup
from grpcpool.cli.echo import echo_pb2
from grpcpool.cli.echo.server import EchoServer as ProtoServer
from grpcpool.connection._machine_types import DISCONNECT_REASONS
from grpcpool.core import ReadyConnection
from grpcpool.core._view import build_view, empty_view
from grpcpool.metrics import prometheus
from grpcpool.metrics._grpc_catalog import (
    DISCONNECT_ERRORS,
    LATENCY_BUCKETS,
    SIZE_BUCKETS,
    method_attribute,
)
from tests.grpc_metrics import A66, METHOD, STATUS, TARGET, otel
from tests.pools import free_port, loopback_config, start_pool
from tests.servers import EchoServer, EchoStub

STARTED, DURATION, SENT, RCVD, CALL = A66
UNARY = "test.Echo/Unary"


@pytest.fixture
def server() -> Iterator[EchoServer]:
    with EchoServer() as running:
        yield running


def test_per_call_is_off_unless_registered_with_it(
    server: EchoServer, supervisors: list[pykka.ActorRef[Any]]
) -> None:
    """register() alone installs no per-call recorder and creates no grpc.client
    instrument; per_call=True installs one, which close() removes again."""
    start_pool(supervisors, loopback_config(server.port, 1), "quiet")
    grpcpool.await_ready("quiet", timeout=5)
    stub = EchoStub(grpcpool.channel("quiet"))
    with otel(per_call=False) as registered:
        assert HOOK.recorder is None
        assert stub.Unary(b"x") == b"x"
        assert not set(A66) & set(registered.read().metrics)
    with otel(per_call=True) as registered:
        assert HOOK.recorder is not None
        assert stub.Unary(b"x") == b"x"
        assert registered.read().value(CALL) == 1
    assert HOOK.recorder is None


def test_two_exporters_with_per_call_both_hear_every_call(
    server: EchoServer, supervisors: list[pykka.ActorRef[Any]]
) -> None:
    """An OpenTelemetry and a Prometheus exporter, both per_call: each records the call."""
    start_pool(supervisors, loopback_config(server.port, 1), "both")
    grpcpool.await_ready("both", timeout=5)
    registry = CollectorRegistry()
    with otel() as registered, prometheus.register(registry, per_call=True):
        assert EchoStub(grpcpool.channel("both")).Unary(b"x") == b"x"
        assert registered.read().value(CALL) == 1
        assert registry.get_sample_value(
            "grpc_client_call_duration_seconds_count",
            {"grpc_method": UNARY, "grpc_target": f"dns:///127.0.0.1:{server.port}", "grpc_status": "OK"},
        ) == 1
    assert HOOK.recorder is None


def families(registry: CollectorRegistry) -> dict[str, Any]:
    text = prometheus_client.generate_latest(registry).decode()
    return {family.name: family for family in text_string_to_metric_families(text)}


def test_prometheus_names_follow_the_opentelemetry_convention(
    server: EchoServer, supervisors: list[pykka.ActorRef[Any]]
) -> None:
    """With per_call: grpc_client_attempt_started_total, *_duration_seconds and
    *_size_bytes histograms with A66's buckets, labels grpc_method, grpc_target and
    grpc_status; the A94 counters end in _total and open connections is a gauge."""
    registry = CollectorRegistry()
    with prometheus.register(registry, per_call=True):
        start_pool(supervisors, loopback_config(server.port, 1), "named")
        grpcpool.await_ready("named", timeout=5)
        assert EchoStub(grpcpool.channel("named")).Unary(b"abc") == b"abc"
        found = families(registry)
    kinds = {
        name: found[name].type
        for name in found
        if name.startswith("grpc_") and not name.endswith("_created")
    }
    assert kinds == {
        "grpc_client_attempt_started": "counter",
        "grpc_client_attempt_duration_seconds": "histogram",
        "grpc_client_attempt_sent_total_compressed_message_size_bytes": "histogram",
        "grpc_client_attempt_rcvd_total_compressed_message_size_bytes": "histogram",
        "grpc_client_call_duration_seconds": "histogram",
        "grpc_subchannel_connection_attempts_succeeded": "counter",
        "grpc_subchannel_connection_attempts_failed": "counter",
        "grpc_subchannel_disconnections": "counter",
        "grpc_subchannel_open_connections": "gauge",
    }
    [started] = found["grpc_client_attempt_started"].samples
    where = f"dns:///127.0.0.1:{server.port}"
    assert (started.name, started.labels) == (
        "grpc_client_attempt_started_total",
        {"grpc_method": UNARY, "grpc_target": where},
    )
    sent = found["grpc_client_attempt_sent_total_compressed_message_size_bytes"].samples
    assert {s.labels["grpc_status"] for s in sent} == {"OK"}
    assert [s.value for s in sent if s.name.endswith("_sum")] == [3]
    for name, bounds in (
        ("grpc_client_attempt_duration_seconds", LATENCY_BUCKETS),
        ("grpc_client_attempt_rcvd_total_compressed_message_size_bytes", SIZE_BUCKETS),
    ):
        edges = [s.labels["le"] for s in found[name].samples if s.name.endswith("_bucket")]
        assert edges == [*(prometheus_client.utils.floatToGoString(b) for b in bounds), "+Inf"]
    [opened] = found["grpc_subchannel_open_connections"].samples
    assert opened.labels == {"grpc_target": where, "grpc_lb_backend_service": "named"}


def test_an_exporter_registered_after_the_pool_started_knows_its_target(
    server: EchoServer, supervisors: list[pykka.ActorRef[Any]]
) -> None:
    """grpc.target comes from pool.init, or from the running pool when the exporter was
    registered after it started; a name no pool runs under is 'other'."""
    start_pool(supervisors, loopback_config(server.port, 1), "early")
    grpcpool.await_ready("early", timeout=5)
    with otel() as registered:
        assert EchoStub(grpcpool.channel("early")).Unary(b"x") == b"x"
        with pytest.raises(grpc.RpcError):
            EchoStub(grpcpool.channel("nobody")).Unary(b"x")
        targets = {a[TARGET] for a in registered.read().attributes(CALL)}
    assert targets == {f"dns:///127.0.0.1:{server.port}", "other"}


class First:
    """A strategy that always picks the first connection (the dead one, below)."""

    def picker(self, items: tuple[Any, ...]) -> Callable[[], Any]:
        return lambda: items[0]


def with_dead_connection_first(view: Any, dead: ReadyConnection, name: str) -> Any:
    """``view`` with ``dead`` in front of its connections, always picked first."""
    connections = (dead, *view.connections)
    workers = tuple(WorkerStatus(c.worker_id, "ready", time.time()) for c in connections)
    return build_view(
        name,
        First(),  # type: ignore[arg-type]
        empty_view(name, len(connections), "running"),
        connections=connections,
        workers=workers,
        expected_size=len(connections),
        lifecycle="running",
    )


def assert_sent_again(reading: Any) -> None:
    """Two attempts (UNAVAILABLE, then OK) and one call, OK."""
    assert reading.value(STARTED, {METHOD: UNARY}) == 2
    assert reading.value(DURATION, {STATUS: "UNAVAILABLE"}) == 1
    assert reading.value(DURATION, {STATUS: "OK"}) == 1
    assert reading.value(CALL) == reading.value(CALL, {STATUS: "OK"}) == 1
    assert reading.total(SENT, {STATUS: "UNAVAILABLE"}) == 0  # it never left
    assert reading.total(SENT, {STATUS: "OK"}) == 4


def test_a_sync_call_that_never_left_and_was_sent_again_is_two_attempts(
    server: EchoServer, supervisors: list[pykka.ActorRef[Any]]
) -> None:
    """A view whose first pick is a connection to a port nobody listens on (the lag of a
    view behind a dead backend): the call fails there at pick time, is sent to the
    ready connection, and is recorded as two attempts and one call."""
    config = loopback_config(server.port, 1, health_check=False, ping_interval=None)
    start_pool(supervisors, config, "again")
    grpcpool.await_ready("again", timeout=5)
    dead = ReadyConnection(grpc.insecure_channel(f"127.0.0.1:{free_port()}"), "worker-dead")
    entry = lookup("again")
    try:
        with otel() as registered:
            entry.view = with_dead_connection_first(entry.view, dead, "again")
            assert EchoStub(grpcpool.channel("again")).Unary(b"four") == b"four"
            assert_sent_again(registered.read())
    finally:
        dead.channel.close()


@pytest.mark.asyncio
async def test_an_asyncio_call_that_never_left_and_was_sent_again_is_two_attempts(
    server: EchoServer,
) -> None:
    """The same on an asyncio pool: two attempts (UNAVAILABLE, OK), one call (OK)."""
    config = loopback_config(server.port, 1, health_check=False, ping_interval=None)
    dead_channel = grpc.aio.insecure_channel(f"127.0.0.1:{free_port()}")
    dead = ReadyConnection(dead_channel, "worker-dead")  # type: ignore[arg-type]
    try:
        async with grpcpool.aio.Pool(config, name="again-aio") as pool:
            await pool.await_ready(timeout=5)
            with otel() as registered:
                registry = pool._registry
                registry.view = with_dead_connection_first(registry.view, dead, "again-aio")
                stub = EchoStub(grpcpool.aio.channel("again-aio"))
                assert await stub.Unary(b"four") == b"four"
                for _ in range(100):  # the done callbacks run on the loop's next turns
                    if registered.read().value(CALL) == 1:
                        break
                    await asyncio.sleep(0.01)
                assert_sent_again(registered.read())
    finally:
        await dead_channel.close()


def test_protobuf_messages_count_their_serialized_bytes(
    supervisors: list[pykka.ActorRef[Any]],
) -> None:
    """Protobuf requests and replies: a blocking call and a future() each record the
    serialized size of the request sent and of the reply received."""
    proto = ProtoServer()
    try:
        start_pool(supervisors, loopback_config(proto.port, 1), "proto")
        grpcpool.await_ready("proto", timeout=5)
        say = grpcpool.channel("proto").unary_unary(
            "/grpcpool.echo.Echo/Say",
            request_serializer=echo_pb2.EchoRequest.SerializeToString,
            response_deserializer=echo_pb2.EchoReply.FromString,
            _registered_method=True,
        )
        request = echo_pb2.EchoRequest(text="hello, sizes")
        with otel() as registered:
            reply = say(request)
            assert say.future(request).result(timeout=5) == reply
            deadline = time.monotonic() + 5
            while registered.read().value(CALL) < 2 and time.monotonic() < deadline:
                time.sleep(0.01)
            reading = registered.read()
        labels = {METHOD: "grpcpool.echo.Echo/Say"}
        assert reading.value(SENT, labels) == 2
        assert reading.total(SENT, labels) == 2 * request.ByteSize()
        assert reading.total(RCVD, labels) == 2 * reply.ByteSize()
    finally:
        proto.stop()


def test_the_method_attribute_is_the_registered_full_name_or_other() -> None:
    """A66: package.Service/Method for a registered method (no leading slash), else other."""
    assert method_attribute("/grpcpool.echo.Echo/Say", True) == "grpcpool.echo.Echo/Say"
    assert method_attribute("/grpcpool.echo.Echo/Say", False) == "other"
    assert method_attribute("/grpcpool.echo.Echo/Say", None) == "other"
    assert method_attribute("not-a-path", True) == "other"


def test_every_disconnect_reason_has_an_a94_value() -> None:
    """Each reason a worker gives for losing a ready connection maps to one of A94's
    grpc.disconnect_error values."""
    a94 = {"subchannel shutdown", "connection reset", "connection timed out"}
    a94 |= {"connection aborted", "socket error", "unknown"}
    assert set(DISCONNECT_ERRORS) == set(DISCONNECT_REASONS)
    assert set(DISCONNECT_ERRORS.values()) <= a94


def test_open_connections_follow_each_worker_whatever_the_order_of_events() -> None:
    """grpc.subchannel.open_connections counts each worker's connection once: one that
    connected before its pool's pool.init stays counted, a worker connecting again after
    a crash under its id is still one, a release or a disconnect takes it off once, and
    an odd disconnect reason is A94's 'unknown'."""

    def emit(signal: Any, measurements: dict[str, Any], metadata: dict[str, Any]) -> None:
        telemetry.emit(signal, "events", measurements, {"pool_name": "events", **metadata})

    with otel(per_call=False) as registered:
        emit(telemetry.channel_connected, {"duration": 0.01}, {"worker_id": "worker-1"})
        emit(telemetry.pool_init, {"pool_size": 2}, {"endpoint": "10.0.0.1:443"})
        emit(telemetry.channel_connected, {"duration": 0.01}, {"worker_id": "worker-2"})
        emit(telemetry.channel_connected, {"duration": 0.01}, {"worker_id": "worker-2"})
        reading = registered.read()
        assert reading.value("grpc.subchannel.open_connections") == 2
        assert reading.value("grpc.subchannel.connection_attempts_succeeded") == 3
        emit(telemetry.channel_released, {"duration": 1.0}, {"worker_id": "worker-1"})
        emit(telemetry.channel_released, {"duration": 1.0}, {"worker_id": "worker-1"})
        emit(telemetry.channel_disconnected, {"duration": 1.0}, {"worker_id": "worker-2", "reason": "odd"})
        reading = registered.read()
        assert reading.value("grpc.subchannel.open_connections") == 0
        errors = {
            a["grpc.disconnect_error"]: reading.value("grpc.subchannel.disconnections", a)
            for a in reading.attributes("grpc.subchannel.disconnections")
        }
        assert errors == {"subchannel shutdown": 2, "unknown": 1}
        targets = {a[TARGET] for a in reading.attributes("grpc.subchannel.disconnections")}
        assert targets == {"dns:///10.0.0.1:443"}
