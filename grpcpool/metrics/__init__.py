"""Metrics exporters built on :mod:`grpcpool.telemetry`.

- :mod:`grpcpool.metrics.prometheus` (extra ``grpcpool[prometheus]``)
- :mod:`grpcpool.metrics.opentelemetry` (extra ``grpcpool[otel]``)

Each is imported on its own, so this package and ``import grpcpool`` load
neither prometheus_client nor OpenTelemetry: an application pays only for the
exporter it uses, and needs only that one's packages installed.
"""

__all__: list[str] = []
