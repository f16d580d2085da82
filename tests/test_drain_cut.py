"""Calls still running when a retired connection's drain ends, against real servers.

A connection that leaves the pool (a scale down, a ``max_age`` refresh, a
reconnect) drains for ``connection.drain_timeout`` and is then closed; the
calls still running on it are cut. They end as grpc calls do, with
``CANCELLED``: a ``grpc.RpcError`` in the sync pool channel and a
``grpc.aio.AioRpcError`` in the asyncio one (never a bare
``asyncio.CancelledError``, which ``except grpc.RpcError`` misses and which
makes the awaiting task look cancelled). A call its caller cancels, or whose
task is cancelled, stays a ``CancelledError`` as in grpc.aio.

The servers hold each call (``b"hold"``) until the test ends.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import grpc
import pykka
import pytest

import grpcpool
from grpcpool.aio import Pool
from tests.aio_servers import HOLD, AioEchoServer
from tests.pools import loopback_config, start_pool
from tests.servers import EchoServer, EchoStub

DRAIN = 0.2
# The shortest max_age: a pool of 1 retires the connection its calls run on
# within about half a second.
REFRESH = {"max_age": 0.5, "drain_timeout": DRAIN}
CUT = 10.0  # generous bound on refresh + drain


async def _requests(*items: bytes) -> AsyncIterator[bytes]:
    for item in items:
        yield item


async def _chat(stub: EchoStub) -> Any:
    call = stub.Chat(timeout=30)
    await call.write(HOLD)
    return await call.read()


def _aio_calls(stub: EchoStub) -> dict[str, Callable[[], Any]]:
    """One held call of each kind, as coroutine functions."""

    async def unary_unary() -> Any:
        return await stub.Unary(HOLD, timeout=30)

    async def unary_stream() -> Any:
        return [response async for response in stub.Repeat(HOLD, timeout=30)]

    async def stream_unary() -> Any:
        return await stub.Join(_requests(HOLD), timeout=30)

    async def stream_stream() -> Any:
        return await _chat(stub)

    return {
        "unary_unary": unary_unary,
        "unary_stream": unary_stream,
        "stream_unary": stream_unary,
        "stream_stream": stream_stream,
    }


def _is_drain_cut(outcome: object) -> bool:
    return (
        isinstance(outcome, grpc.aio.AioRpcError)
        and outcome.code() is grpc.StatusCode.CANCELLED
        and "drain ended" in (outcome.details() or "")
    )


@pytest.mark.asyncio
async def test_aio_calls_cut_by_a_refresh_end_cancelled_as_grpc_errors() -> None:
    """Calls of all four kinds held on a connection that a max_age refresh retires end,
    drain_timeout later, with AioRpcError CANCELLED saying the drain ended: caught by
    `except grpc.RpcError`, and the tasks that awaited them were not cancelled."""
    async with AioEchoServer() as server:
        config = loopback_config(server.port, 1, **REFRESH)
        async with Pool(config, name="cut") as pool:
            await pool.await_ready(timeout=5)
            stub = EchoStub(pool.channel())
            calls = _aio_calls(stub)
            tasks = {kind: asyncio.create_task(call()) for kind, call in calls.items()}
            await server.wait_for_calls(len(tasks))

            _, pending = await asyncio.wait(tasks.values(), timeout=CUT)
            assert not pending, "calls not cut within the bound"
            assert not [kind for kind, task in tasks.items() if task.cancelled()]
            outcomes = {kind: task.exception() for kind, task in tasks.items()}
            assert {kind: _is_drain_cut(e) for kind, e in outcomes.items()} == dict.fromkeys(
                calls, True
            ), outcomes
            assert pool.status().in_flight == 0


@pytest.mark.asyncio
async def test_an_aio_call_cut_by_a_scale_down_is_caught_as_a_grpc_error() -> None:
    """Of two held calls, one on each connection, the one on the connection scaled away
    is cut drain_timeout later and caught by `except grpc.RpcError` as CANCELLED; the
    other answers once released."""
    async with AioEchoServer() as server:
        config = loopback_config(server.port, 2, drain_timeout=DRAIN)
        async with Pool(config, name="cut-down") as pool:
            await pool.await_ready(timeout=5, min_ready=2)
            unary = EchoStub(pool.channel()).Unary

            async def caught() -> Any:
                try:
                    return await unary(HOLD, timeout=30)
                except grpc.RpcError as error:
                    return error

            tasks = [asyncio.create_task(caught()) for _ in range(2)]  # round robin: one each
            await server.wait_for_calls(2)
            await pool.scale_down(1)

            done, pending = await asyncio.wait(
                tasks, timeout=CUT, return_when=asyncio.FIRST_COMPLETED
            )
            assert len(done) == 1 and _is_drain_cut(done.pop().result())
            server.release_held()
            assert [await task for task in pending] == [HOLD]


@pytest.mark.asyncio
async def test_a_call_its_caller_or_its_task_cancels_stays_a_cancelled_error() -> None:
    """cancel() on the call, cancelling the awaiting task, and asyncio.timeout end the
    call as grpc.aio does (CancelledError, TimeoutError): nothing is dressed as CANCELLED."""
    async with AioEchoServer() as server, Pool(loopback_config(server.port, 1), name="own") as pool:
        await pool.await_ready(timeout=5)
        unary = EchoStub(pool.channel()).Unary

        call = unary(HOLD, timeout=30)
        await server.wait_for_calls(1)
        assert call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
        assert call.cancelled()

        async def held() -> Any:
            return await unary(HOLD, timeout=30)

        task = asyncio.create_task(held())
        await server.wait_for_calls(2)
        task.cancel()
        await asyncio.wait({task}, timeout=CUT)
        assert task.cancelled()

        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.2):
                await unary(HOLD, timeout=30)
        assert pool.status().in_flight == 0


# --- the sync pool channel, alike -------------------------------------------------------


@pytest.fixture
def held_server() -> Iterator[EchoServer]:
    with EchoServer() as server:
        yield server


def test_sync_calls_cut_by_a_refresh_end_cancelled_as_grpc_errors(
    held_server: EchoServer, supervisors: list[pykka.ActorRef[Any]]
) -> None:
    """The sync pool channel alike: calls of all four kinds held on a connection a
    max_age refresh retires end with a grpc.RpcError CANCELLED once the drain ends."""
    start_pool(supervisors, loopback_config(held_server.port, 1, **REFRESH), "cut-sync")
    grpcpool.await_ready("cut-sync", timeout=5)
    stub = EchoStub(grpcpool.channel("cut-sync"))
    calls = {
        "unary_unary": stub.Unary.future(HOLD, timeout=30),
        "unary_stream": stub.Repeat(HOLD, timeout=30),
        "stream_unary": stub.Join.future(iter([HOLD]), timeout=30),
        "stream_stream": stub.Chat(iter([HOLD]), timeout=30),
    }
    codes = {kind: call.exception(timeout=CUT) for kind, call in calls.items()}
    assert {kind: getattr(e, "code", lambda: None)() for kind, e in codes.items()} == (
        dict.fromkeys(calls, grpc.StatusCode.CANCELLED)
    ), codes
