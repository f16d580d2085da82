"""Tests for grpcpool.config and its helpers (_config_checks, _config_env, _tls)."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

import grpc
import grpc.experimental
import pytest

from grpcpool import (
    Config,
    ConfigError,
    ConnectionConfig,
    EndpointConfig,
    PoolConfig,
    RetryConfig,
    TLSOptions,
)
from grpcpool.strategy import RoundRobin
from tests.certs import Pem, make_ca, make_client_cert

LOCAL: dict[str, Any] = {"type": "local", "host": "localhost", "port": 9090}
MISSING = object()  # marks an endpoint key to leave out
# PEM-shaped stand-ins: the config checks the PEM markers, and parses only a
# client key and chain given together (to see that they belong together).
FAKE_CA = b"-----BEGIN CERTIFICATE-----\nROOT-BYTES\n-----END CERTIFICATE-----\n"
FAKE_CHAIN = b"-----BEGIN CERTIFICATE-----\nCHAIN-BYTES\n-----END CERTIFICATE-----\n"
FAKE_KEY = b"-----BEGIN PRIVATE KEY-----\nSECRET-KEY-BYTES\n-----END PRIVATE KEY-----\n"


@pytest.fixture(scope="module")
def client() -> Pem:
    """A real client certificate and its key."""
    ca, ca_key = make_ca()
    return make_client_cert(ca, ca_key)


def build(
    endpoint: dict[str, Any] | None = None,
    pool: dict[str, Any] | None = None,
    connection: dict[str, Any] | None = None,
) -> Config:
    """Config.new on a valid local endpoint, with overrides (MISSING drops a key)."""
    merged = {**LOCAL, **(endpoint or {})}
    merged = {k: v for k, v in merged.items() if v is not MISSING}
    return Config.new(merged, pool, connection)


def options_of(config: Config) -> dict[str, Any]:
    return dict(config.channel_options())


# --- defaults (SPEC section 3) ----------------------------------------------
def test_endpoint_defaults() -> None:
    """EndpointConfig defaults: production type, no ssl/credentials/interceptors/options/retry."""
    endpoint = EndpointConfig(host="h", port=1, ssl=True)
    assert endpoint.type == "production"
    assert endpoint.credentials is None
    assert endpoint.interceptors == ()
    assert endpoint.options == ()
    assert endpoint.retry_config is None
    assert EndpointConfig(host="h", port=1, type="local").ssl is None


def test_pool_defaults() -> None:
    """PoolConfig defaults match the SPEC table."""
    pool = PoolConfig()
    assert (pool.size, pool.max_size, pool.name) == (5, 1024, None)
    assert pool.strategy == "round_robin"
    assert pool.telemetry_interval == 5.0
    assert pool.telemetry_sample_rate == 1


def test_connection_defaults() -> None:
    """ConnectionConfig defaults match the SPEC table."""
    c = ConnectionConfig()
    assert (c.keepalive, c.ping_interval, c.connect_timeout) == (300.0, 25.0, 10.0)
    assert c.keepalive_without_calls is False
    assert c.health_check is True
    assert c.health_service == ""
    assert c.suppress_connection_errors is False
    assert (c.backoff_min, c.backoff_max) == (1.0, 30.0)
    assert c.max_reconnect_attempts == 5


def test_new_fills_defaults() -> None:
    """Config.new fills default pool/connection sections and RetryConfig defaults."""
    config = build({"retry_config": {"max_attempts": 7}})
    assert config.endpoint.retry_config == RetryConfig(7, 1.0, 10.0)
    assert (config.pool, config.connection) == (PoolConfig(), ConnectionConfig())


# --- constructors -------------------------------------------------------------
def test_local() -> None:
    """Config.local is plaintext to localhost:9090 with 3 channels; arguments pass through."""
    config = Config.local()
    assert (config.endpoint.type, config.endpoint.target) == ("local", "localhost:9090")
    assert config.pool.size == 3
    assert config.channel_credentials() is None
    assert not config.endpoint.uses_tls
    other = Config.local(host="10.0.0.1", port=5000, pool_size=7, pool_name="x")
    assert (other.endpoint.target, other.pool.size, other.pool.name) == ("10.0.0.1:5000", 7, "x")


def test_production_defaults_to_tls_with_system_roots() -> None:
    """Config.production with ssl=None uses TLS against the system roots on port 443."""
    config = Config.production(host="api.example.com")
    assert config.endpoint.type == "production"
    assert config.endpoint.port == 443
    assert config.pool.size == 5
    assert config.endpoint.ssl == TLSOptions()
    assert config.endpoint.ssl.root_certificates is None
    assert isinstance(config.channel_credentials(), grpc.ChannelCredentials)
    custom = Config.production(host="h", ssl={"root_certificates": FAKE_CA})
    assert custom.endpoint.ssl.root_certificates == FAKE_CA


def test_production_with_ssl_true_passes() -> None:
    """An explicit production endpoint with ssl=True is valid."""
    config = build({"type": "production", "ssl": True})
    assert config.endpoint.uses_tls


def test_explicit_credentials_override_ssl() -> None:
    """endpoint.credentials satisfies production and is returned as given."""
    creds = grpc.ssl_channel_credentials()
    config = build(
        {"type": "production", "credentials": creds, "ssl": {"root_certificates": FAKE_CA}}
    )
    assert config.channel_credentials() is creds


def test_from_mapping() -> None:
    """Config.from_mapping reads the three sections of a TOML/JSON-like document."""
    config = Config.from_mapping(
        {"endpoint": LOCAL, "pool": {"size": 2}, "connection": {"ping_interval": None}}
    )
    assert config.pool.size == 2
    assert config.connection.ping_interval is None
    assert Config.from_mapping({"endpoint": LOCAL}).pool == PoolConfig()


def test_from_env() -> None:
    """Config.from_env maps GRPCPOOL_* variables to keys and ignores other variables."""
    environ = {
        "GRPCPOOL_HOST": "db.internal",
        "GRPCPOOL_PORT": "7000",
        "GRPCPOOL_TYPE": "local",
        "GRPCPOOL_POOL_SIZE": "8",
        "GRPCPOOL_POOL_NAME": "api",
        "GRPCPOOL_POOL_STRATEGY": "random",
        "GRPCPOOL_PING_INTERVAL": "none",
        "GRPCPOOL_BACKOFF_MAX": "60",
        "GRPCPOOL_HEALTH_CHECK": "false",
        "GRPCPOOL_KEEPALIVE_WITHOUT_CALLS": "yes",
        "PATH": "/usr/bin",
        "GRPCPOOLX_HOST": "ignored",
    }
    config = Config.from_env(environ=environ)
    assert config.endpoint.target == "db.internal:7000"
    assert (config.pool.size, config.pool.name, config.pool.strategy) == (8, "api", "random")
    assert config.connection.ping_interval is None
    assert config.connection.backoff_max == 60.0
    assert config.connection.health_check is False
    assert config.connection.keepalive_without_calls is True


def test_ping_timeout_default_and_sources() -> None:
    """connection.ping_timeout defaults to 2 s; from_mapping and GRPCPOOL_PING_TIMEOUT set it."""
    assert ConnectionConfig().ping_timeout == 2.0
    mapping = {"endpoint": LOCAL, "connection": {"ping_timeout": 0.5}}
    assert Config.from_mapping(mapping).connection.ping_timeout == 0.5
    environ = {"GRPCPOOL_HOST": "h", "GRPCPOOL_PORT": "1", "GRPCPOOL_TYPE": "local"}
    config = Config.from_env(environ={**environ, "GRPCPOOL_PING_TIMEOUT": "0.75"})
    assert config.connection.ping_timeout == 0.75
    with pytest.raises(ConfigError) as info:
        Config.from_env(environ={**environ, "GRPCPOOL_PING_TIMEOUT": "soon"})
    assert info.value.key == "connection.ping_timeout"


def test_from_env_custom_prefix_and_os_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    """from_env honours the prefix and reads os.environ when environ is None."""
    monkeypatch.setenv("MYAPP_HOST", "h")
    monkeypatch.setenv("MYAPP_PORT", "1234")
    monkeypatch.setenv("MYAPP_TYPE", "local")
    config = Config.from_env(prefix="MYAPP")
    assert config.endpoint.target == "h:1234"


def test_from_env_ssl_files(tmp_path: Path) -> None:
    """GRPCPOOL_CACERTFILE and SERVER_HOSTNAME go into endpoint.ssl."""
    ca = tmp_path / "ca.pem"
    ca.write_bytes(FAKE_CA)
    environ = {"GRPCPOOL_HOST": "h", "GRPCPOOL_PORT": "443", "GRPCPOOL_CACERTFILE": str(ca)}
    config = Config.from_env(environ={**environ, "GRPCPOOL_SERVER_HOSTNAME": "api"})
    assert config.endpoint.ssl == TLSOptions(root_certificates=FAKE_CA, server_hostname="api")


@pytest.mark.parametrize(
    ("extra", "key", "fragment"),
    [
        ({"GRPCPOOL_BOGUS": "1"}, "GRPCPOOL_BOGUS", "unknown variable"),
        ({"GRPCPOOL_PORT": "abc"}, "endpoint.port", "GRPCPOOL_PORT does not parse"),
        ({"GRPCPOOL_POOL_SIZE": "1.5"}, "pool.size", "GRPCPOOL_POOL_SIZE"),
        ({"GRPCPOOL_HEALTH_CHECK": "maybe"}, "connection.health_check", "expected one of"),
        ({"GRPCPOOL_BACKOFF_MIN": "fast"}, "connection.backoff_min", "a number of seconds"),
        ({"GRPCPOOL_SSL": "false", "GRPCPOOL_CACERTFILE": "/x"}, "endpoint.ssl", "SSL is false"),
        ({"GRPCPOOL_HOST": MISSING}, "endpoint.host", "GRPCPOOL_HOST"),
        ({"GRPCPOOL_PORT": MISSING}, "endpoint.port", "GRPCPOOL_PORT"),
    ],
)
def test_from_env_errors(extra: dict[str, Any], key: str, fragment: str) -> None:
    """A bad or missing variable raises ConfigError naming the key and the variable.

    The rejected text is never quoted: it may be a secret set in the wrong variable.
    """
    environ = {"GRPCPOOL_HOST": "h", "GRPCPOOL_PORT": "1", "GRPCPOOL_TYPE": "local", **extra}
    environ = {k: v for k, v in environ.items() if v is not MISSING}
    with pytest.raises(ConfigError) as info:
        Config.from_env(environ=environ)
    assert info.value.key == key
    assert key in str(info.value)
    assert fragment in str(info.value)
    for text in extra.values():
        if isinstance(text, str) and text not in ("1", "false"):
            assert repr(text) not in str(info.value)


# --- validation ---------------------------------------------------------------
class NoSelect:
    pass


BAD_INPUTS = [
    ("endpoint", {"host": MISSING}, "endpoint.host"),
    ("endpoint", {"host": ""}, "endpoint.host"),
    ("endpoint", {"host": 42}, "endpoint.host"),
    ("endpoint", {"port": MISSING}, "endpoint.port"),
    ("endpoint", {"port": 0}, "endpoint.port"),
    ("endpoint", {"port": 65536}, "endpoint.port"),
    ("endpoint", {"port": True}, "endpoint.port"),
    ("endpoint", {"port": "80"}, "endpoint.port"),
    ("endpoint", {"type": ""}, "endpoint.type"),
    ("endpoint", {"type": "production"}, "endpoint.ssl"),
    ("endpoint", {"type": MISSING}, "endpoint.ssl"),
    ("endpoint", {"ssl": "yes"}, "endpoint.ssl"),
    ("endpoint", {"ssl": {"bogus": 1}}, "endpoint.ssl.bogus"),
    ("endpoint", {"credentials": "c"}, "endpoint.credentials"),
    ("endpoint", {"options": [("a",)]}, "endpoint.options"),
    ("endpoint", {"retry_config": 3}, "endpoint.retry_config"),
    ("endpoint", {"retry_config": {"max_delay": 0.5}}, "endpoint.retry_config.max_delay"),
    ("endpoint", {"ssl": {"root_certificates": 123}}, "endpoint.ssl.root_certificates"),
    ("endpoint", {"ssl": {"private_key": FAKE_KEY}}, "endpoint.ssl"),
    ("endpoint", {"ssl": {"certificate_chain": FAKE_CHAIN}}, "endpoint.ssl"),
    ("endpoint", {"bogus": 1}, "endpoint.bogus"),
    ("pool", {"size": 0}, "pool.size"),
    ("pool", {"size": -3}, "pool.size"),
    ("pool", {"size": 2.0}, "pool.size"),
    ("pool", {"size": "3"}, "pool.size"),
    ("pool", {"size": True}, "pool.size"),
    ("pool", {"size": 1025}, "pool.size"),
    ("pool", {"size": 5, "max_size": 4}, "pool.size"),
    ("pool", {"max_size": 0}, "pool.max_size"),
    ("pool", {"max_size": 10**6}, "pool.max_size"),
    ("pool", {"name": ""}, "pool.name"),
    ("pool", {"strategy": "fastest"}, "pool.strategy"),
    ("pool", {"strategy": NoSelect()}, "pool.strategy"),
    ("pool", {"telemetry_interval": -1.0}, "pool.telemetry_interval"),
    ("pool", {"telemetry_interval": 0}, "pool.telemetry_interval"),
    ("pool", {"telemetry_sample_rate": -1}, "pool.telemetry_sample_rate"),
    ("pool", {"bogus": 1}, "pool.bogus"),
    ("connection", {"backoff_min": 5.0, "backoff_max": 2.0}, "connection.backoff_max"),
    ("connection", {"backoff_min": 0}, "connection.backoff_min"),
    ("connection", {"ping_interval": -1}, "connection.ping_interval"),
    ("connection", {"ping_interval": math.nan}, "connection.ping_interval"),
    ("connection", {"connect_timeout": -1}, "connection.connect_timeout"),
    ("connection", {"keepalive": -1.0}, "connection.keepalive"),
    ("connection", {"keepalive": "30"}, "connection.keepalive"),
    ("connection", {"keepalive": 10**400}, "connection.keepalive"),
    ("connection", {"keepalive_timeout": 0}, "connection.keepalive_timeout"),
    ("connection", {"ping_timeout": 0}, "connection.ping_timeout"),
    ("connection", {"ping_timeout": -1.0}, "connection.ping_timeout"),
    ("connection", {"ping_timeout": None}, "connection.ping_timeout"),
    ("connection", {"ping_timeout": math.inf}, "connection.ping_timeout"),
    ("connection", {"keepalive_without_calls": 1}, "connection.keepalive_without_calls"),
    (
        "connection",
        {"keepalive": None, "keepalive_without_calls": True},
        "connection.keepalive_without_calls",
    ),
    ("connection", {"health_check": 1}, "connection.health_check"),
    ("connection", {"health_service": None}, "connection.health_service"),
    ("connection", {"max_reconnect_attempts": 0}, "connection.max_reconnect_attempts"),
    ("connection", {"bogus": 1}, "connection.bogus"),
]


@pytest.mark.parametrize(("section", "overrides", "key"), BAD_INPUTS)
def test_invalid_config(section: str, overrides: dict[str, Any], key: str) -> None:
    """Each invalid value raises ConfigError whose .key and message name the key."""
    with pytest.raises(ConfigError) as info:
        build(**{section: overrides})
    assert info.value.key == key
    assert str(info.value).startswith(f"{key}: ")


@pytest.mark.parametrize(
    ("mapping", "key"),
    [
        ({"endpoint": LOCAL, "bogus": {}}, "config.bogus"),
        ({"pool": {"size": 1}}, "endpoint"),
        (["endpoint"], "config"),
        ({"endpoint": LOCAL, "pool": [("size", 1)]}, "pool"),
    ],
)
def test_from_mapping_errors(mapping: Any, key: str) -> None:
    """from_mapping rejects unknown top-level keys, a missing endpoint and non-mappings."""
    with pytest.raises(ConfigError) as info:
        Config.from_mapping(mapping)
    assert info.value.key == key
    assert key in str(info.value)


def test_valid_edges_pass() -> None:
    """Boundary values pass: ports 1/65535, size == max_size, Nones, a strategy object."""
    assert build({"port": 1}).endpoint.port == 1
    assert build({"port": 65535}).endpoint.port == 65535
    assert build(pool={"size": 4, "max_size": 4}).pool.size == 4
    relaxed = build(connection={"keepalive": None, "ping_interval": None})
    assert relaxed.connection.keepalive is None
    assert build(pool={"telemetry_sample_rate": 0}).pool.telemetry_sample_rate == 0
    assert build(connection={"backoff_min": 2, "backoff_max": 2}).connection.backoff_max == 2
    strategy = RoundRobin()  # any object with select() is kept as is
    assert build(pool={"strategy": strategy}).pool.strategy is strategy


# --- immutability ---------------------------------------------------------------
def test_config_is_frozen() -> None:
    """Config and its sections cannot be mutated in place."""
    config = Config.local()
    targets = [(config, "pool"), (config.pool, "size"), (config.endpoint, "port")]
    targets += [(config.connection, "keepalive"), (TLSOptions(), "server_hostname")]
    for obj, attr in targets:
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(obj, attr, 9)
    assert (config.pool.size, config.endpoint.port, config.connection.keepalive) == (3, 9090, 300.0)


def test_replace_revalidates() -> None:
    """dataclasses.replace on a section validates the new value."""
    pool = Config.local().pool
    assert dataclasses.replace(pool, size=2).size == 2
    with pytest.raises(ConfigError, match=r"^pool\.size"):
        dataclasses.replace(pool, size=0)


# --- channel options --------------------------------------------------------------
def test_channel_options_defaults() -> None:
    """Default options: local subchannel pool, keepalive and backoff in milliseconds."""
    options = options_of(build())
    assert ("grpc.use_local_subchannel_pool", 1) in build().channel_options()
    assert options["grpc.keepalive_time_ms"] == 300000
    assert options["grpc.keepalive_timeout_ms"] == options["grpc.http2.ping_timeout_ms"]
    assert options["grpc.keepalive_timeout_ms"] == 10000
    assert options["grpc.keepalive_permit_without_calls"] == 0
    assert "grpc.http2.max_pings_without_data" not in options
    assert options["grpc.initial_reconnect_backoff_ms"] == 1000
    assert options["grpc.min_reconnect_backoff_ms"] == 10000  # connect_timeout
    assert options["grpc.max_reconnect_backoff_ms"] == 30000
    assert "grpc.ssl_target_name_override" not in options


def test_channel_options_follow_connection_settings() -> None:
    """Keepalive and backoff options are computed from the connection section."""
    connection = {"keepalive": 2.5, "keepalive_timeout": 0.75, "backoff_min": 0.2}
    options = options_of(build(connection={**connection, "backoff_max": 4}))
    assert options["grpc.keepalive_time_ms"] == 2500
    assert options["grpc.keepalive_timeout_ms"] == 750
    assert options["grpc.http2.ping_timeout_ms"] == 750
    assert options["grpc.initial_reconnect_backoff_ms"] == 200
    assert options["grpc.max_reconnect_backoff_ms"] == 4000


def test_keepalive_without_calls_pings_idle_channels_every_keepalive() -> None:
    """The opt-in permits pings without calls and lifts grpcio's two-then-one-a-minute limit."""
    options = options_of(build(connection={"keepalive": 20, "keepalive_without_calls": True}))
    assert options["grpc.keepalive_time_ms"] == 20000
    assert options["grpc.keepalive_permit_without_calls"] == 1
    assert options["grpc.http2.max_pings_without_data"] == 0


