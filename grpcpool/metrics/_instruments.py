"""What the exporters measure, in one place: the instruments and the signals feeding them.

Both exporters use this module so that a metric means the same thing whether
it is scraped by Prometheus or pushed through OpenTelemetry: the instruments
are declared once (:data:`INSTRUMENTS`, in :mod:`grpcpool.metrics._catalog`), and :class:`Bridge` is the only code
that turns telemetry events into measurements. An exporter supplies a
:class:`Sink` that writes those measurements into its own library.

Label values come from a fixed, short vocabulary on purpose. Worker errors
(``connection_failed``'s ``error``, the ``reason`` of a reconnect or a restart)
can quote server replies, addresses or credentials and have unbounded
cardinality, so they never become labels; only the disconnect reason, the
ping result, the refresh reason and the ejection reason, which the pool sets
to short words, do, and anything else there is reported as ``"other"``.
Resolved and ejected addresses are not labels either: a pool's backends
change, and each would be a new series; gauges count them instead. The
ejection, panic and hedging measures live in :mod:`grpcpool.metrics._routing`,
gRPC's per-connection ones (gRFC A94) in :mod:`grpcpool.metrics._subchannels`;
:data:`PUBLISHED` is every instrument a registration publishes.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Protocol, Self

import blinker

from grpcpool import telemetry
from grpcpool._process import fork_safe_lock
from grpcpool.metrics._capacity import CapacityMeasures
from grpcpool.metrics._catalog import (
    CALL_HEDGE_WINS,
    CALL_HEDGED_ATTEMPTS,
    CHANNEL_CONNECT_DURATION,
    CHANNEL_CONNECTION_FAILURES,
    CHANNEL_CONNECTS,
    CHANNEL_DISCONNECTS,
    CHANNEL_PINGS,
    CHANNEL_RECONNECTS_SCHEDULED,
    CHANNEL_REFRESHES,
    CONNECT_DURATION_BUCKETS,
    INSTRUMENTS,
    POOL_ADDRESSES,
    POOL_AUTOSCALE_STEPS,
    POOL_CALLS_IN_FLIGHT,
    POOL_CURRENT_CHANNELS,
    POOL_EJECTED_UNITS,
    POOL_EJECTIONS,
    POOL_EXPECTED_CHANNELS,
    POOL_PANIC,
    POOL_RESOLUTIONS,
    REFRESH_REASONS,
    SUPERVISOR_RESTARTS,
    Instrument,
)
from grpcpool.metrics._grpc_catalog import PER_CONNECTION
from grpcpool.metrics._routing import RoutingMeasures
from grpcpool.metrics._subchannels import SubchannelMeasures, Targets

__all__ = [
    "CALL_HEDGED_ATTEMPTS",
    "CALL_HEDGE_WINS",
    "CHANNEL_CONNECTION_FAILURES",
    "CHANNEL_CONNECTS",
    "CHANNEL_CONNECT_DURATION",
    "CHANNEL_DISCONNECTS",
    "CHANNEL_PINGS",
    "CHANNEL_RECONNECTS_SCHEDULED",
    "CHANNEL_REFRESHES",
    "CONNECT_DURATION_BUCKETS",
    "INSTRUMENTS",
    "POOL_ADDRESSES",
    "POOL_AUTOSCALE_STEPS",
    "POOL_CALLS_IN_FLIGHT",
    "POOL_CURRENT_CHANNELS",
    "POOL_EJECTED_UNITS",
    "POOL_EJECTIONS",
    "POOL_EXPECTED_CHANNELS",
    "POOL_PANIC",
    "POOL_RESOLUTIONS",
    "PUBLISHED",
    "SUPERVISOR_RESTARTS",
    "Bridge",
    "Instrument",
    "Sink",
    "fork_safe_lock",
]


#: Every instrument a registration publishes: grpcpool's and gRPC's per-connection
#: ones (``per_call=True`` adds :data:`~grpcpool.metrics._grpc_catalog.PER_CALL`).
PUBLISHED: tuple[Instrument, ...] = (*INSTRUMENTS, *PER_CONNECTION)

_WORD = re.compile(r"[a-z_]{1,32}")


def _word(value: Any) -> str:
    """``value`` if it is a short lower-case word, else ``"other"`` (see module doc)."""
    return value if isinstance(value, str) and _WORD.fullmatch(value) else "other"


class Sink(Protocol):
    """Where :class:`Bridge` writes; one per exporter. Called from any thread."""

    def add(self, instrument: Instrument, amount: float, labels: Mapping[str, str]) -> None:
        """Adds ``amount`` to a counter (or an up-down counter: ``amount`` may be negative)."""

    def record(self, instrument: Instrument, value: float, labels: Mapping[str, str]) -> None:
        """Records one observation in a histogram."""

    def set(self, instrument: Instrument, value: float, labels: Mapping[str, str]) -> None:
        """Sets a gauge."""


@dataclass
class _PoolChannels:
    """What the bridge knows about one pool's channel counts."""

    expected: int | None = None
    current: int = 0
    # Workers seen connecting and not yet disconnecting. A worker that crashes
    # while ready emits no disconnect, and its restart (same id) connects
    # again; the set keeps that from counting the channel twice.
    connected: set[str] = field(default_factory=set)

    def published_current(self) -> int:
        """``current``, capped at ``expected``.

        Scaling down stops ready workers without a disconnect event, and a
        pool never has more channels than workers.
        """
        return self.current if self.expected is None else min(self.current, self.expected)


