"""No secret gets out through an error message, a repr, a status, an event or a log.

A value of unknown shape put in the wrong place (a token as the port, a
password in the host) must not be echoed by the error that rejects it: the
error names the key and the value's type. What a config legitimately holds
and could be secret (key bytes, credentials, interceptors and their headers,
option values) never shows in its repr.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import grpc
import pytest

import grpcpool
from grpcpool import Config, ConfigError, PoolSpec, Supervisor, TLSOptions
from tests.certs import make_ca
from tests.events import EventLog
from tests.servers import EchoServer, EchoStub
from tests.waiting import wait_until

SECRET = "s3cr3t-T0ken-do-not-echo"
BEARER = f"Bearer {SECRET}"
LOCAL: dict[str, Any] = {"type": "local", "host": "127.0.0.1", "port": 9090}

# (section, overrides): each puts the secret where it is rejected.
REJECTED: list[tuple[str, dict[str, Any]]] = [
    ("endpoint", {"port": BEARER}),
    ("endpoint", {"port": SECRET.encode()}),
    ("endpoint", {"host": f"user:{SECRET}@api.example.com"}),
    ("endpoint", {"host": f"http://user:{SECRET}@api.example.com"}),
    ("endpoint", {"host": f"https://user:{SECRET}@api.example.com:443/path"}),
    ("endpoint", {"host": f"api.example.com:{SECRET}"}),
    ("endpoint", {"host": BEARER}),
    ("endpoint", {"type": ["production", SECRET]}),
    ("endpoint", {"ssl": BEARER}),
    ("endpoint", {"ssl": {"server_hostname": SECRET.encode()}}),
    ("endpoint", {"ssl": {"server_hostname": f"user:{SECRET}@api.example.com"}}),
    ("endpoint", {"ssl": {"server_hostname": f"api.example.com:{SECRET}"}}),
    ("endpoint", {"ssl": {"server_hostname": f"https://{SECRET}.example.com"}}),
    ("endpoint", {"ssl": {"root_certificates": 1, "private_key": BEARER}}),
    ("endpoint", {"ssl": {"private_key": BEARER, "certificate_chain": BEARER}}),
    ("endpoint", {"ssl": {"root_certificates": BEARER}}),
    ("endpoint", {"credentials": BEARER}),
    ("endpoint", {"interceptors": BEARER}),
    ("endpoint", {"options": BEARER}),
    ("endpoint", {"options": [(SECRET.encode(), 1)]}),
    ("endpoint", {"options": [("grpc.x", None, BEARER)]}),
    ("endpoint", {"retry_config": BEARER}),
    ("endpoint", {"retry_config": {"max_attempts": BEARER}}),
    ("endpoint", {"retry_config": {"base_delay": BEARER}}),
    ("endpoint", {"retry_config": {"max_delay": BEARER}}),
    ("pool", {"size": BEARER}),
    ("pool", {"max_size": BEARER}),
    ("pool", {"name": SECRET.encode()}),
    ("pool", {"strategy": BEARER}),
    ("pool", {"telemetry_interval": BEARER}),
    ("pool", {"telemetry_sample_rate": BEARER}),
    *[
        ("connection", {key: BEARER})
        for key in (
            "keepalive",
            "keepalive_timeout",
            "keepalive_without_calls",
            "ping_interval",
            "ping_timeout",
            "health_check",
            "connect_timeout",
            "drain_timeout",
            "suppress_connection_errors",
            "backoff_min",
            "backoff_max",
            "max_reconnect_attempts",
        )
    ],
    ("connection", {"health_service": SECRET.encode()}),
]


def _shown(error: BaseException) -> str:
    return f"{error} {error!r} {error.args!r}"


@pytest.mark.parametrize(("section", "overrides"), REJECTED)
def test_rejected_values_are_not_echoed(section: str, overrides: dict[str, Any]) -> None:
    """Each rejection is a ConfigError that names the key, never the secret."""
    sections: dict[str, dict[str, Any]] = {"endpoint": dict(LOCAL), "pool": {}, "connection": {}}
    sections[section].update(overrides)
    with pytest.raises(ConfigError) as info:
        Config.new(sections["endpoint"], sections["pool"], sections["connection"])
    assert info.value.key.startswith(section)
    assert SECRET not in _shown(info.value)


# variable suffix -> a value that does not parse or is rejected.
ENV_REJECTED = [
    "PORT",
    "SSL",
    "POOL_SIZE",
    "POOL_MAX_SIZE",
    "POOL_STRATEGY",
    "POOL_TELEMETRY_INTERVAL",
    "POOL_TELEMETRY_SAMPLE_RATE",
    "KEEPALIVE",
    "KEEPALIVE_TIMEOUT",
    "KEEPALIVE_WITHOUT_CALLS",
    "PING_INTERVAL",
    "PING_TIMEOUT",
    "HEALTH_CHECK",
    "CONNECT_TIMEOUT",
    "DRAIN_TIMEOUT",
    "SUPPRESS_CONNECTION_ERRORS",
    "BACKOFF_MIN",
    "BACKOFF_MAX",
    "MAX_RECONNECT_ATTEMPTS",
]


@pytest.mark.parametrize("suffix", ENV_REJECTED)
def test_environment_values_that_do_not_parse_are_not_echoed(suffix: str) -> None:
    """A token in the wrong variable is named by variable and key, not quoted."""
    environ = {"GRPCPOOL_HOST": "127.0.0.1", "GRPCPOOL_PORT": "1", "GRPCPOOL_TYPE": "local"}
    environ[f"GRPCPOOL_{suffix}"] = BEARER
    with pytest.raises(ConfigError) as info:
        Config.from_env(environ=environ)
    assert f"GRPCPOOL_{suffix}" in str(info.value) or info.value.key != ""
    assert SECRET not in _shown(info.value)


def test_host_with_a_password_from_the_environment_is_not_echoed() -> None:
    """GRPCPOOL_HOST with userinfo is refused without showing the password."""
    environ = {
        "GRPCPOOL_HOST": f"admin:{SECRET}@db",
        "GRPCPOOL_PORT": "1",
        "GRPCPOOL_TYPE": "local",
    }
    with pytest.raises(ConfigError) as info:
        Config.from_env(environ=environ)
    assert info.value.key == "endpoint.host"
    assert SECRET not in _shown(info.value)


class _TokenInterceptor(grpc.UnaryUnaryClientInterceptor):  # type: ignore[misc]
    """Adds an authorization header to each call; its repr would show the token."""

    def __init__(self, token: str) -> None:
        self.token = token

    def intercept_unary_unary(
        self, continuation: Callable[..., Any], details: Any, request: Any
    ) -> Any:
        metadata = [*(details.metadata or ()), ("authorization", f"Bearer {self.token}")]
        return continuation(details._replace(metadata=metadata), request)

    def __repr__(self) -> str:
        return f"_TokenInterceptor(token={self.token!r})"


def test_config_repr_hides_keys_credentials_interceptors_and_option_values() -> None:
    """repr and str of an accepted config show none of the secrets it carries."""
    ca, _ = make_ca()
    tls = TLSOptions(
        root_certificates=ca.certificate,
        private_key=ca.private_key,
        certificate_chain=ca.certificate,
    )
    token_credentials = grpc.composite_channel_credentials(
        grpc.ssl_channel_credentials(), grpc.access_token_call_credentials(SECRET)
    )
    endpoint = {
        "type": "production",
        "host": "api.example.com",
        "port": 443,
        "ssl": tls,
        "credentials": token_credentials,
        "interceptors": [_TokenInterceptor(SECRET)],
        "options": [("grpc.primary_user_agent", BEARER), ("grpc.max_receive_message_length", 9)],
    }
    config = Config.new(endpoint)
    key_text = ca.private_key.decode()
    body = "".join(key_text.splitlines()[1:-1])[:40]  # a piece of the base64 key itself
    for text in (repr(config), str(config), repr(config.endpoint), repr(config.endpoint.ssl)):
        assert SECRET not in text
        assert body not in text
        assert "PRIVATE KEY" not in text
    assert "grpc.max_receive_message_length': 9" in repr(config.endpoint)
    assert "_TokenInterceptor" in repr(config.endpoint)


def test_interceptor_headers_reach_the_server_but_nothing_else(
    echo_server: EchoServer,
    supervisors: list[Any],
    events: EventLog,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A header an interceptor adds is sent, and appears in no status, event, repr or log,
    also after the server goes away and the workers record errors."""
    config = Config.new(
        endpoint={**LOCAL, "port": echo_server.port, "interceptors": [_TokenInterceptor(SECRET)]},
        pool={"size": 2},
        connection={"backoff_min": 0.05, "backoff_max": 0.2, "ping_interval": 0.1},
    )
    caplog.set_level(logging.DEBUG)
    supervisors.append(Supervisor.start(children=[PoolSpec(config, name="headers")]))
    grpcpool.await_ready("headers", timeout=10, min_ready=2)
    EchoStub(grpcpool.get_channel("headers")).Unary(b"hi", timeout=5)
    assert ("authorization", BEARER) in echo_server.metadata[-1]
    echo_server.stop()
    assert wait_until(
        lambda: grpcpool.status("headers").current_size == 0
        and any(w.last_error for w in grpcpool.status("headers").workers),
        timeout=10,
    )
    with pytest.raises(grpcpool.NotConnectedError) as info:
        grpcpool.get_channel("headers")
    status = grpcpool.status("headers")
    shown = [
        repr(config),
        repr(grpcpool.pool("headers")),
        repr(status),
        *(f"{w.state} {w.last_error} {w.peer}" for w in status.workers),
        _shown(info.value),
        caplog.text,
        repr(dict(events.events)),
    ]
    for text in shown:
        assert SECRET not in text
