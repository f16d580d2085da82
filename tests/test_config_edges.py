"""Bad configuration fails at once with a key named, and nothing is half-built."""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import pytest

import grpcpool
from grpcpool import Config, PoolSpec
from grpcpool import config as config_module
from grpcpool._tls import MAX_TLS_FILE_SIZE
from grpcpool.connection import (
    PoolChannels,
    channel_credentials,
    channel_options,
    open_channel_count,
)
from grpcpool.errors import ConfigError, GrpcPoolError
from tests.pools import free_port, loopback_config

FAKE_CA = b"-----BEGIN CERTIFICATE-----\nROOT\n-----END CERTIFICATE-----\n"
FAKE_KEY = b"-----BEGIN PRIVATE KEY-----\nKEY\n-----END PRIVATE KEY-----\n"
C_INT_MAX = 2**31 - 1


def local(**endpoint: Any) -> Config:
    return Config.new({"type": "local", "host": "127.0.0.1", "port": 9090, **endpoint})


class _Interceptor(grpc.UnaryUnaryClientInterceptor):  # type: ignore[misc]
    def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        return continuation(details, request)


# --- item 1: every accepted value builds a channel ----------------------------
TIME_BOUNDS = [
    ("connection", "keepalive", config_module.MAX_KEEPALIVE),
    ("connection", "keepalive_timeout", config_module.MAX_KEEPALIVE_TIMEOUT),
    ("connection", "ping_interval", config_module.MAX_PING_INTERVAL),
    ("connection", "ping_timeout", config_module.MAX_PING_TIMEOUT),
    ("connection", "connect_timeout", config_module.MAX_CONNECT_TIMEOUT),
    ("connection", "drain_timeout", config_module.MAX_DRAIN_TIMEOUT),
    ("connection", "backoff_min", config_module.MAX_BACKOFF),
    ("connection", "backoff_max", config_module.MAX_BACKOFF),
    ("pool", "telemetry_interval", config_module.MAX_TELEMETRY_INTERVAL),
]


def with_time(section: str, key: str, value: float) -> Config:
    values: dict[str, Any] = {key: value}
    if key == "backoff_min":
        values["backoff_max"] = max(value, config_module.DEFAULT_BACKOFF_MAX)
    endpoint = {"type": "local", "host": "h", "port": 1}
    return Config.new(endpoint, **{section: values})


@pytest.mark.parametrize(("section", "key", "bound"), TIME_BOUNDS)
def test_time_over_its_bound_is_refused_with_a_hint(section: str, key: str, bound: float) -> None:
    """A time over its key's bound names the key and the bound and says seconds, not ms."""
    for value in (bound + 1, bound * 1000, 2147483.648, 1e10):
        with pytest.raises(ConfigError) as info:
            with_time(section, key, value)
        assert info.value.key == f"{section}.{key}"
        assert f"{bound:g}" in str(info.value)
        assert "seconds, not milliseconds" in str(info.value)


@pytest.mark.parametrize(("section", "key", "bound"), TIME_BOUNDS)
def test_time_at_its_bound_builds_a_channel(section: str, key: str, bound: float) -> None:
    """The largest accepted time still fits grpcio's C int of milliseconds."""
    config = with_time(section, key, bound)
    options = channel_options(config)
    assert all(value <= C_INT_MAX for _, value in options if isinstance(value, int))
    grpc.insecure_channel("127.0.0.1:1", options=options).close()


def test_keepalive_in_milliseconds_is_refused() -> None:
    """keepalive=30000 (30 s typed as ms) is an error, not a ping every 8 hours."""
    with pytest.raises(ConfigError, match=r"connection\.keepalive: must be <= 7200 seconds"):
        Config.new({"type": "local", "host": "h", "port": 1}, connection={"keepalive": 30000})


@pytest.mark.parametrize(
    ("options", "key", "fragment"),
    [
        ([("grpc.x", None)], "endpoint.options['grpc.x']", "got NoneType"),
        ([("grpc.x", -1)], "endpoint.options['grpc.x']", "from 0 to"),
        ([("grpc.x", 2**31)], "endpoint.options['grpc.x']", "from 0 to"),
        ([("grpc.x", 1.5)], "endpoint.options['grpc.x']", "got float"),
        ([5], "endpoint.options", "(name, value) pairs"),
        ([("a",)], "endpoint.options", "(name, value) pairs"),
        ([(5, 1)], "endpoint.options", "option name"),
        ("grpc.x", "endpoint.options", "got str"),
        (5, "endpoint.options", "got int"),
    ],
)
def test_bad_channel_options_name_the_option(options: Any, key: str, fragment: str) -> None:
    """Option values grpcio cannot take are a ConfigError naming the option."""
    with pytest.raises(ConfigError) as info:
        local(options=options)
    assert info.value.key == key
    assert fragment in str(info.value)


