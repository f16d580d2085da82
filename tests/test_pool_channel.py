"""The pool as a grpc.Channel: stubs built once, each call routed when it starts.

Against real grpcio servers on 127.0.0.1 (tests.servers.EchoServer): calls of
all four kinds through ``grpcpool.channel``, a stub kept across a server
restart, a scale down and a pool restart, calls failing as grpc calls do when
nothing is ready, calls in flight counted, ``least_in_flight`` steering
around a busy connection, passive health checks and connectivity.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import grpc
import pykka
import pytest

import grpcpool
from grpcpool import NotConnectedError, PoolCallError, PoolChannel, PoolSpec, Supervisor
from grpcpool.connection import open_channel_count
from grpcpool.core import ReadyConnection
from tests.events import EventLog
from tests.pools import free_port, loopback_config
from tests.servers import HOLD, UNAVAILABLE, EchoServer, EchoStub
from tests.test_reliability import crash_workers_until
from tests.waiting import wait_for, wait_until


@pytest.fixture
def stopped_pools() -> Iterator[list[str]]:
    """Names of pools the test starts with grpcpool.start; stopped afterwards."""
    names: list[str] = []
    try:
        yield names
    finally:
        for name in names:
            grpcpool.stop(name)


def start(names: list[str], port: int, name: str, size: int = 2, **keys: Any) -> None:
    """Starts pool ``name`` under the default supervisor; ``pool`` keys via ``pool=``."""
    grpcpool.start(loopback_config(port, size, **keys), name=name)
    names.append(name)


def peer_of_each_call(server: EchoServer) -> list[str]:
    """The client address the server saw for each call, in order."""
    return list(server.peers)


# --- calls of every kind ---------------------------------------------------------


def test_pool_channel_is_a_grpc_channel_and_every_call_kind_works(
    echo_server: EchoServer, stopped_pools: list[str]
) -> None:
    """grpcpool.channel() is a grpc.Channel; unary (call, with_call, future), unary-stream,
    stream-unary and stream-stream calls all run through it, with metadata passed on."""
    start(stopped_pools, echo_server.port, "kinds")
    channel = grpcpool.channel("kinds")
    assert isinstance(channel, grpc.Channel) and isinstance(channel, PoolChannel)
    assert grpcpool.pool("kinds").channel().get() == channel
    grpcpool.await_ready("kinds", timeout=5)
    stub = EchoStub(channel)

    assert stub.Unary(b"a", timeout=5, metadata=(("x-test", "1"),)) == b"a"
    assert ("x-test", "1") in echo_server.metadata[-1]
    response, call = stub.Unary.with_call(b"b", timeout=5)
    assert (response, call.code()) == (b"b", grpc.StatusCode.OK)
    assert stub.Unary.future(b"c", timeout=5).result(timeout=5) == b"c"
    assert list(stub.Repeat(b"d", timeout=5)) == [b"d"] * 3
    assert stub.Join(iter([b"e", b"f"]), timeout=5) == b"ef"
    assert stub.Join.with_call(iter([b"g"]), timeout=5)[0] == b"g"
    assert stub.Join.future(iter([b"h"]), timeout=5).result(timeout=5) == b"h"
    assert list(stub.Chat(iter([b"i", b"j"]), timeout=5)) == [b"i", b"j"]
    compressed = stub.Unary(b"k", timeout=5, compression=grpc.Compression.Gzip)
    assert compressed == b"k"


def test_calls_spread_over_the_connections_and_reuse_one_multi_callable_each(
    echo_server: EchoServer, stopped_pools: list[str]
) -> None:
    """Round robin through the pool channel reaches every connection (distinct peers at
    the server); each connection builds the method's multi-callable once."""
    start(stopped_pools, echo_server.port, "spread", size=3)
    grpcpool.await_ready("spread", timeout=5, min_ready=3)
    stub = EchoStub(grpcpool.channel("spread"))
    echo_server.peers.clear()

    for _ in range(9):
        stub.Unary(b"x", timeout=5)

    assert len(set(echo_server.peers)) == 3
    connections = grpcpool.api.lookup("spread").view.connections
    built = [dict(c.callables) for c in connections]
    assert all(len(callables) == 1 for callables in built)
    for _ in range(6):
        stub.Unary(b"y", timeout=5)
    assert [dict(c.callables) for c in connections] == built  # the same objects, none new


