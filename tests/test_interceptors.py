"""Interceptors around the pool channel, against real grpcio servers on 127.0.0.1.

A sync pool channel is a ``grpc.Channel`` and ``grpc.intercept_channel`` wraps
it like any other (grpcio passes the multi-callable factories their
arguments positionally, ``_registered_method`` included). grpc.aio has no
``intercept_channel``: its interceptors are given when a channel is made, so
an asyncio pool takes ``grpc.aio`` interceptors in ``endpoint.interceptors``
and makes every connection with them. Either way all four call kinds go
through the interceptor and reach the server with what it added.
"""

from __future__ import annotations

import collections
from collections.abc import AsyncIterator, Iterator
from typing import Any, NamedTuple

import grpc
import pykka
import pytest

import grpcpool
import grpcpool.aio
from grpcpool import Config, PoolSpec
from grpcpool.errors import ConfigError
from tests.aio_servers import AioEchoServer
from tests.pools import loopback_config, start_pool
from tests.servers import EchoServer, EchoStub

HEADER = ("x-intercepted", "yes")


class _Details(NamedTuple):
    """A ``grpc.ClientCallDetails`` with metadata of the interceptor's own."""

    method: str
    timeout: float | None
    metadata: Any
    credentials: Any
    wait_for_ready: bool | None
    compression: Any


class Tagging(
    grpc.UnaryUnaryClientInterceptor,  # type: ignore[misc]
    grpc.UnaryStreamClientInterceptor,  # type: ignore[misc]
    grpc.StreamUnaryClientInterceptor,  # type: ignore[misc]
    grpc.StreamStreamClientInterceptor,  # type: ignore[misc]
):
    """A sync interceptor of every call kind: counts calls by method and adds a header."""

    def __init__(self) -> None:
        self.seen: collections.Counter[str] = collections.Counter()

    def _tagged(self, details: Any) -> _Details:
        self.seen[details.method] += 1
        metadata = (*(details.metadata or ()), HEADER)
        return _Details(
            details.method,
            details.timeout,
            metadata,
            details.credentials,
            details.wait_for_ready,
            details.compression,
        )

    def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        return continuation(self._tagged(details), request)

    def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        return continuation(self._tagged(details), request)

    def intercept_stream_unary(self, continuation: Any, details: Any, requests: Any) -> Any:
        return continuation(self._tagged(details), requests)

    def intercept_stream_stream(self, continuation: Any, details: Any, requests: Any) -> Any:
        return continuation(self._tagged(details), requests)


class _AioTag:
    """What the grpc.aio interceptors below share: a count of calls by method and a header.

    grpc.aio files each interceptor under the first call kind it is an
    interceptor of, so there is one object per kind.
    """

    def __init__(self, seen: collections.Counter[str]) -> None:
        self.seen = seen

    def _tagged(self, details: Any) -> Any:
        method = details.method
        self.seen[method.decode() if isinstance(method, bytes) else method] += 1
        metadata = grpc.aio.Metadata(*(details.metadata or ()))
        metadata.add(*HEADER)
        return details._replace(metadata=metadata)


class _AioUnaryUnary(_AioTag, grpc.aio.UnaryUnaryClientInterceptor):
    async def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        return await continuation(self._tagged(details), request)


class _AioUnaryStream(_AioTag, grpc.aio.UnaryStreamClientInterceptor):
    async def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        return await continuation(self._tagged(details), request)


class _AioStreamUnary(_AioTag, grpc.aio.StreamUnaryClientInterceptor):
    async def intercept_stream_unary(self, continuation: Any, details: Any, requests: Any) -> Any:
        return await continuation(self._tagged(details), requests)


class _AioStreamStream(_AioTag, grpc.aio.StreamStreamClientInterceptor):
    async def intercept_stream_stream(self, continuation: Any, details: Any, requests: Any) -> Any:
        return await continuation(self._tagged(details), requests)


def aio_tagging(seen: collections.Counter[str]) -> list[Any]:
    """grpc.aio interceptors of all four kinds, counting into ``seen``."""
    kinds = (_AioUnaryUnary, _AioUnaryStream, _AioStreamUnary, _AioStreamStream)
    return [kind(seen) for kind in kinds]


METHODS = {f"/test.Echo/{name}" for name in ("Unary", "Repeat", "Join", "Chat")}


@pytest.fixture
def sync_pool(
    echo_server: EchoServer, supervisors: list[pykka.ActorRef[Any]]
) -> Iterator[grpc.Channel]:
    """The pool channel of a ready pool of 2 on the echo server."""
    start_pool(supervisors, loopback_config(echo_server.port, 2), "icpt")
    grpcpool.await_ready("icpt", timeout=5, min_ready=2)
    yield grpcpool.channel("icpt")


