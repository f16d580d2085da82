"""Prometheus metrics for grpcpool, from its telemetry signals.

Needs the ``prometheus`` extra (``pip install 'grpcpool[prometheus]'``)::

    import prometheus_client
    from grpcpool.metrics import prometheus

    metrics = prometheus.register()      # into prometheus_client.REGISTRY
    prometheus_client.start_http_server(9100)
    ...
    metrics.close()                      # stop updating, drop the metrics

The metrics, all labelled by ``pool`` unless noted:

- ``grpcpool_pool_expected_channels``, ``grpcpool_pool_current_channels``
  (gauges): workers the pool keeps, and channels ready and in rotation.
- ``grpcpool_pool_calls_in_flight`` (gauge): calls running through the pool
  channel (:func:`grpcpool.channel`), sampled by each ``pool.status`` report
  (every ``pool.telemetry_interval``).
- ``grpcpool_channel_connects_total``,
  ``grpcpool_channel_connection_failures_total``,
  ``grpcpool_channel_disconnects_total`` (also by ``reason``),
  ``grpcpool_channel_reconnects_scheduled_total``,
  ``grpcpool_channel_pings_total`` (also by ``result``): counters.
- ``grpcpool_supervisor_restarts_total`` (by ``supervisor`` and ``child_id``).
- ``grpcpool_channel_connect_duration_seconds`` (histogram).
- ``grpcpool_pool_resolutions_total`` (counter) and ``grpcpool_pool_addresses``
  (gauge): successful resolutions of the pool's host, and how many addresses
  the last one returned.
- ``grpcpool_channel_refreshes_total`` (counter, also by ``reason``:
  ``max_age`` or ``rebalance``): connections replaced by one made ready first.
- ``grpcpool_pool_ejections_total`` (counter, also by ``reason``:
  ``failure_percentage`` or ``success_rate``) and
  ``grpcpool_pool_ejected_units`` (gauge): backends (or connections, in a
  pool with one address) that outlier detection took out of rotation, and
  how many are out now.
- ``grpcpool_pool_panic`` (gauge): 1 while the pool routes to every ready
  connection because too few are usable (``pool.panic_threshold``), else 0.
- ``grpcpool_call_hedged_attempts_total`` and
  ``grpcpool_call_hedge_wins_total`` (counters, also by ``method``): the
  attempts hedged calls sent after their first, and the calls such an
  attempt answered.
- ``grpcpool_pool_autoscale_steps_total`` (counter, also by ``direction``:
  ``up`` or ``down``): the steps ``pool.autoscale`` took.
- ``grpcpool_pool_calls_queued`` (gauge): calls waiting for a free slot
  (``pool.max_calls_per_connection``), sampled by each ``pool.status``
  report; ``grpcpool_call_queue_wait_seconds`` (histogram): how long each
  call that waited for a slot waited.

And gRPC's own (see :mod:`grpcpool.metrics._grpc_catalog`), named from
gRPC's OpenTelemetry names as the OpenTelemetry-to-Prometheus convention has
it (dots to underscores, a unit suffix, ``_total`` on counters):

- per connection (gRFC A94), by ``grpc_target`` and ``grpc_lb_backend_service``
  (the pool's name): ``grpc_subchannel_connection_attempts_succeeded_total``,
  ``grpc_subchannel_connection_attempts_failed_total``,
  ``grpc_subchannel_disconnections_total`` (also by ``grpc_disconnect_error``)
  and ``grpc_subchannel_open_connections`` (gauge);
- per call through the pool channels (gRFC A66), with ``per_call=True``, by
  ``grpc_method`` and ``grpc_target`` (and ``grpc_status`` but on the first):
  ``grpc_client_attempt_started_total``,
  ``grpc_client_attempt_duration_seconds``,
  ``grpc_client_attempt_sent_total_compressed_message_size_bytes``,
  ``grpc_client_attempt_rcvd_total_compressed_message_size_bytes`` and
  ``grpc_client_call_duration_seconds`` (histograms with A66's buckets).

Register once per registry and process: the signals are process-wide, so one
registration sees every pool. Error texts are never label values (see
:mod:`grpcpool.metrics._instruments`).
"""

from __future__ import annotations

from collections.abc import Mapping

try:
    import prometheus_client
    from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
    from prometheus_client.registry import Collector
except ImportError as error:  # pragma: no cover - exercised in a subprocess test
    raise ImportError(
        "grpcpool.metrics.prometheus needs prometheus-client: pip install 'grpcpool[prometheus]'"
    ) from error

from grpcpool.metrics._instruments import (
    CONNECT_DURATION_BUCKETS,
    PUBLISHED,
    Bridge,
    Exporter,
    Instrument,
    fork_safe_lock,
)
from grpcpool.metrics._prometheus_calls import PrometheusPerCall
from grpcpool.metrics._subchannels import Targets