def test_keepalive_none_drops_keepalive_args() -> None:
    """keepalive=None leaves out every keepalive channel argument."""
    options = options_of(build(connection={"keepalive": None}))
    assert not [name for name in options if "keepalive" in name or "ping_timeout" in name]
    assert options["grpc.use_local_subchannel_pool"] == 1


def test_user_options_come_last_and_override() -> None:
    """endpoint.options are appended after the defaults and win over them; keys stay unique."""
    user = [("grpc.keepalive_time_ms", 60000), ("grpc.max_receive_message_length", 1 << 24)]
    pairs = build({"options": user}).channel_options()
    names = [name for name, _ in pairs]
    assert len(names) == len(set(names))
    assert pairs[-1] == ("grpc.max_receive_message_length", 1 << 24)
    assert dict(pairs)["grpc.keepalive_time_ms"] == 60000


def test_channel_options_keys_unique_with_tls() -> None:
    """Option keys are unique with TLS, a hostname override and user options."""
    config = build(
        {"ssl": {"server_hostname": "a"}, "options": [("grpc.ssl_target_name_override", "b")]}
    )
    names = [name for name, _ in config.channel_options()]
    assert len(names) == len(set(names))
    assert options_of(config)["grpc.ssl_target_name_override"] == "b"


# --- TLS ------------------------------------------------------------------------
def test_ssl_pem_bytes_and_str(client: Pem) -> None:
    """An ssl mapping takes PEM as bytes or str (encoded to bytes)."""
    ssl = {
        "root_certificates": FAKE_CA.decode(),
        "private_key": client.private_key.decode(),
        "certificate_chain": client.certificate,
    }
    expected = TLSOptions(FAKE_CA, client.private_key, client.certificate)
    assert build({"ssl": ssl}).endpoint.ssl == expected


