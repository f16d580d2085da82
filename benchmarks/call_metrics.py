"""Figure 15: what per-call metrics (gRFC A66, ``register(per_call=True)``) cost a call.

One caller thread makes unary echo RPCs (64 B) through a pool channel
(``grpcpool.channel(name)``, a stub made with ``_registered_method=True`` as
generated stubs make theirs) against a server in another process. Each
round times the same number of calls four ways, interleaved: with no
per-call recorder installed, with the OpenTelemetry exporter's (SDK meter
provider, in-memory reader), with the Prometheus exporter's, and with a
recorder that records nothing, which leaves the pool channel's own part:
the call's trace, its attempt, the sized serializers and the context
variable, without any metrics library. Each figure is the per-round
difference in microseconds per call against the round's run without one.
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


def _microseconds_per_call(call: Callable[..., Any], calls: int, recorder: Any) -> float:
    """Times ``calls`` sequential calls with ``recorder`` installed (None: none)."""
    if recorder is not None:
        _call_metrics.install(recorder)
    try:
        started = time.thread_time()
        for _ in range(calls):
            call(PAYLOAD, timeout=CALL_TIMEOUT)
        return (time.thread_time() - started) / calls * 1e6
    finally:
        if recorder is not None:
            _call_metrics.remove(recorder)


def _figure_15(settings: Settings, cpus: frozenset[int] | None) -> list[Figure]:
    # The exporters' libraries (the otel and prometheus extras): imported here,
    # so that without them only this figure reads "not measured".
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from prometheus_client import CollectorRegistry

    from grpcpool.metrics import opentelemetry as grpcpool_otel
    from grpcpool.metrics import prometheus

    calls = settings.pick(2000, 20)  # per configuration and round
    rounds = settings.pick(15, 2)
    name = unique_name("metered")
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader], shutdown_on_exit=False)
    otel = grpcpool_otel.register(meter_provider=provider, per_call=True)
    registry = CollectorRegistry()
    scraped = prometheus.register(registry, per_call=True)
    # Each round installs the recorder it measures, alone: the exporters stay
    # registered (their instruments made once), their per-call recorders off.
    recorders: dict[str, Any] = {
        "off": None,
        "otel": otel._per_call,
        "prometheus": scraped._per_call,
        "own part": _Nothing(),
    }
    for recorder in recorders.values():
        if recorder is not None:
            _call_metrics.remove(recorder)
    try:
        with (
            ServerProcess(threads=8, cpus=cpus) as server,
            running_pool(pool_config(server.port, 2, name)),
        ):
            call = grpcpool.channel(name).unary_unary(ECHO_METHOD, _registered_method=True)
            for recorder in recorders.values():  # warm up: connections, labels, server threads
                _microseconds_per_call(call, settings.pick(200, 5), recorder)
            results = interleave(
                rounds,
                {
                    label: functools.partial(_microseconds_per_call, call, calls, recorder)
                    for label, recorder in recorders.items()
                },
            )
    finally:
        otel.close()
        scraped.close()
        provider.shutdown()
    shape = "one caller thread, 64 B unary echo through grpcpool.channel(), pool of 2"
    off = results["off"]
    return [
        compared(
            "15a",
            f"per-call metrics, OpenTelemetry SDK exporter ({shape})",
            results["otel"],
            "µs/call",
            "no per-call recorder",
            off,
            goal=GOAL,
            judge="difference",
            note="five SDK measurements per call (a counter add, four histogram records)",
        ),
        compared(
            "15b",
            "per-call metrics, Prometheus exporter",
            results["prometheus"],
            "µs/call",
            "no per-call recorder",
            off,
            goal=GOAL,
            judge="difference",
            note="one counter inc, four histogram observes (prometheus_client) per call",
        ),
        compared(
            "15c",
            "per-call metrics, the pool channel's own part (a recorder that records nothing)",
            results["own part"],
            "µs/call",
            "no per-call recorder",
            off,
            goal=GOAL,
            judge="difference",
        ),
    ]


def run(settings: Settings) -> list[Figure]:
    """Figure 15; client and server on disjoint halves of the CPUs where there are two."""
    split = split_cpus()
    client, server = split if split is not None else (None, None)
    with pinned(set(client)) if client is not None else contextlib.nullcontext():
        return guarded("15", "per-call metrics", lambda: _figure_15(settings, server))
