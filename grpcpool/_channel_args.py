"""The grpc channel arguments of a pool's channels, from its config.

Both the connections (:mod:`grpcpool.connection`) and
:meth:`grpcpool.Config.channel_options` use them, so they live below both.
"""

from __future__ import annotations

import json
from typing import Any

# A grpcpool.Config (typed as Any, not as the class: grpcpool.config offers these
# options as Config.channel_options(), so this module cannot import it).
Config = Any

__all__ = ["channel_options"]

# grpcio moves a channel with no RPCs for 30 minutes to IDLE, which would look
# exactly like a dropped connection; a pool keeps its channels connected.
_NEVER_IDLE_MS = 2**31 - 1


def channel_options(config: Config, address: str | None = None) -> tuple[tuple[str, Any], ...]:
    """The grpc channel arguments for one channel of a pool with ``config``.

    A channel pinned to one resolved ``address`` still speaks as the
    configured endpoint: its calls carry ``host:port`` as their
    ``:authority`` and TLS checks the server's certificate against ``host``,
    as one channel to ``host:port`` would. A name given for TLS to check
    (``ssl.server_hostname``, or ``grpc.ssl_target_name_override`` in
    ``endpoint.options``) is the ``:authority`` too, pinned or not, as on a
    plain grpcio channel with that override: grpcio refuses a call whose
    authority the certificate does not name, so ``host:port`` would fail
    ("call host does not match SSL server name") for a host the certificate
    does not hold, such as an IP. ``grpc.default_authority`` in
    ``endpoint.options`` still wins.

    ``grpc.use_local_subchannel_pool`` makes every channel its own TCP
    connection; without it grpcio shares one connection between channels
    with identical arguments, and a pool of N would be one connection.
    Keepalive pings go out only while calls run, unless
    ``connection.keepalive_without_calls`` says otherwise (see
    :mod:`grpcpool.config` for why). User ``endpoint.options`` come last and win.
    """
    connection = config.connection
    options: dict[str, Any] = {
        "grpc.use_local_subchannel_pool": 1,
        "grpc.client_idle_timeout_ms": _NEVER_IDLE_MS,
        "grpc.initial_reconnect_backoff_ms": _ms(connection.backoff_min),
        # grpcio also takes this as the deadline of one connection
        # attempt; the worker's connect_timeout is that bound.
        "grpc.min_reconnect_backoff_ms": _ms(connection.connect_timeout),
        "grpc.max_reconnect_backoff_ms": _ms(connection.backoff_max),
    }
    if connection.keepalive is not None:
        timeout_ms = _ms(connection.keepalive_timeout)
        # grpcio pings after this long without a byte from the server, and
        # also sets TCP_USER_TIMEOUT = keepalive_timeout on the socket.
        options["grpc.keepalive_time_ms"] = _ms(connection.keepalive)
        options["grpc.keepalive_timeout_ms"] = timeout_ms
        # Without this grpcio takes about a minute to notice a silent peer.
        options["grpc.http2.ping_timeout_ms"] = timeout_ms
        # Pings on a connection with no call running are off unless asked
        # for: a server with default settings (grpc-go, etcd, grpcio) takes
        # each one for a strike and the third for a too_many_pings GOAWAY,
        # and grpcio 1.85 keeps sending one a minute after the first two.
        # Idle channels are checked by the health ping, which is a call.
        if connection.keepalive_without_calls:
            options["grpc.keepalive_permit_without_calls"] = 1
            # The user asked for a ping every `keepalive` on idle channels;
            # grpcio would send two and then at most one a minute.
            options["grpc.http2.max_pings_without_data"] = 0
        else:
            options["grpc.keepalive_permit_without_calls"] = 0
    endpoint = config.endpoint
    if address is not None:
        options[_AUTHORITY] = endpoint.target
        if endpoint.uses_tls:
            options[_NAME_OVERRIDE] = endpoint.host.strip("[]")
    user = dict(endpoint.options)
    name = _configured_name(config, user)
    if name is not None:
        # grpcio checks each call's authority against the server's
        # certificate, and a plain channel with a name override takes the
        # name as its authority; host:port (an IP, say) would be refused.
        options[_NAME_OVERRIDE] = name
        options[_AUTHORITY] = f"[{name}]" if ":" in name else name
    if _hedging_needs_retries_off(config, user):
        options[_ENABLE_RETRIES] = 0
    options.update(user)
    return tuple(options.items())


_ENABLE_RETRIES = "grpc.enable_retries"
_SERVICE_CONFIG = "grpc.service_config"
# The policies grpcio runs only with its retries on.
_POLICIES = ("retryPolicy", "hedgingPolicy")


def _hedging_needs_retries_off(config: Config, user: dict[str, Any]) -> bool:
    """Whether the pool's channels turn grpcio's own retries off, for hedging.

    grpcio drops a ``grpc-previous-rpc-attempts`` header set by the caller
    unless its retries are off (``grpc.enable_retries`` 0), and then runs no
    service config ``retryPolicy``. So a pool that hedges turns them off
    only when that loses no policy of the user's: no ``grpc.enable_retries``
    in ``endpoint.options`` (the user's word wins) and no ``retryPolicy`` or
    ``hedgingPolicy`` in its ``grpc.service_config`` (one that cannot be
    read keeps them on). What is lost is grpcio's transparent retry of a
    call caught by a GOAWAY before the server saw it (see docs/SPEC.md,
    "Hedging"). Pinned by tests/test_grpcio_contract.py.
    """
    if config.pool.hedging is None or _ENABLE_RETRIES in user:
        return False
    service_config = user.get(_SERVICE_CONFIG)
    if service_config is None:
        return True
    try:
        parsed = json.loads(service_config)
    except (TypeError, ValueError):
        return False
    return not _has_policy(parsed)


def _has_policy(value: Any) -> bool:
    """True if a parsed service config holds a retry or hedging policy anywhere."""
    if isinstance(value, dict):
        return any(key in _POLICIES or _has_policy(item) for key, item in value.items())
    if isinstance(value, list):
        return any(_has_policy(item) for item in value)
    return False


_AUTHORITY = "grpc.default_authority"
_NAME_OVERRIDE = "grpc.ssl_target_name_override"


def _configured_name(config: Config, user: dict[str, Any]) -> str | None:
    """The name TLS checks when the config gives one: ``ssl.server_hostname``,
    or ``grpc.ssl_target_name_override`` in ``endpoint.options``, which wins."""
    endpoint = config.endpoint
    if not endpoint.uses_tls:
        return None
    name = user.get(_NAME_OVERRIDE)
    if name is None and endpoint.ssl is not None:
        name = endpoint.ssl.server_hostname
    if isinstance(name, bytes):
        name = name.decode(errors="replace")
    return name.strip("[]") if isinstance(name, str) else None


def _ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))