Receiver = Callable[..., None]


class Bridge:
    """Subscribes to the telemetry signals and writes measurements into a :class:`Sink`.

    The channel gauges follow ``channel.connected``/``channel.disconnected``
    as they happen, and every ``pool.status`` report (each
    ``pool.telemetry_interval``) sets them to the pool's own count. The
    reports keep the gauge right where events alone cannot: workers stopped
    by scaling down or by a pool stop emit no disconnect.

    The calls-in-flight gauge comes from ``pool.status`` reports only: calls
    start and end far too often for an event each, so the gauge is a sample
    taken every ``pool.telemetry_interval``, not a running count.

    Receivers are connected strongly (``weak=False``): a caller that keeps no
    reference to the exporter still gets metrics, until :meth:`close`.
    """

    def __init__(self, sink: Sink, targets: Targets | None = None) -> None:
        self._sink = sink
        self._lock = fork_safe_lock(self)
        self._pools: dict[str, _PoolChannels] = {}
        self._closed = False
        self._routing = RoutingMeasures(sink, lambda: self._closed)
        self._capacity = CapacityMeasures(sink, lambda: self._closed)
        #: Each pool's grpc.target, for gRPC's standard instruments.
        self.targets = Targets() if targets is None else targets
        self._subchannels = SubchannelMeasures(sink, lambda: self._closed, self.targets)
        self._receivers: list[tuple[blinker.NamedSignal, Receiver]] = [
            (telemetry.pool_init, self._on_pool_init),
            (telemetry.pool_scale_up, self._on_scaled),
            (telemetry.pool_scale_down, self._on_scaled),
            (telemetry.pool_status, self._on_pool_status),
            (telemetry.channel_connected, self._on_connected),
            (telemetry.channel_connection_failed, self._on_connection_failed),
            (telemetry.channel_disconnected, self._on_disconnected),
            (telemetry.channel_reconnect_scheduled, self._on_reconnect_scheduled),
            (telemetry.channel_ping, self._on_ping),
            (telemetry.supervisor_child_restarted, self._on_child_restarted),
            (telemetry.pool_resolved, self._on_resolved),
            (telemetry.channel_refreshed, self._on_refreshed),
            (telemetry.pool_autoscaled, self._on_autoscaled),
            *self._routing.receivers(),
            *self._capacity.receivers(),
            *self._subchannels.receivers(),
        ]
        for signal, receiver in self._receivers:
            signal.connect(receiver, weak=False)

    def close(self) -> None:
        """Disconnects every receiver; later events are ignored. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        for signal, receiver in self._receivers:
            signal.disconnect(receiver)

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` has run."""
        return self._closed

    # --- pool size ------------------------------------------------------------

    def _on_pool_init(
        self, sender: str, *, measurements: dict[str, Any], metadata: dict[str, Any]
    ) -> None:
        self._update(sender, expected=measurements.get("pool_size"))
        self._routing.pool_started(str(sender))
        self._subchannels.pool_started(str(sender), metadata.get("endpoint"))

    def _on_scaled(self, sender: str, *, measurements: dict[str, Any], **_: Any) -> None:
        self._update(sender, expected=measurements.get("new_size"))

    def _on_pool_status(self, sender: str, *, measurements: dict[str, Any], **_: Any) -> None:
        self._update(
            sender,
            expected=measurements.get("expected_size"),
            current=measurements.get("current_size"),
        )
        in_flight = measurements.get("in_flight")
        if isinstance(in_flight, int):
            # Under the lock so that close() cannot slip between the check and the write.
            with self._lock:
                if not self._closed:
                    self._sink.set(POOL_CALLS_IN_FLIGHT, in_flight, {"pool": str(sender)})

    def _on_connected(
        self, sender: str, *, measurements: dict[str, Any], metadata: dict[str, Any]
    ) -> None:
        if self._closed:
            return
        # Gauge first, here and on disconnect: a reader that sees the event
        # counted sees its effect on the channel count too.
        self._update(sender, connected=str(metadata.get("worker_id")))
        labels = {"pool": str(sender)}
        duration = measurements.get("duration")
        if isinstance(duration, int | float):
            self._sink.record(CHANNEL_CONNECT_DURATION, duration, labels)
        self._sink.add(CHANNEL_CONNECTS, 1, labels)

    def _on_disconnected(self, sender: str, *, metadata: dict[str, Any], **_: Any) -> None:
        if self._closed:
            return
        self._update(sender, disconnected=str(metadata.get("worker_id")))
        labels = {"pool": str(sender), "reason": _word(metadata.get("reason"))}
        self._sink.add(CHANNEL_DISCONNECTS, 1, labels)

    def _update(
        self,
        pool: str,
        *,
        expected: Any = None,
        current: Any = None,
        connected: str | None = None,
        disconnected: str | None = None,
    ) -> None:
        """Applies one event to a pool's counts and publishes both gauges.

        Publishing under the lock keeps two worker threads from writing their
        values out of order (a stale count landing last).
        """
        with self._lock:
            if self._closed:
                return
            state = self._pools.setdefault(str(pool), _PoolChannels())
            if isinstance(expected, int):
                state.expected = expected
            if isinstance(current, int):
                state.current = current
                if current == 0:
                    state.connected.clear()
            if connected is not None and connected not in state.connected:
                state.connected.add(connected)
                state.current += 1
            if disconnected is not None:
                # Decremented even for a worker not in the set: it connected
                # before this bridge subscribed and a status report counted it.
                state.connected.discard(disconnected)
                state.current = max(0, state.current - 1)
            labels = {"pool": str(pool)}
            if state.expected is not None:
                self._sink.set(POOL_EXPECTED_CHANNELS, state.expected, labels)
            self._sink.set(POOL_CURRENT_CHANNELS, state.published_current(), labels)

    # --- counters only ----------------------------------------------------------

    def _on_connection_failed(self, sender: str, **_: Any) -> None:
        self._count(CHANNEL_CONNECTION_FAILURES, {"pool": str(sender)})

    def _on_reconnect_scheduled(self, sender: str, **_: Any) -> None:
        self._count(CHANNEL_RECONNECTS_SCHEDULED, {"pool": str(sender)})

    def _on_ping(self, sender: str, *, metadata: dict[str, Any], **_: Any) -> None:
        self._count(CHANNEL_PINGS, {"pool": str(sender), "result": _word(metadata.get("result"))})

    def _on_child_restarted(self, sender: str, *, metadata: dict[str, Any], **_: Any) -> None:
        labels = {"supervisor": str(sender), "child_id": str(metadata.get("child_id"))}
        self._count(SUPERVISOR_RESTARTS, labels)

    # --- many backends ----------------------------------------------------------

    def _on_resolved(self, sender: str, *, measurements: dict[str, Any], **_: Any) -> None:
        labels = {"pool": str(sender)}
        addresses = measurements.get("addresses")
        if isinstance(addresses, int):
            # Under the lock so that close() cannot slip between the check and the write.
            with self._lock:
                if not self._closed:
                    self._sink.set(POOL_ADDRESSES, addresses, labels)
        self._count(POOL_RESOLUTIONS, labels)

    def _on_refreshed(self, sender: str, *, metadata: dict[str, Any], **_: Any) -> None:
        reason = metadata.get("reason")
        label = reason if isinstance(reason, str) and reason in REFRESH_REASONS else "other"
        self._count(CHANNEL_REFRESHES, {"pool": str(sender), "reason": label})

    # --- autoscaling --------------------------------------------------------------

    def _on_autoscaled(self, sender: str, *, measurements: dict[str, Any], **_: Any) -> None:
        before, after = measurements.get("from_size"), measurements.get("to_size")
        if isinstance(before, int) and isinstance(after, int) and before != after:
            direction = "up" if after > before else "down"
            self._count(POOL_AUTOSCALE_STEPS, {"pool": str(sender), "direction": direction})

    def _count(self, instrument: Instrument, labels: Mapping[str, str]) -> None:
        if not self._closed:
            self._sink.add(instrument, 1, labels)


class Exporter:
    """What both exporters share: ``close()``, ``closed`` and the context manager."""

    def close(self) -> None:
        raise NotImplementedError

    @property
    def closed(self) -> bool:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {'closed' if self.closed else 'open'}>"
