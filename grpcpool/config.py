"""Pool configuration: immutable, validated, with the Elixir defaults.

A :class:`Config` has three frozen sections, mirroring the Elixir keyword
lists: :class:`EndpointConfig` (where to connect and how), :class:`PoolConfig`
(how many channels and how to pick one) and :class:`ConnectionConfig` (how each
channel is kept alive, checked and reconnected). Every default lives in this
module and nowhere else. Times are seconds as floats, each under a bound
(the ``MAX_*`` constants) that keeps it within what grpcio takes and catches
milliseconds typed as seconds.

Validation happens when a section is built, so an invalid ``Config`` cannot
exist; each failure raises :class:`~grpcpool.errors.ConfigError` naming the
dotted key, e.g. ``endpoint.port``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import grpc

from grpcpool._channel_args import channel_options
from grpcpool._config_capacity import (
    DEFAULT_MAX_CALLS_PER_CONNECTION,
    DEFAULT_MAX_QUEUED_CALLS,
    Autoscale,
)
from grpcpool._config_checks import check_keys, field_names, kind

# The bounds live apart so that the section checks need not import this module.
from grpcpool._config_limits import (
    HARD_MAX_POOL_SIZE,
    MAX_BACKOFF,
    MAX_CONNECT_TIMEOUT,
    MAX_DRAIN_TIMEOUT,
    MAX_KEEPALIVE,
    MAX_KEEPALIVE_TIMEOUT,
    MAX_MAX_AGE,
    MAX_PING_INTERVAL,
    MAX_PING_TIMEOUT,
    MAX_RESOLVE_INTERVAL,
    MAX_RESOLVE_TIMEOUT,
    MAX_TELEMETRY_INTERVAL,
    MIN_MAX_AGE,
)

# The routing sections (ewma_decay, outlier_detection, panic_threshold,
# hedging) keep their defaults beside their value classes.
from grpcpool._config_routing import (
    DEFAULT_EWMA_DECAY,
    DEFAULT_PANIC_THRESHOLD,
    FailurePercentageEjection,
    Hedging,
    OutlierDetection,
    SuccessRateEjection,
)
from grpcpool._config_sections import (
    check_connection,
    check_endpoint,
    check_pool,
    check_retry,
)
from grpcpool._tls import TLSOptions
from grpcpool.errors import ConfigError
from grpcpool.strategy import SelectStrategy, Strategy

if TYPE_CHECKING:
    from grpcpool.resolver import AsyncPushResolver, PushResolver

__all__ = [
    "DEFAULT_EWMA_DECAY",
    "DEFAULT_PANIC_THRESHOLD",
    "HARD_MAX_POOL_SIZE",
    "MAX_BACKOFF",
    "MAX_CONNECT_TIMEOUT",
    "MAX_DRAIN_TIMEOUT",
    "MAX_KEEPALIVE",
    "MAX_KEEPALIVE_TIMEOUT",
    "MAX_MAX_AGE",
    "MAX_PING_INTERVAL",
    "MAX_PING_TIMEOUT",
    "MAX_RESOLVE_INTERVAL",
    "MAX_RESOLVE_TIMEOUT",
    "MAX_TELEMETRY_INTERVAL",
    "MIN_MAX_AGE",
    "Autoscale",
    "Config",
    "ConnectionConfig",
    "EndpointConfig",
    "FailurePercentageEjection",
    "Hedging",
    "OutlierDetection",
    "PoolConfig",
    "RetryConfig",
    "SuccessRateEjection",
    "TLSOptions",
]

# --- defaults (the Elixir library's, converted to seconds) -------------------
DEFAULT_TYPE = "production"
DEFAULT_POOL_SIZE = 5
DEFAULT_MAX_POOL_SIZE = 1024
DEFAULT_POOL_NAME = "default"
DEFAULT_STRATEGY = "round_robin"
DEFAULT_TELEMETRY_INTERVAL = 5.0
DEFAULT_TELEMETRY_SAMPLE_RATE = 1
# Not the Elixir 30 s. Keepalive pings go out only while a call runs (see
# DEFAULT_KEEPALIVE_WITHOUT_CALLS) and only after this long without a byte from
# the server. A server with default settings wants 5 minutes between such pings
# (grpc-go's EnforcementPolicy.MinTime, grpcio's
# grpc.http2.min_ping_interval_without_data_ms) and answers the third early one
# with a too_many_pings GOAWAY, so a shorter interval drops connections that
# carry quiet calls (a stream waiting for news) unless that server allows it.
# Any keepalive also makes grpcio set TCP_USER_TIMEOUT = keepalive_timeout on
# the socket, which ends a connection whose sent bytes go unacknowledged that
# long. Idle channels are checked by the health ping (ping_interval).
DEFAULT_KEEPALIVE = 300.0
# Not in the Elixir table. Keepalive pings on a connection with no call running
# are off: a server with default settings counts each as a strike unless two
# hours passed since the previous ping (grpc-go and etcd: PermitWithoutStream
# false; grpcio: grpc.keepalive_permit_without_calls 0) and sends a
# too_many_pings GOAWAY on the third. Turn them on only for a server that
# permits them at the keepalive interval: grpc-go PermitWithoutStream true and
# MinTime <= keepalive; grpcio grpc.keepalive_permit_without_calls 1 and
# grpc.http2.min_ping_interval_without_data_ms <= keepalive. etcd never does.
DEFAULT_KEEPALIVE_WITHOUT_CALLS = False
# Not in the Elixir table: how long a keepalive or HTTP/2 ping may go
# unanswered before the connection is declared dead (black-hole detection).
DEFAULT_KEEPALIVE_TIMEOUT = 10.0
DEFAULT_PING_INTERVAL = 25.0
# Not in the Elixir table: the deadline of one health ping, so that a silent
# peer is noticed within ping_interval + ping_timeout on an idle channel.
DEFAULT_PING_TIMEOUT = 2.0
DEFAULT_CONNECT_TIMEOUT = 10.0
# Not in the Elixir table: how long a channel that left the pool stays open
# for the calls already running on it (closing a grpc channel cancels them).
DEFAULT_DRAIN_TIMEOUT = 30.0
DEFAULT_BACKOFF_MIN = 1.0
DEFAULT_BACKOFF_MAX = 30.0
DEFAULT_MAX_RECONNECT_ATTEMPTS = 5
# Not in the Elixir table: how often a pool asks its resolver again for the
# addresses its host name stands for (None: at start and after failures only).
DEFAULT_RESOLVE_INTERVAL = 30.0
# Not in the Elixir table: a resolution still unanswered after this many
# seconds is abandoned (logged, shown in status) and asked again later.
DEFAULT_RESOLVE_TIMEOUT = 10.0
# Not in the Elixir table: replace each connection after about this many
# seconds (None: never), so long-lived clients follow servers behind a
# load balancer that added backends, as gax-java's channel refresh does.
DEFAULT_MAX_AGE: float | None = None
DEFAULT_RETRY_MAX_ATTEMPTS = 3
DEFAULT_RETRY_BASE_DELAY = 1.0
DEFAULT_RETRY_MAX_DELAY = 10.0


@dataclass(frozen=True)
class RetryConfig:
    """Retry settings carried for parity with the Elixir configuration.

    grpcpool does not retry calls itself; the values are available to callers
    that build their own retry policy.
    """

    max_attempts: int = DEFAULT_RETRY_MAX_ATTEMPTS
    base_delay: float = DEFAULT_RETRY_BASE_DELAY
    max_delay: float = DEFAULT_RETRY_MAX_DELAY

    def __post_init__(self) -> None:
        check_retry(self)


@dataclass(frozen=True)
class EndpointConfig:
    """Where the pool connects and with which transport security.

    ``ssl`` accepts ``True`` (TLS, system roots), a :class:`TLSOptions`, or a
    mapping of its fields; ``credentials`` (a ``grpc.ChannelCredentials``)
    overrides ``ssl``. A production endpoint must use one of the two:
    plaintext to production is refused, including insecure and local
    credentials (alone or composed with call credentials). ``type`` is
    production unless set, and compared ignoring case and surrounding spaces
    (``"Production "`` is production); plaintext needs ``type="local"`` or
    any other label.

    ``host`` is a name or IP address alone (IPv6 with or without brackets):
    a port, scheme or ``user:password@`` in it is refused, since the target is
    ``host:port``. ``options`` are (name, value) pairs or a mapping, values
    ints from 0 to 2**31 - 1, str or bytes, as grpcio takes them;
    ``interceptors`` are grpc client interceptor instances.

    ``resolver`` turns ``(host, port)`` into the addresses the pool spreads
    its connections over (``"ip:port"``, IPv6 as ``"[addr]:port"``); None
    uses the system resolver (every A and AAAA answer of ``getaddrinfo``).
    :func:`grpcpool.static_resolver` makes one from a fixed list of
    replicas. A resolver that pushes (an object with ``watch``, see
    :class:`grpcpool.resolver.PushResolver`, e.g. ``EtcdResolver``) is
    followed instead of polled: ``resolve_interval`` does not apply to it.
    Each connection is pinned to one address; TLS checks ``host``
    and calls carry ``host:port`` as ``:authority`` (``ssl.server_hostname``,
    if set, is both). ``resolve_interval`` is how often the pool asks again
    (seconds; None: only at start and after connection failures);
    ``resolve_timeout`` is how long one resolution may take before it is
    abandoned with a WARNING (and asked again).
    """

    host: str
    port: int
    type: str = DEFAULT_TYPE
    ssl: TLSOptions | None = None
    credentials: grpc.ChannelCredentials | None = None
    interceptors: tuple[Any, ...] = ()
    options: tuple[tuple[str, Any], ...] = ()
    retry_config: RetryConfig | None = None
    resolver: Callable[[str, int], Sequence[str]] | PushResolver | AsyncPushResolver | None = None
    resolve_interval: float | None = DEFAULT_RESOLVE_INTERVAL
    resolve_timeout: float = DEFAULT_RESOLVE_TIMEOUT

    def __post_init__(self) -> None:
        check_endpoint(self)
        retry: Any = self.retry_config
        if isinstance(retry, Mapping):
            check_keys("endpoint.retry_config", retry, field_names(RetryConfig))
            object.__setattr__(self, "retry_config", RetryConfig(**retry))
        elif retry is not None and not isinstance(retry, RetryConfig):
            raise ConfigError("endpoint.retry_config", "must be a RetryConfig or a mapping")

    @property
    def target(self) -> str:
        """The grpc target, ``host:port`` (IPv6 literals in brackets)."""
        host = self.host
        if ":" in host and not host.startswith("["):
            host = f"[{host}]"
        return f"{host}:{self.port}"

    @property
    def uses_tls(self) -> bool:
        return self.ssl is not None or self.credentials is not None

    def __repr__(self) -> str:
        # Reprs reach logs and error reports, so show only what cannot be a
        # secret: credentials, interceptors and option values may carry
        # tokens or headers, and show as their type; TLSOptions hides its keys.
        options = ", ".join(f"{name!r}: {_shown(value)}" for name, value in self.options)
        interceptors = ", ".join(kind(interceptor) for interceptor in self.interceptors)
        return (
            f"EndpointConfig(host={self.host!r}, port={self.port!r}, type={self.type!r}, "
            f"ssl={self.ssl!r}, credentials={kind(self.credentials)}, "
            f"interceptors=[{interceptors}], options={{{options}}}, "
            f"retry_config={self.retry_config!r}, resolver={_resolver_shown(self.resolver)}, "
            f"resolve_interval={self.resolve_interval!r}, "
            f"resolve_timeout={self.resolve_timeout!r})"
        )


@dataclass(frozen=True)
class PoolConfig:
    """How many channels the pool keeps and how ``get_channel`` picks one."""

    size: int = DEFAULT_POOL_SIZE
    max_size: int = DEFAULT_MAX_POOL_SIZE
    name: str | None = None
    strategy: str | Strategy | SelectStrategy = DEFAULT_STRATEGY
    telemetry_interval: float = DEFAULT_TELEMETRY_INTERVAL
    telemetry_sample_rate: int = DEFAULT_TELEMETRY_SAMPLE_RATE
    ewma_decay: float = DEFAULT_EWMA_DECAY
    outlier_detection: OutlierDetection | None = None
    panic_threshold: float = DEFAULT_PANIC_THRESHOLD
    hedging: Hedging | None = None
    max_calls_per_connection: int | None = DEFAULT_MAX_CALLS_PER_CONNECTION
    max_queued_calls: int = DEFAULT_MAX_QUEUED_CALLS
    autoscale: Autoscale | None = None

    def __post_init__(self) -> None:
        check_pool(self)


@dataclass(frozen=True)
class ConnectionConfig:
    """How each channel is kept alive, checked, and reconnected."""

    keepalive: float | None = DEFAULT_KEEPALIVE
    keepalive_timeout: float = DEFAULT_KEEPALIVE_TIMEOUT
    keepalive_without_calls: bool = DEFAULT_KEEPALIVE_WITHOUT_CALLS
    ping_interval: float | None = DEFAULT_PING_INTERVAL
    ping_timeout: float = DEFAULT_PING_TIMEOUT
    health_check: bool = True
    health_service: str = ""
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT
    drain_timeout: float = DEFAULT_DRAIN_TIMEOUT
    suppress_connection_errors: bool = False
    backoff_min: float = DEFAULT_BACKOFF_MIN
    backoff_max: float = DEFAULT_BACKOFF_MAX
    max_reconnect_attempts: int = DEFAULT_MAX_RECONNECT_ATTEMPTS
    max_age: float | None = DEFAULT_MAX_AGE

    def __post_init__(self) -> None:
        check_connection(self)


def _resolver_shown(resolver: Any) -> str:
    """A resolver for a repr: None, a static list by its own repr, else its type."""
    if resolver is None:
        return "None"
    if type(resolver).__name__ == "StaticResolver":
        return repr(resolver)  # shows how many addresses, not which
    return getattr(resolver, "__qualname__", None) or kind(resolver)


def _shown(value: Any) -> str:
    """A channel option's value for a repr: numbers as they are, else the type."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return repr(value)
    return kind(value)


