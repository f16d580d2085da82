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

Register once per registry and process: the signals are process-wide, so one
registration sees every pool. Error texts are never label values (see
:mod:`grpcpool.metrics._instruments`).
"""

from __future__ import annotations

from collections.abc import Mapping

try:
    import prometheus_client
    from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
except ImportError as error:  # pragma: no cover - exercised in a subprocess test
    raise ImportError(
        "grpcpool.metrics.prometheus needs prometheus-client: pip install 'grpcpool[prometheus]'"
    ) from error

from grpcpool.metrics._instruments import (
    CONNECT_DURATION_BUCKETS,
    INSTRUMENTS,
    Bridge,
    Exporter,
    Instrument,
    fork_safe_lock,
)

__all__ = ["PrometheusMetrics", "register"]


def register(registry: CollectorRegistry | None = None) -> PrometheusMetrics:
    """Creates grpcpool's metrics in ``registry`` and starts updating them.

    Args:
        registry: Where the metrics are registered; ``None`` means
            ``prometheus_client.REGISTRY``, the one ``start_http_server`` and
            ``generate_latest()`` serve by default.

    Returns:
        The live exporter; :meth:`PrometheusMetrics.close` undoes this call.

    Raises:
        ValueError: grpcpool's metrics are already in ``registry`` (an earlier
            registration was not closed).
    """
    return PrometheusMetrics(prometheus_client.REGISTRY if registry is None else registry)


class _Sink:
    """Writes the bridge's measurements into prometheus_client metric objects."""

    def __init__(self) -> None:
        self.counters: dict[Instrument, Counter] = {}
        self.gauges: dict[Instrument, Gauge] = {}
        self.histograms: dict[Instrument, Histogram] = {}
        for i in INSTRUMENTS:
            # registry=None: registered by the caller, all or nothing.
            name, doc, labels = i.prometheus_name, i.description, i.labels
            if i.kind == "counter":
                self.counters[i] = Counter(name, doc, labels, registry=None)
            elif i.kind == "gauge":
                self.gauges[i] = Gauge(name, doc, labels, registry=None)
            else:
                self.histograms[i] = Histogram(
                    name, doc, labels, registry=None, buckets=CONNECT_DURATION_BUCKETS
                )

    def collectors(self) -> list[Counter | Gauge | Histogram]:
        return [*self.counters.values(), *self.gauges.values(), *self.histograms.values()]

    def add(self, instrument: Instrument, amount: float, labels: Mapping[str, str]) -> None:
        self.counters[instrument].labels(**labels).inc(amount)

    def record(self, instrument: Instrument, value: float, labels: Mapping[str, str]) -> None:
        self.histograms[instrument].labels(**labels).observe(value)

    def set(self, instrument: Instrument, value: float, labels: Mapping[str, str]) -> None:
        self.gauges[instrument].labels(**labels).set(value)


class PrometheusMetrics(Exporter):
    """grpcpool's metrics in one Prometheus registry, updated from telemetry.

    Made by :func:`register`. Updates run on the pool's actor threads as the
    events happen; prometheus_client metrics are thread-safe, and a scrape
    never waits on a pool. Usable as a context manager that closes on exit.

    Attributes:
        registry: The registry holding the metrics.
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self._sink = _Sink()
        self._lock = fork_safe_lock(self)
        self._closed = False
        registered: list[Counter | Gauge | Histogram] = []
        try:
            for collector in self._sink.collectors():
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
        self._bridge = Bridge(self._sink)

    def close(self) -> None:
        """Stops updating and removes the metrics from the registry. Idempotent.

        Removing them lets the same registry take a fresh :func:`register`
        (tests, or an application that reconfigures its metrics).
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._bridge.close()
        for collector in self._sink.collectors():
            self.registry.unregister(collector)

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` has run."""
        return self._closed
