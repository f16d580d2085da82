"""A retired connection closes when its last call ends, against real servers.

A pool retires a connection on a ``max_age`` refresh, a scale down and its
stop. With no call running its TCP connection must be closed at once; with
calls running through the pool channel (unary, or a response stream, which
holds the connection until it ends) it stays open while they run, they
succeed, and it closes right after the last one ends. ``drain_timeout`` is
30 s here, so a connection kept for its drain (the old rule) fails every
bound. What is counted is the server's side: its established TCP
connections, read from the kernel's table (:mod:`tests.sockets`).

Each test body runs over both drivers: a sync pool (actors, caller threads)
and an asyncio pool, on a loop of its own thread, driven from the test's.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, Protocol

import grpc
import pytest

import grpcpool
from grpcpool import Config, PoolStatus
from grpcpool.aio import Pool
from grpcpool.errors import PoolNotFoundError
from tests.pools import loopback_config
from tests.servers import HOLD, EchoServer, EchoStub
from tests.sockets import server_peers
from tests.waiting import wait_for

DRAIN = 30.0
# Generous bound on the 100 ms the SPEC promises; the old rule took DRAIN.
CLOSED_WITHIN = 1.0
WAIT = 10.0
# The shortest max_age a test waits for: the pool's one connection is
# replaced about a second after it became ready.
MAX_AGE = 1.0

EXPECTED: dict[str, Any] = {"unary": HOLD, "stream": [HOLD] * 3}


class Driver(Protocol):
    """One pool, sync or asyncio, as the tests drive it from their own thread."""

    def start(self, config: Config) -> None: ...
    def await_ready(self, min_ready: int) -> None: ...
    def status(self) -> PoolStatus: ...
    def scale_down(self, count: int) -> None: ...
    def stop(self) -> concurrent.futures.Future[None]: ...
    def stopped(self) -> bool: ...
    def call(self, kind: str) -> concurrent.futures.Future[Any]: ...
    def get_channel(self) -> Any: ...
    def close(self) -> None: ...


def _sync_unary(stub: EchoStub) -> Any:
    return stub.Unary(HOLD, timeout=WAIT)


def _sync_stream(stub: EchoStub) -> Any:
    return list(stub.Repeat(HOLD, timeout=WAIT))


_SYNC_CALLS: dict[str, Callable[[EchoStub], Any]] = {"unary": _sync_unary, "stream": _sync_stream}


class SyncDriver:
    """A sync pool under its own Supervisor; calls block on caller threads."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._supervisor: Any = None
        self._callers = concurrent.futures.ThreadPoolExecutor(4, thread_name_prefix="caller")
        self._stub = EchoStub(grpcpool.channel(name))

    def start(self, config: Config) -> None:
        spec = grpcpool.PoolSpec(config, name=self.name)
        self._supervisor = grpcpool.Supervisor.start(children=[spec])

    def await_ready(self, min_ready: int) -> None:
        grpcpool.await_ready(self.name, timeout=WAIT, min_ready=min_ready)

    def status(self) -> PoolStatus:
        return grpcpool.status(self.name)

    def scale_down(self, count: int) -> None:
        grpcpool.scale_down(self.name, count)

    def stop(self) -> concurrent.futures.Future[None]:
        grpcpool.stop(self.name)
        done: concurrent.futures.Future[None] = concurrent.futures.Future()
        done.set_result(None)
        return done

    def stopped(self) -> bool:
        try:
            grpcpool.status(self.name)
        except PoolNotFoundError:
            return True
        return False

    def call(self, kind: str) -> concurrent.futures.Future[Any]:
        return self._callers.submit(_SYNC_CALLS[kind], self._stub)

    def get_channel(self) -> Any:
        return grpcpool.get_channel(self.name)

    def close(self) -> None:
        grpcpool.stop(self.name)
        if self._supervisor is not None:
            self._supervisor.stop(timeout=WAIT)
        self._callers.shutdown(wait=True)


async def _aio_unary(stub: EchoStub) -> Any:
    return await stub.Unary(HOLD, timeout=WAIT)


async def _aio_stream(stub: EchoStub) -> Any:
    return [response async for response in stub.Repeat(HOLD, timeout=WAIT)]


_AIO_CALLS: dict[str, Callable[[EchoStub], Any]] = {"unary": _aio_unary, "stream": _aio_stream}


