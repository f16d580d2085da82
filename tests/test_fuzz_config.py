"""Fuzzing the config constructors: only ConfigError comes out, and what is accepted works.

Every Config that a constructor accepts must build its channel options and
credentials, and grpcio must take those options: a value that fails only
when a pool starts is the bug these tests look for.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import grpc
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from grpcpool import Config, TLSOptions
from grpcpool._config_env import _VARIABLES
from grpcpool.config import ConnectionConfig, PoolConfig
from grpcpool.connection import channel_credentials, channel_options
from grpcpool.errors import ConfigError

FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FAKE_CA = b"-----BEGIN CERTIFICATE-----\nROOT\n-----END CERTIFICATE-----\n"
FAKE_KEY = b"-----BEGIN PRIVATE KEY-----\nKEY\n-----END PRIVATE KEY-----\n"


class _Interceptor(grpc.UnaryUnaryClientInterceptor):  # type: ignore[misc]
    def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        return continuation(details, request)


# Values of every shape, and the edge values of each kind.
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([0, 1, 2**31 - 1, 2**31, -1, 30000, 2147483.648, 1e10, 1e300]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.sampled_from(["127.0.0.1:9090", "http://x", "user:pw@h", "[::1]:80", "::1", "[::1]"]),
    st.sampled_from(["local", "production", "Production ", "round_robin", "random", "none"]),
    st.binary(max_size=20),
    st.sampled_from([FAKE_CA, FAKE_KEY, b"not a pem"]),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.tuples(st.text(max_size=10), inner),
        st.dictionaries(st.text(max_size=10), inner, max_size=3),
    ),
    max_leaves=6,
)
special = st.sampled_from(
    [
        _Interceptor(),
        [_Interceptor()],
        object(),
        TLSOptions(),
        TLSOptions(root_certificates=FAKE_CA),
        grpc.ssl_channel_credentials(),
        {"root_certificates": FAKE_CA},
        {"cacertfile": "/dev/zero"},
        {"grpc.max_receive_message_length": 1024},
        [("grpc.primary_user_agent", "fuzz")],
        [5],
    ]
)
any_value = st.one_of(values, special)


def names(cls: type) -> frozenset[str]:
    return frozenset(field.name for field in dataclasses.fields(cls))


def mostly(plausible: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Usually a plausible value, now and then anything at all."""
    # one_of would draw each half the time; one draw in eight is junk here.
    return st.integers(0, 7).flatmap(lambda n: any_value if n == 0 else plausible)


def seconds(bound: float) -> st.SearchStrategy[Any]:
    """Times around the accepted range: 0, small, the bound, just over it, in ms."""
    return st.one_of(
        st.floats(min_value=0.001, max_value=bound * 1.2),
        st.integers(min_value=0, max_value=int(bound * 1.2)),
        st.sampled_from([0, 0.5, 1, 30, 300, bound, bound + 0.001, bound * 1000, None]),
    )


