"""A call that failed before it reached any server is sent to another connection.

When a backend dies, the pool's view still holds its connections for the few
milliseconds until their workers see them drop; a call routed to one then
fails at pick time (``UNAVAILABLE: failed to connect to all addresses``)
without having been sent. The pool channel sends such a call again to
another ready connection, so callers of a pool over several backends see a
kill only in the calls that were running on the killed backend. A call that
may have reached a server is never sent again.

The backends run in processes of their own (:class:`tests.servers.EchoProcess`),
one port on 127.0.0.2 to .4, so that a kill is a real ``SIGKILL``: the kernel resets
their connections, as when a server crashes.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import grpc
import pykka
import pytest

import grpcpool
from grpcpool import Config, PoolCallError
from grpcpool.aio import Pool
from grpcpool.api import lookup
from grpcpool.connection._watcher import STATES
from grpcpool.core import ReadyConnection
from grpcpool.core._reroute import NEVER_SENT, never_sent, untried
from grpcpool.core._view import build_view, empty_view
from grpcpool.strategy import RoundRobin
from tests.pools import start_pool
from tests.servers import HOLD, EchoProcess, EchoServer, EchoStub
from tests.waiting import wait_for

HOSTS = ("127.0.0.2", "127.0.0.3", "127.0.0.4")
SIZE = 6
CALLERS = 4
# An asyncio pool sees a drop within a few turns of its loop: more callers make
# more calls start in that window (tasks are cheap).
AIO_CALLERS = 16
KILLS = 5
# Calls made after each restart before the next kill: the pool is busy when it happens.
CALLS_BETWEEN = 100
READY_TIMEOUT = 20.0
READY = grpc.ChannelConnectivity.READY


# --- what a failure means, and which connection is next (pure) -------------------------


def failure(code: grpc.StatusCode, details: str) -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(), details=details)


def test_only_a_failure_at_pick_time_counts_as_never_sent() -> None:
    """UNAVAILABLE worded as grpcio's pick failure is never-sent; a call cut in flight,
    another code, the pool's own PoolCallError and a bare RpcError are not."""
    refused = f"{NEVER_SENT}; last error: UNKNOWN: ipv4:127.0.0.2:1: Connection refused"
    assert never_sent(failure(grpc.StatusCode.UNAVAILABLE, refused))
    assert not never_sent(failure(grpc.StatusCode.UNAVAILABLE, "Stream removed (Socket closed)"))
    assert not never_sent(failure(grpc.StatusCode.UNAVAILABLE, "Cancelling all calls"))
    assert not never_sent(failure(grpc.StatusCode.DEADLINE_EXCEEDED, refused))
    unready = PoolCallError.of(grpcpool.NotConnectedError(f"pool 'x': last error: {refused}"))
    assert not never_sent(unready)
    assert not never_sent(grpc.RpcError())


class First:
    """A strategy that always picks the first item."""

    def picker(self, items: tuple[Any, ...]) -> Callable[[], Any]:
        return lambda: items[0]


def view_of(connections: tuple[ReadyConnection, ...], strategy: Any) -> Any:
    workers = tuple(grpcpool.WorkerStatus(c.worker_id, "ready", time.time()) for c in connections)
    return build_view(
        "resend",
        strategy,
        empty_view("resend", len(connections), "running"),
        connections=connections,
        workers=workers,
        expected_size=len(connections),
        lifecycle="running",
    )


def test_the_next_connection_is_the_strategys_pick_never_one_tried() -> None:
    """untried() asks the strategy and skips tried connections; a strategy that keeps
    picking a tried one is passed over for the first untried; none left is None."""
    connections = tuple(ReadyConnection(object(), f"worker-{i}") for i in range(1, 4))  # type: ignore[arg-type]
    one, two, three = connections
    view = view_of(connections, RoundRobin())
    assert untried(view, [one]) in (two, three)
    assert untried(view, [one, three]) is two
    assert untried(view, connections) is None

    stubborn = view_of(connections, First())
    assert untried(stubborn, [one]) is two
    assert untried(stubborn, [one, two]) is three
    assert untried(empty_view("resend", 3, "running"), []) is None