class AioDriver:
    """An asyncio pool on a loop running in its own thread; coroutines are sent to it."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.pool: Pool | None = None
        self._stub: EchoStub | None = None
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="aio-driver")
        self._thread.start()

    def _run(self, coroutine: Any) -> concurrent.futures.Future[Any]:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop)

    def _pool(self) -> Pool:
        assert self.pool is not None, "start() first"
        return self.pool

    def start(self, config: Config) -> None:
        async def start() -> None:
            self.pool = await Pool(config, name=self.name).start()
            self._stub = EchoStub(self.pool.channel())

        self._run(start()).result(WAIT)

    def await_ready(self, min_ready: int) -> None:
        self._run(self._pool().await_ready(timeout=WAIT, min_ready=min_ready)).result(WAIT + 1)

    def status(self) -> PoolStatus:
        return self._pool().status()  # any thread: it reads one immutable view

    def scale_down(self, count: int) -> None:
        self._run(self._pool().scale_down(count)).result(WAIT)

    def stop(self) -> concurrent.futures.Future[None]:
        return self._run(self._pool().stop())

    def stopped(self) -> bool:
        return self._pool().view.lifecycle == "stopped"

    def call(self, kind: str) -> concurrent.futures.Future[Any]:
        assert self._stub is not None, "start() first"
        return self._run(_AIO_CALLS[kind](self._stub))

    def get_channel(self) -> Any:
        async def get() -> Any:
            return self._pool().get_channel()

        return self._run(get()).result(WAIT)

    def close(self) -> None:
        try:
            if self.pool is not None:
                self._run(self.pool.stop()).result(WAIT)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(WAIT)
            self._loop.close()


@pytest.fixture
def server() -> Iterator[EchoServer]:
    """An echo server whose held calls wait until the test releases them."""
    with EchoServer() as echo:
        yield echo


@pytest.fixture(params=["sync", "aio"])
def driver(request: pytest.FixtureRequest, server: EchoServer) -> Iterator[Driver]:
    """A pool of either kind; held calls are released before it is torn down."""
    made: Driver = SyncDriver("retire") if request.param == "sync" else AioDriver("retire")
    try:
        yield made
    finally:
        server.release_held()
        made.close()


# grpc.aio before 1.85 keeps a closed channel's TCP connection until the channel
# object is collected, and a caller still holding a call (as these tests do)
# holds its channel: the connection then outlives the close, whatever the pool does.
OLD_GRPC_AIO = tuple(int(part) for part in grpc.__version__.split(".")[:2]) < (1, 85)


def skip_held_on_old_grpc_aio(driver: Driver) -> None:
    """Skips a held-call case of an asyncio pool on grpcio < 1.85 (see OLD_GRPC_AIO)."""
    if OLD_GRPC_AIO and isinstance(driver, AioDriver):
        pytest.skip("grpc.aio < 1.85 closes a channel's connection only when it is collected")


def peers(server: EchoServer) -> set[int]:
    """The client ports of the server's established connections."""
    return server_peers(server.host, server.port)


def close_delay(server: EchoServer, since: float, closed: Callable[[set[int]], bool]) -> float:
    """Seconds from ``since`` until ``closed(peers)`` holds (fails after WAIT)."""
    wait_for(lambda: closed(peers(server)), timeout=WAIT, interval=0.002)
    return time.monotonic() - since


def worker_ids(driver: Driver) -> set[str]:
    return {worker.worker_id for worker in driver.status().workers}


def started_pool(driver: Driver, server: EchoServer, size: int, **connection: Any) -> set[int]:
    """Starts a pool of ``size`` with drain_timeout DRAIN; returns its connections' ports."""
    driver.start(loopback_config(server.port, size, drain_timeout=DRAIN, **connection))
    driver.await_ready(size)
    wait_for(lambda: len(peers(server)) == size, timeout=WAIT)
    return peers(server)


def replaced(driver: Driver) -> float:
    """Waits until max_age has replaced every current worker; returns when it was seen."""
    before = worker_ids(driver)
    wait_for(lambda: not (worker_ids(driver) & before), timeout=WAIT, interval=0.002)
    return time.monotonic()


def held(server: EchoServer, count: int) -> None:
    """Waits until ``count`` calls are held on the server."""
    wait_for(lambda: server.calls >= count, timeout=WAIT)


def test_a_refresh_closes_the_idle_connection_it_replaced(
    driver: Driver, server: EchoServer
) -> None:
    """max_age replaces the pool's connection: the old TCP connection, with no call on it,
    is closed within a second of leaving the pool (drain_timeout is 30 s)."""
    old = started_pool(driver, server, 1, max_age=MAX_AGE)
    left = replaced(driver)
    assert close_delay(server, left, lambda now: not (now & old)) < CLOSED_WITHIN


@pytest.mark.parametrize("kind", ["unary", "stream"])
def test_a_refresh_keeps_the_old_connection_until_its_call_ends(
    driver: Driver, server: EchoServer, kind: str
) -> None:
    """A held call keeps the connection max_age replaced open; the call succeeds, and
    the old connection closes within a second of its end."""
    skip_held_on_old_grpc_aio(driver)
    old = started_pool(driver, server, 1, max_age=MAX_AGE)
    call = driver.call(kind)
    held(server, 1)
    replaced(driver)
    assert old <= peers(server) and not call.done()

    server.release_held()
    assert call.result(WAIT) == EXPECTED[kind]
    ended = time.monotonic()
    assert close_delay(server, ended, lambda now: not (now & old)) < CLOSED_WITHIN


