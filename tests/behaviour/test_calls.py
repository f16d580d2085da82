"""Calls through the pool channel and through ``get_channel``: kinds, options, counting."""

from __future__ import annotations

import collections

import grpc
import pytest

from grpcpool.errors import NotConnectedError, PoolCallError
from tests.behaviour.backends import Backends
from tests.behaviour.harness import Driver
from tests.servers import HOLD, UNAVAILABLE


def test_a_pool_is_as_many_connections_as_its_size_and_round_robin_spreads_evenly(
    driver: Driver, backends: Backends
) -> None:
    """A pool of 4 is 4 distinct peers at the server; 40 calls through the pool channel
    land 10 on each."""
    backend = backends.one()
    driver.start(backends.config(4))
    driver.await_ready(min_ready=4)
    for _ in range(40):
        assert driver.call(b"spread") == b"spread"
    assert sorted(collections.Counter(backend.peers).values()) == [10, 10, 10, 10]


def test_get_channel_hands_out_every_ready_connection_in_turn(
    driver: Driver, backends: Backends
) -> None:
    """Calls on channels from get_channel, round robin, reach the 3 connections evenly:
    the same connections the pool channel uses."""
    backend = backends.one()
    driver.start(backends.config(3))
    driver.await_ready(min_ready=3)
    for _ in range(30):
        assert driver.call_raw(b"raw") == b"raw"
    raw_peers = collections.Counter(backend.peers)
    assert sorted(raw_peers.values()) == [10, 10, 10]
    for _ in range(3):
        driver.call(b"pooled")
    assert set(backend.peers[30:]) <= set(raw_peers)


def test_every_call_kind_runs_through_the_pool_channel(driver: Driver, backends: Backends) -> None:
    """Unary, unary-stream, stream-unary and stream-stream calls all work on a stub built
    on the pool channel, and nothing is left counted in flight afterwards."""
    backends.one()
    driver.start(backends.config(2))
    driver.await_ready(min_ready=2)
    stub = driver.stub()
    assert stub.unary(b"u") == b"u"
    assert stub.repeat(b"r") == [b"r", b"r", b"r"]
    assert stub.join([b"j", b"o", b"in"]) == b"join"
    assert stub.chat([b"c", b"h"]) == [b"c", b"h"]
    driver.wait_status(lambda status: status.in_flight == 0, timeout=2)


def test_metadata_reaches_the_server_through_the_pool_channel(
    driver: Driver, backends: Backends
) -> None:
    """Metadata given to a call through the pool channel arrives at the server."""
    backend = backends.one()
    driver.start(backends.config(2))
    driver.await_ready()
    driver.call(b"m", metadata=(("x-behaviour", "on"),))
    assert ("x-behaviour", "on") in backend.metadata[-1]


def test_a_call_timeout_passes_through_as_deadline_exceeded(
    driver: Driver, backends: Backends
) -> None:
    """A call the server holds past the call's timeout fails DEADLINE_EXCEEDED, as a
    grpc call does; the pool stays healthy."""
    backends.one()
    driver.start(backends.config(2))
    driver.await_ready(min_ready=2)
    with pytest.raises(grpc.RpcError) as raised:
        driver.call(HOLD, timeout=0.2)
    assert raised.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
    assert driver.status().status == "healthy"


def test_a_server_error_reaches_the_caller_unchanged(driver: Driver, backends: Backends) -> None:
    """A server answering UNAVAILABLE reaches the caller with its code and details; the
    connection stays in the pool, whose health check passes."""
    backends.one()
    driver.start(backends.config(2))
    driver.await_ready(min_ready=2)
    with pytest.raises(grpc.RpcError) as raised:
        driver.call(UNAVAILABLE)
    assert raised.value.code() is grpc.StatusCode.UNAVAILABLE
    assert "asked to answer UNAVAILABLE" in (raised.value.details() or "")
    assert driver.call(b"after") == b"after"
    assert driver.status().current_size == 2


def test_calls_in_flight_are_counted_per_connection_until_they_answer(
    driver: Driver, backends: Backends
) -> None:
    """Three held calls through the pool channel show in status().in_flight (3, spread
    1 and 2 over the workers) and the counts go back to 0 once they answer."""
    backend = backends.one()
    driver.start(backends.config(2))
    driver.await_ready(min_ready=2)
    held = [driver.begin(HOLD) for _ in range(3)]
    status = driver.wait_status(lambda s: s.in_flight == 3, timeout=5)
    assert sorted(w.in_flight for w in status.workers) == [1, 2]
    backend.release_held()
    assert [call.result(timeout=5) for call in held] == [HOLD] * 3
    status = driver.wait_status(lambda s: s.in_flight == 0, timeout=2)
    assert [w.in_flight for w in status.workers] == [0, 0]


