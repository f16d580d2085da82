"""Validation of each config section, run when the section is built.

Kept apart from :mod:`grpcpool.config`, which holds the sections, their
defaults and bounds: each function here checks one built section and raises
:class:`~grpcpool.errors.ConfigError` naming the dotted key; the sections call
them from ``__post_init__``, so an invalid section never exists.
"""

from __future__ import annotations

from typing import Any

import grpc

from grpcpool._config_capacity import check_capacity, normalize_autoscale
from grpcpool._config_checks import (
    check_bool,
    check_float,
    check_int,
    check_optional_float,
    check_pool_name,
    check_production_transport,
    is_production,
    kind,
    normalize_interceptors,
    normalize_options,
    normalize_tls,
)
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
from grpcpool._config_routing import (
    check_ewma_decay,
    check_panic_threshold,
    normalize_hedging,
    normalize_outlier_detection,
)
from grpcpool._hosts import check_host
from grpcpool.errors import ConfigError
from grpcpool.strategy import STRATEGY_NAMES

# A section of grpcpool.config as its __post_init__ hands it over: its values are
# what the user passed, of any type, until checked here. (Typed as Any, not as
# the section class: that would tie this module back to the one that calls it.)
Section = Any

__all__ = ["check_connection", "check_endpoint", "check_pool", "check_retry"]


def check_retry(retry: Section) -> None:
    """Checks ``endpoint.retry_config``."""
    check_int("endpoint.retry_config.max_attempts", retry.max_attempts, minimum=1)
    check_float("endpoint.retry_config.base_delay", retry.base_delay, minimum=0.0)
    check_float("endpoint.retry_config.max_delay", retry.max_delay, minimum=0.0)
    if retry.max_delay < retry.base_delay:
        raise ConfigError("endpoint.retry_config.max_delay", "must be >= base_delay")


def check_endpoint(endpoint: Section) -> None:
    """Checks ``endpoint`` and normalizes its TLS, interceptors, options and retry."""
    check_host("endpoint.host", endpoint.host)
    check_int("endpoint.port", endpoint.port, minimum=1, maximum=65535)
    if not isinstance(endpoint.type, str) or not endpoint.type.strip():
        raise ConfigError("endpoint.type", f"must be a non-empty string, got {kind(endpoint.type)}")
    object.__setattr__(endpoint, "ssl", normalize_tls("endpoint.ssl", endpoint.ssl))
    if endpoint.credentials is not None and not isinstance(
        endpoint.credentials, grpc.ChannelCredentials
    ):
        raise ConfigError(
            "endpoint.credentials",
            f"must be a grpc.ChannelCredentials, got {type(endpoint.credentials).__name__}",
        )
    if is_production(endpoint.type):
        check_production_transport(endpoint.ssl, endpoint.credentials)
    interceptors = normalize_interceptors("endpoint.interceptors", endpoint.interceptors)
    object.__setattr__(endpoint, "interceptors", interceptors)
    options = normalize_options("endpoint.options", endpoint.options)
    object.__setattr__(endpoint, "options", options)
    resolver = endpoint.resolver
    if resolver is not None and not callable(resolver) and not callable(
        getattr(resolver, "watch", None)
    ):
        raise ConfigError(
            "endpoint.resolver",
            "must be None (the system resolver), a callable (host, port) -> addresses, "
            f"or an object with a watch(host, port, on_change) method, got {kind(resolver)}",
        )
    check_optional_float(
        "endpoint.resolve_interval",
        endpoint.resolve_interval,
        strict=True,
        maximum=MAX_RESOLVE_INTERVAL,
    )
    check_float(
        "endpoint.resolve_timeout",
        endpoint.resolve_timeout,
        strict=True,
        maximum=MAX_RESOLVE_TIMEOUT,
    )


