"""``endpoint.ssl.server_hostname`` against real TLS servers, sync and asyncio pools.

Every server here presents a certificate that names only ``svc.example.test``
(no IP address), and the pool reaches it by IP: ``host="127.0.0.1"``, or a
static resolver over 127.0.0.2 and 127.0.0.3. So the name TLS checks comes from
``server_hostname`` alone, and the pool's calls must carry it as their
``:authority`` too, as a grpcio channel with ``grpc.ssl_target_name_override``
does: grpcio refuses a call whose authority the certificate does not name
("call host does not match SSL server name"). Plain TLS and mutual TLS (the
server requires a client certificate signed by the test CA).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import grpc
import pykka
import pytest

import grpcpool
from grpcpool import Config, ConfigError, PoolTimeoutError, TLSOptions
from grpcpool.aio import Pool
from tests.aio_servers import ECHO_METHOD, AioEchoServer
from tests.certs import Pem, make_ca, make_client_cert, make_server_cert
from tests.pools import free_port, start_pool
from tests.servers import EchoServer, EchoStub

NAME = "svc.example.test"
MODES = ["tls", "mtls"]
SECRET = "s3cr3t-do-not-echo"
# An authority the server's certificate does not name.
OTHER_AUTHORITY = "other.example.test:8443"


@dataclass(frozen=True)
class Certs:
    """A test CA, a server certificate for NAME only and a client certificate."""

    ca: Pem
    server: Pem
    client: Pem


@pytest.fixture(scope="module")
def certs() -> Certs:
    ca, ca_key = make_ca()
    return Certs(ca, make_server_cert(ca, ca_key, (NAME,)), make_client_cert(ca, ca_key))


def server_credentials(certs: Certs, mode: str) -> grpc.ServerCredentials:
    """TLS with the NAME certificate; with ``mode="mtls"`` a client certificate is required."""
    pair = [(certs.server.private_key, certs.server.certificate)]
    if mode == "mtls":
        return grpc.ssl_server_credentials(
            pair, root_certificates=certs.ca.certificate, require_client_auth=True
        )
    return grpc.ssl_server_credentials(pair)


def client_ssl(certs: Certs, mode: str, **extra: Any) -> dict[str, Any]:
    """The pool's ``endpoint.ssl``: the test CA, ``server_hostname``, the client pair for mTLS."""
    ssl: dict[str, Any] = {"root_certificates": certs.ca.certificate, "server_hostname": NAME}
    if mode == "mtls":
        ssl["private_key"] = certs.client.private_key
        ssl["certificate_chain"] = certs.client.certificate
    ssl.update(extra)
    return ssl


def tls_config(port: int, ssl: dict[str, Any], **endpoint: Any) -> Config:
    """A pool of 2 to 127.0.0.1 (unless ``endpoint`` says otherwise), quick reconnects."""
    return Config.new(
        endpoint={"type": "production", "host": "127.0.0.1", "port": port, "ssl": ssl, **endpoint},
        pool={"size": 2},
        connection={"backoff_min": 0.2, "backoff_max": 0.5, "connect_timeout": 2.0},
    )


def resolved_config(port: int, ssl: dict[str, Any]) -> Config:
    """A pool of 2 over 127.0.0.2 and 127.0.0.3, for a host the certificate does not name."""
    resolver = grpcpool.static_resolver([f"127.0.0.2:{port}", f"127.0.0.3:{port}"])
    return tls_config(port, ssl, host="kv.internal", resolver=resolver)


def addresses(status: grpcpool.PoolStatus) -> set[str | None]:
    return {worker.address for worker in status.workers}


@pytest.fixture(params=MODES)
def mode(request: pytest.FixtureRequest) -> str:
    mode: str = request.param
    return mode


@pytest.fixture
def ip_server(certs: Certs, mode: str) -> Iterator[EchoServer]:
    with EchoServer(credentials=server_credentials(certs, mode)) as server:
        yield server


@pytest.fixture
def replicas(certs: Certs, mode: str) -> Iterator[list[EchoServer]]:
    """Two TLS echo servers on 127.0.0.2 and 127.0.0.3, one port."""
    port = free_port()
    first = EchoServer(port, host="127.0.0.2", credentials=server_credentials(certs, mode))
    try:
        second = EchoServer(port, host="127.0.0.3", credentials=server_credentials(certs, mode))
    except BaseException:
        first.stop()
        raise
    try:
        yield [first, second]
    finally:
        first.stop()
        second.stop()


# --- sync pools --------------------------------------------------------------------------


