"""Figure 15: what per-call metrics (gRFC A66, ``register(per_call=True)``) cost a call.

A unary call (64 B) through a pool channel (``grpcpool.channel(name)``, a
multi-callable made with ``_registered_method=True`` as generated stubs make
theirs), timed with no per-call recorder installed and with one, in
interleaved rounds; each figure is the per-round difference in microseconds
per call.

15a-c time the pool channel's whole call path in this process, with grpc's
multi-callable of each connection replaced by one that serializes the
request and deserializes it as the response, as grpcio does, and sends
nothing: an RPC's own cost (tens of microseconds, spread over several
threads and another process) would bury a difference of one or two. The
recorders: one that records nothing (15a: the pool channel's own part, the
call's trace, its attempt, the sized serializers and the per-thread slot),
the Prometheus exporter's (15b) and the OpenTelemetry exporter's on an SDK
meter provider with an in-memory reader (15c).

15d is the same comparison for real RPCs against a server in another
process, with the OpenTelemetry exporter: the caller thread's CPU time per
call (its wall time spreads too far for a difference this size).
"""

from __future__ import annotations

import contextlib
import functools
import time
from collections.abc import Callable
from typing import Any

import grpc

import grpcpool
from benchmarks.harness import (
    Figure,
    Goal,
    Settings,
    compared,
    guarded,
    interleave,
    pinned,
    split_cpus,
)
from benchmarks.pools import pool_config, running_pool, unique_name
from benchmarks.server import ECHO_METHOD, ServerProcess
from grpcpool import _call_metrics
from grpcpool._message_sizes import sized_key
from grpcpool.api import lookup
from grpcpool.core._ready import callable_key

__all__ = ["run"]

PAYLOAD = b"x" * 64
CALL_TIMEOUT = 10.0
GOAL = Goal("<=", 2.0, "<= 2 µs")


class _Nothing:
    """A recorder that records nothing: what is left is the pool channel's own part."""

    def labels(self, pool: str, method: str, registered: bool | None) -> Any:
        return None

    def attempt_started(self, labels: Any) -> None:
        pass

    def attempt_ended(
        self, labels: Any, code: grpc.StatusCode, seconds: float, sent: int, received: int
    ) -> None:
        pass

    def call_ended(self, labels: Any, code: grpc.StatusCode, seconds: float) -> None:
        pass

    def attempt_and_call_ended(
        self, labels: Any, code: grpc.StatusCode, seconds: float, sent: int, received: int
    ) -> None:
        pass


class _Local:
    """Stands in for grpc's multi-callable: serializes and deserializes, sends nothing."""

    def __init__(self, serialize: Any, deserialize: Any) -> None:
        self._serialize = serialize
        self._deserialize = deserialize

    def __call__(self, request: Any, timeout: float | None = None) -> Any:
        data = request if self._serialize is None else self._serialize(request)
        return data if self._deserialize is None else self._deserialize(data)


def _per_call(
    call: Callable[..., Any], calls: int, recorder: Any, clock: Callable[[], float]
) -> float:
    """Microseconds per call over ``calls`` calls with ``recorder`` installed (None: none)."""
    if recorder is not None:
        _call_metrics.install(recorder)
    try:
        started = clock()
        for _ in range(calls):
            call(PAYLOAD, timeout=CALL_TIMEOUT)
        return (clock() - started) / calls * 1e6
    finally:
        if recorder is not None:
            _call_metrics.remove(recorder)


def _recorders() -> tuple[dict[str, Any], Callable[[], None]]:
    """The recorders measured, by label, and what closes their exporters.

    The exporters stay registered (their instruments made once); each round
    installs the recorder it measures, alone.
    """
    # The exporters' libraries (the otel and prometheus extras): imported here,
    # so that without them only this figure reads "not measured".
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from prometheus_client import CollectorRegistry

    from grpcpool.metrics import opentelemetry as grpcpool_otel
    from grpcpool.metrics import prometheus

    provider = MeterProvider(metric_readers=[InMemoryMetricReader()], shutdown_on_exit=False)
    otel = grpcpool_otel.register(meter_provider=provider, per_call=True)
    scraped = prometheus.register(CollectorRegistry(), per_call=True)
    recorders = {
        "off": None,
        "own part": _Nothing(),
        "prometheus": scraped._per_call,
        "otel": otel._per_call,
    }
    for recorder in recorders.values():
        if recorder is not None:
            _call_metrics.remove(recorder)

    def close() -> None:
        otel.close()
        scraped.close()
        provider.shutdown()

    return recorders, close