def check_pool(pool: Section) -> None:
    """Checks ``pool``."""
    check_int("pool.max_size", pool.max_size, minimum=1, maximum=HARD_MAX_POOL_SIZE)
    check_int("pool.size", pool.size, minimum=1)
    if pool.size > pool.max_size:
        raise ConfigError("pool.size", f"{pool.size} is over pool.max_size ({pool.max_size})")
    if pool.name is not None:
        check_pool_name("pool.name", pool.name)
    if isinstance(pool.strategy, str):
        if pool.strategy not in STRATEGY_NAMES:
            known = ", ".join(STRATEGY_NAMES)
            raise ConfigError("pool.strategy", f"is not a strategy name (known: {known})")
    elif not (
        callable(getattr(pool.strategy, "picker", None))
        or callable(getattr(pool.strategy, "select", None))
    ):
        raise ConfigError(
            "pool.strategy", "must be a strategy name or have picker(items) or select(count)"
        )
    check_float(
        "pool.telemetry_interval",
        pool.telemetry_interval,
        minimum=0.0,
        strict=True,
        maximum=MAX_TELEMETRY_INTERVAL,
    )
    check_int("pool.telemetry_sample_rate", pool.telemetry_sample_rate, minimum=0)
    check_ewma_decay(pool.ewma_decay)
    check_panic_threshold(pool.panic_threshold)
    detection = normalize_outlier_detection(pool.outlier_detection)
    object.__setattr__(pool, "outlier_detection", detection)
    object.__setattr__(pool, "hedging", normalize_hedging(pool.hedging))
    check_capacity(pool)
    # pool.max_calls_per_connection, checked above, is autoscale.high_calls' default.
    autoscale = normalize_autoscale(pool.autoscale, pool.max_size, pool.max_calls_per_connection)
    object.__setattr__(pool, "autoscale", autoscale)


def check_connection(connection: Section) -> None:
    """Checks ``connection``, each time within its bound."""
    check_optional_float(
        "connection.keepalive", connection.keepalive, strict=True, maximum=MAX_KEEPALIVE
    )
    check_float(
        "connection.keepalive_timeout",
        connection.keepalive_timeout,
        strict=True,
        maximum=MAX_KEEPALIVE_TIMEOUT,
    )
    check_bool("connection.keepalive_without_calls", connection.keepalive_without_calls)
    if connection.keepalive_without_calls and connection.keepalive is None:
        raise ConfigError(
            "connection.keepalive_without_calls",
            "needs connection.keepalive (the ping interval), which is None",
        )
    check_optional_float(
        "connection.ping_interval", connection.ping_interval, strict=True, maximum=MAX_PING_INTERVAL
    )
    check_float(
        "connection.ping_timeout", connection.ping_timeout, strict=True, maximum=MAX_PING_TIMEOUT
    )
    check_bool("connection.health_check", connection.health_check)
    if not isinstance(connection.health_service, str):
        raise ConfigError("connection.health_service", "must be a string")
    check_float(
        "connection.connect_timeout",
        connection.connect_timeout,
        strict=True,
        maximum=MAX_CONNECT_TIMEOUT,
    )
    check_float("connection.drain_timeout", connection.drain_timeout, maximum=MAX_DRAIN_TIMEOUT)
    check_bool("connection.suppress_connection_errors", connection.suppress_connection_errors)
    check_float("connection.backoff_min", connection.backoff_min, strict=True, maximum=MAX_BACKOFF)
    check_float("connection.backoff_max", connection.backoff_max, strict=True, maximum=MAX_BACKOFF)
    if connection.backoff_max < connection.backoff_min:
        raise ConfigError(
            "connection.backoff_max",
            f"{connection.backoff_max} is below connection.backoff_min ({connection.backoff_min})",
        )
    check_int("connection.max_reconnect_attempts", connection.max_reconnect_attempts, minimum=1)
    if connection.max_age is not None:
        check_float(
            "connection.max_age", connection.max_age, minimum=MIN_MAX_AGE, maximum=MAX_MAX_AGE
        )
