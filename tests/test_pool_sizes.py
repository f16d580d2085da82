"""Counts and sizes a pool cannot take: one error, PoolSizeError, sync and asyncio alike.

Scaling below one worker, resizing to 0, a count below 1, a size over
``pool.max_size``, and ``await_ready(min_ready=N)`` with N over the pool's
size raise :class:`grpcpool.PoolSizeError`: a ``GrpcPoolError`` (one clause
catches everything grpcpool raises) and a ``ValueError``, naming the pool
and the numbers, with nothing changed. The waits fail at once instead of
running out their timeout. Pools run against a real echo server on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pykka
import pytest

import grpcpool
import grpcpool.aio
from grpcpool import Config, GrpcPoolError, PoolSizeError
from grpcpool.aio import Pool
from tests.pools import loopback_config, start_pool
from tests.servers import EchoServer

NAME = "sizes"
# A wait that must fail at once gets this long a timeout, and must end well within it.
LONG_WAIT = 30.0
AT_ONCE = 5.0


def sized_config(server: EchoServer) -> Config:
    """A pool of 2 that may grow to 5."""
    config = loopback_config(server.port, size=2)
    return dataclasses.replace(config, pool=dataclasses.replace(config.pool, max_size=5))


def check_refusal(error: BaseException, *numbers: str) -> None:
    assert isinstance(error, PoolSizeError)
    assert isinstance(error, ValueError) and isinstance(error, GrpcPoolError)
    assert error.pool_name == NAME
    message = str(error)
    assert message.startswith(f"pool {NAME!r}: "), message
    for number in numbers:
        assert number in message, message


# What each bad call is, and the numbers its message must name.
SCALING: list[tuple[str, int, tuple[str, ...]]] = [
    ("scale_down", 2, ("scaling 2 down by 2", "no worker", "at least 1")),
    ("scale_down", 5, ("scaling 2 down by 5",)),
    ("scale_down", 0, ("count must be >= 1, got 0",)),
    ("scale_up", 0, ("count must be >= 1, got 0",)),
    ("scale_up", -1, ("count must be >= 1, got -1",)),
    ("scale_up", 4, ("scaling 2 up by 4", "pool.max_size (5)")),
    ("resize", 0, ("target must be >= 1, got 0",)),
    ("resize", -3, ("target must be >= 1, got -3",)),
    ("resize", 6, ("resizing to 6", "pool.max_size (5)")),
]


@pytest.mark.parametrize(("method", "count", "numbers"), SCALING)
def test_sync_scaling_out_of_range_is_a_pool_size_error(
    echo_server: EchoServer,
    supervisors: list[pykka.ActorRef[Any]],
    method: str,
    count: int,
    numbers: tuple[str, ...],
) -> None:
    """Module function and proxy alike raise PoolSizeError naming the pool and the
    numbers; the pool keeps its size and workers."""
    proxy = start_pool(supervisors, sized_config(echo_server), NAME)
    grpcpool.await_ready(NAME, timeout=5, min_ready=2)
    calls: list[Callable[[], Any]] = [
        lambda: getattr(grpcpool, method)(NAME, count),
        lambda: getattr(proxy, method)(count).get(timeout=10),
    ]
    for call in calls:
        with pytest.raises(PoolSizeError) as caught:
            call()
        check_refusal(caught.value, *numbers)
    status = grpcpool.status(NAME)
    assert (status.expected_size, len(status.workers)) == (2, 2)


@pytest.mark.asyncio
@pytest.mark.parametrize(("method", "count", "numbers"), SCALING)
async def test_asyncio_scaling_out_of_range_is_a_pool_size_error(
    echo_server: EchoServer, method: str, count: int, numbers: tuple[str, ...]
) -> None:
    """Pool method and module function alike raise the sync pool's PoolSizeError; the
    pool keeps its size and workers."""
    async with Pool(sized_config(echo_server), name=NAME) as pool:
        await pool.await_ready(timeout=5, min_ready=2)
        calls: list[Callable[[], Awaitable[int]]] = [
            lambda: getattr(pool, method)(count),
            lambda: getattr(grpcpool.aio, method)(NAME, count),
        ]
        for call in calls:
            with pytest.raises(PoolSizeError) as caught:
                await call()
            check_refusal(caught.value, *numbers)
        status = pool.status()
        assert (status.expected_size, len(status.workers)) == (2, 2)


# --- await_ready(min_ready=N) over the pool's size ---------------------------------------


def test_sync_await_ready_for_more_than_the_pool_has_fails_at_once(
    echo_server: EchoServer, supervisors: list[pykka.ActorRef[Any]]
) -> None:
    """min_ready=3 on a pool of 2 raises PoolSizeError naming both numbers at once, from
    the module function and from the proxy's future; min_ready=0 is one too, and a wait
    for the pool's whole size still works."""
    proxy = start_pool(supervisors, sized_config(echo_server), NAME)
    waits: list[Callable[[], Any]] = [
        lambda: grpcpool.await_ready(NAME, timeout=LONG_WAIT, min_ready=3),
        lambda: proxy.await_ready(LONG_WAIT, 3).get(timeout=LONG_WAIT),
        lambda: proxy.await_ready(None, 3).get(),
    ]
    for wait in waits:
        started = time.monotonic()
        with pytest.raises(PoolSizeError) as caught:
            wait()
        assert time.monotonic() - started < AT_ONCE
        check_refusal(caught.value, "min_ready=3", "2 workers")
    for wait in (
        lambda: grpcpool.await_ready(NAME, timeout=1, min_ready=0),
        lambda: proxy.await_ready(1, 0).get(timeout=5),
    ):
        with pytest.raises(PoolSizeError) as caught:
            wait()
        check_refusal(caught.value, "min_ready must be >= 1, got 0")
    grpcpool.await_ready(NAME, timeout=5, min_ready=2)
    assert grpcpool.scale_up(NAME, 1) == 3
    grpcpool.await_ready(NAME, timeout=5, min_ready=3)  # the new size counts


@pytest.mark.asyncio
async def test_asyncio_await_ready_for_more_than_the_pool_has_fails_at_once(
    echo_server: EchoServer,
) -> None:
    """The same on an asyncio pool: Pool.await_ready and grpcpool.aio.await_ready."""
    async with Pool(sized_config(echo_server), name=NAME) as pool:
        waits: list[Callable[[], Awaitable[None]]] = [
            lambda: pool.await_ready(timeout=LONG_WAIT, min_ready=3),
            lambda: grpcpool.aio.await_ready(NAME, timeout=None, min_ready=3),
        ]
        for wait in waits:
            started = time.monotonic()
            with pytest.raises(PoolSizeError) as caught:
                await asyncio.wait_for(wait(), AT_ONCE)
            assert time.monotonic() - started < AT_ONCE
            check_refusal(caught.value, "min_ready=3", "2 workers")
        with pytest.raises(PoolSizeError) as caught:
            await pool.await_ready(timeout=1, min_ready=0)
        check_refusal(caught.value, "min_ready must be >= 1, got 0")
        await pool.await_ready(timeout=5, min_ready=2)
        assert await pool.scale_up(1) == 3
        await pool.await_ready(timeout=5, min_ready=3)
