"""Selection strategies through the pool channel and ``get_channel``."""

from __future__ import annotations

import time
from collections import Counter, deque

import grpc
import pytest

from grpcpool.core import ReadyConnection
from grpcpool.errors import StrategyError
from tests.behaviour.backends import Answer, Backend, Backends, settled, spread
from tests.behaviour.harness import Driver, Pending
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


# --- peak_ewma ----------------------------------------------------------------------------


def traffic(driver: Driver, calls: int, width: int = 4) -> int:
    """Makes ``calls`` unary calls through the pool channel, ``width`` at a time (as
    several callers would); returns how many failed."""
    failed = 0
    pending: deque[Pending[bytes]] = deque()

    def settle(call: Pending[bytes]) -> None:
        nonlocal failed
        try:
            call.result(timeout=10)
        except grpc.RpcError:
            failed += 1

    for _ in range(calls):
        if len(pending) >= width:
            settle(pending.popleft())
        pending.append(driver.begin(b"load", timeout=5))
    while pending:
        settle(pending.popleft())
    return failed


def peak_ewma_pool(driver: Driver, backends: Backends) -> tuple[Backend, Backend]:
    """A peak_ewma pool of 4 over 2 backends (two connections each, so a draw of both
    of one backend's connections would be possible; ewma_decay 1 s, so that estimates
    move within a test), warmed up with 40 calls."""
    two = backends.start(2)
    answer = Answer([backend.address for backend in two])
    driver.start(
        backends.config(4, resolver=answer, strategy="peak_ewma", pool={"ewma_decay": 1.0})
    )
    driver.await_ready(min_ready=4)
    status = driver.wait_status(lambda s: settled(s, 4))
    assert spread(status) == Counter({backend.address: 2 for backend in two})
    assert traffic(driver, 40) == 0
    return two[0], two[1]


def estimates(driver: Driver, backend: Backend | None = None) -> list[float | None]:
    """The latency estimates of the pool's ready connections (to ``backend`` only, if
    given). Figures, not the connections: a failed scenario's frames must not keep an
    asyncio pool's channels alive."""
    connections: tuple[ReadyConnection, ...] = driver.connections()
    return [
        c.stats.estimate for c in connections if backend is None or c.address == backend.address
    ]


def shunned(driver: Driver, backend: Backend, slower_than: float, timeout: float = 5.0) -> None:
    """Calls through the pool until each of its connections to ``backend`` has an
    estimate over ``slower_than`` seconds (its slow answers came back)."""
    deadline = time.monotonic() + timeout
    while (estimate := min(e or 0.0 for e in estimates(driver, backend))) <= slower_than:
        assert time.monotonic() < deadline, f"estimate {estimate}s after {timeout}s"
        traffic(driver, 10)


def share(driver: Driver, backend: Backend, calls: int) -> float:
    """The share of ``calls`` calls through the pool (4 at a time) that ``backend`` got."""
    before = backend.calls
    traffic(driver, calls)
    return (backend.calls - before) / calls


def test_peak_ewma_sends_few_calls_to_a_slow_backend(driver: Driver, backends: Backends) -> None:
    """peak_ewma over 2 backends, one turned 50 ms slow: once its slow answers are back,
    it gets a small share of 300 calls made 4 at a time (round robin would give it half;
    it is still tried now and then), and no call fails."""
    slow, fast = peak_ewma_pool(driver, backends)
    assert slow.server is not None
    slow.server.delay = 0.05
    shunned(driver, slow, slower_than=0.04)
    assert share(driver, slow, 300) <= 0.15
    assert fast.calls > slow.calls


def test_peak_ewma_sends_few_calls_to_a_backend_failing_every_call(
    driver: Driver, backends: Backends
) -> None:
    """A backend failing every call at once with UNAVAILABLE while its health says
    SERVING stays in the pool, but its fast failures count as slow answers: after the
    first few, it gets a small share of 300 calls (4 at a time), and so do the
    failures."""
    failing, _ = peak_ewma_pool(driver, backends)
    assert failing.server is not None
    failing.server.failing = grpc.StatusCode.UNAVAILABLE
    traffic(driver, 40)
    before = failing.calls
    failed = traffic(driver, 300)
    assert failing.calls - before <= 45
    assert failed <= 45
    assert len(driver.connections()) == 4  # still in the pool: only its calls fail


def test_peak_ewma_tries_a_healed_backend_again(driver: Driver, backends: Backends) -> None:
    """A backend 50 ms slow, shunned, then healed: its estimate drifts back toward the
    pool's typical latency (ewma_decay 1 s), it is tried, answers fast, and within a few
    seconds it gets at least a fifth of 100 calls again."""
    slow, _ = peak_ewma_pool(driver, backends)
    assert slow.server is not None
    slow.server.delay = 0.05
    shunned(driver, slow, slower_than=0.04)
    slow.server.delay = 0.0
    deadline = time.monotonic() + 8.0
    while share(driver, slow, 100) < 0.2:
        assert time.monotonic() < deadline, "the healed backend got no fair share within 8s"


def test_peak_ewma_hands_out_channels_but_learns_only_from_pool_channel_calls(
    driver: Driver, backends: Backends
) -> None:
    """get_channel with peak_ewma hands out every connection's channel (estimates
    unknown: a random pick), and calls on those channels teach nothing; a call through
    the pool channel gives its connection an estimate."""
    backend = backends.one()
    driver.start(backends.config(3, strategy="peak_ewma"))
    driver.await_ready(min_ready=3)
    for _ in range(60):
        driver.call_raw()
    assert len(set(backend.peers)) == 3
    assert estimates(driver) == [None, None, None]
    driver.call()
    driver.wait_until(lambda: sum(e is not None for e in estimates(driver)) == 1)
