"""An asyncio pool with the async-iterator form of a push resolver (``watch(host, port)``).

The resolver is an async generator the test feeds through a queue; backends
are grpc.aio servers on 127.0.0.2 and .3. Also: a push resolver is accepted
by the config check, and a resolver with neither call nor watch is refused.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest

from grpcpool import Config, ConfigError
from grpcpool.aio import Pool
from tests.aio_servers import AioEchoServer
from tests.pools import free_port
from tests.test_aio_backends import ECHO, settle


class Feed:
    """An AsyncPushResolver: each watch yields what the test puts, or raises it."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[Sequence[str] | Exception] = asyncio.Queue()
        self.opened = 0
        self.closed = 0

    async def watch(self, host: str, port: int) -> AsyncIterator[Sequence[str]]:
        self.opened += 1
        try:
            while True:
                item = await self.queue.get()
                if isinstance(item, Exception):
                    raise item
                yield item
        finally:
            self.closed += 1


def config(port: int, size: int, resolver: Any) -> Config:
    return Config.new(
        endpoint={"type": "local", "host": "feed.test", "port": port, "resolver": resolver},
        pool={"size": size},
        connection={"backoff_min": 0.05, "backoff_max": 0.5, "connect_timeout": 2},
    )


@pytest.mark.asyncio
async def test_an_async_iterator_resolver_is_followed_restarted_and_closed() -> None:
    """Sets the iterator yields are followed; when it raises the pool keeps its addresses,
    says why, and reads a new watch after a backoff; stopping the pool closes it."""
    port = free_port()
    servers = [AioEchoServer(port, host=f"127.0.0.{i}") for i in (2, 3)]
    for server in servers:
        await server.start()
    feed = Feed()
    first, second = (f"127.0.0.{i}:{port}" for i in (2, 3))
    try:
        async with Pool(config(port, 2, feed), name="aio-feed") as pool:
            await feed.queue.put([first])
            await pool.await_ready(timeout=10, min_ready=2)
            unary = pool.channel().unary_unary(ECHO)
            await feed.queue.put(ConnectionError("feed lost"))
            await settle(pool, lambda: pool.status().resolver_error is not None)
            assert pool.status().resolver_state == "reconnecting"
            assert await unary(b"x", timeout=5) == b"x"
            await feed.queue.put([second])  # read by the next watch
            await settle(
                pool,
                lambda: {w.address for w in pool.status().workers if w.state == "ready"}
                == {second},
            )
            assert pool.status().resolver_error is None and feed.opened == 2
        assert feed.closed == 2
    finally:
        for server in servers:
            await server.stop()


def test_a_push_resolver_passes_the_config_check_and_a_bad_one_is_refused() -> None:
    """An object with watch() is a resolver; one with neither __call__ nor watch is
    refused, naming endpoint.resolver and the forms it takes."""
    Config.new(endpoint={"type": "local", "host": "x", "port": 1, "resolver": Feed()})
    with pytest.raises(ConfigError, match=r"endpoint\.resolver.*watch"):
        Config.new(endpoint={"type": "local", "host": "x", "port": 1, "resolver": object()})


def test_a_sync_pool_given_the_async_form_is_told_why_it_cannot_follow_it() -> None:
    """The sync driver's watch refuses an async-iterator resolver with a reason naming
    the form a sync pool takes (shown as the pool's resolver_error)."""
    from grpcpool._resolving import watch

    failures: list[str] = []
    handle = watch(config(1, 1, Feed()), lambda pushed: None, failures.append)
    assert handle is None
    assert len(failures) == 1 and "watch(host, port, on_change)" in failures[0]
