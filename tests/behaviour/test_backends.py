"""Many backends: spreading over 127.0.0.2..5, following the resolver and the backends' health."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable

import grpc
import pytest

import grpcpool
from grpcpool.errors import NotConnectedError, PoolTimeoutError
from tests.behaviour.backends import Answer, Backend, Backends, settled, spread
from tests.behaviour.harness import Driver
from tests.behaviour.signals import Signals


def addresses(backends: list[Backend]) -> list[str]:
    """Each backend's ``"ip:port"``, as a resolver answers them."""
    return [backend.address for backend in backends]


def call_while(driver: Driver, done: Callable[[], bool], timeout: float = 10.0) -> list[str]:
    """Calls through the pool channel until ``done()`` holds; returns the failures.

    The calls are the point (a user's traffic during a change of the pool),
    so this loop is paced by them, not by sleeps.
    """
    failures: list[str] = []
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, f"not done within {timeout}s: {driver.status()}"
        try:
            driver.call(b"traffic")
        except grpc.RpcError as error:
            failures.append(f"{error.code()}: {error.details()}")
    return failures


def test_connections_spread_evenly_over_four_backends_and_calls_follow(
    driver: Driver, backends: Backends
) -> None:
    """A pool of 8 over 4 resolved addresses sits 2 per address, each connection's peer
    is its address, and 80 calls land 20 on each backend."""
    four = backends.start(4)
    driver.start(backends.config(8, resolver=Answer(addresses(four))))
    driver.await_ready(min_ready=8)
    status = driver.wait_status(lambda s: settled(s, 8))
    assert spread(status) == Counter({address: 2 for address in addresses(four)})
    assert all(worker.peer == worker.address for worker in status.workers)
    for _ in range(80):
        driver.call()
    assert [backend.calls for backend in four] == [20, 20, 20, 20]


def test_a_static_resolver_spreads_the_same_way(driver: Driver, backends: Backends) -> None:
    """grpcpool.static_resolver over 3 addresses puts a pool of 6 at 2/2/2."""
    three = backends.start(3)
    driver.start(backends.config(6, resolver=grpcpool.static_resolver(addresses(three))))
    driver.await_ready(min_ready=6)
    status = driver.wait_status(lambda s: settled(s, 6))
    assert spread(status) == Counter({address: 2 for address in addresses(three)})


def test_with_more_addresses_than_connections_each_goes_to_another_address(
    driver: Driver, backends: Backends
) -> None:
    """A pool of 2 over 4 addresses takes 2 distinct addresses of the answer."""
    four = backends.start(4)
    driver.start(backends.config(2, resolver=Answer(addresses(four))))
    driver.await_ready(min_ready=2)
    used = spread(driver.wait_status(lambda s: settled(s, 2)))
    assert sorted(used.values()) == [1, 1]
    assert set(used) <= set(addresses(four))


def test_the_first_resolution_is_reported_with_every_address_added(
    driver: Driver, backends: Backends, signals: Signals
) -> None:
    """pool.resolved follows the first answer: how many addresses, all of them added."""
    three = backends.start(3)
    name = driver.start(backends.config(3, resolver=Answer(addresses(three))))
    [(_, measurements, metadata), *_] = signals.wait("pool.resolved", sender=name)
    assert measurements["addresses"] == 3 and measurements["duration"] >= 0
    assert metadata["added"] == sorted(addresses(three))
    assert metadata["removed"] == [] and metadata["pool_name"] == name


def test_a_new_address_gets_its_share_without_a_failed_call(
    driver: Driver, backends: Backends, signals: Signals
) -> None:
    """A 4th address in the resolver's answer gets connections until the spread is even;
    each move is a channel.refreshed "rebalance", and calls meanwhile all succeed."""
    four = backends.start(4)
    answer = Answer(addresses(four[:3]))
    name = driver.start(backends.config(6, resolver=answer))
    driver.await_ready(min_ready=6)
    answer.answer(addresses(four))

    def even() -> bool:
        status = driver.status()
        counts = spread(status)
        return settled(status, 6) and len(counts) == 4 and max(counts.values()) <= 2

    assert call_while(driver, even) == []
    for _ in range(12):
        driver.call()
    assert four[3].calls >= 2
    added = [metadata["added"] for metadata in signals.metadata("pool.resolved", name)]
    assert [four[3].address] in added
    reasons = {metadata["reason"] for metadata in signals.metadata("channel.refreshed", name)}
    assert reasons == {"rebalance"}


def test_a_vanished_address_loses_its_connections_without_a_failed_call(
    driver: Driver, backends: Backends, signals: Signals
) -> None:
    """An address gone from the answer keeps no connection: pool.resolved reports it
    removed, its connections move to the others (replacement ready first), calls
    meanwhile all succeed and then reach only the addresses still answered."""
    three = backends.start(3)
    answer = Answer(addresses(three))
    name = driver.start(backends.config(6, resolver=answer))
    driver.await_ready(min_ready=6)
    driver.wait_status(lambda s: settled(s, 6))
    answer.answer(addresses(three[:2]))

    def moved() -> bool:
        status = driver.status()
        return settled(status, 6) and three[2].address not in spread(status)

    assert call_while(driver, moved) == []
    removed = [metadata["removed"] for metadata in signals.metadata("pool.resolved", name)]
    assert [three[2].address] in removed
    before = three[2].calls
    for _ in range(10):
        driver.call()
    assert three[2].calls == before