def test_by_ip_with_server_hostname_connects_and_calls_work(
    ip_server: EchoServer, certs: Certs, mode: str, supervisors: list[pykka.ActorRef[Any]]
) -> None:
    """host="127.0.0.1" and server_hostname=NAME: both connections get ready, calls work."""
    start_pool(supervisors, tls_config(ip_server.port, client_ssl(certs, mode)), "by-ip")
    grpcpool.await_ready("by-ip", timeout=10, min_ready=2)
    assert addresses(grpcpool.status("by-ip")) == {f"127.0.0.1:{ip_server.port}"}
    for _ in range(4):
        assert EchoStub(grpcpool.get_channel("by-ip")).Unary(b"named", timeout=5) == b"named"
    assert ip_server.calls == 4


def test_through_a_resolver_with_server_hostname_reaches_every_replica(
    replicas: list[EchoServer], certs: Certs, mode: str, supervisors: list[pykka.ActorRef[Any]]
) -> None:
    """Host "kv.internal" resolved to 127.0.0.2 and .3: one connection to each, calls reach both."""
    port = replicas[0].port
    start_pool(supervisors, resolved_config(port, client_ssl(certs, mode)), "by-resolver")
    grpcpool.await_ready("by-resolver", timeout=10, min_ready=2)
    assert addresses(grpcpool.status("by-resolver")) == {
        f"127.0.0.2:{port}",
        f"127.0.0.3:{port}",
    }
    for _ in range(4):
        channel = grpcpool.get_channel("by-resolver")
        assert EchoStub(channel).Unary(b"named", timeout=5) == b"named"
    assert [server.calls for server in replicas] == [2, 2]


def test_without_server_hostname_the_certificate_does_not_match_the_ip(
    certs: Certs, supervisors: list[pykka.ActorRef[Any]]
) -> None:
    """The control: the same server by IP without server_hostname never gets ready."""
    with EchoServer(credentials=server_credentials(certs, "tls")) as server:
        ssl = {"root_certificates": certs.ca.certificate}
        start_pool(supervisors, tls_config(server.port, ssl), "unnamed")
        with pytest.raises(PoolTimeoutError):
            grpcpool.await_ready("unnamed", timeout=3, min_ready=1)
        errors = [worker.last_error or "" for worker in grpcpool.status("unnamed").workers]
        assert any("Hostname Verification" in error for error in errors), errors
        assert server.calls == 0


def test_default_authority_in_endpoint_options_wins(
    ip_server: EchoServer, certs: Certs, mode: str, supervisors: list[pykka.ActorRef[Any]]
) -> None:
    """endpoint.options' grpc.default_authority is what calls carry, not server_hostname:
    one the certificate names works, one it does not is refused by grpcio's call host check.

    (That check also lets through an authority equal to the channel's own
    authority without its port, so the refused one has a port.)"""
    port = ip_server.port
    named = tls_config(
        port, client_ssl(certs, mode), options={"grpc.default_authority": f"{NAME}:8443"}
    )
    start_pool(supervisors, named, "named-authority")
    grpcpool.await_ready("named-authority", timeout=10, min_ready=2)
    assert EchoStub(grpcpool.get_channel("named-authority")).Unary(b"a", timeout=5) == b"a"
    assert ip_server.calls == 1

    other = tls_config(
        port, client_ssl(certs, mode), options={"grpc.default_authority": OTHER_AUTHORITY}
    )
    start_pool(supervisors, other, "other-authority")
    with pytest.raises(PoolTimeoutError):
        grpcpool.await_ready("other-authority", timeout=3, min_ready=1)
    errors = [worker.last_error or "" for worker in grpcpool.status("other-authority").workers]
    assert any("call host does not match SSL server name" in error for error in errors), errors
    assert ip_server.calls == 1


# --- asyncio pools -----------------------------------------------------------------------


def aio_server(certs: Certs, mode: str, port: int = 0, host: str = "127.0.0.1") -> AioEchoServer:
    return AioEchoServer(port, host=host, credentials=server_credentials(certs, mode))


@pytest.mark.asyncio
async def test_aio_by_ip_with_server_hostname_connects_and_calls_work(
    certs: Certs, mode: str
) -> None:
    """The asyncio pool, host="127.0.0.1" and server_hostname=NAME: ready, calls work."""
    async with aio_server(certs, mode) as server:
        config = tls_config(server.port, client_ssl(certs, mode))
        async with Pool(config, name="aio-by-ip") as pool:
            await pool.await_ready(timeout=10, min_ready=2)
            assert addresses(pool.status()) == {f"127.0.0.1:{server.port}"}
            for _ in range(4):
                call = pool.get_channel().unary_unary(ECHO_METHOD)
                assert await call(b"named", timeout=5) == b"named"
        assert server.calls == 4