def test_positional_arguments_follow_grpc_order_and_unknown_ones_are_refused(
    echo_server: EchoServer, stopped_pools: list[str]
) -> None:
    """A multi-callable takes timeout, metadata, ... positionally as grpc's do, and an
    unknown keyword is a TypeError naming it."""
    start(stopped_pools, echo_server.port, "args")
    grpcpool.await_ready("args", timeout=5)
    unary = EchoStub(grpcpool.channel("args")).Unary

    assert unary(b"p", 5, (("x-pos", "2"),)) == b"p"
    assert ("x-pos", "2") in echo_server.metadata[-1]
    with pytest.raises(TypeError, match="deadline"):
        unary(b"p", deadline=5)
    with pytest.raises(TypeError, match="timeout"):
        unary(b"p", 5, timeout=5)


# --- a stub built once keeps working ------------------------------------------------


def test_a_stub_kept_across_a_server_kill_and_restart_works_again(
    stopped_pools: list[str],
) -> None:
    """A stub built on the pool channel before the server dies answers again once the
    server is back on the same port: never 'closed channel' ValueError."""
    port = free_port()
    server = EchoServer(port)
    try:
        start(stopped_pools, port, "restart", size=2)
        grpcpool.await_ready("restart", timeout=5, min_ready=2)
        stub = EchoStub(grpcpool.channel("restart"))
        assert stub.Unary(b"before", timeout=5) == b"before"
        server.kill()
        server.stop()
        assert wait_until(lambda: grpcpool.status("restart").current_size == 0, timeout=10)
        server = EchoServer(port)

        assert stub.Unary(b"after", timeout=10, wait_for_ready=True) == b"after"
        assert stub.Unary(b"again", timeout=5) == b"again"
    finally:
        server.stop()


def test_a_stub_survives_a_scale_down_that_retires_its_last_connection(
    echo_server: EchoServer, stopped_pools: list[str]
) -> None:
    """Scaling down closes connections (after the drain); a stub built before keeps
    answering, on the connections that remain."""
    start(stopped_pools, echo_server.port, "shrink", size=3, drain_timeout=0.1)
    grpcpool.await_ready("shrink", timeout=5, min_ready=3)
    stub = EchoStub(grpcpool.channel("shrink"))
    for _ in range(3):  # each connection has served the stub
        stub.Unary(b"x", timeout=5)
    channels_before = open_channel_count()

    assert grpcpool.scale_down("shrink", 2) == 1
    wait_for(lambda: open_channel_count() <= channels_before - 2, timeout=10)

    for _ in range(5):
        assert stub.Unary(b"y", timeout=5) == b"y"


def test_a_stub_survives_a_pool_restart_and_a_new_pool_of_the_same_name(
    echo_server: EchoServer,
    events: EventLog,
    supervisors: list[pykka.ActorRef[Any]],
) -> None:
    """A stub built on a pool channel keeps working when the pool's supervisor restarts
    the pool, and when the pool is stopped and a new one of that name starts."""
    config = loopback_config(echo_server.port, 2)
    supervisors.append(Supervisor.start(children=[PoolSpec(config, name="again")], max_restarts=5))
    grpcpool.await_ready("again", timeout=5, min_ready=2)
    stub = grpcpool.pool("again").stub(EchoStub).get()
    assert stub.Unary(b"1", timeout=5) == b"1"

    crash_workers_until(lambda: events.of("supervisor.shutdown"), timeout=10)
    assert stub.Unary(b"2", timeout=10, wait_for_ready=True) == b"2"

    grpcpool.stop("again")
    with pytest.raises(PoolCallError, match="shut down"):
        stub.Unary(b"3", timeout=5)
    supervisors.append(Supervisor.start(children=[PoolSpec(config, name="again")]))
    assert stub.Unary(b"4", timeout=10, wait_for_ready=True) == b"4"
    assert grpcpool.pool("again").stub(EchoStub).get() is stub  # cached per class