def test_a_failing_resolver_keeps_the_last_good_answer_and_says_why(
    driver: Driver, backends: Backends
) -> None:
    """A resolver that starts raising leaves the connections where they are, calls keep
    working, status().resolver_error says why; a good answer clears it."""
    two = backends.start(2)
    answer = Answer(addresses(two))
    driver.start(backends.config(2, resolver=answer))
    driver.await_ready(min_ready=2)
    before = spread(driver.wait_status(lambda s: settled(s, 2)))
    answer.fail(OSError("name server unreachable"))
    status = driver.wait_status(lambda s: s.resolver_error is not None)
    assert "name server unreachable" in (status.resolver_error or "")
    assert spread(status) == before
    assert driver.call() == b"x"
    answer.answer(addresses(two))
    driver.wait_status(lambda s: s.resolver_error is None)


def test_a_resolver_answering_garbage_counts_as_a_failed_resolution(
    driver: Driver, backends: Backends
) -> None:
    """An answer that is not a list of "ip:port" is a failed resolution: the pool keeps
    its last good answer and says so in resolver_error."""
    backend = backends.one()
    answer = Answer([backend.address])
    driver.start(backends.config(2, resolver=answer))
    driver.await_ready(min_ready=2)
    answer.garbage(["not an address"])
    driver.wait_status(lambda s: s.resolver_error is not None)
    assert driver.status().current_size == 2
    assert driver.call() == b"x"


def test_without_a_first_answer_the_pool_connects_nowhere_until_one_comes(
    driver: Driver, backends: Backends
) -> None:
    """A resolver that fails from the start: no connection anywhere, get_channel raises
    NotConnectedError and await_ready times out, resolver_error says why; once the
    resolver answers, the pool becomes ready on that address."""
    backend = backends.one()
    answer = Answer([backend.address])
    answer.fail(OSError("no answer yet"))
    driver.start(backends.config(2, resolver=answer))
    with pytest.raises(NotConnectedError):
        driver.get_channel()
    with pytest.raises(PoolTimeoutError):
        driver.await_ready(timeout=0.3)
    status = driver.wait_status(lambda s: s.resolver_error is not None)
    assert status.current_size == 0 and backend.peers == []
    answer.answer([backend.address])
    driver.await_ready(min_ready=2)
    assert {worker.address for worker in driver.status().workers} == {backend.address}


def test_a_killed_backend_s_connections_move_to_the_live_one(
    driver: Driver, backends: Backends
) -> None:
    """Two backends, a pool of 4 (2/2): one backend killed, its connections move to the
    other at once (the pool is back to 4 ready there) and calls succeed."""
    first, second = backends.start(2)
    driver.start(backends.config(4, resolver=Answer(addresses([first, second]))))
    driver.await_ready(min_ready=4)
    driver.wait_status(lambda s: settled(s, 4))
    first.kill()
    status = driver.wait_status(
        lambda s: settled(s, 4) and set(spread(s)) == {second.address}, timeout=10
    )
    assert status.status == "healthy"
    before = second.calls
    for _ in range(8):
        assert driver.call() == b"x"
    assert second.calls == before + 8


def test_a_restarted_backend_gets_its_share_back(driver: Driver, backends: Backends) -> None:
    """A killed backend restarted on its address gets its share of connections back within
    seconds (not at the next resolution), and calls reach it again."""
    first, second = backends.start(2)
    driver.start(backends.config(4, resolver=Answer(addresses([first, second]))))
    driver.await_ready(min_ready=4)
    first.kill()
    driver.wait_status(lambda s: settled(s, 4) and set(spread(s)) == {second.address}, timeout=10)
    first.restart()
    status = driver.wait_status(
        lambda s: settled(s, 4) and spread(s)[first.address] == 2, timeout=10
    )
    assert spread(status)[second.address] == 2
    for _ in range(8):
        driver.call()
    assert first.calls >= 4


def test_an_address_with_nothing_listening_gets_no_connection(
    driver: Driver, backends: Backends
) -> None:
    """One answered address has no server from the start: all 4 connections end up on
    the live backend, and every call succeeds there."""
    live, dead = backends.start(2)
    dead.kill()
    driver.start(backends.config(4, resolver=Answer(addresses([live, dead]))))
    driver.await_ready(min_ready=2)
    driver.wait_status(lambda s: settled(s, 4) and set(spread(s)) == {live.address}, timeout=10)
    for _ in range(8):
        assert driver.call() == b"x"
    assert live.calls == 8


def test_a_resolution_that_hangs_is_abandoned_and_reported(
    driver: Driver, backends: Backends
) -> None:
    """A resolver that stops answering: after endpoint.resolve_timeout (0.3 s) the
    resolution is abandoned, status().resolver_error says so, and the pool keeps
    serving on its last answer."""
    backend = backends.one()
    answer = Answer([backend.address])
    release = threading.Event()

    def hanging(host: str, port: int) -> object:
        if answer.calls >= 1:
            release.wait(10)
        return answer(host, port)

    driver.start(backends.config(1, resolver=hanging, endpoint={"resolve_timeout": 0.3}))
    try:
        driver.await_ready()
        status = driver.wait_status(lambda s: s.resolver_error is not None, timeout=5)
        assert "resolve_timeout" in (status.resolver_error or "")
        assert driver.call() == b"x"
    finally:
        release.set()