def test_options_as_a_mapping_are_its_items() -> None:
    """endpoint.options may be a mapping: its items are the (name, value) pairs."""
    config = local(
        options={"grpc.max_receive_message_length": 1024, "grpc.primary_user_agent": "x"}
    )
    assert config.endpoint.options == (
        ("grpc.max_receive_message_length", 1024),
        ("grpc.primary_user_agent", "x"),
    )
    assert dict(channel_options(config))["grpc.primary_user_agent"] == "x"


@pytest.mark.parametrize("interceptors", [[object()], ["x"], [lambda *a: None], 5, "abc"])
def test_interceptors_must_be_grpc_client_interceptors(interceptors: Any) -> None:
    """Anything but grpc client interceptor instances is a ConfigError at construction."""
    with pytest.raises(ConfigError) as info:
        local(interceptors=interceptors)
    assert info.value.key == "endpoint.interceptors"


def test_real_interceptors_are_accepted() -> None:
    """A list of client interceptors (or a single one) becomes a tuple."""
    interceptor = _Interceptor()
    assert local(interceptors=[interceptor]).endpoint.interceptors == (interceptor,)
    assert local(interceptors=interceptor).endpoint.interceptors == (interceptor,)


# --- item 2: the host is a host -----------------------------------------------
@pytest.mark.parametrize(
    ("host", "hint"),
    [
        ("127.0.0.1:9090", "write host='127.0.0.1', port=9090"),
        ("[::1]:80", "write host='::1', port=80"),
        ("http://x", "write host='x'"),
        ("https://api.example.com:8443/v1", "write host='api.example.com', port=8443"),
        ("localhost:http", "write host='localhost'"),
        ("a b", "no spaces"),
        ("[::1", "unclosed"),
    ],
)
def test_host_with_port_or_scheme_says_what_to_write(host: str, hint: str) -> None:
    """A host carrying a port or scheme is refused, with the host and port to write."""
    with pytest.raises(ConfigError) as info:
        local(host=host)
    assert info.value.key == "endpoint.host"
    assert hint in str(info.value)


@pytest.mark.parametrize("host", ["user:pw@h", "https://admin:hunter2@h:443", "pw@h"])
def test_host_with_userinfo_never_echoes_it(host: str) -> None:
    """User info is refused, and the message quotes none of the host (it may hold a password)."""
    with pytest.raises(ConfigError) as info:
        local(host=host)
    assert info.value.key == "endpoint.host"
    assert "user info" in str(info.value)
    for secret in ("pw", "hunter2", "admin"):
        assert secret not in str(info.value).replace("password", "")


@pytest.mark.parametrize(
    ("host", "target"),
    [("::1", "[::1]:9090"), ("[::1]", "[::1]:9090"), ("fe80::1%eth0", "[fe80::1%eth0]:9090")],
)
def test_ipv6_literals_stay_valid_hosts(host: str, target: str) -> None:
    """IPv6 literals, bracketed or not, are hosts; the target brackets them once."""
    assert local(host=host).endpoint.target == target


# --- item 3: malformed mappings, names and PEM --------------------------------
@pytest.mark.parametrize("value", [8, None, b"h", ["h"]])
def test_from_env_non_string_value_names_the_variable(value: Any) -> None:
    """A hand-made environ with a non-str value is a ConfigError naming the variable."""
    environ = {"GRPCPOOL_HOST": "h", "GRPCPOOL_PORT": "1", "GRPCPOOL_POOL_SIZE": value}
    with pytest.raises(ConfigError) as info:
        Config.from_env(environ=environ)
    assert info.value.key == "GRPCPOOL_POOL_SIZE"
    assert type(value).__name__ in str(info.value)


@pytest.mark.parametrize("environ", [[("GRPCPOOL_HOST", "h")], "GRPCPOOL_HOST=h", 5])
def test_from_env_environ_must_be_a_mapping(environ: Any) -> None:
    """environ that is not a mapping is a ConfigError, not an AttributeError."""
    with pytest.raises(ConfigError, match="environ"):
        Config.from_env(environ=environ)