# --- no ready connection --------------------------------------------------------------


def test_no_ready_connection_fails_as_a_grpc_call_and_as_not_connected(
    stopped_pools: list[str],
) -> None:
    """With nothing listening, a call raises a PoolCallError that is a grpc.RpcError and
    grpc.Call with UNAVAILABLE and details naming the pool and its last error, and a
    NotConnectedError; future() and streaming calls return it as their call object."""
    start(stopped_pools, free_port(), "down")
    wait_for(lambda: grpcpool.status("down").workers[0].last_error, timeout=10)
    stub = EchoStub(grpcpool.channel("down"))

    with pytest.raises(grpc.RpcError) as caught:
        stub.Unary(b"x", timeout=5)
    error = caught.value
    assert isinstance(error, grpc.Call) and isinstance(error, NotConnectedError)
    assert error.code() is grpc.StatusCode.UNAVAILABLE
    assert "'down'" in error.details() and "last error" in error.details()
    future = stub.Unary.future(b"x", timeout=5)
    assert future.done() and future.exception() is not None
    assert future.exception().code() is grpc.StatusCode.UNAVAILABLE
    with pytest.raises(PoolCallError):
        future.result()
    with pytest.raises(grpc.RpcError):
        list(stub.Repeat(b"x", timeout=5))
    with pytest.raises(grpc.RpcError):
        next(iter(stub.Chat(iter([b"x"]), timeout=5)))


def test_a_name_with_no_pool_fails_with_unavailable_naming_it() -> None:
    """A pool channel for a name no pool runs under fails calls with UNAVAILABLE at
    once, even with wait_for_ready (waiting cannot make a pool start)."""
    stub = EchoStub(grpcpool.channel("never-started"))
    for wait in (False, True):
        with pytest.raises(PoolCallError, match="never-started") as caught:
            stub.Unary(b"x", timeout=5, wait_for_ready=wait)
        assert caught.value.code() is grpc.StatusCode.UNAVAILABLE


def test_wait_for_ready_waits_up_to_the_timeout_then_deadline_exceeded(
    stopped_pools: list[str],
) -> None:
    """wait_for_ready with nothing ready waits for about the call's timeout, then fails
    with DEADLINE_EXCEEDED (still a NotConnectedError)."""
    start(stopped_pools, free_port(), "late")
    stub = EchoStub(grpcpool.channel("late"))
    started = time.monotonic()

    with pytest.raises(PoolCallError) as caught:
        stub.Unary(b"x", timeout=0.5, wait_for_ready=True)

    assert caught.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
    assert 0.4 <= time.monotonic() - started < 5.0
    # Given in grpc's positional order: timeout, metadata, credentials, wait_for_ready.
    with pytest.raises(PoolCallError) as caught:
        stub.Unary(b"x", 0.2, None, None, True)
    assert caught.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
    with pytest.raises(TypeError, match="deadline"):
        stub.Unary(b"x", deadline=1)


# --- calls in flight and least_in_flight ----------------------------------------------