@pytest.mark.asyncio
async def test_aio_through_a_resolver_with_server_hostname_reaches_every_replica(
    certs: Certs, mode: str
) -> None:
    """The asyncio pool over 127.0.0.2 and .3 for host "kv.internal": calls reach both."""
    port = free_port()
    async with (
        aio_server(certs, mode, port, "127.0.0.2") as first,
        aio_server(certs, mode, port, "127.0.0.3") as second,
    ):
        config = resolved_config(port, client_ssl(certs, mode))
        async with Pool(config, name="aio-by-resolver") as pool:
            await pool.await_ready(timeout=10, min_ready=2)
            assert addresses(pool.status()) == {f"127.0.0.2:{port}", f"127.0.0.3:{port}"}
            for _ in range(4):
                call = pool.get_channel().unary_unary(ECHO_METHOD)
                assert await call(b"named", timeout=5) == b"named"
        assert [first.calls, second.calls] == [2, 2]


@pytest.mark.asyncio
async def test_aio_default_authority_in_endpoint_options_wins(certs: Certs) -> None:
    """The asyncio pool calls with endpoint.options' grpc.default_authority too."""
    async with aio_server(certs, "tls") as server:
        options = {"grpc.default_authority": OTHER_AUTHORITY}
        config = tls_config(server.port, client_ssl(certs, "tls"), options=options)
        async with Pool(config, name="aio-other-authority") as pool:
            with pytest.raises(PoolTimeoutError):
                await pool.await_ready(timeout=3, min_ready=1)
            errors = [worker.last_error or "" for worker in pool.status().workers]
        assert any("call host does not match SSL server name" in error for error in errors)
        assert server.calls == 0


# --- validation --------------------------------------------------------------------------

# Each refused, naming endpoint.ssl.server_hostname and never quoting the value.
BAD_NAMES = [
    f"user:{SECRET}@{NAME}",
    f"{SECRET}@{NAME}",
    f"https://{SECRET}.example.test",
    f"{NAME}:{SECRET}",
    f"{NAME}:443",
    f"[{SECRET}]:443",
    f"{NAME}/{SECRET}",
    f"{SECRET} {NAME}",
    f"[{SECRET}",
    f"{SECRET}]",
    "",
    "   ",
]


@pytest.mark.parametrize("name", BAD_NAMES)
def test_server_hostname_is_checked_like_host_and_never_echoed(name: str) -> None:
    """The mapping, TLSOptions and the environment all refuse it, by key, without the value."""
    attempts = [
        lambda: Config.production("127.0.0.1", ssl={"server_hostname": name}),
        lambda: TLSOptions(server_hostname=name),
        lambda: Config.from_env(
            environ={
                "GRPCPOOL_HOST": "127.0.0.1",
                "GRPCPOOL_PORT": "443",
                "GRPCPOOL_SERVER_HOSTNAME": name,
            }
        ),
    ]
    for attempt in attempts:
        with pytest.raises(ConfigError) as info:
            attempt()
        assert info.value.key == "endpoint.ssl.server_hostname"
        shown = f"{info.value} {info.value!r} {info.value.args!r}"
        assert SECRET not in shown
        if name.strip():
            assert name not in shown


@pytest.mark.parametrize("name", [NAME, "127.0.0.1", "::1", "[::1]", "Svc.Example.Test"])
def test_server_hostname_names_and_ips_are_accepted(name: str) -> None:
    """Names and IP literals (IPv6 with or without brackets) are kept as given."""
    config = Config.production("127.0.0.1", ssl={"server_hostname": name})
    assert config.endpoint.ssl is not None
    assert config.endpoint.ssl.server_hostname == name


def test_server_hostname_is_not_shown_in_reprs() -> None:
    """Like the key material, the name is left out of TLSOptions' and the config's repr."""
    hidden = f"{SECRET}.example.test"
    config = Config.production("127.0.0.1", ssl={"server_hostname": hidden})
    assert config.endpoint.ssl is not None
    for text in (repr(config), str(config), repr(config.endpoint), repr(config.endpoint.ssl)):
        assert SECRET not in text
    assert (
        repr(config.endpoint.ssl) == "TLSOptions(roots=system, client_cert=no, server_hostname=set)"
    )