def test_ssl_file_paths(tmp_path: Path, client: Pem) -> None:
    """cacertfile, certfile and keyfile are read from disk into the PEM fields."""
    files = {"cacertfile": FAKE_CA, "certfile": client.certificate, "keyfile": client.private_key}
    for name, content in files.items():
        (tmp_path / name).write_bytes(content)
    ssl = {name: str(tmp_path / name) for name in files}
    tls = build({"ssl": ssl}).endpoint.ssl
    assert tls == TLSOptions(FAKE_CA, client.private_key, client.certificate)


def test_ssl_unreadable_file(tmp_path: Path) -> None:
    """A cacertfile that cannot be read is a ConfigError naming the ssl key."""
    with pytest.raises(ConfigError) as info:
        build({"ssl": {"cacertfile": str(tmp_path / "absent.pem")}})
    assert info.value.key == "endpoint.ssl.cacertfile"


def test_server_hostname_sets_target_name_override() -> None:
    """ssl.server_hostname adds grpc.ssl_target_name_override to the channel args."""
    config = build({"ssl": {"server_hostname": "api.internal"}})
    assert config.endpoint.ssl.server_hostname == "api.internal"
    assert options_of(config)["grpc.ssl_target_name_override"] == "api.internal"


@pytest.mark.parametrize(
    ("value", "tls"), [(False, False), (None, False), (True, True), ({}, True)]
)
def test_ssl_simple_forms(value: Any, tls: bool) -> None:
    """ssl False/None mean plaintext; True or an empty mapping mean system roots."""
    config = build({"ssl": value})
    assert config.endpoint.uses_tls is tls
    assert (config.channel_credentials() is not None) is tls