@pytest.mark.parametrize("section", ["pool", "connection"])
@pytest.mark.parametrize("value", [[], 0, "", (), False])
def test_falsy_non_mapping_sections_are_refused(section: str, value: Any) -> None:
    """pool=[] or connection=0 is a mistake, refused, not taken for an empty section."""
    with pytest.raises(ConfigError) as info:
        Config.new({"type": "local", "host": "h", "port": 1}, **{section: value})
    assert info.value.key == section
    document = {"endpoint": {"type": "local", "host": "h", "port": 1}, section: value}
    with pytest.raises(ConfigError):
        Config.from_mapping(document)


def test_unhashable_pool_names_are_config_errors() -> None:
    """Unhashable names in every name-taking entry point: a ConfigError, no bare TypeError."""
    config = loopback_config(free_port())
    unhashable: list[Any] = [[1], {"a": 1}, {1}]
    for name in unhashable:
        with pytest.raises(ConfigError, match=r"pool\.name: must be a non-empty str"):
            PoolSpec(config, name=name)
        with pytest.raises(ConfigError):
            grpcpool.start(config, name=name)
        with pytest.raises(ConfigError):
            grpcpool.PoolProxy(name)
        for function in (grpcpool.get_channel, grpcpool.status, grpcpool.pool, grpcpool.stop):
            with pytest.raises(ConfigError):
                function(name)
        for scale in (grpcpool.scale_up, grpcpool.scale_down, grpcpool.resize):
            with pytest.raises(ConfigError):
                scale(name, 1)
        with pytest.raises(ConfigError):
            grpcpool.await_ready(name, timeout=0.1)
    with pytest.raises(ConfigError):
        dataclasses.replace(config.pool, name=unhashable[0])


def test_a_huge_name_is_not_echoed() -> None:
    """A 1,000,000-character name is refused by length; no error quotes it."""
    name = "n" * 1_000_000
    config = loopback_config(free_port())
    calls: list[Callable[[], object]] = [
        lambda: PoolSpec(config, name=name),
        lambda: grpcpool.status(name),
        lambda: grpcpool.get_channel(name),
        lambda: grpcpool.PoolProxy(name),
        lambda: Config.new({"type": "local", "host": "h", "port": 1}, pool={"name": name}),
        lambda: Config.new({"type": "local", "host": "h", "port": 1}, pool={name: 1}),
        lambda: Config.from_env(environ={f"GRPCPOOL_{name}": "1"}),
    ]
    for call in calls:
        with pytest.raises(ConfigError) as info:
            call()
        assert len(str(info.value)) < 600


@pytest.mark.parametrize(
    ("ssl", "key"),
    [
        ({"root_certificates": b"not a pem"}, "endpoint.ssl.root_certificates"),
        ({"root_certificates": FAKE_KEY}, "endpoint.ssl.root_certificates"),
        (
            {"private_key": b"nope", "certificate_chain": FAKE_CA},
            "endpoint.ssl.private_key",
        ),
        (
            {"private_key": FAKE_KEY, "certificate_chain": b"nope"},
            "endpoint.ssl.certificate_chain",
        ),
    ],
)
def test_pem_without_its_block_is_refused(ssl: dict[str, Any], key: str) -> None:
    """PEM bytes without the expected BEGIN block fail at construction, naming the key."""
    with pytest.raises(ConfigError) as info:
        Config.production("h", ssl=ssl)
    assert info.value.key == key
    assert "nope" not in str(info.value)
    assert "not a pem" not in str(info.value)


def test_cacertfile_holding_a_key_is_refused(tmp_path: Path) -> None:
    """A cacertfile that holds a private key is refused, naming the key and the path."""
    path = tmp_path / "ca.pem"
    path.write_bytes(FAKE_KEY)
    with pytest.raises(ConfigError) as info:
        Config.production("h", ssl={"cacertfile": str(path)})
    assert info.value.key.startswith("endpoint.ssl.cacertfile")
    assert str(path) in str(info.value)
    assert "KEY" not in str(info.value).replace("PRIVATE KEY", "")


def test_cacertfile_and_root_certificates_together_are_refused(tmp_path: Path) -> None:
    """Both a cacertfile and root_certificates: which one was meant is unclear; refused."""
    path = tmp_path / "ca.pem"
    path.write_bytes(FAKE_CA)
    with pytest.raises(ConfigError) as info:
        Config.production("h", ssl={"cacertfile": str(path), "root_certificates": FAKE_CA})
    assert info.value.key == "endpoint.ssl.cacertfile"
    assert "root_certificates" in str(info.value)


