"""A resolver that pushes (``watch``): the pool follows its sets as they come, on both drivers.

The registry is :class:`tests.behaviour.push.Registry`, in process; the
backends are real servers on 127.0.0.2..5. The pool never polls it: the
scenarios set ``resolve_interval`` to 0.2 s, which a push resolver ignores.
"""

from __future__ import annotations

import time

from tests.behaviour.backends import Backend, Backends, settled, spread
from tests.behaviour.harness import Driver
from tests.behaviour.push import Registry
from tests.behaviour.signals import Signals
from tests.servers import HOLD


def addresses(backends: list[Backend]) -> list[str]:
    return [backend.address for backend in backends]


def running(backends: list[Backend]) -> int:
    """Echo calls in a handler now, over ``backends``."""
    return sum(sum(b.server.running.values()) for b in backends if b.server is not None)


def on(driver: Driver) -> set[str]:
    """The addresses the pool's ready connections go to."""
    return {connection.address for connection in driver.connections()}


def test_a_pushed_backend_gets_calls_at_once_and_a_removed_one_none_with_no_call_failed(
    driver: Driver, backends: Backends
) -> None:
    """A backend pushed into the set gets a share of calls within a second or two; one
    pushed out gets no new call once its connections left, and its calls in flight
    finish: no call fails."""
    three = backends.start(3)
    registry = Registry(addresses(three[:2]))
    driver.start(backends.config(4, resolver=registry, drain_timeout=10.0))
    driver.await_ready(min_ready=4)
    driver.wait_status(lambda s: settled(s, 4))
    assert registry.opened == 1
    started = time.monotonic()
    registry.set(addresses(three))
    driver.wait_until(lambda: three[2].address in on(driver), timeout=3.0)
    joined = time.monotonic() - started
    before = three[2].calls
    for _ in range(40):
        driver.call()
    assert three[2].calls - before >= 8, f"{three[2].calls - before} of 40 after {joined:.2f}s"
    held = [driver.begin(HOLD, timeout=20) for _ in range(8)]
    driver.wait_until(lambda: running(three) >= 8, timeout=5.0)
    registry.set(addresses(three[:2]))
    driver.wait_until(lambda: three[2].address not in on(driver), timeout=3.0)
    before = three[2].calls
    for _ in range(20):
        driver.call()
    assert three[2].calls == before
    backends.release_held()
    assert [call.result(timeout=10) for call in held] == [HOLD] * 8
    assert registry.opened == 1  # followed, never polled nor restarted


def test_an_empty_set_keeps_the_last_one_unless_the_resolver_allows_empty(
    driver: Driver, backends: Backends, signals: Signals
) -> None:
    """A registry emptied by mistake does not empty the pool: the last non-empty set is
    kept and calls go on; the next non-empty set is followed."""
    two = backends.start(2)
    registry = Registry(addresses(two))
    name = driver.start(backends.config(2, resolver=registry))
    driver.await_ready(min_ready=2)
    registry.set([])
    registry.set([])
    for _ in range(10):
        assert driver.call() == b"x"
    assert spread(driver.status()) == spread(driver.wait_status(lambda s: settled(s, 2)))
    registry.set(addresses(two[:1]))
    driver.wait_until(lambda: on(driver) == {two[0].address}, timeout=5.0)
    resolved = signals.wait("pool.resolved", lambda e: len(e) >= 2, sender=name)
    assert resolved[-1][2]["removed"] == [two[1].address]
    assert resolved[-1][2]["revision"] == 4


def test_a_failed_watch_is_started_again_and_the_pool_serves_its_last_set_meanwhile(
    driver: Driver, backends: Backends
) -> None:
    """A watch that fails (the registry out of reach) leaves the connections where they
    are and says why in status().resolver_error; a new watch is started with backoff,
    and once the registry answers again its set is followed."""
    two = backends.start(2)
    registry = Registry(addresses(two[:1]))
    driver.start(backends.config(2, resolver=registry))
    driver.await_ready(min_ready=2)
    registry.refuse = ConnectionError("registry unreachable")
    registry.break_watches(ConnectionError("stream lost"))
    assert driver.status().resolver_state in ("watching", "reconnecting")
    status = driver.wait_status(lambda s: s.resolver_error is not None)
    assert "stream lost" in (status.resolver_error or "")
    assert status.resolver_state == "reconnecting"
    for _ in range(10):
        assert driver.call() == b"x"
    registry.refuse = None
    registry.set(addresses(two))  # pushed to no one: the next watch reads it
    driver.wait_until(lambda: on(driver) == set(addresses(two)), timeout=10.0)
    status = driver.wait_status(lambda s: s.resolver_error is None)
    assert status.resolver_state == "watching"
    assert registry.opened == 2 and registry.open_watches == 1


def test_an_unusable_pushed_set_keeps_the_last_one_and_says_why(
    driver: Driver, backends: Backends
) -> None:
    """A pushed set that is not a list of "ip:port" changes nothing but resolver_error;
    the watch stays open and its next good set clears the error."""
    backend = backends.one()
    registry = Registry([backend.address])
    driver.start(backends.config(2, resolver=registry))
    driver.await_ready(min_ready=2)
    registry.push_raw(["backends.test:80"])
    driver.wait_status(lambda s: s.resolver_error is not None)
    assert driver.call() == b"x"
    registry.set([backend.address])
    driver.wait_status(lambda s: s.resolver_error is None)
    assert registry.opened == 1


def test_a_stopped_pool_closes_its_watch(driver: Driver, backends: Backends) -> None:
    """Stopping the pool closes the resolver's watch: nothing is pushed to a pool gone."""
    backend = backends.one()
    registry = Registry([backend.address])
    driver.start(backends.config(1, resolver=registry))
    driver.await_ready()
    driver.stop()
    driver.wait_until(lambda: registry.open_watches == 0, timeout=5.0)


def test_a_registry_out_of_reach_at_start_places_nothing_until_it_answers(
    driver: Driver, backends: Backends
) -> None:
    """A push resolver whose watch cannot start: the pool connects nowhere (it has no
    address), says why, tries again with backoff, and is ready once the registry answers."""
    backend = backends.one()
    registry = Registry([backend.address])
    registry.refuse = ConnectionError("registry unreachable")
    driver.start(backends.config(2, resolver=registry))
    status = driver.wait_status(lambda s: s.resolver_error is not None)
    assert "registry unreachable" in (status.resolver_error or "")
    assert status.current_size == 0 and backend.peers == []
    registry.refuse = None
    driver.await_ready(min_ready=2, timeout=10.0)
    assert on(driver) == {backend.address}