# --- against real servers ----------------------------------------------------------------


class Backends:
    """Echo servers in processes of their own, one port, on 127.0.0.2 to .4."""

    def __init__(self) -> None:
        first = EchoProcess(host=HOSTS[0])
        self.port = first.port
        self.servers = {HOSTS[0]: first}
        try:
            for host in HOSTS[1:]:
                self.servers[host] = EchoProcess(self.port, host=host)
        except BaseException:
            self.stop()
            raise

    def config(self) -> Config:
        addresses = [f"{host}:{self.port}" for host in HOSTS]
        return Config.new(
            endpoint={
                "type": "local",
                "host": "kv.test",
                "port": self.port,
                "resolver": grpcpool.static_resolver(addresses),
                # Spread again soon once a killed backend is no longer avoided.
                "resolve_interval": 0.5,
            },
            pool={"size": SIZE},
            connection={"backoff_min": 0.05, "backoff_max": 0.5, "connect_timeout": 2.0},
        )

    def kill(self, host: str) -> None:
        """SIGKILL, and reaped: once this returns the kernel has reset its connections."""
        self.servers[host].kill()

    def restart(self, host: str) -> None:
        self.servers[host] = EchoProcess(self.port, host=host)

    def stop(self) -> None:
        for server in self.servers.values():
            server.stop()


@pytest.fixture
def backends() -> Iterator[Backends]:
    servers = Backends()
    try:
        yield servers
    finally:
        servers.stop()


@dataclass(frozen=True)
class Outcome:
    """One call: when it started and ended (time.monotonic) and its error, if any."""

    started: float
    ended: float
    error: str | None


#: How long after a backend's reap grpc may still write a call to its dead
#: socket, before it has read the reset (the asyncio test's allowance).
RESET_GRACE = 0.05


@dataclass(frozen=True)
class Kill:
    """A backend killed: from the SIGKILL until the kill was complete.

    Complete: the process is reaped and, in the sync test, the client's grpc
    has read the reset (the killed backend's channels left READY). A call
    grpc wrote to a connection before it read the reset (a fraction of a
    millisecond after the reap) may have been sent, as far as any client can
    tell, and counts as in flight. The pool's workers see the drop some
    milliseconds after grpc does: calls started in between are the ones that
    must not fail. The asyncio test cannot watch grpc's state without letting
    the pool's tasks run first, so it takes the reap plus
    :data:`RESET_GRACE` as complete: a loaded machine was seen to have grpc
    write two calls to the dead socket 3 ms after the reap ("Stream removed
    (sendmsg: Broken pipe)").
    """

    host: str
    began: float
    done: float


def channels_on(host: str, connections: tuple[ReadyConnection, ...], status: Any) -> list[Any]:
    """The channels of the ready connections pinned to ``host``."""
    workers = {
        w.worker_id for w in status.workers if w.address and w.address.rsplit(":", 1)[0] == host
    }
    return [c.channel for c in connections if c.worker_id in workers]


def sync_state(channel: grpc.Channel) -> grpc.ChannelConnectivity:
    """A sync channel's connectivity, as the pool's watcher reads it (no polling thread).

    SHUTDOWN once closed: a connection that left the pool closes as soon as its
    last call has ended.
    """
    try:
        return STATES[channel._channel.check_connectivity_state(False)]  # type: ignore[attr-defined]
    except ValueError:  # "Channel closed!"
        return grpc.ChannelConnectivity.SHUTDOWN


def unexcused(outcomes: list[Outcome], kills: list[Kill]) -> list[Outcome]:
    """Failed calls that were not running while a backend was being killed."""
    return [
        o
        for o in outcomes
        if o.error is not None
        and not any(o.started < kill.done and o.ended >= kill.began for kill in kills)
    ]