def test_calls_on_a_get_channel_channel_are_not_counted_in_flight(
    driver: Driver, backends: Backends
) -> None:
    """A call held on a channel from get_channel runs at the server but is not counted
    in status().in_flight."""
    backend = backends.one()
    driver.start(backends.config(2))
    driver.await_ready(min_ready=2)
    before = backend.calls
    raw = driver.raw_stub().begin(HOLD)
    driver.wait_status(lambda s: backend.calls > before, timeout=5)
    assert driver.status().in_flight == 0
    backend.release_held()
    assert raw.result(timeout=5) == HOLD


def test_a_stub_kept_across_a_scale_down_keeps_working(driver: Driver, backends: Backends) -> None:
    """A stub built once on the pool channel keeps answering after the pool shrinks from
    3 to 1, on the one connection left."""
    backend = backends.one()
    driver.start(backends.config(3))
    driver.await_ready(min_ready=3)
    stub = driver.stub()
    assert stub.unary(b"before") == b"before"
    assert driver.scale_down(2) == 1
    driver.wait_status(lambda s: len(s.workers) == 1 and s.current_size == 1)
    seen = len(backend.peers)
    for _ in range(4):
        assert stub.unary(b"after") == b"after"
    assert len(set(backend.peers[seen:])) == 1


def test_with_nothing_ready_every_call_kind_fails_unavailable(
    driver: Driver, backends: Backends
) -> None:
    """With no ready connection, unary and streaming calls through the pool channel all
    fail with PoolCallError (a grpc.RpcError and NotConnectedError), code UNAVAILABLE."""
    backend = backends.one()
    backend.kill()
    driver.start(backends.config(2))
    stub = driver.stub()
    for call in (
        lambda: stub.unary(b"u"),
        lambda: stub.repeat(b"r"),
        lambda: stub.join([b"j"]),
        lambda: stub.chat([b"c"]),
    ):
        with pytest.raises(PoolCallError) as raised:
            call()
        assert isinstance(raised.value, grpc.RpcError)
        assert isinstance(raised.value, NotConnectedError)
        assert raised.value.code() is grpc.StatusCode.UNAVAILABLE


def test_compression_and_metadata_pass_through_together(driver: Driver, backends: Backends) -> None:
    """A gzip-compressed call with metadata through the pool channel answers, and the
    server sees the metadata."""
    backend = backends.one()
    driver.start(backends.config(1))
    driver.await_ready()
    payload = b"compressible " * 100
    answer = driver.call(
        payload, compression=grpc.Compression.Gzip, metadata=(("x-zipped", "yes"),)
    )
    assert answer == payload
    assert ("x-zipped", "yes") in backend.metadata[-1]


def test_two_pools_on_one_backend_are_distinct_connections(
    driver: Driver, backends: Backends
) -> None:
    """Two pools of 2 on the same backend are 4 connections at the server: no sharing
    of grpcio's global subchannel pool between pools or within one."""
    backend = backends.one()
    driver.start(backends.config(2), "left")
    driver.start(backends.config(2), "right")
    driver.await_ready(min_ready=2, name="left")
    driver.await_ready(min_ready=2, name="right")
    for _ in range(4):
        driver.call(name="left")
        driver.call(name="right")
    assert len(set(backend.peers)) == 4


def test_the_pool_channel_is_ready_once_a_connection_is(driver: Driver, backends: Backends) -> None:
    """Waiting for the pool channel to be ready (grpc.channel_ready_future, or
    channel_ready() on grpc.aio) times out while nothing is ready and returns once a
    connection is."""
    backend = backends.one()
    backend.kill()
    driver.start(backends.config(2))
    assert not driver.channel_ready(timeout=0.2)
    backend.restart()
    assert driver.channel_ready(timeout=5)
    assert driver.status().current_size >= 1


def test_each_connection_counts_how_the_calls_on_it_ended(
    driver: Driver, backends: Backends
) -> None:
    """Calls through the pool channel are counted on their connection as they end: 6 OK
    and 4 UNAVAILABLE from the server over a pool of 2 (round robin) add up to 6
    successes and 4 failures, and taking the counts starts them again."""
    backends.one()
    driver.start(backends.config(2))
    driver.await_ready(min_ready=2)
    for _ in range(6):
        assert driver.call(b"fine") == b"fine"
    for _ in range(4):
        with pytest.raises(grpc.RpcError) as failed:
            driver.call(UNAVAILABLE)
        assert failed.value.code() is grpc.StatusCode.UNAVAILABLE
    connections = driver.connections()
    driver.wait_until(lambda: sum(c.stats.successes + c.stats.failures for c in connections) == 10)
    taken = [c.stats.take_outcomes() for c in connections]
    assert (sum(s for s, _ in taken), sum(f for _, f in taken)) == (6, 4)
    assert all(c.stats.take_outcomes() == (0, 0) for c in connections)
