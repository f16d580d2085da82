"""Hedged calls through what only one kind of pool channel has.

The sync pool channel's ``with_call`` and ``future()`` (a hedged call is a
``grpc.Future`` and ``grpc.Call``), and the cancellation of a hedged call:
``future().cancel()`` on a sync pool, the awaiting task's cancellation and
``call.cancel()`` on an asyncio one. What both kinds share is in
tests/behaviour/test_hedging.py.
"""

from __future__ import annotations

import asyncio
import gc
import threading
from collections import Counter
from collections.abc import Iterator
from typing import Any

import grpc
import pykka
import pytest

import grpcpool
from grpcpool import Config
from grpcpool.aio import Pool
from tests.behaviour.backends import Answer, Backend, Backends, settled, spread
from tests.servers import ECHO_METHOD, EchoStub
from tests.waiting import wait_until

HEDGING = {"methods": [ECHO_METHOD], "delay": 0.05, "budget": 1.0, "max_attempts": 2}


@pytest.fixture
def backends() -> Iterator[Backends]:
    """Two echo servers on 127.0.0.2 and .3."""
    started = Backends()
    started.start(2)
    try:
        yield started
    finally:
        started.stop()


def config(backends: Backends) -> Config:
    """A pool with one connection to each backend, hedging the echo method."""
    answer = Answer([backend.address for backend in backends.started])
    return backends.config(2, resolver=answer, pool={"hedging": HEDGING})


def both_ready(status: grpcpool.PoolStatus, backends: Backends) -> bool:
    wanted = Counter({backend.address: 1 for backend in backends.started})
    return settled(status, 2) and spread(status) == wanted


def slow_down(backends: Backends, seconds: float) -> list[Backend]:
    for backend in backends.started:
        backend.server.delay = seconds  # type: ignore[union-attr]
    return backends.started


# --- sync: with_call and future() -----------------------------------------------------------


def sync_pool(supervisors: list[pykka.ActorRef[Any]], backends: Backends, name: str) -> Any:
    spec = grpcpool.PoolSpec(config(backends), name=name)
    supervisors.append(grpcpool.Supervisor.start(children=[spec]))
    assert wait_until(lambda: both_ready(grpcpool.status(name), backends), timeout=10)
    return EchoStub(grpcpool.channel(name)).Unary


def test_with_call_gives_the_winning_answer_and_a_call_with_its_status(
    supervisors: list[pykka.ActorRef[Any]], backends: Backends
) -> None:
    """with_call of a hedged method whose first attempt stalls: the answer and a
    grpc.Call whose code, details and metadata are the winner's."""
    unary = sync_pool(supervisors, backends, "hedged-with-call")
    slow, _ = backends.started
    slow.server.delay = 1.0  # type: ignore[union-attr]
    for index in range(2):  # one of them goes to the slow backend first
        answer, call = unary.with_call(b"w%d" % index, timeout=5)
        assert answer == b"w%d" % index
        assert isinstance(call, grpc.Call) and call.code() is grpc.StatusCode.OK
        assert call.trailing_metadata() is not None and not call.is_active()
    assert slow.calls == 1


def test_future_of_a_hedged_method_settles_and_calls_back(
    supervisors: list[pykka.ActorRef[Any]], backends: Backends
) -> None:
    """future() of a hedged method is a grpc.Future: its result is the winning answer and
    its done callbacks run once it settles, with the future."""
    unary = sync_pool(supervisors, backends, "hedged-future")
    backends.started[0].server.delay = 1.0  # type: ignore[union-attr]
    settled_with: list[Any] = []
    done = threading.Event()
    futures = [unary.future(b"f%d" % index, timeout=5) for index in range(2)]
    futures[0].add_done_callback(lambda f: (settled_with.append(f), done.set()))
    assert [f.result(timeout=5) for f in futures] == [b"f0", b"f1"]
    assert done.wait(5) and settled_with == [futures[0]]
    assert all(f.done() and not f.running() and f.exception() is None for f in futures)


def test_cancelling_a_hedged_future_cancels_every_attempt(
    supervisors: list[pykka.ActorRef[Any]], backends: Backends
) -> None:
    """Both backends stall; once both attempts run, cancel(): the future is cancelled,
    result() raises FutureCancelledError, no call is left in flight and both servers see
    their attempt cancelled."""
    unary = sync_pool(supervisors, backends, "hedged-cancel")
    first, second = slow_down(backends, 1.0)
    future = unary.future(b"c", timeout=5)
    assert wait_until(lambda: first.calls + second.calls == 2, timeout=5)
    assert future.cancel()
    with pytest.raises(grpc.FutureCancelledError):
        future.result(timeout=5)
    assert future.cancelled()
    assert wait_until(lambda: grpcpool.status("hedged-cancel").in_flight == 0, timeout=5)
    assert wait_until(lambda: first.cancelled + second.cancelled == 2, timeout=5)


# --- asyncio: cancellation ------------------------------------------------------------------


@pytest.fixture
def cycles_collected() -> Iterator[None]:
    """Collects closed grpc.aio channels left in reference cycles (as tests/test_aio.py)."""
    yield
    gc.collect()


async def aio_pool(pool: Pool, backends: Backends) -> Any:
    for _ in range(200):
        if both_ready(pool.status(), backends):
            return EchoStub(pool.channel()).Unary  # type: ignore[arg-type]
        await pool.wait_changed(0.05)
    raise AssertionError(f"not ready: {pool.status()}")


async def polled(predicate: Any, timeout: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        assert loop.time() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


@pytest.mark.asyncio
async def test_cancelling_the_awaiting_task_cancels_every_attempt(
    backends: Backends, cycles_collected: None
) -> None:
    """Both backends stall; once both attempts run, the awaiting task is cancelled: it
    ends CancelledError, nothing stays in flight, both servers see their attempt
    cancelled."""
    async with Pool(config(backends), name="aio-hedged-cancel") as pool:
        unary = await aio_pool(pool, backends)
        first, second = slow_down(backends, 1.0)
        task = asyncio.ensure_future(unary(b"c", timeout=5))
        await polled(lambda: first.calls + second.calls == 2)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await polled(lambda: pool.status().in_flight == 0)
        await polled(lambda: first.cancelled + second.cancelled == 2, timeout=5)


@pytest.mark.asyncio
async def test_call_cancel_and_the_call_api_of_a_hedged_call(
    backends: Backends, cycles_collected: None
) -> None:
    """call.cancel() of a hedged call: awaiting it raises CancelledError, as a grpc.aio
    call does. A hedged call that won answers code() OK and its metadata."""
    async with Pool(config(backends), name="aio-hedged-api") as pool:
        unary = await aio_pool(pool, backends)
        call = unary(b"ok", timeout=5)
        assert await call == b"ok"
        assert await call.code() is grpc.StatusCode.OK
        assert await call.trailing_metadata() is not None and call.done()
        first, second = slow_down(backends, 1.0)
        call = unary(b"c", timeout=5)
        await polled(lambda: first.calls + second.calls == 3)
        assert call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
        assert call.cancelled()
        await polled(lambda: pool.status().in_flight == 0)
