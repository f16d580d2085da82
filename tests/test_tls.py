"""TLS end to end: verification on by default, clear failures, no secrets leaked."""

from __future__ import annotations

import logging
import math
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

import grpcpool
from grpcpool import Config, PoolSpec, Supervisor, TLSOptions
from grpcpool.errors import ConfigError, NotConnectedError
from tests.certs import Pem, encrypt_key, make_ca, make_client_cert, make_server_cert
from tests.events import EventLog
from tests.servers import EchoServer, EchoStub
from tests.waiting import wait_until

SECRET_TOKEN = "s3cret-token-do-not-log"


@pytest.fixture(scope="module")
def authority() -> tuple[Pem, Pem]:
    """A CA and a server certificate it signed for 127.0.0.1."""
    ca, ca_key = make_ca()
    return ca, make_server_cert(ca, ca_key)


@pytest.fixture
def tls_server(authority: tuple[Pem, Pem]) -> Iterator[EchoServer]:
    """An echo server speaking TLS with the test CA's certificate."""
    _, server_pem = authority
    credentials = grpc.ssl_server_credentials([(server_pem.private_key, server_pem.certificate)])
    server = EchoServer(credentials=credentials)
    try:
        yield server
    finally:
        server.stop()


def tls_config(port: int, endpoint: dict[str, Any], **connection: Any) -> Config:
    settings: dict[str, Any] = {"backoff_min": 0.2, "backoff_max": 0.4, "connect_timeout": 2.0}
    settings.update(connection)
    return Config.new(
        endpoint={"type": "production", "host": "127.0.0.1", "port": port, **endpoint},
        pool={"size": 2},
        connection=settings,
    )


def test_right_root_connects_and_calls_work(
    tls_server: EchoServer, authority: tuple[Pem, Pem]
) -> None:
    """A pool trusting the server's CA connects over TLS and serves calls."""
    ca, _ = authority
    config = tls_config(tls_server.port, {"ssl": {"root_certificates": ca.certificate}})
    sup = Supervisor.start(children=[PoolSpec(config, name="tls")])
    try:
        grpcpool.await_ready("tls", timeout=10, min_ready=2)
        assert EchoStub(grpcpool.get_channel("tls")).Unary(b"secure", timeout=5) == b"secure"
        assert len(set(tls_server.peers)) == 1
    finally:
        sup.stop()


def test_wrong_root_fails_clearly_without_a_retry_storm(
    tls_server: EchoServer, events: EventLog, caplog: pytest.LogCaptureFixture
) -> None:
    """An untrusted server certificate gives handshake errors at the backoff pace, no key in logs."""
    other_ca, _ = make_ca("some other CA")
    config = tls_config(
        tls_server.port,
        {"ssl": {"root_certificates": other_ca.certificate}},
        max_reconnect_attempts=100,
    )
    caplog.set_level(logging.DEBUG, logger="grpcpool")
    started = time.monotonic()
    sup = Supervisor.start(children=[PoolSpec(config, name="wrong-root")])
    try:
        time.sleep(1.5)  # the window the attempts are counted over (the pace is the point)
        with pytest.raises(NotConnectedError):
            grpcpool.get_channel("wrong-root")
        failures = events.of("channel.connection_failed")
        window = time.monotonic() - started
    finally:
        sup.stop()
    # No retry comes sooner than backoff_min (0.2 s) after the last failure, so
    # each of the two workers fails at most once plus once per 0.2 s of the
    # window (typically 4-6 times in 1.5 s). A storm would be hundreds.
    most = 2 * (1 + math.ceil(window / 0.2))
    assert 2 <= len(failures) <= most
    error = failures[0][2]["error"]
    assert "handshake" in error.lower() or "ssl" in error.lower()
    assert tls_server.calls == 0
    assert other_ca.private_key.decode() not in caplog.text


def test_production_defaults_verify_against_system_roots(tls_server: EchoServer) -> None:
    """Config.production verifies the peer: a self-signed test CA is not trusted."""
    config = Config.production(host="127.0.0.1", port=tls_server.port, pool_size=1)
    assert config.channel_credentials() is not None
    sup = Supervisor.start(children=[PoolSpec(config, name="system-roots")])
    try:
        with pytest.raises(grpcpool.PoolTimeoutError):
            grpcpool.await_ready("system-roots", timeout=1.0)
        assert tls_server.calls == 0
    finally:
        sup.stop()


