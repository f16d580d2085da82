"""gRFC A66's per-call metrics for Prometheus, counted here and collected on scrape.

prometheus_client's ``Histogram.observe`` takes a lock for each of its
values and walks its buckets in Python: four observes and a counter's
``inc`` per call cost several microseconds, more than everything else
per-call metrics do. So the per-call recorder keeps the counts itself, one
lock per update for all of a call's histograms and a C bisect for each
bucket, and is the registry's collector for them: a scrape reads them as
prometheus_client's own metrics would show (the same names, labels, ``le``
bounds and ``_sum``/``_count``/``_bucket`` samples).

Needs prometheus_client: imported by :mod:`grpcpool.metrics.prometheus` only.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator
from typing import Any

import grpc
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from grpcpool._process import fork_safe_lock
from grpcpool.metrics._catalog import Instrument
from grpcpool.metrics._grpc_catalog import (
    ATTEMPT_DURATION,
    ATTEMPT_RCVD_SIZE,
    ATTEMPT_SENT_SIZE,
    ATTEMPT_STARTED,
    CALL_DURATION,
    LATENCY_BUCKETS,
    SIZE_BUCKETS,
    buckets,
)
from grpcpool.metrics._per_call import CallLabels, PerCall
from grpcpool.metrics._subchannels import Targets

__all__ = ["PrometheusPerCall"]

_LATENCY = list(LATENCY_BUCKETS)
# Whole bytes as ints: a size (an int) is compared with an int bound twice as
# fast as with a float one, and the bucket it falls in is the same.
_SIZE = [int(bound) if float(bound).is_integer() else bound for bound in SIZE_BUCKETS]
_HISTOGRAMS = (ATTEMPT_DURATION, ATTEMPT_SENT_SIZE, ATTEMPT_RCVD_SIZE, CALL_DURATION)
# Each histogram's ``le`` label values, as prometheus_client writes its own.
_LE = [
    [*(floatToGoString(bound) for bound in buckets(h)), "+Inf"]  # type: ignore[no-untyped-call]
    for h in _HISTOGRAMS
]


class _Series:
    """The four histograms of calls with one set of attributes (status included).

    ``counts[h][i]``: values of histogram ``h`` (in :data:`_HISTOGRAMS`'
    order) in bucket ``i`` (the last: above every bound); ``sums[h]``: their sum.
    """

    __slots__ = ("counts", "labels", "sums")

    def __init__(self, labels: list[str]) -> None:
        self.labels = labels
        self.counts = [[0] * (len(buckets(h)) + 1) for h in _HISTOGRAMS]
        self.sums = [0.0, 0.0, 0.0, 0.0]


class _Started:
    """Attempts started with one set of attributes (no status)."""

    __slots__ = ("count", "labels")

    def __init__(self, labels: list[str]) -> None:
        self.labels = labels
        self.count = 0


class PrometheusPerCall(PerCall[_Started, _Series], Collector):
    """The per-call recorder of a Prometheus registration, and its collector."""

    def __init__(self, targets: Targets) -> None:
        super().__init__(targets)
        self._lock = fork_safe_lock(self)
        # By label values: one each, however often a pool's labels are made again.
        self._started: dict[tuple[str, ...], _Started] = {}
        self._series: dict[tuple[str, ...], _Series] = {}

    def _started_handle(self, attributes: dict[str, str]) -> _Started:
        values = tuple(attributes.values())
        with self._lock:
            return self._started.setdefault(values, _Started(list(values)))

    def _handle(self, attributes: dict[str, str]) -> _Series:
        values = tuple(attributes.values())
        with self._lock:
            return self._series.setdefault(values, _Series(list(values)))

    # The three below are on every traced call's path: the lock is taken with
    # acquire/release (a ``with`` block costs twice as much), and a status's
    # series read from ``labels.ended`` before calling ``labels.of``.

    def attempt_started(self, labels: CallLabels[_Started, _Series]) -> None:
        started = labels.started
        lock = self._lock
        lock.acquire()
        try:
            started.count += 1
        finally:
            lock.release()

    def attempt_ended(
        self,
        labels: CallLabels[_Started, _Series],
        code: grpc.StatusCode,
        seconds: float,
        sent: int,
        received: int,
    ) -> None:
        series = labels.ended.get(code) or labels.of(code)
        counts, sums = series.counts, series.sums
        where = bisect.bisect_left
        lock = self._lock
        lock.acquire()
        try:
            counts[0][where(_LATENCY, seconds)] += 1
            counts[1][where(_SIZE, sent)] += 1
            counts[2][where(_SIZE, received)] += 1
            sums[0] += seconds
            sums[1] += sent
            sums[2] += received
        finally:
            lock.release()

    def attempt_and_call_ended(
        self,
        labels: CallLabels[_Started, _Series],
        code: grpc.StatusCode,
        seconds: float,
        sent: int,
        received: int,
    ) -> None:
        series = labels.ended.get(code) or labels.of(code)
        counts, sums = series.counts, series.sums
        where = bisect.bisect_left
        latency = where(_LATENCY, seconds)
        sized_sent, sized_received = where(_SIZE, sent), where(_SIZE, received)
        lock = self._lock
        lock.acquire()
        try:
            counts[0][latency] += 1
            counts[1][sized_sent] += 1
            counts[2][sized_received] += 1
            counts[3][latency] += 1
            sums[0] += seconds
            sums[1] += sent
            sums[2] += received
            sums[3] += seconds
        finally:
            lock.release()

    def call_ended(
        self, labels: CallLabels[_Started, _Series], code: grpc.StatusCode, seconds: float
    ) -> None:
        series = labels.of(code)
        with self._lock:
            series.counts[3][bisect.bisect_left(_LATENCY, seconds)] += 1
            series.sums[3] += seconds

    # --- the collector --------------------------------------------------------------------

    def describe(self) -> Iterator[Metric]:
        """The metric families, without samples (the registry checks their names)."""
        yield _counter()
        for histogram in _HISTOGRAMS:
            yield _histogram(histogram)

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            started = [(s.labels, s.count) for s in self._started.values()]
            series = [
                (s.labels, [list(c) for c in s.counts], list(s.sums))
                for s in self._series.values()
            ]
        counter = _counter()
        for values, count in started:
            counter.add_metric(values, count)
        yield counter
        for index, histogram in enumerate(_HISTOGRAMS):
            family = _histogram(histogram)
            for values, counts, sums in series:
                family.add_metric(values, _cumulative(_LE[index], counts[index]), sums[index])
            yield family


def _counter() -> CounterMetricFamily:
    i = ATTEMPT_STARTED
    return CounterMetricFamily(i.prometheus_name, i.description, labels=i.prometheus_labels)


def _histogram(instrument: Instrument) -> HistogramMetricFamily:
    name = instrument.prometheus_name
    return HistogramMetricFamily(name, instrument.description, labels=instrument.prometheus_labels)


def _cumulative(bounds: list[str], counts: list[int]) -> list[tuple[str, Any]]:
    """Prometheus' buckets: how many values were at or below each bound, and in all."""
    total, cumulative = 0, []
    for bound, count in zip(bounds, counts, strict=True):
        total += count
        cumulative.append((bound, total))
    return cumulative
