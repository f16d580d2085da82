"""gRPC's standard metrics as an OpenTelemetry SDK in-memory reader sees them.

:class:`Otel` is an SDK meter provider with an :class:`InMemoryMetricReader`
and grpcpool's exporter registered on it; each :meth:`Otel.read` is one
collection, whose metrics a test looks up by name and attributes. The
attribute names are gRPC's dotted ones, which Python keywords cannot spell,
so they are given as a dict.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    Histogram,
    HistogramDataPoint,
    InMemoryMetricReader,
    Metric,
    Sum,
)

from grpcpool.metrics import opentelemetry as grpcpool_otel

METHOD, TARGET, STATUS = "grpc.method", "grpc.target", "grpc.status"
BACKEND_SERVICE, DISCONNECT_ERROR = "grpc.lb.backend_service", "grpc.disconnect_error"

#: The five per-call instruments of gRFC A66.
A66 = (
    "grpc.client.attempt.started",
    "grpc.client.attempt.duration",
    "grpc.client.attempt.sent_total_compressed_message_size",
    "grpc.client.attempt.rcvd_total_compressed_message_size",
    "grpc.client.call.duration",
)
#: The four per-connection instruments of gRFC A94.
A94 = (
    "grpc.subchannel.connection_attempts_succeeded",
    "grpc.subchannel.connection_attempts_failed",
    "grpc.subchannel.disconnections",
    "grpc.subchannel.open_connections",
)


class Reading:
    """One collection: the metrics of the ``grpcpool`` scope, by name."""

    def __init__(self, reader: InMemoryMetricReader) -> None:
        self.metrics: dict[str, Metric] = {}
        data = reader.get_metrics_data()
        for resource in data.resource_metrics if data else ():
            for scope in resource.scope_metrics:
                if scope.scope.name == "grpcpool":
                    self.metrics.update((metric.name, metric) for metric in scope.metrics)

    def points(self, name: str, attributes: dict[str, str] | None = None) -> list[Any]:
        """``name``'s data points whose attributes include ``attributes``."""
        metric = self.metrics.get(name)
        wanted = (attributes or {}).items()
        return [
            point
            for point in (metric.data.data_points if metric is not None else ())
            if wanted <= dict(point.attributes).items()
        ]

    def value(self, name: str, attributes: dict[str, str] | None = None) -> float:
        """The sum of a counter's (or up-down counter's) points, or of a histogram's counts."""
        return sum(
            p.count if isinstance(p, HistogramDataPoint) else p.value
            for p in self.points(name, attributes)
        )

    def total(self, name: str, attributes: dict[str, str] | None = None) -> float:
        """The sum of a histogram's recorded values over its matching points."""
        return sum(p.sum for p in self.points(name, attributes))

    def attributes(self, name: str) -> list[dict[str, str]]:
        """The attribute sets of ``name``'s points."""
        return [dict(point.attributes) for point in self.points(name)]

    def kind(self, name: str) -> str:
        """``counter``, ``updown`` or ``histogram``, as the data model has the metric."""
        data = self.metrics[name].data
        if isinstance(data, Histogram):
            return "histogram"
        assert isinstance(data, Sum)
        return "counter" if data.is_monotonic else "updown"

    def unit(self, name: str) -> str | None:
        return self.metrics[name].unit


class Otel:
    """An SDK provider with an in-memory reader, and grpcpool's exporter on it."""

    def __init__(self, *, per_call: bool) -> None:
        self.reader = InMemoryMetricReader()
        self.provider = MeterProvider(metric_readers=[self.reader], shutdown_on_exit=False)
        self.exporter = grpcpool_otel.register(meter_provider=self.provider, per_call=per_call)

    def read(self) -> Reading:
        return Reading(self.reader)

    def close(self) -> None:
        self.exporter.close()
        self.provider.shutdown()


@contextmanager
def otel(*, per_call: bool = True) -> Iterator[Otel]:
    """grpcpool's exporter on a fresh SDK provider, closed (and shut down) on the way out."""
    registered = Otel(per_call=per_call)
    try:
        yield registered
    finally:
        registered.close()
