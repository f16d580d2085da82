"""grpcpool.aio against real ``grpc.aio`` servers on 127.0.0.1.

The sync pool's core scenarios on the event loop: distinct connections and
round robin, a server killed and restarted, health NOT_SERVING and back,
scaling and bad counts, a black hole through the fault proxy, the loop
discipline, nothing left behind after stop, calls in flight and
``least_in_flight``, ``wait_for_ready``, names and telemetry. The servers are
:class:`tests.aio_servers.AioEchoServer` on the test's own loop.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import gc
import sys
import threading
import time
import weakref
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
import pytest_asyncio

import grpcpool
import grpcpool.aio
from grpcpool import Config
from grpcpool.aio import Pool
from grpcpool.errors import (
    ConfigError,
    GrpcPoolError,
    NotConnectedError,
    PoolCallError,
    PoolNotFoundError,
)
from tests.aio_servers import ECHO_METHOD, HOLD, AioEchoServer
from tests.events import EventLog
from tests.faultproxy import FaultProxy
from tests.pools import free_port, loopback_config

PACKAGE = str(Path(grpcpool.__file__).resolve().parent)


@pytest_asyncio.fixture
async def server() -> AsyncIterator[AioEchoServer]:
    """A grpc.aio echo server with the health service, on 127.0.0.1."""
    async with AioEchoServer() as echo:
        yield echo


@pytest.fixture
def cycles_collected() -> Iterator[None]:
    """Collects reference cycles after a test that leaves closed channels in them.

    A health check that fails with an exception keeps its closed ``grpc.aio``
    channel in a reference cycle until the cyclic GC runs (pinned by
    ``test_failed_health_checks_leave_no_channel_alive_after_stop``); so,
    now and then, does a worker cancelled under a pool nobody stopped. A live
    ``grpc.aio`` channel keeps grpc.aio's poller thread and its sockets, so
    collecting here keeps the leak check about the test's own threads.
    """
    yield
    gc.collect()


def unary(channel: Any) -> Any:
    """The echo method's multi-callable on ``channel`` (raw bytes both ways)."""
    return channel.unary_unary(ECHO_METHOD)


async def until(pool: Pool, predicate: Callable[[], bool], timeout: float) -> None:
    """Waits, woken by each change of the pool's view, until ``predicate()`` holds."""

    async def changes() -> None:
        while not predicate():
            await pool.wait_changed(None)

    await asyncio.wait_for(changes(), timeout)


async def polled(predicate: Callable[[], bool], timeout: float) -> None:
    """Polls ``predicate`` on the loop, for what no view change announces."""

    async def poll() -> None:
        while not predicate():
            await asyncio.sleep(0.01)

    await asyncio.wait_for(poll(), timeout)


def in_thread(target: Callable[[], Any]) -> Any:
    """Runs ``target`` on a new thread (joined within 10 s); returns what it raised."""
    raised: list[BaseException] = []

    def run() -> None:
        try:
            target()
        except BaseException as error:
            raised.append(error)

    thread = threading.Thread(target=run, name="aio-other-thread")
    thread.start()
    thread.join(10)
    assert not thread.is_alive(), "the other thread did not finish"
    return raised[0] if raised else None


def on_another_loop(coroutine: Callable[[], Coroutine[Any, Any, Any]]) -> Any:
    """Runs ``coroutine()`` under ``asyncio.run`` on another thread; returns what it raised."""
    return in_thread(lambda: asyncio.run(asyncio.wait_for(coroutine(), 5)))


# --- connections and round robin -----------------------------------------------------------