def test_tls_repr_hides_key_material(client: Pem) -> None:
    """TLSOptions repr (also inside Config repr) never shows key or cert bytes."""
    tls = TLSOptions(FAKE_CA, client.private_key, client.certificate, "api")
    text = repr(tls)
    assert text == "TLSOptions(roots=custom, client_cert=yes, server_hostname=set)"
    config_text = repr(build({"ssl": tls}))
    key_body = "".join(client.private_key.decode().splitlines()[1:-1])[:40]
    chain_body = "".join(client.certificate.decode().splitlines()[1:-1])[:40]
    for secret in (key_body, "ROOT-BYTES", chain_body, "BEGIN"):
        assert secret not in text
        assert secret not in config_text
    assert repr(TLSOptions()) == "TLSOptions(roots=system, client_cert=no)"


# --- target and pool name ---------------------------------------------------------
@pytest.mark.parametrize(
    ("host", "target"),
    [("::1", "[::1]:9090"), ("[::1]", "[::1]:9090"), ("example.com", "example.com:9090")],
)
def test_target_brackets_ipv6(host: str, target: str) -> None:
    """endpoint.target puts IPv6 literals in brackets, once."""
    assert build({"host": host}).endpoint.target == target


def test_pool_name_precedence() -> None:
    """pool_name(): the override, else pool.name, else "default"."""
    named = Config.local(pool_name="orders")
    assert named.pool_name("override") == "override"
    assert named.pool_name() == "orders"
    assert Config.local().pool_name() == "default"
    assert Config.local().pool_name("x") == "x"