@dataclass(frozen=True)
class Config:
    """A complete, validated pool configuration.

    Build one with :meth:`local`, :meth:`production`, :meth:`new`,
    :meth:`from_mapping` or :meth:`from_env`; change one with
    :func:`dataclasses.replace` on a section.
    """

    endpoint: EndpointConfig
    pool: PoolConfig = field(default_factory=PoolConfig)
    connection: ConnectionConfig = field(default_factory=ConnectionConfig)

    def __post_init__(self) -> None:
        # The sections check themselves; here only that they are sections, so
        # Config(endpoint={...}) fails now rather than when a pool starts.
        for name, cls in (
            ("endpoint", EndpointConfig),
            ("pool", PoolConfig),
            ("connection", ConnectionConfig),
        ):
            if not isinstance(getattr(self, name), cls):
                raise ConfigError(
                    name,
                    f"must be a {cls.__name__}, got {kind(getattr(self, name))} "
                    "(build from mappings with Config.new or Config.from_mapping)",
                )

    @classmethod
    def new(
        cls,
        endpoint: Mapping[str, Any],
        pool: Mapping[str, Any] | None = None,
        connection: Mapping[str, Any] | None = None,
    ) -> Config:
        """Builds a config from one mapping per section (the Elixir keyword lists).

        Raises:
            ConfigError: A key is unknown, missing or invalid.
        """
        # Only None means "not given": pool=[] or 0 is a mistake, not an empty section.
        sections = {
            "endpoint": endpoint,
            "pool": {} if pool is None else pool,
            "connection": {} if connection is None else connection,
        }
        for section, values in sections.items():
            if not isinstance(values, Mapping):
                raise ConfigError(section, "must be a mapping of keys to values")
        check_keys("endpoint", endpoint, field_names(EndpointConfig))
        check_keys("pool", sections["pool"], field_names(PoolConfig))
        check_keys("connection", sections["connection"], field_names(ConnectionConfig))
        for required in ("host", "port"):
            if required not in endpoint:
                raise ConfigError(f"endpoint.{required}", "is required")
        return cls(
            endpoint=EndpointConfig(**endpoint),
            pool=PoolConfig(**sections["pool"]),
            connection=ConnectionConfig(**sections["connection"]),
        )

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, Any]) -> Config:
        """Builds a config from ``{"endpoint": {...}, "pool": {...}, "connection": {...}}``.

        This is the shape of a TOML, YAML or JSON document, and of the Elixir
        application environment.
        """
        if not isinstance(mapping, Mapping):
            raise ConfigError("config", "must be a mapping with an 'endpoint' section")
        check_keys("config", mapping, frozenset({"endpoint", "pool", "connection"}))
        if "endpoint" not in mapping:
            raise ConfigError("endpoint", "section is required")
        return cls.new(mapping["endpoint"], mapping.get("pool"), mapping.get("connection"))

    @classmethod
    def from_env(cls, prefix: str = "GRPCPOOL", environ: Mapping[str, str] | None = None) -> Config:
        """Builds a config from environment variables such as ``GRPCPOOL_HOST``.

        See :mod:`grpcpool._config_env` for the variable names.
        """
        from grpcpool._config_env import mapping_from_env

        return cls.from_mapping(mapping_from_env(prefix, environ))

    @classmethod
    def production(
        cls,
        host: str,
        port: int = 443,
        pool_size: int = DEFAULT_POOL_SIZE,
        pool_name: str | None = None,
        ssl: TLSOptions | Mapping[str, Any] | bool | None = None,
    ) -> Config:
        """TLS to a remote service, verifying the peer against the system roots
        unless ``ssl`` names other roots or a client certificate."""
        tls = True if ssl is None else ssl
        return cls.new(
            endpoint={"type": "production", "host": host, "port": port, "ssl": tls},
            pool={"size": pool_size, "name": pool_name},
        )

    @classmethod
    def local(
        cls,
        host: str = "localhost",
        port: int = 9090,
        pool_size: int = 3,
        pool_name: str | None = None,
    ) -> Config:
        """Plaintext to a local server or emulator."""
        return cls.new(
            endpoint={"type": "local", "host": host, "port": port},
            pool={"size": pool_size, "name": pool_name},
        )

    # --- what a worker needs to build its channel ---------------------------

    def channel_options(self) -> tuple[tuple[str, Any], ...]:
        """The grpc channel arguments for one worker's channel (not pinned to an address)."""
        return channel_options(self)

    def channel_credentials(self) -> grpc.ChannelCredentials | None:
        """The credentials for a secure channel, or ``None`` for plaintext."""
        endpoint = self.endpoint
        if endpoint.credentials is not None:
            return endpoint.credentials
        if endpoint.ssl is None:
            return None
        return endpoint.ssl.channel_credentials()

    def pool_name(self, override: str | None = None) -> str:
        """The pool's name: the override, else ``pool.name``, else ``"default"``."""
        return override or self.pool.name or DEFAULT_POOL_NAME