@pytest.mark.asyncio
async def test_pool_of_four_is_four_peers_and_round_robin_spreads_evenly(
    server: AioEchoServer,
) -> None:
    """A pool of 4 is 4 distinct connections at the server, and round robin spreads 40
    calls 10/10/10/10, both over get_channel() and over the pool channel."""
    async with Pool(loopback_config(server.port, size=4), name="rr") as pool:
        await pool.await_ready(timeout=5, min_ready=4)
        for _ in range(40):
            assert await unary(pool.get_channel())(b"x", timeout=5) == b"x"
        by_peer = collections.Counter(server.peers)
        assert sorted(by_peer.values()) == [10, 10, 10, 10]

        server.peers.clear()
        echo = unary(pool.channel())
        for _ in range(40):
            assert await echo(b"y", timeout=5) == b"y"
        assert sorted(collections.Counter(server.peers).values()) == [10, 10, 10, 10]
        assert set(server.peers) == set(by_peer)  # the same four connections


# --- a server killed and restarted -------------------------------------------------------


@pytest.mark.asyncio
async def test_server_kill_empties_the_pool_and_a_restart_refills_it_for_an_old_stub(
    cycles_collected: None,
) -> None:
    """A killed server takes every connection out within 2 s; calls through the pool
    channel fail with PoolCallError UNAVAILABLE (a grpc.RpcError and NotConnectedError);
    after a restart on the same port the pool is ready again and a multi-callable built
    before the kill answers."""
    server = AioEchoServer(free_port())
    await server.start()
    try:
        async with Pool(loopback_config(server.port, size=2), name="restart") as pool:
            await pool.await_ready(timeout=5, min_ready=2)
            echo = unary(pool.channel())
            assert await echo(b"before", timeout=5) == b"before"

            await server.kill()
            await until(pool, lambda: pool.status().current_size == 0, timeout=2)
            with pytest.raises(NotConnectedError):
                pool.get_channel()
            with pytest.raises(PoolCallError) as raised:
                await echo(b"down", timeout=5)
            assert isinstance(raised.value, grpc.RpcError)
            assert isinstance(raised.value, NotConnectedError)
            assert raised.value.code() is grpc.StatusCode.UNAVAILABLE

            await server.restart()
            await pool.await_ready(timeout=5, min_ready=2)
            assert await echo(b"after", timeout=5) == b"after"
            assert pool.status().status == "healthy"
    finally:
        await server.stop()


@pytest.mark.asyncio
async def test_wait_for_ready_call_made_while_down_answers_after_restart(
    cycles_collected: None,
) -> None:
    """A wait_for_ready call made while no connection is ready waits and answers once
    the server is back."""
    server = AioEchoServer(free_port())
    await server.start()
    try:
        async with Pool(loopback_config(server.port, size=2), name="wfr") as pool:
            await pool.await_ready(timeout=5, min_ready=2)
            echo = unary(pool.channel())
            await server.kill()
            await until(pool, lambda: pool.status().current_size == 0, timeout=2)
            waiting = asyncio.ensure_future(echo(b"later", timeout=10, wait_for_ready=True))
            await server.restart()
            assert await asyncio.wait_for(waiting, 10) == b"later"
    finally:
        await server.stop()


# --- health --------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_not_serving_takes_connections_out_and_serving_brings_them_back(
    server: AioEchoServer,
) -> None:
    """Health NOT_SERVING takes the connections out of the view; SERVING restores them."""
    config = loopback_config(server.port, size=2, ping_interval=0.1)
    async with Pool(config, name="health") as pool:
        await pool.await_ready(timeout=5, min_ready=2)
        await server.set_serving(False)
        await until(pool, lambda: pool.status().current_size == 0, timeout=3)
        with pytest.raises(NotConnectedError):
            pool.get_channel()
        await server.set_serving(True)
        await pool.await_ready(timeout=5, min_ready=2)