def spread(status: grpcpool.PoolStatus) -> Counter[str]:
    """Ready connections per host."""
    return Counter(
        w.address.rsplit(":", 1)[0] for w in status.workers if w.state == "ready" and w.address
    )


def killable(status: grpcpool.PoolStatus) -> bool:
    """All connections ready, on two hosts at least: a kill leaves some to call on.

    A killed backend's connections move to the others while it is down, and
    its address is avoided for a while (section 5a of the SPEC), so after a
    few kills the pool may sit on one host until it spreads again.
    """
    return status.current_size == SIZE and len(spread(status)) >= 2


def busiest(status: grpcpool.PoolStatus) -> str:
    """The host with the most ready connections (the one whose kill hits most)."""
    return spread(status).most_common(1)[0][0]


def test_sync_calls_started_after_a_backend_is_killed_do_not_fail(
    backends: Backends, supervisors: list[pykka.ActorRef[Any]]
) -> None:
    """Four threads make unary calls (call and with_call) through the pool channel of a
    pool of 6 over 3 backends while a backend is killed (SIGKILL) and restarted, 5
    times: no call started after a kill had completed fails; only calls running on the
    killed backend may."""
    start_pool(supervisors, backends.config(), "resend")
    grpcpool.await_ready("resend", timeout=READY_TIMEOUT, min_ready=SIZE)
    stub = EchoStub(grpcpool.channel("resend"))
    outcomes: list[Outcome] = []
    stop = threading.Event()

    def call() -> None:
        ways = itertools.cycle((stub.Unary, stub.Unary.with_call))
        while not stop.is_set():
            started = time.monotonic()
            try:
                next(ways)(b"ping", timeout=5)
                error = None
            except grpc.RpcError as failed:
                error = f"{failed.code()}: {failed.details()}"
            outcomes.append(Outcome(started, time.monotonic(), error))

    callers = [threading.Thread(target=call, name=f"caller-{i}") for i in range(CALLERS)]
    for caller in callers:
        caller.start()
    kills: list[Kill] = []
    try:
        for _ in range(KILLS):
            wait_for(lambda: killable(grpcpool.status("resend")), timeout=READY_TIMEOUT)
            made = len(outcomes)
            wait_for(lambda: len(outcomes) >= made + CALLS_BETWEEN, timeout=10)  # noqa: B023
            status = grpcpool.status("resend")
            host = busiest(status)
            channels = channels_on(host, lookup("resend").view.connections, status)
            began = time.monotonic()
            backends.kill(host)
            wait_for(
                lambda: all(sync_state(c) is not READY for c in channels),  # noqa: B023
                timeout=5,
                interval=0.0005,
            )
            kills.append(Kill(host, began, time.monotonic()))
            backends.restart(host)
        made = len(outcomes)
        wait_for(lambda: len(outcomes) >= made + CALLS_BETWEEN, timeout=10)
    finally:
        stop.set()
        for caller in callers:
            caller.join(10)

    assert unexcused(outcomes, kills) == []
    assert len(outcomes) > KILLS * CALLS_BETWEEN


