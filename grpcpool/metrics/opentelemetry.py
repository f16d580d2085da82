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

And gRPC's own, as gRPC's OpenTelemetry plugin names them (see
:mod:`grpcpool.metrics._grpc_catalog` for what each attribute holds):

- per connection (gRFC A94), by ``grpc.target`` and ``grpc.lb.backend_service``
  (the pool's name): ``grpc.subchannel.connection_attempts_succeeded`` and
  ``grpc.subchannel.connection_attempts_failed`` (counters, ``{attempt}``),
  ``grpc.subchannel.disconnections`` (counter, ``{disconnection}``, also by
  ``grpc.disconnect_error``), ``grpc.subchannel.open_connections`` (up-down
  counter, ``{connection}``);
- per call through the pool channels (gRFC A66), with ``per_call=True``, by
  ``grpc.method`` and ``grpc.target`` (and ``grpc.status`` but on the first):
  ``grpc.client.attempt.started`` (counter, ``{attempt}``),
  ``grpc.client.attempt.duration`` (histogram, ``s``),
  ``grpc.client.attempt.sent_total_compressed_message_size`` and
  ``grpc.client.attempt.rcvd_total_compressed_message_size`` (histograms,
  ``By``: the serialized messages, compression not counted),
  ``grpc.client.call.duration`` (histogram, ``s``), with A66's buckets.

Only the OpenTelemetry API is imported here; the SDK (or another
implementation) is the application's choice.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

import grpc

try:
    from opentelemetry import metrics
    from opentelemetry.metrics import (
        CallbackOptions,
        Counter,
        Histogram,
        Meter,
        MeterProvider,
        Observation,
        UpDownCounter,
    )
except ImportError as error:  # pragma: no cover - exercised in a subprocess test
    raise ImportError(
        "grpcpool.metrics.opentelemetry needs opentelemetry-api: pip install 'grpcpool[otel]'"
    ) from error

from grpcpool._version import __version__
from grpcpool.metrics._grpc_catalog import (
    ATTEMPT_DURATION,
    ATTEMPT_RCVD_SIZE,
    ATTEMPT_SENT_SIZE,
    ATTEMPT_STARTED,
    CALL_DURATION,
    buckets,
)
from grpcpool.metrics._instruments import (
    CONNECT_DURATION_BUCKETS,
    PUBLISHED,
    Bridge,
    Exporter,
    Instrument,
    fork_safe_lock,
)
from grpcpool.metrics._per_call import CallLabels, PerCall
from grpcpool.metrics._subchannels import Targets

__all__ = ["OpenTelemetryMetrics", "register"]

# The instrumentation scope the instruments are created under.
SCOPE = "grpcpool"


def register(
    *,
    meter: Meter | None = None,
    meter_provider: MeterProvider | None = None,
    per_call: bool = False,
) -> OpenTelemetryMetrics:
    """Creates grpcpool's instruments on a meter and starts updating them.

    Args:
        meter: The meter to create the instruments on.
        meter_provider: Where to get a ``"grpcpool"`` meter instead. With
            neither, the global provider (``opentelemetry.metrics``) is used;
            if the application sets it later, the instruments follow.
        per_call: Also record gRFC A66's per-call instruments for every call
            through a pool channel (a few measurements per call; off, a call
            pays one attribute read for the feature).

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
    return OpenTelemetryMetrics(meter, per_call=per_call)


class _Sink:
    """Writes the bridge's measurements into OpenTelemetry instruments.

    Counters and the histogram are synchronous. The channel gauges are
    observable: the bridge's latest values are kept here and read by the
    callbacks whenever a reader collects, which is how OTel models a value
    that is set rather than summed.
    """

    def __init__(self, meter: Meter) -> None:
        self.counters: dict[Instrument, Counter | UpDownCounter] = {}
        self.histograms: dict[Instrument, Histogram] = {}
        self._gauge_values: dict[Instrument, dict[tuple[tuple[str, str], ...], float]] = {}
        self._lock = fork_safe_lock(self)
        self.closed = False
        for instrument in PUBLISHED:
            name, unit, doc = instrument.otel_name, instrument.unit, instrument.description
            if instrument.kind == "counter":
                self.counters[instrument] = meter.create_counter(name, unit, doc)
            elif instrument.kind == "updown":
                self.counters[instrument] = meter.create_up_down_counter(name, unit, doc)
            elif instrument.kind == "gauge":
                self._gauge_values[instrument] = {}
                meter.create_observable_gauge(name, [self._observer(instrument)], unit, doc)
            else:
                self.histograms[instrument] = _create_histogram(
                    meter, instrument, CONNECT_DURATION_BUCKETS
                )

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


def _create_histogram(
    meter: Meter, instrument: Instrument, boundaries: tuple[float, ...]
) -> Histogram:
    """A histogram with ``boundaries`` as its buckets.

    OTel's default buckets (0, 5, 10, ... 10000) suit milliseconds; a connect
    taking 0.02 s would land in the first bucket. The bucket advisory arrived
    in opentelemetry-api 1.30; older APIs get the defaults, and a View on the
    meter provider can set the buckets there.
    """
    name, unit, description = instrument.otel_name, instrument.unit, instrument.description
    try:
        return meter.create_histogram(
            name, unit, description, explicit_bucket_boundaries_advisory=list(boundaries)
        )
    except TypeError:  # opentelemetry-api < 1.30
        return meter.create_histogram(name, unit, description)


class _Started:
    """Attempts started with one set of attributes, counted here (see :class:`_PerCall`)."""

    __slots__ = ("attributes", "count")

    def __init__(self, attributes: dict[str, str]) -> None:
        self.attributes = attributes
        self.count = 0


_Labels = CallLabels[_Started, dict[str, str]]


class _PerCall(PerCall[_Started, dict[str, str]]):
    """gRFC A66's instruments on the exporter's meter, recorded as the pool channels say.

    The attribute dicts are made once per pool, method and status and
    reused, so a call builds none. Each SDK measurement costs a few
    microseconds (it checks and hashes the attributes), so the attempts
    started are counted here and reported by an observable counter when a
    reader collects: the same monotonic sum a counter gives, one SDK
    measurement fewer per call. The four histograms take theirs.
    """

    def __init__(self, meter: Meter, targets: Targets) -> None:
        super().__init__(targets)
        self._lock = fork_safe_lock(self)
        # By attribute values: one each, however often a pool's labels are made again.
        self._counts: dict[tuple[str, ...], _Started] = {}
        started = ATTEMPT_STARTED
        meter.create_observable_counter(
            started.otel_name, [self._observe_started], started.unit, started.description
        )
        histograms = [
            _create_histogram(meter, i, buckets(i))
            for i in (ATTEMPT_DURATION, ATTEMPT_SENT_SIZE, ATTEMPT_RCVD_SIZE, CALL_DURATION)
        ]
        self._duration, self._sent, self._received, self._call_duration = histograms

    def _observe_started(self, options: CallbackOptions) -> Iterable[Observation]:
        with self._lock:
            if self.closed:
                return []
            counts = [(s.count, s.attributes) for s in self._counts.values()]
        return [Observation(count, attributes) for count, attributes in counts]

    def _started_handle(self, attributes: dict[str, str]) -> _Started:
        with self._lock:
            return self._counts.setdefault(tuple(attributes.values()), _Started(attributes))

    def _handle(self, attributes: dict[str, str]) -> dict[str, str]:
        return attributes

    def attempt_started(self, labels: _Labels) -> None:
        started = labels.started
        with self._lock:
            started.count += 1

    def attempt_ended(
        self,
        labels: _Labels,
        code: grpc.StatusCode,
        seconds: float,
        sent: int,
        received: int,
    ) -> None:
        if self.closed:
            return
        attributes = labels.of(code)
        self._duration.record(seconds, attributes)
        self._sent.record(sent, attributes)
        self._received.record(received, attributes)

    def call_ended(self, labels: _Labels, code: grpc.StatusCode, seconds: float) -> None:
        if not self.closed:
            self._call_duration.record(seconds, labels.of(code))

    def attempt_and_call_ended(
        self,
        labels: _Labels,
        code: grpc.StatusCode,
        seconds: float,
        sent: int,
        received: int,
    ) -> None:
        if self.closed:
            return
        attributes = labels.of(code)
        self._duration.record(seconds, attributes)
        self._sent.record(sent, attributes)
        self._received.record(received, attributes)
        self._call_duration.record(seconds, attributes)


class OpenTelemetryMetrics(Exporter):
    """grpcpool's instruments on one OpenTelemetry meter, updated from telemetry.

    Made by :func:`register`. Counters and the histogram are recorded on the
    pool's actor threads as events happen; the gauges are read when the
    meter's readers collect. Usable as a context manager that closes on exit.

    With ``per_call``, the pool channels also tell it of each call (gRFC
    A66's instruments), on whichever thread a call ends.

    Attributes:
        meter: The meter holding the instruments.
    """

    def __init__(self, meter: Meter, *, per_call: bool = False) -> None:
        self.meter = meter
        self._sink = _Sink(meter)
        self._bridge = Bridge(self._sink)
        self._per_call = _PerCall(meter, self._bridge.targets) if per_call else None
        if self._per_call is not None:
            self._per_call.install()

    def close(self) -> None:
        """Stops updating; the gauges report nothing from then on. Idempotent.

        OpenTelemetry has no way to remove an instrument from a meter, so the
        counters keep their totals in the SDK; they just stop growing.
        """
        if self._per_call is not None:
            self._per_call.close()
        self._bridge.close()
        self._sink.close()

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` has run."""
        return self._bridge.closed