# --- scaling ---------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_scaling_changes_the_workers_and_reports_the_new_size(
    server: AioEchoServer, events: EventLog
) -> None:
    """scale_up, scale_down and resize change the workers and return the new size;
    resizing to the same size is a no-op."""
    async with Pool(loopback_config(server.port, size=2), name="scale") as pool:
        await pool.await_ready(timeout=5, min_ready=2)
        assert await pool.scale_up(3) == 5
        await pool.await_ready(timeout=5, min_ready=5)
        assert await grpcpool.aio.scale_down("scale", 2) == 3
        status = pool.status()
        assert (status.expected_size, status.current_size, len(status.workers)) == (3, 3, 3)
        assert await grpcpool.aio.resize("scale", 4) == 4
        assert await pool.resize(4) == 4
        await pool.await_ready(timeout=5, min_ready=4)
        assert await pool.resize(1) == 1
        status = pool.status()
        assert (status.expected_size, status.current_size, len(status.workers)) == (1, 1, 1)
        assert await unary(pool.channel())(b"one", timeout=5) == b"one"
    _, up, _ = events.of("pool.scale_up")[0]
    assert (up["requested"], up["succeeded"], up["failed"], up["new_size"]) == (3, 3, 0, 5)
    _, down, metadata = events.of("pool.scale_down")[0]
    assert (down["requested"], down["terminated"], down["new_size"]) == (2, 2, 3)
    assert metadata == {"pool_name": "scale"}


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("method", "count", "error"),
    [
        ("scale_up", 0, ValueError),
        ("scale_up", -1, ValueError),
        ("scale_up", True, TypeError),
        ("scale_up", "2", TypeError),
        ("scale_up", 4, ValueError),  # 2 + 4 is over max_size 5
        ("scale_down", 2, ValueError),  # would leave no worker
        ("scale_down", 0, ValueError),
        ("scale_down", True, TypeError),
        ("resize", 0, ValueError),
        ("resize", -1, ValueError),
        ("resize", 6, ValueError),
        ("resize", 2.0, TypeError),
        ("resize", "2", TypeError),
    ],
)
async def test_bad_scaling_input_raises_and_changes_nothing(
    server: AioEchoServer, method: str, count: Any, error: type[Exception]
) -> None:
    """Bad counts raise TypeError/ValueError and leave the expected size and workers alone."""
    config = loopback_config(server.port, size=2)
    config = dataclasses.replace(config, pool=dataclasses.replace(config.pool, max_size=5))
    async with Pool(config, name="bad") as pool:
        await pool.await_ready(timeout=5, min_ready=2)
        with pytest.raises(error):
            await getattr(pool, method)(count)
        status = pool.status()
        assert (status.expected_size, status.current_size, len(status.workers)) == (2, 2, 2)


# --- a black hole through the fault proxy ----------------------------------------------------


@pytest.mark.asyncio
async def test_health_ping_takes_a_black_holed_connection_out_of_the_view(
    server: AioEchoServer, cycles_collected: None
) -> None:
    """Through a proxy that forwards nothing, the health ping's deadline takes the silent
    connections out of the view; once the hole ends they come back."""
    with FaultProxy(server.port) as proxy:
        config = loopback_config(
            proxy.port,
            size=2,
            keepalive=None,
            ping_interval=0.2,
            ping_timeout=0.5,
            connect_timeout=0.5,
            backoff_min=0.2,
            backoff_max=0.5,
        )
        async with Pool(config, name="hole") as pool:
            await pool.await_ready(timeout=5, min_ready=2)
            proxy.black_hole()
            await until(pool, lambda: pool.status().current_size == 0, timeout=3)
            with pytest.raises(NotConnectedError):
                pool.get_channel()
            assert any(w.last_error for w in pool.status().workers)
            proxy.pass_through()
            await pool.await_ready(timeout=5, min_ready=2)
            assert await unary(pool.get_channel())(b"healed", timeout=5) == b"healed"