def test_calls_in_flight_are_counted_until_they_end(
    echo_server: EchoServer, stopped_pools: list[str]
) -> None:
    """status() counts the calls running through the pool channel, per worker and in
    total, and drops each when its response, error or stream end comes."""
    start(stopped_pools, echo_server.port, "count", size=2)
    grpcpool.await_ready("count", timeout=5, min_ready=2)
    stub = EchoStub(grpcpool.channel("count"))

    held = [stub.Unary.future(HOLD, timeout=20) for _ in range(3)]
    stream = stub.Repeat(HOLD, timeout=20)
    wait_for(lambda: grpcpool.status("count").in_flight == 4, timeout=5)
    status = grpcpool.status("count")
    assert sum(worker.in_flight for worker in status.workers) == 4
    stream.cancel()
    wait_for(lambda: grpcpool.status("count").in_flight == 3, timeout=5)
    echo_server.release_held()
    assert [future.result(timeout=5) for future in held] == [HOLD] * 3
    wait_for(lambda: grpcpool.status("count").in_flight == 0, timeout=5)
    with pytest.raises(grpc.RpcError):
        stub.Unary(UNAVAILABLE, timeout=5)
    assert grpcpool.status("count").in_flight == 0


def test_least_in_flight_sends_no_call_to_a_connection_that_is_busy(
    echo_server: EchoServer, stopped_pools: list[str]
) -> None:
    """With one connection holding a call, least_in_flight sends every new call to the
    others (each draw compares two distinct connections; the busy one loses)."""
    start(stopped_pools, echo_server.port, "steer", size=4, pool={"strategy": "least_in_flight"})
    grpcpool.await_ready("steer", timeout=5, min_ready=4)
    stub = EchoStub(grpcpool.channel("steer"))
    echo_server.peers.clear()
    held = stub.Unary.future(HOLD, timeout=20)
    wait_for(lambda: len(echo_server.peers) == 1, timeout=5)
    busy_peer = echo_server.peers[0]

    for _ in range(40):
        stub.Unary(b"x", timeout=5)

    later = echo_server.peers[1:]
    assert len(later) == 40 and busy_peer not in later
    assert len(set(later)) == 3
    echo_server.release_held()
    assert held.result(timeout=5) == HOLD


def test_get_channel_works_under_least_in_flight(
    echo_server: EchoServer, stopped_pools: list[str]
) -> None:
    """Raw get_channel under least_in_flight hands out ready channels (nothing counted)."""
    start(stopped_pools, echo_server.port, "raw", size=2, pool={"strategy": "least_in_flight"})
    grpcpool.await_ready("raw", timeout=5, min_ready=2)
    ready = set(grpcpool.api.lookup("raw").view.channels)

    picked = {grpcpool.get_channel("raw") for _ in range(40)}

    assert picked == ready
    assert EchoStub(grpcpool.get_channel("raw")).Unary(b"r", timeout=5) == b"r"


# --- passive health ----------------------------------------------------------------


def test_an_unavailable_call_has_its_connection_checked_at_once_and_kept_if_healthy(
    echo_server: EchoServer, events: EventLog, stopped_pools: list[str]
) -> None:
    """A call that fails with UNAVAILABLE makes its worker ping now (ping_interval is an
    hour); a healthy answer keeps the connection; a burst of failures asks once."""
    start(stopped_pools, echo_server.port, "passive", size=1, ping_interval=3600.0)
    grpcpool.await_ready("passive", timeout=5)
    stub = EchoStub(grpcpool.channel("passive"))
    pings_before = len(events.of("channel.ping"))

    for _ in range(5):
        with pytest.raises(grpc.RpcError) as caught:
            stub.Unary(UNAVAILABLE, timeout=5)
        assert caught.value.code() is grpc.StatusCode.UNAVAILABLE

    wait_for(lambda: len(events.of("channel.ping")) > pings_before, timeout=5)
    assert [md["result"] for _, _, md in events.of("channel.ping")[pings_before:]] == ["ok"]
    assert grpcpool.status("passive").current_size == 1
    assert stub.Unary(b"fine", timeout=5) == b"fine"


