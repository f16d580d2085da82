"""OpenTelemetry metrics for grpcpool, from its telemetry signals.

Needs the ``otel`` extra (``pip install 'grpcpool[otel]'``). With a meter
provider configured by the application (exporters, readers, resource)::

    from opentelemetry import metrics
    from grpcpool.metrics import opentelemetry as grpcpool_otel

    otel_metrics = grpcpool_otel.register()   # the global meter provider
    ...
    otel_metrics.close()

The instruments are the Prometheus exporter's, with OpenTelemetry names and
units (attributes as the Prometheus labels):

- ``grpcpool.pool.channels.expected``, ``grpcpool.pool.channels.current``
  (observable gauges, ``{channel}``), by ``pool``.
- ``grpcpool.pool.calls.in_flight`` (observable gauge, ``{call}``), by
  ``pool``: calls running through the pool channel, sampled by each
  ``pool.status`` report.
- ``grpcpool.channel.connects``, ``grpcpool.channel.connection_failures``,
  ``grpcpool.channel.disconnects`` (also by ``reason``),
  ``grpcpool.channel.reconnects_scheduled``, ``grpcpool.channel.pings``
  (also by ``result``): counters by ``pool``.
- ``grpcpool.supervisor.restarts``: counter by ``supervisor`` and ``child_id``.
- ``grpcpool.channel.connect.duration``: histogram in seconds, by ``pool``.
- ``grpcpool.pool.resolutions`` (counter, ``{resolution}``) and
  ``grpcpool.pool.addresses`` (observable gauge, ``{address}``), by ``pool``.
- ``grpcpool.channel.refreshes``: counter by ``pool`` and ``reason``
  (``max_age`` or ``rebalance``).
- ``grpcpool.pool.ejections`` (counter, ``{ejection}``, by ``pool`` and
  ``reason``), ``grpcpool.pool.ejected_units`` (observable gauge, ``{unit}``)
  and ``grpcpool.pool.panic`` (observable gauge, ``1``), by ``pool``.
- ``grpcpool.call.hedged_attempts`` (``{attempt}``) and
  ``grpcpool.call.hedge_wins`` (``{call}``): counters by ``pool`` and
  ``method``.
- ``grpcpool.pool.autoscale_steps`` (``{step}``): counter by ``pool`` and
  ``direction`` (``up`` or ``down``): the steps ``pool.autoscale`` took.
- ``grpcpool.pool.calls.queued`` (observable gauge, ``{call}``): calls
  waiting for a free slot, sampled by each ``pool.status`` report; and
  ``grpcpool.call.queue.wait`` (histogram, seconds): how long each call that
  waited for a slot waited; by ``pool``.

Only the OpenTelemetry API is imported here; the SDK (or another
implementation) is the application's choice.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

try:
    from opentelemetry import metrics
    from opentelemetry.metrics import (
        CallbackOptions,
        Counter,
        Histogram,
        Meter,
        MeterProvider,
        Observation,
    )
except ImportError as error:  # pragma: no cover - exercised in a subprocess test
    raise ImportError(
        "grpcpool.metrics.opentelemetry needs opentelemetry-api: pip install 'grpcpool[otel]'"
    ) from error

from grpcpool._version import __version__
from grpcpool.metrics._instruments import (
    CONNECT_DURATION_BUCKETS,
    INSTRUMENTS,
    Bridge,
    Exporter,
    Instrument,
    fork_safe_lock,
)

__all__ = ["OpenTelemetryMetrics", "register"]

# The instrumentation scope the instruments are created under.
SCOPE = "grpcpool"


def register(
    *, meter: Meter | None = None, meter_provider: MeterProvider | None = None
) -> OpenTelemetryMetrics:
    """Creates grpcpool's instruments on a meter and starts updating them.

    Args:
        meter: The meter to create the instruments on.
        meter_provider: Where to get a ``"grpcpool"`` meter instead. With
            neither, the global provider (``opentelemetry.metrics``) is used;
            if the application sets it later, the instruments follow.

    Returns:
        The live exporter; :meth:`OpenTelemetryMetrics.close` stops it.

    Raises:
        TypeError: Both ``meter`` and ``meter_provider`` were given.
    """
    if meter is not None and meter_provider is not None:
        raise TypeError("register() takes a meter or a meter_provider, not both")
    if meter is None:
        provider = metrics.get_meter_provider() if meter_provider is None else meter_provider
        meter = provider.get_meter(SCOPE, __version__)
    return OpenTelemetryMetrics(meter)


class _Sink:
    """Writes the bridge's measurements into OpenTelemetry instruments.

    Counters and the histogram are synchronous. The channel gauges are
    observable: the bridge's latest values are kept here and read by the
    callbacks whenever a reader collects, which is how OTel models a value
    that is set rather than summed.
    """

    def __init__(self, meter: Meter) -> None:
        self.counters: dict[Instrument, Counter] = {}
        self.histograms: dict[Instrument, Histogram] = {}
        self._gauge_values: dict[Instrument, dict[tuple[tuple[str, str], ...], float]] = {}
        self._lock = fork_safe_lock(self)
        self.closed = False
        for instrument in INSTRUMENTS:
            name, unit, doc = instrument.otel_name, instrument.unit, instrument.description
            if instrument.kind == "counter":
                self.counters[instrument] = meter.create_counter(name, unit, doc)
            elif instrument.kind == "gauge":
                self._gauge_values[instrument] = {}
                meter.create_observable_gauge(name, [self._observer(instrument)], unit, doc)
            else:
                self.histograms[instrument] = _create_histogram(meter, name, unit, doc)

    def _observer(
        self, instrument: Instrument
    ) -> Callable[[CallbackOptions], Iterable[Observation]]:
        def observe(options: CallbackOptions) -> Iterable[Observation]:
            with self._lock:
                if self.closed:
                    return []
                values = list(self._gauge_values[instrument].items())
            return [Observation(value, dict(labels)) for labels, value in values]

        return observe

    def add(self, instrument: Instrument, amount: float, labels: Mapping[str, str]) -> None:
        self.counters[instrument].add(amount, dict(labels))

    def record(self, instrument: Instrument, value: float, labels: Mapping[str, str]) -> None:
        self.histograms[instrument].record(value, dict(labels))

    def set(self, instrument: Instrument, value: float, labels: Mapping[str, str]) -> None:
        with self._lock:
            self._gauge_values[instrument][tuple(sorted(labels.items()))] = value

    def close(self) -> None:
        with self._lock:
            self.closed = True


def _create_histogram(meter: Meter, name: str, unit: str, description: str) -> Histogram:
    """A histogram with second-sized buckets.

    OTel's default buckets (0, 5, 10, ... 10000) suit milliseconds; a connect
    taking 0.02 s would land in the first bucket. The bucket advisory arrived
    in opentelemetry-api 1.30; older APIs get the defaults, and a View on the
    meter provider can set the buckets there.
    """
    try:
        return meter.create_histogram(
            name, unit, description, explicit_bucket_boundaries_advisory=CONNECT_DURATION_BUCKETS
        )
    except TypeError:  # opentelemetry-api < 1.30
        return meter.create_histogram(name, unit, description)


class OpenTelemetryMetrics(Exporter):
    """grpcpool's instruments on one OpenTelemetry meter, updated from telemetry.

    Made by :func:`register`. Counters and the histogram are recorded on the
    pool's actor threads as events happen; the gauges are read when the
    meter's readers collect. Usable as a context manager that closes on exit.

    Attributes:
        meter: The meter holding the instruments.
    """

    def __init__(self, meter: Meter) -> None:
        self.meter = meter
        self._sink = _Sink(meter)
        self._bridge = Bridge(self._sink)

    def close(self) -> None:
        """Stops updating; the gauges report nothing from then on. Idempotent.

        OpenTelemetry has no way to remove an instrument from a meter, so the
        counters keep their totals in the SDK; they just stop growing.
        """
        self._bridge.close()
        self._sink.close()

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` has run."""
        return self._bridge.closed