@pytest.mark.asyncio
async def test_failed_health_checks_leave_no_channel_alive_after_stop(
    server: AioEchoServer, cycles_collected: None
) -> None:
    """After stop, no channel of the pool is alive without the cyclic GC, even when its
    health checks failed (a live grpc.aio channel keeps grpc.aio's poller thread)."""
    gc.disable()  # the cycle's life must not depend on when the collector happens to run
    try:
        with FaultProxy(server.port) as proxy:
            config = loopback_config(
                proxy.port, size=2, keepalive=None, ping_interval=0.2, ping_timeout=0.5
            )
            async with Pool(config, name="cycle") as pool:
                await pool.await_ready(timeout=5, min_ready=2)
                channels = [weakref.ref(channel) for channel in pool._drains.open]
                proxy.black_hole()
                await until(pool, lambda: pool.status().current_size == 0, timeout=3)
                proxy.pass_through()
        alive = sum(ref() is not None for ref in channels)  # no channel kept by the assertion
        assert alive == 0, f"{alive} of the pool's channels alive after stop"
    finally:
        gc.enable()


# --- loop discipline ------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_a_pool_used_from_another_loop_or_a_plain_thread_raises(
    server: AioEchoServer,
) -> None:
    """A pool belongs to the loop it started on: get_channel, await_ready, scaling and stop
    from a second event loop raise GrpcPoolError naming the other loop, and get_channel
    from a thread with no loop names that; the pool keeps working on its own loop."""
    async with Pool(loopback_config(server.port, size=2), name="loops") as pool:
        await pool.await_ready(timeout=5, min_ready=2)

        async def get_channel() -> None:
            pool.get_channel()

        for use in (
            get_channel,
            lambda: pool.await_ready(timeout=1),
            lambda: pool.scale_up(1),
            pool.stop,
        ):
            raised = on_another_loop(use)
            assert isinstance(raised, GrpcPoolError), raised
            assert "another event loop" in str(raised)

        raised = in_thread(pool.get_channel)
        assert isinstance(raised, GrpcPoolError), raised
        assert "outside any event loop" in str(raised)

        assert pool.status().current_size == 2 and pool.status().expected_size == 2
        assert await unary(pool.get_channel())(b"home", timeout=5) == b"home"


@pytest.mark.asyncio
async def test_a_pool_channel_call_from_another_loop_raises(
    server: AioEchoServer, cycles_collected: None
) -> None:
    """A call through the pool channel made on another event loop fails with
    GrpcPoolError naming the loop problem, instead of using a channel of another loop."""
    async with Pool(loopback_config(server.port, size=2), name="loops-call") as pool:
        await pool.await_ready(timeout=5, min_ready=2)
        echo = unary(pool.channel())

        async def call() -> None:
            await echo(b"elsewhere", timeout=2)

        raised = on_another_loop(call)
        # Only its type and text: a failure must not keep the call (and its channel) alive.
        kind, text = type(raised), str(raised)
        del raised
        assert issubclass(kind, GrpcPoolError), f"{kind.__name__}: {text}"
        assert "another event loop" in text
        assert await echo(b"home", timeout=5) == b"home"


# --- nothing left behind ---------------------------------------------------------------------


def _pool_tasks(before: set[asyncio.Task[Any]]) -> list[asyncio.Task[Any]]:
    """Tasks started since ``before``, not done, running code of the grpcpool package."""
    current = asyncio.current_task()
    left = []
    for task in asyncio.all_tasks():
        if task in before or task is current or task.done():
            continue
        code = getattr(task.get_coro(), "cr_code", None)
        if code is None or code.co_filename.startswith(PACKAGE) or "grpcpool" in task.get_name():
            left.append(task)
    return left


@pytest.mark.asyncio
async def test_stop_leaves_no_task_or_channel_and_is_idempotent(server: AioEchoServer) -> None:
    """After stop no task of the pool is pending, every channel is closed, the name is
    free; stop and aclose again are no-ops."""
    before = set(asyncio.all_tasks())
    pool = Pool(loopback_config(server.port, size=3, ping_interval=0.1), name="clean")
    await pool.start()
    await pool.await_ready(timeout=5, min_ready=3)
    for _ in range(6):
        await unary(pool.channel())(b"x", timeout=5)
    assert _pool_tasks(before)  # workers, watches and the status reporter run

    await asyncio.wait_for(pool.stop(), 10)
    assert _pool_tasks(before) == []
    assert pool._drains.open == set()
    assert pool.status().workers == ()
    assert pool.ended == "stopped"
    with pytest.raises(PoolNotFoundError):
        grpcpool.aio.pool("clean")
    await asyncio.wait_for(pool.stop(), 1)
    await asyncio.wait_for(pool.aclose(), 1)
    await grpcpool.aio.stop("clean")  # no pool of that name: nothing to do
    assert pool.ended == "stopped"