def _measure(
    call: Callable[..., Any],
    recorders: dict[str, Any],
    calls: int,
    rounds: int,
    clock: Callable[[], float],
) -> dict[str, list[float]]:
    for recorder in recorders.values():  # warm up: labels, sized multi-callables, caches
        _per_call(call, max(5, calls // 10), recorder, clock)
    return interleave(
        rounds,
        {
            label: functools.partial(_per_call, call, calls, recorder, clock)
            for label, recorder in recorders.items()
        },
    )


def _in_process(settings: Settings, name: str, recorders: dict[str, Any]) -> list[Figure]:
    call = grpcpool.channel(name).unary_unary(ECHO_METHOD, _registered_method=True)
    plain = callable_key("unary_unary", ECHO_METHOD, None, None, True)
    for connection in lookup(name).view.connections:
        for key in (plain, sized_key(plain)):
            connection.callables[key] = _Local(key[2], key[3])
    results = _measure(
        call, recorders, settings.pick(20000, 50), settings.pick(15, 2), time.perf_counter
    )
    off = results["off"]
    shape = "in process: grpc's multi-callable replaced by one that sends nothing"

    def figure(key: str, label: str, measure: str, note: str = "") -> Figure:
        return compared(
            key,
            measure,
            results[label],
            "µs/call",
            "no per-call recorder",
            off,
            goal=GOAL,
            judge="difference",
            note=note,
        )

    return [
        figure(
            "15a",
            "own part",
            f"per-call metrics, the pool channel's own part: a recorder that records nothing ({shape})",
        ),
        figure(
            "15b",
            "prometheus",
            "per-call metrics, Prometheus exporter",
            "the recorder counts A66's histograms itself (one lock, a bisect per value)",
        ),
        figure(
            "15c",
            "otel",
            "per-call metrics, OpenTelemetry exporter on the SDK",
            "four histogram records per call, each an SDK measurement",
        ),
    ]


def _end_to_end(settings: Settings, name: str, recorders: dict[str, Any]) -> Figure:
    call = grpcpool.channel(name).unary_unary(ECHO_METHOD, _registered_method=True)
    measured = {"off": recorders["off"], "otel": recorders["otel"]}
    results = _measure(
        call, measured, settings.pick(2000, 20), settings.pick(15, 2), time.thread_time
    )
    return compared(
        "15d",
        "per-call metrics on real RPCs, OpenTelemetry exporter on the SDK (caller thread CPU)",
        results["otel"],
        "µs/call",
        "no per-call recorder",
        results["off"],
        judge="difference",
        note="one caller thread, 64 B unary echo against a server process",
    )


def _figure_15(settings: Settings, cpus: frozenset[int] | None) -> list[Figure]:
    recorders, close = _recorders()
    try:
        with ServerProcess(threads=8, cpus=cpus) as server:
            name, local = unique_name("metered"), unique_name("metered-local")
            with running_pool(pool_config(server.port, 2, name)):
                figures = [_end_to_end(settings, name, recorders)]
            with running_pool(pool_config(server.port, 2, local)):
                return [*_in_process(settings, local, recorders), *figures]
    finally:
        close()


def run(settings: Settings) -> list[Figure]:
    """Figure 15; client and server on disjoint halves of the CPUs where there are two."""
    split = split_cpus()
    client, server = split if split is not None else (None, None)
    with pinned(set(client)) if client is not None else contextlib.nullcontext():
        return guarded("15", "per-call metrics", lambda: _figure_15(settings, server))
