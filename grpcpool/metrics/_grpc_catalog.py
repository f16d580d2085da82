"""gRPC's standard instruments, as gRFC A66 (per call) and A94 (per connection) define them.

Both exporters publish them beside grpcpool's own (:mod:`grpcpool.metrics._catalog`),
under gRPC's names, units, kinds and attributes, so that dashboards built for
gRPC's OpenTelemetry plugin read a pool's calls and connections too. Prometheus
gets them named as the OpenTelemetry-to-Prometheus convention has it: dots
become underscores, the unit becomes a suffix (``_seconds``, ``_bytes``; a
``{...}`` annotation unit none), and counters end in ``_total``.

What each attribute holds for a pool:

- ``grpc.target``: the pool's target as gRPC canonicalizes one given without a
  scheme, ``dns:///host:port``, whichever address a connection is pinned to.
- ``grpc.method``: ``package.Service/Method`` (the full method name without its
  leading slash) for a multi-callable made with ``_registered_method=True``, as
  protoc-generated stubs make theirs; ``other`` for any other, so that
  arbitrary method strings cannot make arbitrarily many series (A66).
- ``grpc.status``: the status code's name (``OK``, ``UNAVAILABLE``, ...).
- ``grpc.lb.backend_service``: the pool's name (A89's label, which A94 uses).
- ``grpc.disconnect_error``: why a connection ended, in A94's words
  (:data:`DISCONNECT_ERRORS`).
"""

from __future__ import annotations

from grpcpool.metrics._catalog import Instrument

__all__ = [
    "ATTEMPT_DURATION",
    "ATTEMPT_RCVD_SIZE",
    "ATTEMPT_SENT_SIZE",
    "ATTEMPT_STARTED",
    "BACKEND_SERVICE",
    "CALL_DURATION",
    "CONNECTION_ATTEMPTS_FAILED",
    "CONNECTION_ATTEMPTS_SUCCEEDED",
    "DISCONNECTIONS",
    "DISCONNECT_ERROR",
    "DISCONNECT_ERRORS",
    "LATENCY_BUCKETS",
    "METHOD",
    "OPEN_CONNECTIONS",
    "PER_CALL",
    "PER_CONNECTION",
    "SHUTDOWN",
    "SIZE_BUCKETS",
    "STATUS",
    "TARGET",
    "buckets",
    "method_attribute",
    "target_attribute",
]

METHOD = "grpc.method"
TARGET = "grpc.target"
STATUS = "grpc.status"
BACKEND_SERVICE = "grpc.lb.backend_service"
DISCONNECT_ERROR = "grpc.disconnect_error"

# --- A66: per call -----------------------------------------------------------------------

ATTEMPT_STARTED = Instrument(
    "counter",
    "grpc_client_attempt_started_total",
    "grpc.client.attempt.started",
    "{attempt}",
    "The total number of RPC attempts started, including those that have not completed.",
    (METHOD, TARGET),
)
ATTEMPT_DURATION = Instrument(
    "histogram",
    "grpc_client_attempt_duration_seconds",
    "grpc.client.attempt.duration",
    "s",
    "End-to-end time taken to complete an RPC attempt including the time it takes to "
    "pick a subchannel.",
    (METHOD, TARGET, STATUS),
)
ATTEMPT_SENT_SIZE = Instrument(
    "histogram",
    "grpc_client_attempt_sent_total_compressed_message_size_bytes",
    "grpc.client.attempt.sent_total_compressed_message_size",
    "By",
    "Total bytes sent across all request messages per RPC attempt, as serialized: grpcio "
    "shows no compressed size, so compression is not counted.",
    (METHOD, TARGET, STATUS),
)
ATTEMPT_RCVD_SIZE = Instrument(
    "histogram",
    "grpc_client_attempt_rcvd_total_compressed_message_size_bytes",
    "grpc.client.attempt.rcvd_total_compressed_message_size",
    "By",
    "Total bytes received across all response messages per RPC attempt, as serialized: "
    "grpcio shows no compressed size, so compression is not counted.",
    (METHOD, TARGET, STATUS),
)
CALL_DURATION = Instrument(
    "histogram",
    "grpc_client_call_duration_seconds",
    "grpc.client.call.duration",
    "s",
    "End-to-end time the pool channel takes to complete an RPC, from the application's "
    "perspective (every attempt included).",
    (METHOD, TARGET, STATUS),
)

#: The instruments of ``register(per_call=True)``.
PER_CALL: tuple[Instrument, ...] = (
    ATTEMPT_STARTED,
    ATTEMPT_DURATION,
    ATTEMPT_SENT_SIZE,
    ATTEMPT_RCVD_SIZE,
    CALL_DURATION,
)