@pytest.mark.asyncio
async def test_outlier_detection_runs_one_task_that_stops_with_the_pool(
    server: AioEchoServer,
) -> None:
    """With pool.outlier_detection the pool judges on one task (grpcpool-outliers), gone
    after stop; without it there is no such task."""
    config = loopback_config(server.port, size=2)
    judged = dataclasses.replace(
        config, pool=dataclasses.replace(config.pool, outlier_detection={"interval": 0.05})
    )

    def judging() -> list[str]:
        names = (task.get_name() for task in asyncio.all_tasks() if not task.done())
        return [name for name in names if name == "grpcpool-outliers"]

    async with Pool(config, name="plain"):
        assert judging() == []
    pool = await Pool(judged, name="judged").start()
    await pool.await_ready(timeout=5, min_ready=2)
    assert judging() == ["grpcpool-outliers"]
    await asyncio.wait_for(pool.stop(), 10)
    assert judging() == []


def test_a_pool_never_stopped_warns_when_its_loop_closes(cycles_collected: None) -> None:
    """A pool left running when asyncio.run closes its loop gives a ResourceWarning naming
    it, closes its channels and frees its name."""
    pools: list[Pool] = []

    async def main() -> None:
        async with AioEchoServer() as echo:
            pool = Pool(loopback_config(echo.port, size=2), name="forgotten")
            pools.append(pool)
            await pool.start()
            await pool.await_ready(timeout=5, min_ready=2)

    with pytest.warns(ResourceWarning, match="'forgotten' was never stopped"):
        asyncio.run(main())
    assert pools[0]._drains.open == set()
    assert "forgotten" not in grpcpool.tasks._pool.POOLS
    pools.clear()


# --- calls in flight --------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_calls_in_flight_are_counted_until_done(server: AioEchoServer) -> None:
    """Calls held at the server show in status().in_flight (total and per worker) and
    the count goes back to 0 when they answer."""
    async with Pool(loopback_config(server.port, size=2), name="flight") as pool:
        await pool.await_ready(timeout=5, min_ready=2)
        echo = unary(pool.channel())
        held = [asyncio.ensure_future(echo(HOLD, timeout=10)) for _ in range(3)]
        await server.wait_for_calls(3)
        status = pool.status()
        assert status.in_flight == 3
        assert sorted(w.in_flight for w in status.workers) == [1, 2]

        server.release_held()
        assert await asyncio.wait_for(asyncio.gather(*held), 5) == [HOLD] * 3
        await polled(lambda: pool.status().in_flight == 0, timeout=2)
        assert [w.in_flight for w in pool.status().workers] == [0, 0]


@pytest.mark.asyncio
async def test_least_in_flight_steers_around_a_connection_holding_a_call(
    server: AioEchoServer,
) -> None:
    """With least_in_flight and two connections, every call while one connection holds a
    call goes to the other one."""
    config = loopback_config(server.port, size=2, pool={"strategy": "least_in_flight"})
    async with Pool(config, name="least") as pool:
        await pool.await_ready(timeout=5, min_ready=2)
        echo = unary(pool.channel())
        held = asyncio.ensure_future(echo(HOLD, timeout=10))
        await server.wait_for_calls(1)
        busy = server.peers[0]
        for _ in range(10):
            assert await echo(b"quick", timeout=5) == b"quick"
        assert len(server.peers) == 11
        assert busy not in server.peers[1:]
        assert len(set(server.peers)) == 2
        server.release_held()
        assert await asyncio.wait_for(held, 5) == HOLD