option_pairs = st.lists(
    st.tuples(
        st.sampled_from(["grpc.primary_user_agent", "grpc.max_receive_message_length", "x.y"]),
        st.one_of(st.integers(-5, 2**32), st.text(max_size=8), st.binary(max_size=8), st.none()),
    ),
    max_size=3,
)
ENDPOINT_KEYS: dict[str, st.SearchStrategy[Any]] = {
    "ssl": st.sampled_from(
        [None, False, True, {}, TLSOptions(), {"root_certificates": FAKE_CA}, {"bogus": 1}]
    ),
    "credentials": st.sampled_from([None, grpc.ssl_channel_credentials()]),
    "interceptors": st.sampled_from([(), [], None, [_Interceptor()], _Interceptor()]),
    "options": st.one_of(option_pairs, option_pairs.map(dict)),
    "retry_config": st.one_of(
        st.none(),
        st.fixed_dictionaries(
            {}, optional={"max_attempts": st.integers(0, 5), "max_delay": seconds(100)}
        ),
    ),
    "resolver": st.sampled_from([None, lambda host, port: [f"127.0.0.1:{port}"], "dns", 5]),
    "resolve_interval": seconds(86400),
}
POOL_KEYS: dict[str, st.SearchStrategy[Any]] = {
    "size": st.integers(0, 40),
    "max_size": st.integers(0, 20000),
    "name": st.one_of(st.none(), st.text(max_size=130)),
    "strategy": st.sampled_from(
        ["round_robin", "random", "power_of_two", "least_in_flight", "peak_ewma", "bogus"]
    ),
    "telemetry_interval": seconds(86400),
    "telemetry_sample_rate": st.integers(-1, 10),
    "ewma_decay": seconds(7200),
    "panic_threshold": st.one_of(st.integers(-5, 120), st.floats(allow_nan=True)),
    "outlier_detection": st.one_of(
        st.none(),
        st.fixed_dictionaries(
            {},
            optional={
                "interval": seconds(100),
                "max_ejection_percent": st.integers(-1, 101),
                "failure_percentage": st.one_of(
                    st.none(),
                    st.fixed_dictionaries({}, optional={"threshold": st.integers(-1, 101)}),
                ),
                "success_rate": st.sampled_from([None, {}, {"minimum_hosts": 0}, 3]),
            },
        ),
    ),
    "max_calls_per_connection": st.one_of(st.none(), st.integers(-1, 2**31), st.booleans()),
    "max_queued_calls": st.one_of(st.integers(-1, 2_000_000), st.none()),
    "hedging": st.one_of(
        st.none(),
        st.fixed_dictionaries(
            {"methods": st.sampled_from([["/a.B/C"], [], "/a.B/C", ["C"]])},
            optional={
                "delay": st.one_of(seconds(100), st.sampled_from(["p95", "p99"])),
                "max_attempts": st.integers(0, 7),
                "budget": st.floats(-1, 2),
            },
        ),
    ),
    "autoscale": st.one_of(
        st.none(),
        st.sampled_from([3, "on"]),
        st.fixed_dictionaries(
            {},
            optional={
                "min_size": st.integers(0, 40),
                "max_size": st.one_of(st.none(), st.integers(0, 20000)),
                "low_calls": st.integers(0, 30),
                "high_calls": st.one_of(st.none(), st.integers(0, 30)),
                "interval": seconds(7200),
                "max_step": st.integers(-1, 5),
            },
        ),
    ),
}
CONNECTION_KEYS: dict[str, st.SearchStrategy[Any]] = {
    "keepalive": seconds(7200),
    "keepalive_timeout": seconds(3600),
    "keepalive_without_calls": st.booleans(),
    "ping_interval": seconds(3600),
    "ping_timeout": seconds(600),
    "health_check": st.booleans(),
    "health_service": st.text(max_size=10),
    "connect_timeout": seconds(3600),
    "drain_timeout": seconds(86400),
    "suppress_connection_errors": st.booleans(),
    "backoff_min": seconds(3600),
    "backoff_max": seconds(3600),
    "max_reconnect_attempts": st.integers(0, 10),
    "max_age": seconds(30 * 86400),
}
assert set(POOL_KEYS) == names(PoolConfig) and set(CONNECTION_KEYS) == names(ConnectionConfig)


def section(keys: dict[str, st.SearchStrategy[Any]]) -> st.SearchStrategy[dict[str, Any]]:
    """A few of the section's keys, each usually plausible."""
    chosen = {key: mostly(strategy) for key, strategy in keys.items()}
    subsets = st.sets(st.sampled_from(sorted(chosen)), max_size=4)
    return subsets.flatmap(lambda picked: st.fixed_dictionaries({k: chosen[k] for k in picked}))


endpoints = st.builds(
    lambda extra, host, port, kind: {"host": host, "port": port, "type": kind, **extra},
    section(ENDPOINT_KEYS),
    mostly(st.sampled_from(["127.0.0.1", "::1", "[::1]", "localhost", "api.example.com"])),
    mostly(st.integers(0, 70000)),
    mostly(st.sampled_from(["local", "production", "Production "])),
)
pools = mostly(st.one_of(st.none(), section(POOL_KEYS)))
connections = mostly(st.one_of(st.none(), section(CONNECTION_KEYS)))


def check_accepted(build: Callable[[], Config]) -> None:
    """Builds a config: a ConfigError is fine; an accepted config must make a channel."""
    try:
        config = build()
    except ConfigError as error:
        event(f"refused: {error.key.partition('[')[0][:40]}")
        return
    event("accepted")
    options = channel_options(config)
    credentials = channel_credentials(config)
    target = config.endpoint.target
    # grpcio checks the options when the channel is made, not when it connects.
    if credentials is None:
        channel = grpc.insecure_channel(target, options=options)
    else:
        channel = grpc.secure_channel(target, credentials, options=options)
    channel.close()


