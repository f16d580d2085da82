"""Refresh by age: ``connection.max_age`` replaces connections with no failed call."""

from __future__ import annotations

from collections import Counter

import grpc

from tests.behaviour.backends import Answer, Backends, settled, spread
from tests.behaviour.harness import Driver
from tests.behaviour.signals import Signals
from tests.servers import HOLD

MAX_AGE = 0.5


def test_connections_are_replaced_after_max_age_and_no_call_fails(
    driver: Driver, backends: Backends, signals: Signals
) -> None:
    """max_age 0.5 s on a pool of 2: calls made while every connection is replaced at
    least once all succeed, the ready count never drops below 2, and each replacement is
    a channel.refreshed "max_age" with the replaced connection's age (>= 0.45 s)."""
    backends.one()
    name = driver.start(backends.config(2, max_age=MAX_AGE, drain_timeout=0.5))
    driver.await_ready(min_ready=2)
    failures: list[str] = []
    lowest = 2
    while len(signals.of("channel.refreshed", name)) < 2:
        try:
            driver.call(b"aging")
        except grpc.RpcError as error:
            failures.append(f"{error.code()}: {error.details()}")
        lowest = min(lowest, driver.status().current_size)
        assert len(failures) < 20, failures
        if not signals.of("channel.refreshed", name):
            # The first refresh is due after at least 0.45 s: wait for it on its signal.
            signals.wait("channel.refreshed", sender=name, timeout=3)
    assert failures == []
    assert lowest >= 2
    refreshed = signals.of("channel.refreshed", name)
    assert all(m["reason"] == "max_age" for _, _, m in refreshed)
    assert all(measurements["age"] >= MAX_AGE * 0.9 for _, measurements, _ in refreshed)


def test_a_refresh_opens_new_connections_at_the_server(
    driver: Driver, backends: Backends, signals: Signals
) -> None:
    """After a refresh by age the server sees calls from a connection it had not seen
    before: the replacement is a new TCP connection, not the old one renamed."""
    backend = backends.one()
    name = driver.start(backends.config(1, max_age=MAX_AGE, drain_timeout=0.5))
    driver.await_ready(min_ready=1)
    driver.call(b"first")
    first_peer = backend.peers[-1]
    signals.wait("channel.refreshed", sender=name, timeout=3)
    driver.wait_status(lambda s: len(s.workers) == 1 and s.current_size == 1)
    driver.call(b"second")
    assert backend.peers[-1] != first_peer


def test_a_call_running_on_a_refreshed_connection_finishes(
    driver: Driver, backends: Backends, signals: Signals
) -> None:
    """A call held on a connection replaced by age still answers once released: the old
    connection drains (drain_timeout 5 s) instead of closing under it."""
    backend = backends.one()
    name = driver.start(backends.config(1, max_age=MAX_AGE, drain_timeout=5.0))
    driver.await_ready(min_ready=1)
    held = driver.begin(HOLD)
    driver.wait_status(lambda s: s.in_flight == 1)
    signals.wait("channel.refreshed", sender=name, timeout=3)
    backend.release_held()
    assert held.result(timeout=5) == HOLD


def test_refreshes_keep_the_connections_spread_over_the_backends(
    driver: Driver, backends: Backends, signals: Signals
) -> None:
    """max_age over two backends, a pool of 4: after four refreshes the pool is still
    2 per backend and both backends serve."""
    first, second = backends.start(2)
    answer = Answer([first.address, second.address])
    name = driver.start(backends.config(4, resolver=answer, max_age=MAX_AGE, drain_timeout=0.5))
    driver.await_ready(min_ready=4)
    signals.wait("channel.refreshed", lambda found: len(found) >= 4, sender=name, timeout=10)
    status = driver.wait_status(lambda s: settled(s, 4) and max(spread(s).values()) == 2)
    assert spread(status) == Counter({first.address: 2, second.address: 2})
    for _ in range(8):
        driver.call()
    assert first.calls > 0 and second.calls > 0


def test_while_a_connection_is_replaced_the_pool_lists_one_worker_more(
    driver: Driver, backends: Backends
) -> None:
    """During a refresh by age the pool lists its replacement worker too (size + 1
    records), while expected_size stays the size the user asked for."""
    backends.one()
    driver.start(backends.config(2, max_age=MAX_AGE, drain_timeout=0.5))
    driver.await_ready(min_ready=2)
    status = driver.wait_status(lambda s: len(s.workers) == 3, timeout=5)
    assert status.expected_size == 2
    assert status.current_size >= 2