# --- plaintext to production (guard and default) ----------------------------------

PRODUCTION_SPELLINGS = ["production", "Production", "production ", " PRODUCTION\t", "ProDuctIon"]


def _local_with_token() -> grpc.ChannelCredentials:
    return grpc.composite_channel_credentials(
        grpc.local_channel_credentials(), grpc.access_token_call_credentials("t")
    )


PLAINTEXT_CREDENTIALS = {
    "insecure": grpc.experimental.insecure_channel_credentials,
    "local": grpc.local_channel_credentials,
    "local + token": _local_with_token,
}


@pytest.mark.parametrize("spelling", PRODUCTION_SPELLINGS)
def test_production_type_is_compared_normalized(spelling: str) -> None:
    """Any case or surrounding spaces of 'production' refuses plaintext, and the type is kept."""
    with pytest.raises(ConfigError) as info:
        build({"type": spelling})
    assert info.value.key == "endpoint.ssl"
    assert build({"type": spelling, "ssl": True}).endpoint.type == spelling


@pytest.mark.parametrize("spelling", ["Production", "PRODUCTION", " production "])
def test_production_type_from_env_is_normalized(spelling: str) -> None:
    """GRPCPOOL_TYPE=Production refuses plaintext like the lower-case spelling."""
    environ = {"GRPCPOOL_HOST": "127.0.0.1", "GRPCPOOL_PORT": "1", "GRPCPOOL_TYPE": spelling}
    with pytest.raises(ConfigError) as info:
        Config.from_env(environ=environ)
    assert info.value.key == "endpoint.ssl"