def test_tls_options_built_directly_are_checked() -> None:
    """TLSOptions checks its own fields, so the object form is no way around the checks."""
    with pytest.raises(ConfigError):
        grpcpool.TLSOptions(root_certificates=b"not a pem")
    with pytest.raises(ConfigError):
        grpcpool.TLSOptions(private_key=FAKE_KEY)
    with pytest.raises(ConfigError):
        grpcpool.TLSOptions(root_certificates="str, not bytes")  # type: ignore[arg-type]


# --- item 4: TLS files are bounded --------------------------------------------
def test_fifo_as_cacertfile_fails_at_once(tmp_path: Path) -> None:
    """A FIFO as GRPCPOOL_CACERTFILE is a ConfigError at once, not a blocked Config."""
    fifo = tmp_path / "ca.fifo"
    os.mkfifo(fifo)
    environ = {"GRPCPOOL_HOST": "h", "GRPCPOOL_PORT": "1", "GRPCPOOL_CACERTFILE": str(fifo)}
    started = time.monotonic()
    with pytest.raises(ConfigError) as info:
        Config.from_env(environ=environ)
    assert time.monotonic() - started < 1.0
    assert info.value.key == "endpoint.ssl.cacertfile"
    assert "not a regular file" in str(info.value) and str(fifo) in str(info.value)


@pytest.mark.parametrize("key", ["cacertfile", "certfile", "keyfile"])
def test_dev_zero_and_directories_are_refused(key: str, tmp_path: Path) -> None:
    """/dev/zero and a directory are not regular files: refused without reading."""
    for path in ("/dev/zero", str(tmp_path)):
        with pytest.raises(ConfigError) as info:
            Config.production("h", ssl={key: path})
        assert info.value.key == f"endpoint.ssl.{key}"
        assert path in str(info.value)


def test_oversized_tls_file_is_refused(tmp_path: Path) -> None:
    """A TLS file over the size cap is refused with its size; a file at the cap is read."""
    path = tmp_path / "big.pem"
    path.write_bytes(FAKE_CA + b"x" * (MAX_TLS_FILE_SIZE - len(FAKE_CA)))
    assert Config.production("h", ssl={"cacertfile": str(path)}).endpoint.ssl is not None
    path.write_bytes(FAKE_CA + b"x" * MAX_TLS_FILE_SIZE)
    with pytest.raises(ConfigError, match="bytes, over the") as info:
        Config.production("h", ssl={"cacertfile": str(path)})
    assert info.value.key == "endpoint.ssl.cacertfile"


@pytest.mark.parametrize("path", [5, b"/etc/ca.pem", "bad\0path"])
def test_tls_path_of_wrong_type_is_refused(path: Any) -> None:
    """A path that is not a str path (or holds a NUL) is a ConfigError naming the key."""
    with pytest.raises(ConfigError) as info:
        Config.production("h", ssl={"cacertfile": path})
    assert info.value.key == "endpoint.ssl.cacertfile"


# --- item 5: no channel leaks on a failed open --------------------------------
def _with_bad_interceptors(config: Config) -> Config:
    # Past the config checks on purpose: the channel module must clean up anyway.
    endpoint = config.endpoint
    object.__setattr__(endpoint, "interceptors", (object(),))
    return config


def test_open_closes_the_channel_when_interceptors_fail() -> None:
    """PoolChannels.open closes the channel it opened when wrapping it fails."""
    channels = PoolChannels(_with_bad_interceptors(loopback_config(free_port())))
    for _ in range(3):
        with pytest.raises(TypeError):
            channels.open(lambda state: None)
    assert open_channel_count() == 0
    channels.close_all()


def test_failed_starts_leave_no_channel_open() -> None:
    """Pools that fail to start, again and again, leave the open-channel count at 0."""
    config = _with_bad_interceptors(loopback_config(free_port(), size=2))
    for _ in range(3):
        with pytest.raises(GrpcPoolError):
            grpcpool.start(config, name="edges-bad-interceptors")
        assert open_channel_count() == 0
    with pytest.raises(ConfigError):
        local(interceptors=[object()])
    assert open_channel_count() == 0
    assert channel_credentials(loopback_config(free_port())) is None


@pytest.mark.parametrize("section", ["endpoint", "pool", "connection"])
def test_config_takes_sections_not_mappings(section: str) -> None:
    """Config(...) with a mapping for a section is a ConfigError pointing to Config.new."""
    sections: dict[str, Any] = {"endpoint": local().endpoint, section: {"size": 1}}
    with pytest.raises(ConfigError, match=r"Config\.new") as info:
        Config(**sections)
    assert info.value.key == section