def test_a_scale_down_closes_the_idle_connection_at_once(
    driver: Driver, server: EchoServer
) -> None:
    """Scaling 2 -> 1 with no call running closes one TCP connection within a second."""
    started_pool(driver, server, 2)
    driver.scale_down(1)
    scaled = time.monotonic()
    assert close_delay(server, scaled, lambda now: len(now) == 1) < CLOSED_WITHIN


@pytest.mark.parametrize("kind", ["unary", "stream"])
def test_a_scale_down_keeps_the_connection_until_its_call_ends(
    driver: Driver, server: EchoServer, kind: str
) -> None:
    """With a held call on each of two connections, the one scaled away stays open while
    its call runs; both calls succeed, and it closes within a second of the end."""
    skip_held_on_old_grpc_aio(driver)
    started_pool(driver, server, 2)
    calls = [driver.call(kind) for _ in range(2)]  # round robin: one on each connection
    held(server, 2)
    assert [worker.in_flight for worker in driver.status().workers] == [1, 1]
    driver.scale_down(1)
    assert len(peers(server)) == 2 and not any(call.done() for call in calls)

    server.release_held()
    assert [call.result(WAIT) for call in calls] == [EXPECTED[kind]] * 2
    ended = time.monotonic()
    assert close_delay(server, ended, lambda now: len(now) == 1) < CLOSED_WITHIN


def test_a_stop_closes_idle_connections_at_once(driver: Driver, server: EchoServer) -> None:
    """Stopping a pool of two with no call running closes both TCP connections within a
    second."""
    started_pool(driver, server, 2)
    stopping = driver.stop()
    asked = time.monotonic()
    assert close_delay(server, asked, lambda now: not now) < CLOSED_WITHIN
    stopping.result(WAIT)


@pytest.mark.parametrize("kind", ["unary", "stream"])
def test_a_stop_lets_a_running_call_finish_then_closes(
    driver: Driver, server: EchoServer, kind: str
) -> None:
    """A call held while its pool stops keeps its connection open and succeeds; the
    connection closes within a second of its end (and an asyncio stop returns then)."""
    skip_held_on_old_grpc_aio(driver)
    old = started_pool(driver, server, 1)
    call = driver.call(kind)
    held(server, 1)
    stopping = driver.stop()
    wait_for(driver.stopped, timeout=WAIT)
    assert old <= peers(server) and not call.done()

    server.release_held()
    assert call.result(WAIT) == EXPECTED[kind]
    ended = time.monotonic()
    assert close_delay(server, ended, lambda now: not now) < CLOSED_WITHIN
    stopping.result(WAIT)


def test_a_sync_channel_handed_out_raw_is_kept_for_its_drain(server: EchoServer) -> None:
    """A sync pool that handed a channel out with get_channel cannot count the calls made
    on it, so a connection it retires stays open for drain_timeout (here 1.5 s), not
    less, and a raw call under way on it succeeds."""
    driver = SyncDriver("retire-raw")
    try:
        driver.start(loopback_config(server.port, 2, drain_timeout=1.5))
        driver.await_ready(2)
        wait_for(lambda: len(peers(server)) == 2, timeout=WAIT)
        raw_calls = [EchoStub(driver.get_channel()).Unary.future(HOLD, timeout=WAIT)]
        raw_calls.append(EchoStub(driver.get_channel()).Unary.future(HOLD, timeout=WAIT))
        held(server, 2)
        driver.scale_down(1)
        scaled = time.monotonic()
        server.release_held()
        assert [call.result(WAIT) for call in raw_calls] == [HOLD, HOLD]
        delay = close_delay(server, scaled, lambda now: len(now) == 1)
        assert 1.5 <= delay < 1.5 + CLOSED_WITHIN
    finally:
        server.release_held()
        driver.close()


def test_an_aio_channel_handed_out_raw_closes_when_grpc_aio_sees_its_calls_end(
    server: EchoServer,
) -> None:
    """An asyncio pool closes a retired channel with what is left of the drain as
    grpc.aio's grace, which waits for the calls grpc.aio made on it: a raw call on a
    channel from get_channel succeeds, and the connection closes soon after it ends."""
    driver = AioDriver("retire-raw")
    try:
        driver.start(loopback_config(server.port, 1, drain_timeout=DRAIN))
        driver.await_ready(1)
        wait_for(lambda: len(peers(server)) == 1, timeout=WAIT)
        old = peers(server)
        channel = driver.get_channel()

        async def raw_call() -> Any:
            return await EchoStub(channel).Unary(HOLD, timeout=WAIT)

        call = driver._run(raw_call())
        held(server, 1)
        stopping = driver.stop()
        wait_for(driver.stopped, timeout=WAIT)
        assert old <= peers(server) and not call.done()
        server.release_held()
        assert call.result(WAIT) == HOLD
        ended = time.monotonic()
        assert close_delay(server, ended, lambda now: not now) < CLOSED_WITHIN
        stopping.result(WAIT)
    finally:
        server.release_held()
        driver.close()
