"""grpcpool.aio over several backends: spread, following the resolver, refresh by age.

The asyncio pool plans with the sync pool's planner; these tests run it
against grpc.aio servers on 127.0.0.1, .2, .3 and .4 (all loopback on Linux),
sharing one port, with a resolver whose answer the test changes.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from grpcpool import Config
from grpcpool.aio import Pool
from tests.aio_servers import AioEchoServer
from tests.events import EventLog
from tests.pools import free_port

ECHO = "/test.Echo/Unary"


@pytest_asyncio.fixture
async def backends() -> AsyncIterator[list[AioEchoServer]]:
    """Four echo servers on 127.0.0.1 to .4, one port."""
    port = free_port()
    servers = [AioEchoServer(port, host=f"127.0.0.{i}") for i in range(1, 5)]
    for server in servers:
        await server.start()
    try:
        yield servers
    finally:
        for server in servers:
            await server.stop()


def config(port: int, size: int, answer: list[str], **connection: Any) -> Config:
    """A pool of ``size`` over the addresses ``answer`` holds when asked."""
    return Config.new(
        endpoint={
            "type": "local",
            "host": "kv.test",
            "port": port,
            "resolver": lambda host, p: list(answer),
            "resolve_interval": 0.2,
        },
        pool={"size": size},
        connection={"backoff_min": 0.05, "backoff_max": 0.5, "connect_timeout": 2, **connection},
    )


def spread(pool: Pool) -> Counter[str | None]:
    """Ready workers per address."""
    return Counter(w.address for w in pool.status().workers if w.state == "ready")


async def settle(pool: Pool, check: Any, timeout: float = 10.0) -> None:
    """Waits (on the pool's changes) until ``check()`` holds."""
    deadline = time.monotonic() + timeout
    while not check():
        left = deadline - time.monotonic()
        assert left > 0, f"not settled: {pool.status().workers}"
        await pool.wait_changed(min(left, 0.1))


@pytest.mark.asyncio
async def test_an_aio_pool_spreads_over_every_address_and_its_calls_follow(
    backends: list[AioEchoServer],
) -> None:
    """A pool of 9 over 3 addresses: 3 connections each, and 90 calls through the pool
    channel reach each backend 30 times."""
    port = backends[0].port
    answer = [f"127.0.0.{i}:{port}" for i in (1, 2, 3)]
    async with Pool(config(port, 9, answer), name="aio-spread") as pool:
        await pool.await_ready(timeout=10, min_ready=9)
        assert spread(pool) == Counter({address: 3 for address in answer})
        unary = pool.channel().unary_unary(ECHO)
        for _ in range(90):
            await unary(b"x", timeout=5)
    assert [server.calls for server in backends[:3]] == [30, 30, 30]


@pytest.mark.asyncio
async def test_an_aio_pool_follows_a_new_and_a_vanished_address_without_failed_calls(
    backends: list[AioEchoServer], events: EventLog
) -> None:
    """A 4th address gets connections, a vanished one loses them; each move is a
    channel.refreshed "rebalance"; callers meanwhile see no failure and the ready count
    never drops below the pool's size."""
    port = backends[0].port
    answer = [f"127.0.0.{i}:{port}" for i in (1, 2, 3)]
    async with Pool(config(port, 6, answer), name="aio-follow") as pool:
        await pool.await_ready(timeout=10, min_ready=6)
        unary = pool.channel().unary_unary(ECHO)
        failures: list[BaseException] = []
        lowest = [6]
        done = asyncio.Event()

        async def call_until_done() -> None:
            while not done.is_set():
                try:
                    await unary(b"x", timeout=5)
                except Exception as error:
                    failures.append(error)
                lowest[0] = min(lowest[0], pool.status().current_size)

        callers = [asyncio.create_task(call_until_done()) for _ in range(4)]
        try:
            fourth = f"127.0.0.4:{port}"
            answer.append(fourth)
            await settle(
                pool, lambda: spread(pool)[fourth] >= 1 and len(pool.status().workers) == 6
            )
            answer.remove(f"127.0.0.2:{port}")
            await settle(
                pool,
                lambda: (
                    f"127.0.0.2:{port}" not in spread(pool)
                    and len(pool.status().workers) == 6
                    and sum(spread(pool).values()) == 6
                ),
            )
        finally:
            done.set()
            await asyncio.gather(*callers)
    assert failures == []
    assert lowest[0] >= 6
    reasons = {metadata["reason"] for _, _, metadata in events.of("channel.refreshed")}
    assert reasons == {"rebalance"}
    added = [m["added"] for _, _, m in events.of("pool.resolved") if m["pool_name"] == "aio-follow"]
    assert [fourth] in added


@pytest.mark.asyncio
async def test_an_aio_pool_refreshes_connections_by_age_without_failed_calls(
    backends: list[AioEchoServer], events: EventLog
) -> None:
    """max_age 0.5 s: connections are replaced (reason "max_age", age at least 0.45 s) while
    calls run, none fails, and the pool never has fewer than its size ready."""
    port = backends[0].port
    answer = [f"127.0.0.1:{port}"]
    pool_config = config(port, 2, answer, max_age=0.5, drain_timeout=0.2)
    async with Pool(pool_config, name="aio-age") as pool:
        await pool.await_ready(timeout=10, min_ready=2)
        unary = pool.channel().unary_unary(ECHO)
        lowest = 2
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline:
            assert await unary(b"x", timeout=5) == b"x"
            lowest = min(lowest, pool.status().current_size)
    refreshed = [(m, md) for _, m, md in events.of("channel.refreshed")]
    assert len(refreshed) >= 2
    assert all(md["reason"] == "max_age" and m["age"] >= 0.45 for m, md in refreshed)
    assert lowest >= 2
