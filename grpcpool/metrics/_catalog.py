"""The instruments both exporters publish: names, kinds, units and labels.

Declared once so that a metric means the same thing whether it is scraped by
Prometheus or pushed through OpenTelemetry; :mod:`grpcpool.metrics._instruments`
holds the bridge that feeds them from the telemetry signals.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = [
    "CALL_HEDGED_ATTEMPTS",
    "CALL_HEDGE_WINS",
    "CALL_QUEUE_WAIT",
    "CHANNEL_CONNECTION_FAILURES",
    "CHANNEL_CONNECTS",
    "CHANNEL_CONNECT_DURATION",
    "CHANNEL_DISCONNECTS",
    "CHANNEL_PINGS",
    "CHANNEL_RECONNECTS_SCHEDULED",
    "CHANNEL_REFRESHES",
    "CONNECT_DURATION_BUCKETS",
    "EJECTION_REASONS",
    "INSTRUMENTS",
    "POOL_ADDRESSES",
    "POOL_AUTOSCALE_STEPS",
    "POOL_CALLS_IN_FLIGHT",
    "POOL_CALLS_QUEUED",
    "POOL_CURRENT_CHANNELS",
    "POOL_EJECTED_UNITS",
    "POOL_EJECTIONS",
    "POOL_EXPECTED_CHANNELS",
    "POOL_PANIC",
    "POOL_RESOLUTIONS",
    "REFRESH_REASONS",
    "SUPERVISOR_RESTARTS",
    "Instrument",
    "Kind",
]

Kind = Literal["counter", "gauge", "histogram", "updown"]


@dataclass(frozen=True)
class Instrument:
    """One metric, named for both exporters.

    Attributes:
        kind: ``"counter"`` (only goes up), ``"gauge"`` (a current value),
            ``"histogram"`` (a distribution) or ``"updown"`` (a count that
            goes up and down by events: an OpenTelemetry up-down counter, a
            Prometheus gauge).
        prometheus_name: The name as scraped, with Prometheus' unit and
            ``_total`` suffixes.
        otel_name: The OpenTelemetry instrument name (dotted, no suffixes:
            OTel carries the unit separately).
        unit: The OpenTelemetry unit (UCUM: ``"s"``, ``"{channel}"``, ...).
        description: Help text for both.
        labels: Attribute names, in order (Prometheus labels: the same with
            dots as underscores, :attr:`prometheus_labels`).
    """

    kind: Kind
    prometheus_name: str
    otel_name: str
    unit: str
    description: str
    labels: tuple[str, ...] = ("pool",)

    @property
    def prometheus_labels(self) -> tuple[str, ...]:
        """The label names as Prometheus takes them (``grpc.method`` -> ``grpc_method``)."""
        return tuple(label.replace(".", "_") for label in self.labels)


POOL_EXPECTED_CHANNELS = Instrument(
    "gauge",
    "grpcpool_pool_expected_channels",
    "grpcpool.pool.channels.expected",
    "{channel}",
    "Channels the pool is configured to keep (its workers).",
)
POOL_CURRENT_CHANNELS = Instrument(
    "gauge",
    "grpcpool_pool_current_channels",
    "grpcpool.pool.channels.current",
    "{channel}",
    "Channels connected and in rotation.",
)
POOL_CALLS_IN_FLIGHT = Instrument(
    "gauge",
    "grpcpool_pool_calls_in_flight",
    "grpcpool.pool.calls.in_flight",
    "{call}",
    "Calls running through the pool channel (grpcpool.channel), at the last status report.",
)
CHANNEL_CONNECTS = Instrument(
    "counter",
    "grpcpool_channel_connects_total",
    "grpcpool.channel.connects",
    "{connection}",
    "Channels that became ready.",
)
CHANNEL_CONNECTION_FAILURES = Instrument(
    "counter",
    "grpcpool_channel_connection_failures_total",
    "grpcpool.channel.connection_failures",
    "{attempt}",
    "Connection attempts that failed or timed out.",
)
CHANNEL_DISCONNECTS = Instrument(
    "counter",
    "grpcpool_channel_disconnects_total",
    "grpcpool.channel.disconnects",
    "{connection}",
    "Ready channels that were lost, by reason (connection_closed, transport_failed, "
    "channel_shutdown, ping_failed, renewed).",
    ("pool", "reason"),
)
CHANNEL_RECONNECTS_SCHEDULED = Instrument(
    "counter",
    "grpcpool_channel_reconnects_scheduled_total",
    "grpcpool.channel.reconnects_scheduled",
    "{attempt}",
    "Reconnects scheduled after a failure or a lost connection.",
)
CHANNEL_PINGS = Instrument(
    "counter",
    "grpcpool_channel_pings_total",
    "grpcpool.channel.pings",
    "{ping}",
    "Health pings on ready channels, by result (ok or error).",
    ("pool", "result"),
)
SUPERVISOR_RESTARTS = Instrument(
    "counter",
    "grpcpool_supervisor_restarts_total",
    "grpcpool.supervisor.restarts",
    "{restart}",
    "Children restarted by a supervisor.",
    ("supervisor", "child_id"),
)
CHANNEL_CONNECT_DURATION = Instrument(
    "histogram",
    "grpcpool_channel_connect_duration_seconds",
    "grpcpool.channel.connect.duration",
    "s",
    "Time from starting a connection attempt to the channel being ready.",
)
POOL_RESOLUTIONS = Instrument(
    "counter",
    "grpcpool_pool_resolutions_total",
    "grpcpool.pool.resolutions",
    "{resolution}",
    "Successful resolutions of the pool's host (failed ones keep the last answer and are "
    "not counted).",
)
POOL_ADDRESSES = Instrument(
    "gauge",
    "grpcpool_pool_addresses",
    "grpcpool.pool.addresses",
    "{address}",
    "Addresses in the pool's last successful resolution.",
)
CHANNEL_REFRESHES = Instrument(
    "counter",
    "grpcpool_channel_refreshes_total",
    "grpcpool.channel.refreshes",
    "{connection}",
    "Connections replaced by one made ready beforehand, by reason (max_age or rebalance).",
    ("pool", "reason"),
)

POOL_EJECTIONS = Instrument(
    "counter",
    "grpcpool_pool_ejections_total",
    "grpcpool.pool.ejections",
    "{ejection}",
    "Backends (or connections, in a pool with one address) that outlier detection took "
    "out of rotation, by reason (failure_percentage or success_rate).",
    ("pool", "reason"),
)
POOL_EJECTED_UNITS = Instrument(
    "gauge",
    "grpcpool_pool_ejected_units",
    "grpcpool.pool.ejected_units",
    "{unit}",
    "Backends (or connections) out of rotation now: ejected and not yet back.",
)
POOL_PANIC = Instrument(
    "gauge",
    "grpcpool_pool_panic",
    "grpcpool.pool.panic",
    "1",
    "1 while the pool routes to every ready connection, ejected or not, because fewer than "
    "pool.panic_threshold percent are usable (panic); else 0.",
)
CALL_HEDGED_ATTEMPTS = Instrument(
    "counter",
    "grpcpool_call_hedged_attempts_total",
    "grpcpool.call.hedged_attempts",
    "{attempt}",
    "Attempts hedged calls sent after their first (pool.hedging), by method.",
    ("pool", "method"),
)
CALL_HEDGE_WINS = Instrument(
    "counter",
    "grpcpool_call_hedge_wins_total",
    "grpcpool.call.hedge_wins",
    "{call}",
    "Hedged calls answered by an attempt after their first, by method.",
    ("pool", "method"),
)
POOL_AUTOSCALE_STEPS = Instrument(
    "counter",
    "grpcpool_pool_autoscale_steps_total",
    "grpcpool.pool.autoscale_steps",
    "{step}",
    "Steps pool.autoscale took, by direction (up or down).",
    ("pool", "direction"),
)

POOL_CALLS_QUEUED = Instrument(
    "gauge",
    "grpcpool_pool_calls_queued",
    "grpcpool.pool.calls.queued",
    "{call}",
    "Calls waiting for a free slot on a connection (pool.max_calls_per_connection, or a "
    "connection's lowered limit), at the last status report.",
)
CALL_QUEUE_WAIT = Instrument(
    "histogram",
    "grpcpool_call_queue_wait_seconds",
    "grpcpool.call.queue.wait",
    "s",
    "Time a call waited in the pool's queue for a free slot, whatever ended the wait.",
)

#: The reasons a refresh carries; anything else is counted as ``"other"``.
REFRESH_REASONS = frozenset({"max_age", "rebalance"})
#: The reasons an ejection carries; anything else is counted as ``"other"``.
EJECTION_REASONS = frozenset({"failure_percentage", "success_rate"})

INSTRUMENTS: tuple[Instrument, ...] = (
    POOL_EXPECTED_CHANNELS,
    POOL_CURRENT_CHANNELS,
    POOL_CALLS_IN_FLIGHT,
    CHANNEL_CONNECTS,
    CHANNEL_CONNECTION_FAILURES,
    CHANNEL_DISCONNECTS,
    CHANNEL_RECONNECTS_SCHEDULED,
    CHANNEL_PINGS,
    SUPERVISOR_RESTARTS,
    CHANNEL_CONNECT_DURATION,
    POOL_RESOLUTIONS,
    POOL_ADDRESSES,
    CHANNEL_REFRESHES,
    POOL_EJECTIONS,
    POOL_EJECTED_UNITS,
    POOL_PANIC,
    CALL_HEDGED_ATTEMPTS,
    CALL_HEDGE_WINS,
    POOL_AUTOSCALE_STEPS,
    POOL_CALLS_QUEUED,
    CALL_QUEUE_WAIT,
)

# Seconds. Prometheus' default buckets, up to the 20 s a slow TLS connect with
# a long connect_timeout can take; OTel's own defaults are for milliseconds.
CONNECT_DURATION_BUCKETS: tuple[float, ...] = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.075,
    0.1,
    0.25,
    0.5,
    0.75,
    1.0,
    2.5,
    5.0,
    7.5,
    10.0,
    20.0,
)