def test_intercept_channel_wraps_the_pool_channel_for_every_call_kind(
    echo_server: EchoServer, sync_pool: grpc.Channel
) -> None:
    """grpc.intercept_channel(grpcpool.channel(name), interceptor) builds stubs whose
    calls of every kind and style go through the interceptor and the pool."""
    interceptor = Tagging()
    stub = EchoStub(grpc.intercept_channel(sync_pool, interceptor))

    assert stub.Unary(b"a", timeout=5) == b"a"
    assert stub.Unary.with_call(b"b", timeout=5)[0] == b"b"
    assert stub.Unary.future(b"c", timeout=5).result(timeout=5) == b"c"
    assert list(stub.Repeat(b"d", timeout=5)) == [b"d"] * 3
    assert stub.Join(iter([b"e", b"f"]), timeout=5) == b"ef"
    assert stub.Join.with_call(iter([b"g"]), timeout=5)[0] == b"g"
    assert stub.Join.future(iter([b"h"]), timeout=5).result(timeout=5) == b"h"
    assert list(stub.Chat(iter([b"i", b"j"]), timeout=5)) == [b"i", b"j"]

    assert interceptor.seen == {
        "/test.Echo/Unary": 3,
        "/test.Echo/Repeat": 1,
        "/test.Echo/Join": 3,
        "/test.Echo/Chat": 1,
    }
    assert echo_server.metadata and all(HEADER in seen for seen in echo_server.metadata)
    assert len(set(echo_server.peers)) == 2  # routed over the pool's connections
    assert grpcpool.status("icpt").in_flight == 0


def test_a_sync_pool_refuses_aio_interceptors_and_a_config_refuses_a_mix() -> None:
    """grpc.aio interceptors cannot wrap a sync channel: a sync pool refuses them with a
    ConfigError naming endpoint.interceptors; one config mixing both kinds is refused."""
    endpoint = {"type": "local", "host": "127.0.0.1", "port": 1}
    config = Config.new(endpoint={**endpoint, "interceptors": aio_tagging(collections.Counter())})
    with pytest.raises(ConfigError, match=r"grpc\.aio interceptors") as refused:
        PoolSpec(config, name="icpt-aio")
    assert refused.value.key == "endpoint.interceptors"
    with pytest.raises(ConfigError, match=r"grpc\.aio interceptors"):
        grpcpool.start(config, name="icpt-aio")

    with pytest.raises(ConfigError, match="mixes") as mixed:
        Config.new(
            endpoint={
                **endpoint,
                "interceptors": [Tagging(), _AioUnaryUnary(collections.Counter())],
            }
        )
    assert mixed.value.key == "endpoint.interceptors"


async def _requests(*items: bytes) -> AsyncIterator[bytes]:
    for item in items:
        yield item


@pytest.mark.asyncio
async def test_aio_interceptors_in_the_config_see_every_call_kind_of_an_aio_pool() -> None:
    """An asyncio pool makes its connections with the grpc.aio interceptors of
    endpoint.interceptors: calls of every kind through pool.channel() go through them
    and reach the server with the header they add; the health checks work through them."""
    seen: collections.Counter[str] = collections.Counter()
    async with AioEchoServer() as server:
        config = Config.new(
            endpoint={
                "type": "local",
                "host": "127.0.0.1",
                "port": server.port,
                "interceptors": aio_tagging(seen),
            },
            pool={"size": 2},
            connection={"backoff_min": 0.05, "backoff_max": 0.5},
        )
        async with grpcpool.aio.Pool(config, name="icpt") as pool:
            await pool.await_ready(timeout=5, min_ready=2)
            stub = EchoStub(pool.channel())
            server_seen = server.calls

            assert await stub.Unary(b"a", timeout=5) == b"a"
            assert [r async for r in stub.Repeat(b"b", timeout=5)] == [b"b"] * 3
            assert await stub.Join(_requests(b"c", b"d"), timeout=5) == b"cd"
            chat = stub.Chat(timeout=5)
            await chat.write(b"e")
            assert await chat.read() == b"e"
            await chat.done_writing()
            assert await chat.read() is grpc.aio.EOF

            assert {m: seen[m] for m in METHODS} == dict.fromkeys(METHODS, 1)
            assert seen["/grpc.health.v1.Health/Check"] >= 2  # each connect is checked
            assert server.calls - server_seen == 1 + 3 + 2 + 1  # every message echoed
            assert server.metadata and all(HEADER in seen for seen in server.metadata)
            assert pool.status().in_flight == 0