# --- waiting, names and telemetry -------------------------------------------------------------


@pytest.mark.asyncio
async def test_wait_for_ready_with_nothing_ready_waits_for_the_timeout(
    cycles_collected: None,
) -> None:
    """With nothing listening, a wait_for_ready call waits up to its timeout and then
    fails with DEADLINE_EXCEEDED; without wait_for_ready it fails at once, UNAVAILABLE."""
    async with Pool(loopback_config(free_port(), size=2), name="nothing") as pool:
        echo = unary(pool.channel())
        started = time.monotonic()
        with pytest.raises(PoolCallError) as raised:
            await asyncio.wait_for(echo(b"x", timeout=0.3, wait_for_ready=True), 5)
        waited = time.monotonic() - started
        assert raised.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
        assert 0.3 <= waited < 2.0, waited

        started = time.monotonic()
        with pytest.raises(PoolCallError) as raised:
            await asyncio.wait_for(echo(b"x", timeout=5), 5)
        assert raised.value.code() is grpc.StatusCode.UNAVAILABLE
        assert time.monotonic() - started < 0.5


@pytest.mark.asyncio
async def test_unknown_name_is_not_found_and_a_taken_name_is_a_config_error(
    server: AioEchoServer,
) -> None:
    """The module functions raise PoolNotFoundError for a name no asyncio pool runs (the
    pool channel, which follows the name, fails its calls UNAVAILABLE instead); a second
    Pool with a running name raises ConfigError and the first keeps working."""
    for call in (
        lambda: grpcpool.aio.pool("x"),
        lambda: grpcpool.aio.get_channel("x"),
        lambda: grpcpool.aio.status("x"),
    ):
        with pytest.raises(PoolNotFoundError, match="'x'"):
            call()
    with pytest.raises(PoolCallError, match="'x'") as refused:
        await unary(grpcpool.aio.channel("x"))(b"nobody", timeout=1)
    assert refused.value.code() is grpc.StatusCode.UNAVAILABLE
    with pytest.raises(PoolNotFoundError):
        await grpcpool.aio.await_ready("x", timeout=0.1)
    with pytest.raises(PoolNotFoundError):
        await grpcpool.aio.scale_up("x", 1)

    async with Pool(loopback_config(server.port, size=2), name="taken") as pool:
        await grpcpool.aio.await_ready("taken", timeout=5, min_ready=2)
        with pytest.raises(ConfigError, match="taken"):
            await Pool(loopback_config(server.port, size=2), name="taken").start()
        assert grpcpool.aio.pool("taken") is pool
        assert grpcpool.aio.status("taken").current_size == 2
        assert await unary(grpcpool.aio.get_channel("taken"))(b"ok", timeout=5) == b"ok"


@pytest.mark.asyncio
async def test_telemetry_signals_carry_the_sync_names(
    server: AioEchoServer, events: EventLog
) -> None:
    """An asyncio pool emits the sync pool's signals: pool.init, channel.connected per
    worker, and pool.status reporting the calls in flight."""
    config = loopback_config(server.port, size=2, pool={"telemetry_interval": 0.05})
    async with Pool(config, name="signals") as pool:
        await pool.await_ready(timeout=5, min_ready=2)
        echo = unary(pool.channel())
        held = asyncio.ensure_future(echo(HOLD, timeout=10))
        await server.wait_for_calls(1)
        await polled(
            lambda: any(m["in_flight"] == 1 for _, m, _ in events.of("pool.status")), timeout=2
        )
        server.release_held()
        await asyncio.wait_for(held, 5)

    [(sender, init, metadata)] = events.of("pool.init")
    assert sender == "signals" and init == {"pool_size": 2}
    assert metadata["pool_name"] == "signals"
    connected = {m["worker_id"] for _, _, m in events.of("channel.connected")}
    assert connected == {"worker-1", "worker-2"}
    _, status, status_metadata = events.of("pool.status")[-1]
    assert set(status) == {"expected_size", "current_size", "in_flight", "queued"}
    assert status_metadata == {"pool_name": "signals"}


