"""Tracing pool channels with ``opentelemetry-instrumentation-grpc``, as its docs show for channels.

A sync pool channel is wrapped as a plain channel would be
(``grpcext.intercept_channel(grpcpool.channel(name), client_interceptor())``);
an asyncio pool takes the instrumentation's ``grpc.aio`` interceptors through
``endpoint.interceptors`` (its health checks pass through them too, so
those are filtered out, as the instrumentation's ``filters`` allow). Either
way each call through the pool channel is one client span with its status,
and the trace context reaches the server as ``traceparent``. The spans are
read from the SDK's in-memory exporter.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import grpc
import pykka
import pytest
from opentelemetry.instrumentation.grpc import aio_client_interceptors, client_interceptor, filters
from opentelemetry.instrumentation.grpc.grpcext import intercept_channel
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

import grpcpool
import grpcpool.aio
from grpcpool import Config
from tests.grpc_metrics import A66, METHOD, STATUS, Otel, otel
from tests.pools import loopback_config, start_pool
from tests.servers import ECHO_METHOD, EchoServer, EchoStub

NOT_HEALTH = filters.negate(filters.health_check())
_, _, SENT, RCVD, CALL = A66


class Tracing:
    """An SDK tracer provider whose spans end up in an in-memory exporter."""

    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        self.provider = TracerProvider()
        self.provider.add_span_processor(SimpleSpanProcessor(self.exporter))

    def spans(self) -> list[ReadableSpan]:
        return list(self.exporter.get_finished_spans())


@pytest.fixture
def tracing() -> Iterator[Tracing]:
    traced = Tracing()
    try:
        yield traced
    finally:
        traced.provider.shutdown()


@pytest.fixture
def server() -> Iterator[EchoServer]:
    with EchoServer() as running:
        yield running


def traceparent(metadata: tuple[tuple[str, str], ...]) -> str | None:
    return dict(metadata).get("traceparent")


def assert_measured(registered: Otel) -> None:
    """Per-call metrics of the three calls: their statuses and their messages' bytes."""
    reading = registered.read()
    unary = {METHOD: "test.Echo/Unary"}
    assert reading.value(CALL, {**unary, STATUS: "OK"}) == 1
    assert reading.value(CALL, {**unary, STATUS: "NOT_FOUND"}) == 1
    assert reading.value(CALL, {METHOD: "other", STATUS: "OK"}) == 1
    assert (reading.total(SENT, unary), reading.total(RCVD, unary)) == (6, 3)
    assert (reading.total(SENT, {METHOD: "other"}), reading.total(RCVD, {METHOD: "other"})) == (
        1,
        3,
    )


def assert_propagated(span: ReadableSpan, metadata: tuple[tuple[str, str], ...]) -> None:
    """The server got the span's context: W3C traceparent 00-<trace id>-<span id>-<flags>."""
    seen = traceparent(metadata)
    assert seen is not None, metadata
    version, trace_id, span_id, _ = seen.split("-")
    assert span.context is not None
    assert (version, int(trace_id, 16), int(span_id, 16)) == (
        "00",
        span.context.trace_id,
        span.context.span_id,
    )


def test_a_sync_pool_channel_wrapped_by_the_instrumentation_traces_each_call(
    tracing: Tracing, server: EchoServer, supervisors: list[pykka.ActorRef[Any]]
) -> None:
    """intercept_channel(grpcpool.channel(name), client_interceptor()): a unary call, a
    response stream and a failed call are one CLIENT span each, named by the method,
    UNSET or ERROR as the call ended, and each reaches the server with its traceparent;
    per-call metrics, registered too, see the same three calls."""
    start_pool(supervisors, loopback_config(server.port, 2), "traced")
    grpcpool.await_ready("traced", timeout=5, min_ready=2)
    channel = intercept_channel(
        grpcpool.channel("traced"), client_interceptor(tracer_provider=tracing.provider)
    )
    stub = EchoStub(channel)
    with otel() as registered:
        assert stub.Unary(b"one") == b"one"
        assert list(stub.Repeat(b"r")) == [b"r"] * 3
        server.failing = grpc.StatusCode.NOT_FOUND
        with pytest.raises(grpc.RpcError) as failed:
            stub.Unary(b"two")
        assert failed.value.code() is grpc.StatusCode.NOT_FOUND
        assert_measured(registered)

    spans = tracing.spans()
    assert [span.name for span in spans] == [ECHO_METHOD, "/test.Echo/Repeat", ECHO_METHOD]
    assert all(span.kind is SpanKind.CLIENT for span in spans)
    assert [span.status.status_code for span in spans] == [
        StatusCode.UNSET,
        StatusCode.UNSET,
        StatusCode.ERROR,
    ]
    assert [span.attributes["rpc.grpc.status_code"] for span in spans] == [  # type: ignore[index]
        grpc.StatusCode.OK.value[0],
        grpc.StatusCode.OK.value[0],
        grpc.StatusCode.NOT_FOUND.value[0],
    ]
    # One server call per unary call, three per stream (the echo server records each).
    unary, repeat, failed_call = server.metadata[0], server.metadata[1], server.metadata[-1]
    assert len(server.metadata) == 5
    assert_propagated(spans[0], unary)
    assert_propagated(spans[1], repeat)
    assert_propagated(spans[2], failed_call)


@pytest.mark.asyncio
async def test_an_asyncio_pool_with_the_aio_interceptors_traces_each_call(
    tracing: Tracing, server: EchoServer
) -> None:
    """aio_client_interceptors() as endpoint.interceptors of an asyncio pool: each call
    through its pool channel (a unary call, a response stream, a failed call) is one
    CLIENT span named by the method with its status, and reaches the server with the
    span's traceparent; health checks are filtered out of the spans. Per-call metrics,
    registered too, measure the calls through the interceptors."""
    interceptors = aio_client_interceptors(tracer_provider=tracing.provider, filter_=NOT_HEALTH)
    config = Config.new(
        endpoint={
            "type": "local",
            "host": "127.0.0.1",
            "port": server.port,
            "interceptors": interceptors,
        },
        pool={"size": 2},
    )
    async with grpcpool.aio.Pool(config, name="traced-aio") as pool:
        await pool.await_ready(timeout=5, min_ready=2)
        stub = EchoStub(grpcpool.aio.channel("traced-aio"))
        with otel() as registered:
            assert await stub.Unary(b"one") == b"one"
            assert [r async for r in stub.Repeat(b"r")] == [b"r"] * 3
            server.failing = grpc.StatusCode.NOT_FOUND
            with pytest.raises(grpc.RpcError) as failed:
                await stub.Unary(b"two")
            assert failed.value.code() is grpc.StatusCode.NOT_FOUND
            for _ in range(100):  # the done callbacks run on the loop's next turns
                if registered.read().value(CALL) == 3:
                    break
                await asyncio.sleep(0.01)
            assert_measured(registered)

    spans = tracing.spans()
    assert [span.name for span in spans] == [ECHO_METHOD, "/test.Echo/Repeat", ECHO_METHOD]
    assert all(span.kind is SpanKind.CLIENT for span in spans)
    assert spans[0].status.status_code is not StatusCode.ERROR
    assert spans[1].status.status_code is not StatusCode.ERROR
    assert spans[2].status.status_code is StatusCode.ERROR
    assert len(server.metadata) == 5
    assert_propagated(spans[0], server.metadata[0])
    assert_propagated(spans[1], server.metadata[1])
    assert_propagated(spans[2], server.metadata[-1])