def test_an_unavailable_call_takes_an_unhealthy_connection_out_at_once(
    echo_server: EchoServer, events: EventLog, stopped_pools: list[str]
) -> None:
    """A server that stopped serving is noticed by the check a failed call asks for,
    long before the next scheduled ping, and the connection leaves the rotation."""
    start(stopped_pools, echo_server.port, "unhealthy", size=1, ping_interval=3600.0)
    grpcpool.await_ready("unhealthy", timeout=5)
    echo_server.set_serving(False)
    stub = EchoStub(grpcpool.channel("unhealthy"))

    with pytest.raises(grpc.RpcError):
        stub.Unary(UNAVAILABLE, timeout=5)

    wait_for(lambda: grpcpool.status("unhealthy").current_size == 0, timeout=5)
    reasons = [md["reason"] for _, _, md in events.of("channel.disconnected")]
    assert "ping_failed" in reasons


# --- connectivity ----------------------------------------------------------------


def test_channel_ready_future_and_subscribe_follow_the_pool(stopped_pools: list[str]) -> None:
    """grpc.channel_ready_future resolves once the pool has a ready connection; a
    subscriber hears READY, then not READY when the server dies; close() ends the
    subscription and leaves the pool running."""
    port = free_port()
    start(stopped_pools, port, "watch", size=1)
    channel = grpcpool.channel("watch")
    future = grpc.channel_ready_future(channel)
    assert not future.done()
    seen: list[grpc.ChannelConnectivity] = []
    heard = threading.Condition()

    def record(state: grpc.ChannelConnectivity) -> None:
        with heard:
            seen.append(state)
            heard.notify_all()

    channel.subscribe(record)
    server = EchoServer(port)
    try:
        future.result(timeout=10)
        with heard:
            assert heard.wait_for(lambda: grpc.ChannelConnectivity.READY in seen, timeout=5)
        server.kill()
        with heard:
            assert heard.wait_for(
                lambda: seen[-1] is not grpc.ChannelConnectivity.READY, timeout=10
            )
        channel.close()
        count = len(seen)
        server.stop()
        server = EchoServer(port)
        grpcpool.await_ready("watch", timeout=10)
        assert len(seen) == count  # unsubscribed: nothing more heard
        assert "READY" in repr(channel)
    finally:
        server.stop()


class FailedCall(grpc.RpcError, grpc.Call):  # type: ignore[misc]
    """A failed call's error as grpcio shapes it: code and details (a fake for pure logic)."""

    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        self._code, self._details = code, details

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details

    def initial_metadata(self) -> Any:
        return ()

    def trailing_metadata(self) -> Any:
        return ()

    def is_active(self) -> bool:
        return False

    def time_remaining(self) -> Any:
        return None

    def cancel(self) -> bool:
        return False

    def add_callback(self, callback: Any) -> bool:
        return False


def test_only_an_unavailable_that_is_not_a_refused_stream_asks_for_a_check() -> None:
    """A stream refused at the server's stream limit says the connection is alive, so
    it asks for no check; a plain UNAVAILABLE asks once per interval; other codes never."""
    asked: list[int] = []
    connection = ReadyConnection(object(), "worker-1", lambda: asked.append(1))  # type: ignore[arg-type]
    refused = "Stream removed (RST_STREAM (Received RST_STREAM with error code 7))"

    connection.failed(FailedCall(grpc.StatusCode.UNAVAILABLE, refused), 100.0)
    connection.failed(FailedCall(grpc.StatusCode.INTERNAL, "boom"), 100.0)
    assert asked == []
    connection.failed(FailedCall(grpc.StatusCode.UNAVAILABLE, "Socket closed"), 100.0)
    connection.failed(FailedCall(grpc.StatusCode.UNAVAILABLE, "Socket closed"), 100.5)
    assert asked == [1]  # the second within SUSPECT_CHECK_INTERVAL is not passed on
    connection.failed(FailedCall(grpc.StatusCode.UNAVAILABLE, "Socket closed"), 101.0)
    assert asked == [1, 1]  # one interval later it is