class _Interceptor(grpc.UnaryUnaryClientInterceptor):
    """A sync client interceptor that changes nothing."""

    def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        return continuation(details, request)


# The refused Pool's finalizer error is pinned by the test below, not this one's concern.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_config_with_interceptors_is_refused() -> None:
    """endpoint.interceptors holds sync interceptors, which an asyncio pool cannot use:
    Pool refuses the config with ConfigError."""
    config = Config.new(
        endpoint={
            "type": "local",
            "host": "127.0.0.1",
            "port": 1,
            "interceptors": [_Interceptor()],
        }
    )
    with pytest.raises(ConfigError, match="interceptors"):
        Pool(config, name="icpt")


@pytest.mark.parametrize(
    ("config", "name"),
    [
        ("not a config", None),
        (loopback_config(1), ""),
        (
            Config.new(
                endpoint={
                    "type": "local",
                    "host": "127.0.0.1",
                    "port": 1,
                    "interceptors": [_Interceptor()],
                }
            ),
            None,
        ),
    ],
    ids=["not-a-config", "bad-name", "interceptors"],
)
def test_a_pool_refused_at_construction_leaves_no_error_behind(config: Any, name: Any) -> None:
    """A Pool whose construction is refused (TypeError, ConfigError) is collected
    quietly: no exception ignored in its finalizer."""
    unraisable: list[Any] = []
    hook = sys.unraisablehook
    sys.unraisablehook = unraisable.append
    try:
        with pytest.raises((TypeError, ConfigError)):
            Pool(config, name=name)
        gc.collect()
    finally:
        sys.unraisablehook = hook
    errors = [f"{type(u.exc_value).__name__}: {u.exc_value}" for u in unraisable]
    assert errors == []


# --- supervision and moves ----------------------------------------------------------------


@pytest.mark.asyncio
async def test_a_crashed_worker_task_is_restarted_and_too_many_crashes_end_the_pool_once(
    server: AioEchoServer, events: EventLog
) -> None:
    """A worker task that crashes (its machine refuses a message it does not know) is
    restarted with its id; crashes past 3 + workers within 5 s end the pool exactly once,
    "supervisor gave up", and a later stop() returns at once."""
    pool = Pool(loopback_config(server.port, size=2), name="crashy")
    await pool.start()
    await pool.await_ready(timeout=5, min_ready=2)
    pool._workers.workers["worker-1"].tell("not an event")  # type: ignore[arg-type]
    await until(pool, lambda: len(events.of("supervisor.child_restarted")) == 1, timeout=5)
    assert events.of("supervisor.child_restarted")[0][2]["child_id"] == "worker-1"
    await pool.await_ready(timeout=5, min_ready=2)

    deadline = time.monotonic() + 10
    while pool.ended is None:
        assert time.monotonic() < deadline, "the pool did not give up"
        for worker in list(pool._workers.workers.values()):
            worker.tell("not an event")  # type: ignore[arg-type]
        await asyncio.sleep(0.01)
    await asyncio.wait_for(pool.stop(), timeout=5)

    assert pool.ended == "supervisor gave up"
    assert len(events.of("supervisor.shutdown")) == 1
    assert "crashy" not in grpcpool.tasks._pool.POOLS


@pytest.mark.asyncio
async def test_scaling_down_during_a_move_leaves_the_replacement_alone(
    server: AioEchoServer,
) -> None:
    """A worker started to replace another is not the pool's to scale: scale_down stops
    one of the pool's own workers, and the expected size is what the caller asked for."""
    async with Pool(loopback_config(server.port, size=3), name="moving") as pool:
        await pool.await_ready(timeout=5, min_ready=3)
        replacement = pool._workers.add(f"127.0.0.1:{server.port}", replacement=True)

        assert await pool.scale_down(1) == 2

        assert replacement in pool._workers.workers
        assert len([w for w in pool._workers.workers if w != replacement]) == 2
