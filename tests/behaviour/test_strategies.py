"""Selection strategies through the pool channel and ``get_channel``."""

from __future__ import annotations

from collections import Counter

import pytest

from grpcpool.errors import StrategyError
from tests.behaviour.backends import Backends
from tests.behaviour.harness import Driver
from tests.servers import HOLD


class First:
    """A custom strategy: always the first ready channel."""

    def select(self, count: int) -> int:
        return 0


class OutOfRange:
    """A custom strategy that picks an index no ready channel has."""

    def select(self, count: int) -> int:
        return count


def test_least_in_flight_steers_around_a_connection_holding_a_call(
    driver: Driver, backends: Backends
) -> None:
    """least_in_flight, 2 connections: while one holds a call, the next 10 calls all go to
    the other one."""
    backend = backends.one()
    driver.start(backends.config(2, strategy="least_in_flight"))
    driver.await_ready(min_ready=2)
    held = driver.begin(HOLD)
    driver.wait_status(lambda s: s.in_flight == 1 and backend.calls == 1)
    [busy] = backend.peers
    for _ in range(10):
        assert driver.call(b"quick") == b"quick"
    quick = set(backend.peers[1:])
    assert len(quick) == 1 and busy not in quick  # the held call's connection got none
    backend.release_held()
    assert held.result(timeout=5) == HOLD


def test_least_in_flight_spreads_calls_when_nothing_is_held(
    driver: Driver, backends: Backends
) -> None:
    """With no call in flight least_in_flight draws two connections at random: 60 calls
    over a pool of 3 reach all three."""
    backend = backends.one()
    driver.start(backends.config(3, strategy="least_in_flight"))
    driver.await_ready(min_ready=3)
    for _ in range(60):
        driver.call()
    assert len(set(backend.peers)) == 3


@pytest.mark.parametrize("strategy", ["random", "power_of_two"])
def test_random_strategies_use_every_connection(
    driver: Driver, backends: Backends, strategy: str
) -> None:
    """random and power_of_two route 60 calls (pool channel and get_channel) over all
    three connections of a pool of 3."""
    backend = backends.one()
    driver.start(backends.config(3, strategy=strategy))
    driver.await_ready(min_ready=3)
    for _ in range(30):
        driver.call()
        driver.call_raw()
    assert len(set(backend.peers)) == 3


def test_a_custom_strategy_object_picks_the_connection(driver: Driver, backends: Backends) -> None:
    """A strategy object whose select() always answers 0 sends every call, through the
    pool channel or get_channel, to the same one connection of 3."""
    backend = backends.one()
    driver.start(backends.config(3, strategy=First()))
    driver.await_ready(min_ready=3)
    for _ in range(6):
        driver.call()
        driver.call_raw()
    assert list(Counter(backend.peers).values()) == [12]


def test_a_custom_pick_that_is_not_a_ready_channel_raises_strategy_error(
    driver: Driver, backends: Backends
) -> None:
    """A select() answering an index out of range: get_channel raises StrategyError
    saying what the strategy did; no wrong object is handed out, and calls through the
    pool channel fail rather than run on something else."""
    backends.one()
    driver.start(backends.config(2, strategy=OutOfRange()))
    driver.await_ready(min_ready=2)
    with pytest.raises(StrategyError, match="OutOfRange"):
        driver.get_channel()


def test_least_in_flight_for_get_channel_users_is_a_random_pick(
    driver: Driver, backends: Backends
) -> None:
    """Calls on get_channel channels are not counted, so least_in_flight hands them out
    at random: 60 such calls over a pool of 3 reach all three connections."""
    backend = backends.one()
    driver.start(backends.config(3, strategy="least_in_flight"))
    driver.await_ready(min_ready=3)
    for _ in range(60):
        driver.call_raw()
    assert len(set(backend.peers)) == 3