# --- A94: per connection ------------------------------------------------------------------

CONNECTION_ATTEMPTS_SUCCEEDED = Instrument(
    "counter",
    "grpc_subchannel_connection_attempts_succeeded_total",
    "grpc.subchannel.connection_attempts_succeeded",
    "{attempt}",
    "Number of successful connection attempts.",
    (TARGET, BACKEND_SERVICE),
)
CONNECTION_ATTEMPTS_FAILED = Instrument(
    "counter",
    "grpc_subchannel_connection_attempts_failed_total",
    "grpc.subchannel.connection_attempts_failed",
    "{attempt}",
    "Number of failed connection attempts.",
    (TARGET, BACKEND_SERVICE),
)
DISCONNECTIONS = Instrument(
    "counter",
    "grpc_subchannel_disconnections_total",
    "grpc.subchannel.disconnections",
    "{disconnection}",
    "Number of times a connection of the pool became disconnected.",
    (TARGET, BACKEND_SERVICE, DISCONNECT_ERROR),
)
OPEN_CONNECTIONS = Instrument(
    "updown",
    "grpc_subchannel_open_connections",
    "grpc.subchannel.open_connections",
    "{connection}",
    "Number of open connections.",
    (TARGET, BACKEND_SERVICE),
)

#: The instruments every registration publishes.
PER_CONNECTION: tuple[Instrument, ...] = (
    CONNECTION_ATTEMPTS_SUCCEEDED,
    CONNECTION_ATTEMPTS_FAILED,
    DISCONNECTIONS,
    OPEN_CONNECTIONS,
)

#: A94's value for a connection the client itself let go.
SHUTDOWN = "subchannel shutdown"

#: A worker's disconnect reason (``channel.disconnected``) in A94's words, as far as
#: grpcio lets the pool tell: it reports that a ready channel's connection ended, not
#: the GOAWAY code or socket error that ended it.
DISCONNECT_ERRORS: dict[str, str] = {
    # The channel went from READY to IDLE or CONNECTING: the connection ended, by a
    # GOAWAY (a server stopping, max connection age, too_many_pings) or by the peer
    # closing or resetting it; grpcio's connectivity looks the same for all of them.
    "connection_closed": "unknown",
    # READY straight to TRANSIENT_FAILURE: the transport failed, its errno unseen
    # (A94: implementations that cannot tell socket errors apart say this).
    "transport_failed": "socket error",
    # The pool closed the connection: the channel shut down under the worker, a
    # failed health ping made it let the connection go, or outlier detection had it
    # renewed.
    "channel_shutdown": SHUTDOWN,
    "ping_failed": SHUTDOWN,
    "renewed": SHUTDOWN,
}

# --- bucket boundaries (A66) ---------------------------------------------------------------

#: Seconds.
LATENCY_BUCKETS: tuple[float, ...] = (
    0.0,
    0.00001,
    0.00005,
    0.0001,
    0.0003,
    0.0006,
    0.0008,
    0.001,
    0.002,
    0.003,
    0.004,
    0.005,
    0.006,
    0.008,
    0.01,
    0.013,
    0.016,
    0.02,
    0.025,
    0.03,
    0.04,
    0.05,
    0.065,
    0.08,
    0.1,
    0.13,
    0.16,
    0.2,
    0.25,
    0.3,
    0.4,
    0.5,
    0.65,
    0.8,
    1.0,
    2.0,
    5.0,
    10.0,
    20.0,
    50.0,
    100.0,
)

#: Bytes.
SIZE_BUCKETS: tuple[float, ...] = (
    0.0,
    1024.0,
    2048.0,
    4096.0,
    16384.0,
    65536.0,
    262144.0,
    1048576.0,
    4194304.0,
    16777216.0,
    67108864.0,
    268435456.0,
    1073741824.0,
    4294967296.0,
)


def buckets(instrument: Instrument) -> tuple[float, ...]:
    """A66's bucket boundaries for one of its histograms."""
    return SIZE_BUCKETS if instrument.unit == "By" else LATENCY_BUCKETS


def method_attribute(method: str, registered: bool | None) -> str:
    """``grpc.method`` for a multi-callable of ``method`` (``/package.Service/Method``)."""
    if registered and method.startswith("/"):
        return method[1:]
    return "other"


def target_attribute(endpoint: str) -> str:
    """``grpc.target`` for a pool whose endpoint is ``host:port``."""
    return f"dns:///{endpoint}"