def test_plaintext_to_production_is_refused_end_to_end(echo_server: EchoServer) -> None:
    """A production endpoint without TLS never gets as far as a pool."""
    with pytest.raises(ConfigError, match=r"endpoint\.ssl"):
        Config.from_env(environ={"GRPCPOOL_HOST": "127.0.0.1", "GRPCPOOL_PORT": "1"})
    config = Config.new(
        endpoint={"type": "production", "host": "127.0.0.1", "port": echo_server.port, "ssl": True},
        pool={"size": 1},
    )
    sup = Supervisor.start(children=[PoolSpec(config, name="no-fallback")])
    try:
        with pytest.raises(grpcpool.PoolTimeoutError):
            grpcpool.await_ready("no-fallback", timeout=1.0)
        assert echo_server.calls == 0  # TLS to a plaintext server: no silent downgrade
    finally:
        sup.stop()


def test_call_credentials_reach_the_server_but_never_logs_events_or_reprs(
    tls_server: EchoServer,
    authority: tuple[Pem, Pem],
    events: EventLog,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A bearer token is sent on calls and appears nowhere in logs, events, status or reprs."""
    ca, _ = authority
    credentials = grpc.composite_channel_credentials(
        grpc.ssl_channel_credentials(root_certificates=ca.certificate),
        grpc.access_token_call_credentials(SECRET_TOKEN),
    )
    config = tls_config(tls_server.port, {"credentials": credentials}, ping_interval=0.1)
    caplog.set_level(logging.DEBUG)
    sup = Supervisor.start(children=[PoolSpec(config, name="token")])
    try:
        grpcpool.await_ready("token", timeout=10, min_ready=2)
        EchoStub(grpcpool.get_channel("token")).Unary(b"auth", timeout=5)
        assert ("authorization", f"Bearer {SECRET_TOKEN}") in tls_server.metadata[-1]
        assert wait_until(lambda: len(events.of("channel.ping")) >= 2, timeout=5)
        shown = [
            repr(config),
            repr(grpcpool.pool("token")),
            repr(grpcpool.status("token")),
            repr(sup),
            caplog.text,
            repr(dict(events.events)),
        ]
    finally:
        sup.stop()
    for text in shown:
        assert SECRET_TOKEN not in text


@pytest.mark.parametrize("spelling", ["production", "Production", "production "])
def test_local_credentials_with_a_token_never_reach_production_in_plaintext(
    echo_server: EchoServer, spelling: str
) -> None:
    """composite(local, token) is refused at construction for a production endpoint.

    The same credentials on a local endpoint show what is at stake: the pool
    connects in plaintext and the token travels in the clear.
    """
    credentials = grpc.composite_channel_credentials(
        grpc.local_channel_credentials(), grpc.access_token_call_credentials(SECRET_TOKEN)
    )
    endpoint = {"host": "127.0.0.1", "port": echo_server.port, "credentials": credentials}
    with pytest.raises(ConfigError) as info:
        Config.new(endpoint={**endpoint, "type": spelling}, pool={"size": 1})
    assert info.value.key == "endpoint.credentials"
    assert SECRET_TOKEN not in str(info.value)
    assert echo_server.calls == 0
    config = Config.new(endpoint={**endpoint, "type": "local"}, pool={"size": 1})
    sup = Supervisor.start(children=[PoolSpec(config, name="local-token")])
    try:
        grpcpool.await_ready("local-token", timeout=10)
        EchoStub(grpcpool.get_channel("local-token")).Unary(b"clear", timeout=5)
        assert ("authorization", f"Bearer {SECRET_TOKEN}") in echo_server.metadata[-1]
    finally:
        sup.stop()


# --- a client key and certificate that do not belong together ----------------------------


@pytest.fixture(scope="module")
def client_pairs() -> tuple[Pem, Pem, Pem]:
    """A CA and two client certificates it signed, each with its own key."""
    ca, ca_key = make_ca()
    return ca, make_client_cert(ca, ca_key), make_client_cert(ca, ca_key)


def _shows_no_pem(error: ConfigError, *pems: bytes) -> None:
    shown = f"{error} {error!r} {error.args!r}"
    assert "-----BEGIN" not in shown
    for pem in pems:
        body = "".join(pem.decode().splitlines()[1:-1])
        assert body[:40] not in shown and body[-40:] not in shown


def test_a_client_key_of_another_certificate_is_refused_when_the_config_is_built(
    client_pairs: tuple[Pem, Pem, Pem], tmp_path: Path
) -> None:
    """The key of one real pair with the certificate of another is a ConfigError naming
    both keys (bytes, TLSOptions, files, environment), never the PEM; grpcio would
    accept it and fail each connection with "Failed to create security handshaker"."""
    ca, first, second = client_pairs
    (tmp_path / "key.pem").write_bytes(second.private_key)
    (tmp_path / "cert.pem").write_bytes(first.certificate)
    files = {"keyfile": str(tmp_path / "key.pem"), "certfile": str(tmp_path / "cert.pem")}
    environ = {
        "GRPCPOOL_HOST": "127.0.0.1",
        "GRPCPOOL_PORT": "443",
        "GRPCPOOL_KEYFILE": files["keyfile"],
        "GRPCPOOL_CERTFILE": files["certfile"],
    }
    mismatched = {"private_key": second.private_key, "certificate_chain": first.certificate}
    attempts: list[tuple[Callable[[], object], str, str]] = [
        (
            lambda: Config.production(
                "127.0.0.1", ssl={"root_certificates": ca.certificate, **mismatched}
            ),
            "private_key",
            "certificate_chain",
        ),
        (lambda: TLSOptions(**mismatched), "private_key", "certificate_chain"),
        (lambda: Config.production("127.0.0.1", ssl=files), "keyfile", "certfile"),
        (lambda: Config.from_env(environ=environ), "keyfile", "certfile"),
    ]
    for attempt, key, chain in attempts:
        with pytest.raises(ConfigError) as info:
            attempt()
        assert info.value.key == f"endpoint.ssl.{key}"
        assert f"endpoint.ssl.{chain}" in str(info.value)
        assert "does not belong" in str(info.value)
        _shows_no_pem(info.value, first.private_key, second.private_key, first.certificate)


def test_a_client_key_with_its_own_certificate_is_accepted(
    client_pairs: tuple[Pem, Pem, Pem], tmp_path: Path
) -> None:
    """Each real pair is accepted as bytes and as files, also with its CA after the
    certificate (a chain); the key of the CA's certificate second in the chain is not."""
    ca, first, second = client_pairs
    for pair in (first, second):
        tls = TLSOptions(private_key=pair.private_key, certificate_chain=pair.certificate)
        assert tls.private_key == pair.private_key
        chain = pair.certificate + ca.certificate
        assert TLSOptions(private_key=pair.private_key, certificate_chain=chain) is not None
    (tmp_path / "key.pem").write_bytes(first.private_key)
    (tmp_path / "cert.pem").write_bytes(first.certificate)
    files = {"keyfile": str(tmp_path / "key.pem"), "certfile": str(tmp_path / "cert.pem")}
    config = Config.production("127.0.0.1", ssl=files)
    assert config.endpoint.ssl is not None
    assert config.endpoint.ssl.private_key == first.private_key
    with pytest.raises(ConfigError) as info:
        TLSOptions(private_key=ca.private_key, certificate_chain=first.certificate + ca.certificate)
    assert info.value.key == "endpoint.ssl.private_key"


def test_the_pair_is_checked_without_memfd_and_no_key_is_left_on_disk(
    client_pairs: tuple[Pem, Pem, Pem], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where memfd_create is missing the check goes through a private temporary directory,
    which is gone afterwards, whether the pair is refused or accepted."""
    _, first, second = client_pairs
    monkeypatch.delattr(os, "memfd_create", raising=False)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    with pytest.raises(ConfigError) as info:
        TLSOptions(private_key=second.private_key, certificate_chain=first.certificate)
    assert info.value.key == "endpoint.ssl.private_key"
    assert list(tmp_path.iterdir()) == []
    TLSOptions(private_key=first.private_key, certificate_chain=first.certificate)
    assert list(tmp_path.iterdir()) == []


def test_unusable_client_keys_and_chains_are_refused_by_key(
    client_pairs: tuple[Pem, Pem, Pem],
) -> None:
    """An encrypted key (grpc takes no passphrase), a key block that is no key and a
    certificate block that is no certificate are ConfigErrors naming the key at fault."""
    _, first, _ = client_pairs
    cases = [
        (encrypt_key(first.private_key, b"pass"), first.certificate, "private_key", "encrypted"),
        (
            b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
            first.certificate,
            "private_key",
            "private key",
        ),
        (
            first.private_key,
            b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
            "certificate_chain",
            "certificate",
        ),
    ]
    for key, chain, field, fragment in cases:
        with pytest.raises(ConfigError) as info:
            TLSOptions(private_key=key, certificate_chain=chain)
        assert info.value.key == f"endpoint.ssl.{field}"
        assert fragment in str(info.value)
        _shows_no_pem(info.value, key, chain)