__all__ = ["PrometheusMetrics", "register"]


def register(
    registry: CollectorRegistry | None = None, *, per_call: bool = False
) -> PrometheusMetrics:
    """Creates grpcpool's metrics in ``registry`` and starts updating them.

    Args:
        registry: Where the metrics are registered; ``None`` means
            ``prometheus_client.REGISTRY``, the one ``start_http_server`` and
            ``generate_latest()`` serve by default.
        per_call: Also record gRFC A66's per-call metrics for every call
            through a pool channel (a few measurements per call; off, a call
            pays one attribute read for the feature).

    Returns:
        The live exporter; :meth:`PrometheusMetrics.close` undoes this call.

    Raises:
        ValueError: grpcpool's metrics are already in ``registry`` (an earlier
            registration was not closed).
    """
    registry = prometheus_client.REGISTRY if registry is None else registry
    return PrometheusMetrics(registry, per_call=per_call)


class _Sink:
    """Writes the bridge's measurements into prometheus_client metric objects."""

    def __init__(self) -> None:
        # Up-down counters are gauges moved by inc(): Prometheus has no other kind for them.
        self.counters: dict[Instrument, Counter | Gauge] = {}
        self.gauges: dict[Instrument, Gauge] = {}
        self.histograms: dict[Instrument, Histogram] = {}
        for i in PUBLISHED:
            # registry=None: registered by the caller, all or nothing.
            name, doc, labels = i.prometheus_name, i.description, i.prometheus_labels
            if i.kind == "counter":
                self.counters[i] = Counter(name, doc, labels, registry=None)
            elif i.kind == "updown":
                self.counters[i] = Gauge(name, doc, labels, registry=None)
            elif i.kind == "gauge":
                self.gauges[i] = Gauge(name, doc, labels, registry=None)
            else:
                self.histograms[i] = Histogram(
                    name, doc, labels, registry=None, buckets=CONNECT_DURATION_BUCKETS
                )

    def collectors(self) -> list[Counter | Gauge | Histogram]:
        return [*self.counters.values(), *self.gauges.values(), *self.histograms.values()]

    def add(self, instrument: Instrument, amount: float, labels: Mapping[str, str]) -> None:
        self.counters[instrument].labels(*_values(instrument, labels)).inc(amount)

    def record(self, instrument: Instrument, value: float, labels: Mapping[str, str]) -> None:
        self.histograms[instrument].labels(*_values(instrument, labels)).observe(value)

    def set(self, instrument: Instrument, value: float, labels: Mapping[str, str]) -> None:
        self.gauges[instrument].labels(*_values(instrument, labels)).set(value)


def _values(instrument: Instrument, labels: Mapping[str, str]) -> list[str]:
    """The label values in the instrument's order (its names may have dots Prometheus lacks)."""
    return [labels[name] for name in instrument.labels]


class PrometheusMetrics(Exporter):
    """grpcpool's metrics in one Prometheus registry, updated from telemetry.

    Made by :func:`register`. Updates run on the pool's actor threads as the
    events happen; prometheus_client metrics are thread-safe, and a scrape
    never waits on a pool. Usable as a context manager that closes on exit.

    Attributes:
        registry: The registry holding the metrics.
    """

    def __init__(self, registry: CollectorRegistry, *, per_call: bool = False) -> None:
        self.registry = registry
        self._sink = _Sink()
        self._lock = fork_safe_lock(self)
        self._closed = False
        # Made before the bridge, which makes the targets: given them once it exists.
        self._collectors: list[Collector] = [*self._sink.collectors()]
        self._per_call: PrometheusPerCall | None = None
        targets = Targets()
        if per_call:
            self._per_call = PrometheusPerCall(targets)
            self._collectors.append(self._per_call)
        registered: list[Collector] = []
        try:
            for collector in self._collectors:
                registry.register(collector)
                registered.append(collector)
        except BaseException as error:
            for collector in registered:
                registry.unregister(collector)
            if isinstance(error, ValueError):  # prometheus_client's "Duplicated timeseries"
                raise ValueError(
                    "grpcpool's metrics are already registered in this registry; "
                    "close() the earlier PrometheusMetrics first"
                ) from error
            raise
        # Subscribed last: no event can arrive before every metric exists.
        self._bridge = Bridge(self._sink, targets)
        if self._per_call is not None:
            self._per_call.install()

    def close(self) -> None:
        """Stops updating and removes the metrics from the registry. Idempotent.

        Removing them lets the same registry take a fresh :func:`register`
        (tests, or an application that reconfigures its metrics).
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
        if self._per_call is not None:
            self._per_call.close()
        self._bridge.close()
        for collector in self._collectors:
            self.registry.unregister(collector)

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` has run."""
        return self._closed