@FUZZ
@given(endpoints, pools, connections)
def test_new(endpoint: Any, pool: Any, connection: Any) -> None:
    """Config.new: any sections give a ConfigError or a config that builds a channel."""
    check_accepted(lambda: Config.new(endpoint, pool, connection))


documents = st.fixed_dictionaries(
    {"endpoint": mostly(endpoints)},
    optional={"pool": pools, "connection": connections, "bogus": values},
)


@FUZZ
@given(mostly(documents))
def test_from_mapping(document: Any) -> None:
    """Config.from_mapping: any document gives a ConfigError or a working config."""
    check_accepted(lambda: Config.from_mapping(document))


env_values = st.one_of(
    st.sampled_from(["1", "0", "5", "0.5", "25", "300", "7200", "7201", "30000", "1e10"]),
    st.sampled_from(["none", "true", "false", "nan", "-1", "inf", "random", "/dev/zero", ""]),
    st.text(max_size=12),
    st.integers().map(str),
    st.floats().map(str),
    scalars,  # a hand-made environ may hold anything
)
env_names = st.one_of(
    st.sampled_from(sorted(_VARIABLES)).map(lambda suffix: f"GRPCPOOL_{suffix}"),
    st.sampled_from(sorted(_VARIABLES)).map(lambda suffix: f"GRPCPOOL_{suffix}"),
    st.sampled_from(sorted(_VARIABLES)).map(lambda suffix: f"GRPCPOOL_{suffix}"),
    st.text(max_size=12).map(lambda suffix: f"GRPCPOOL_{suffix}"),
    st.text(max_size=12),
)


@FUZZ
@given(
    st.dictionaries(env_names, env_values, max_size=4),
    mostly(st.sampled_from(["127.0.0.1", "::1", "localhost"])),
    mostly(st.sampled_from(["9090", "1", "65535"])),
    st.sampled_from(["local", "local", "production"]),
)
def test_from_env(environ: dict[str, Any], host: str, port: str, kind: str) -> None:
    """Config.from_env: any environment gives a ConfigError or a working config."""
    full = {"GRPCPOOL_HOST": host, "GRPCPOOL_PORT": port, "GRPCPOOL_TYPE": kind, **environ}
    check_accepted(lambda: Config.from_env(environ=full))


@FUZZ
@given(
    mostly(st.sampled_from(["127.0.0.1", "::1", "localhost", "[::1]"])),
    mostly(st.integers(0, 70000)),
    mostly(st.integers(0, 20)),
    mostly(st.one_of(st.none(), st.text(max_size=130))),
)
def test_local(host: Any, port: Any, pool_size: Any, pool_name: Any) -> None:
    """Config.local: any arguments give a ConfigError or a working config."""
    check_accepted(lambda: Config.local(host, port, pool_size, pool_name))


@FUZZ
@given(
    mostly(st.sampled_from(["api.example.com", "::1", "127.0.0.1"])),
    mostly(st.integers(0, 70000)),
    mostly(st.integers(0, 20)),
    mostly(st.one_of(st.none(), st.text(max_size=130))),
    mostly(
        st.one_of(
            st.none(),
            st.booleans(),
            st.fixed_dictionaries(
                {},
                optional={
                    "root_certificates": st.sampled_from([FAKE_CA, FAKE_KEY, b"x", "s"]),
                    "private_key": st.sampled_from([FAKE_KEY, FAKE_CA]),
                    "certificate_chain": st.sampled_from([FAKE_CA, FAKE_KEY]),
                    "cacertfile": st.sampled_from(["/dev/zero", "/nonexistent", "/", 5]),
                    "server_hostname": st.one_of(st.none(), st.text(max_size=10)),
                },
            ),
        )
    ),
)
def test_production(host: Any, port: Any, pool_size: Any, pool_name: Any, ssl: Any) -> None:
    """Config.production: any arguments give a ConfigError or a working config."""
    check_accepted(lambda: Config.production(host, port, pool_size, pool_name, ssl))