@pytest.mark.parametrize("spelling", PRODUCTION_SPELLINGS)
@pytest.mark.parametrize("kind", sorted(PLAINTEXT_CREDENTIALS))
def test_plaintext_credentials_are_refused_for_production(kind: str, spelling: str) -> None:
    """Insecure, local and composite(local, token) credentials are refused, even beside ssl."""
    credentials = PLAINTEXT_CREDENTIALS[kind]()
    for extra in ({}, {"ssl": True}):
        with pytest.raises(ConfigError) as info:
            build({"type": spelling, "credentials": credentials, **extra})
        assert info.value.key == "endpoint.credentials"
        message = str(info.value)
        assert "plaintext" in message
        assert "type='local'" in message
        assert "ssl_channel_credentials" in message


@pytest.mark.parametrize("kind", sorted(PLAINTEXT_CREDENTIALS))
def test_plaintext_credentials_are_allowed_for_other_types(kind: str) -> None:
    """A local (or any non-production) endpoint may use plaintext credentials."""
    credentials = PLAINTEXT_CREDENTIALS[kind]()
    for label in ("local", "staging", "production-like"):
        config = build({"type": label, "credentials": credentials})
        assert config.channel_credentials() is credentials


def test_defaulted_type_refuses_plaintext_and_says_how_to_ask_for_it() -> None:
    """No type means production: the error says plaintext needs type='local' or another label."""
    with pytest.raises(ConfigError) as info:
        Config.new(endpoint={"host": "db.internal", "port": 5000})
    assert info.value.key == "endpoint.ssl"
    message = str(info.value)
    assert "'production' unless set" in message
    assert "ssl=True" in message
    assert "type='local'" in message
    assert "any type other than 'production'" in message


@pytest.mark.parametrize("blank", [" ", "\t\n"])
def test_blank_type_is_refused(blank: str) -> None:
    """A type of spaces only is no label at all."""
    with pytest.raises(ConfigError) as info:
        build({"type": blank})
    assert info.value.key == "endpoint.type"