# grpc.aio before 1.85 reports a call whose connection was lost as cancelled, whatever
# became of it, so the pool cannot tell one never sent from one that may have reached
# the server, and sends neither again (SPEC, section 5b).
@pytest.mark.skipif(
    tuple(int(part) for part in grpc.__version__.split(".")[:2]) < (1, 85),
    reason="grpc.aio before 1.85 does not say which lost calls were never sent",
)
@pytest.mark.asyncio
async def test_aio_calls_started_after_a_backend_is_killed_do_not_fail(
    backends: Backends,
) -> None:
    """The asyncio pool alike: tasks make unary and unary-stream calls through
    pool.channel() while a backend is killed and restarted, 5 times; no call started
    after a kill had completed fails."""
    async with Pool(backends.config(), name="resend") as pool:
        await pool.await_ready(timeout=READY_TIMEOUT, min_ready=SIZE)
        stub = EchoStub(pool.channel())
        outcomes: list[Outcome] = []
        stop = asyncio.Event()

        async def unary() -> Any:
            return await stub.Unary(b"ping", timeout=5)

        async def unary_stream() -> Any:
            return [response async for response in stub.Repeat(b"ping", timeout=5)]

        async def call() -> None:
            ways = itertools.cycle((unary, unary_stream))
            while not stop.is_set():
                started = time.monotonic()
                try:
                    await next(ways)()
                    error = None
                except grpc.RpcError as failed:
                    error = f"{failed.code()}: {failed.details()}"
                    await asyncio.sleep(0)  # a call failed at once: let the pool's tasks run
                outcomes.append(Outcome(started, time.monotonic(), error))

        async def until(predicate: Callable[[], bool]) -> None:
            while not predicate():
                await pool.wait_changed(None)

        async def calls_made(count: int) -> None:
            async def counted() -> None:
                while len(outcomes) < count:
                    await asyncio.sleep(0.01)

            await asyncio.wait_for(counted(), 10)

        callers = [asyncio.create_task(call()) for _ in range(AIO_CALLERS)]
        kills: list[Kill] = []
        try:
            for _ in range(KILLS):
                await asyncio.wait_for(until(lambda: killable(pool.status())), READY_TIMEOUT)
                await calls_made(len(outcomes) + CALLS_BETWEEN)
                host = busiest(pool.status())
                began = time.monotonic()
                await asyncio.to_thread(backends.kill, host)
                kills.append(Kill(host, began, time.monotonic() + RESET_GRACE))
                await asyncio.to_thread(backends.restart, host)
            await calls_made(len(outcomes) + CALLS_BETWEEN)
        finally:
            stop.set()
            await asyncio.wait(callers, timeout=10)

    assert unexcused(outcomes, kills) == []
    assert len(outcomes) > KILLS * CALLS_BETWEEN


def test_a_call_that_reached_a_server_is_not_sent_again(
    supervisors: list[pykka.ActorRef[Any]],
) -> None:
    """A call held by a backend that then stops hard fails (UNAVAILABLE) and is not
    sent to the other backend: it may have been acted on."""
    first = EchoServer(host=HOSTS[0])
    second = EchoServer(first.port, host=HOSTS[1])
    try:
        addresses = [f"{HOSTS[0]}:{first.port}", f"{HOSTS[1]}:{first.port}"]
        config = Config.new(
            endpoint={
                "type": "local",
                "host": "kv.test",
                "port": first.port,
                "resolver": grpcpool.static_resolver(addresses),
            },
            pool={"size": 2},
            connection={"backoff_min": 0.05, "backoff_max": 0.5},
        )
        start_pool(supervisors, config, "sent-once")
        grpcpool.await_ready("sent-once", timeout=5, min_ready=2)
        unary = EchoStub(grpcpool.channel("sent-once")).Unary
        outcomes: list[Any] = []

        def held() -> None:
            try:
                outcomes.append(unary(HOLD, timeout=10))
            except grpc.RpcError as error:
                outcomes.append(error)

        callers = [threading.Thread(target=held) for _ in range(2)]  # one on each backend
        for caller in callers:
            caller.start()
        wait_for(lambda: first.calls == 1 and second.calls == 1)

        first.kill()
        wait_for(lambda: len(outcomes) == 1)
        cut = outcomes[0]
        assert isinstance(cut, grpc.RpcError) and cut.code() is grpc.StatusCode.UNAVAILABLE
        assert not never_sent(cut)
        second.release_held()
        for caller in callers:
            caller.join(10)
        assert outcomes[1] == HOLD
        assert second.calls == 1  # the cut call was not sent to it again
    finally:
        first.stop()
        second.stop()
