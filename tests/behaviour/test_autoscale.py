"""Autoscaling (``pool.autoscale``): the size follows the calls in flight, within its range."""

from __future__ import annotations

from typing import Any

import pytest

from grpcpool.errors import PoolSizeError
from tests.behaviour.backends import Backends, settled
from tests.behaviour.harness import Driver
from tests.behaviour.signals import Signals
from tests.servers import HOLD


class Newest:
    """A custom strategy: always the newest ready connection (the last in start order)."""

    def select(self, count: int) -> int:
        return count - 1


def autoscale(**keys: Any) -> dict[str, Any]:
    """``pool`` keys of an autoscaled pool that decides every 0.2 s."""
    return {"autoscale": {"interval": 0.2, **keys}}


def test_a_burst_of_slow_calls_grows_the_pool_and_it_shrinks_to_min_size_after(
    driver: Driver, backends: Backends, signals: Signals
) -> None:
    """6 held calls on a pool of 1 that grows above 2 calls a connection: it grows to 3 ready
    connections within a few intervals (pool.autoscaled says from 1, the peak of 6, nothing
    queued); once the calls answer, it shrinks back to min_size 1."""
    backend = backends.one()
    pool = autoscale(min_size=1, max_size=4, high_calls=2)
    name = driver.start(backends.config(1, pool=pool))
    driver.await_ready(min_ready=1)
    held = [driver.begin(HOLD, timeout=20) for _ in range(6)]
    driver.wait_status(lambda s: s.in_flight == 6 and backend.calls == 6, timeout=5)
    status = driver.wait_status(lambda s: settled(s, 3), timeout=10)
    assert status.autoscale == (1, 4)
    [(_, first, metadata), *_] = signals.wait("pool.autoscaled", sender=name)
    assert metadata == {"pool_name": name}
    assert first["from_size"] == 1 and first["to_size"] in (2, 3)
    assert (first["peak_in_flight"], first["queued"]) == (6, 0)
    assert signals.measurements("pool.scale_up", name)[0]["new_size"] == first["to_size"]
    backend.release_held()
    assert [call.result(timeout=5) for call in held] == [HOLD] * 6
    driver.wait_status(lambda s: settled(s, 1), timeout=10)
    shrunk = signals.wait("pool.autoscaled", lambda e: e[-1][1]["to_size"] == 1, sender=name)
    assert shrunk[-1][1]["peak_in_flight"] == 0


def test_a_connection_removed_by_autoscaling_drains_its_calls(
    driver: Driver, backends: Backends, signals: Signals
) -> None:
    """Two 3 s calls grow a pool (one call a connection) to 2 and a held call on the newest
    connection to 3; a fourth held call lands on the newest. Once the 3 s calls answer, the
    pool shrinks to 1 while the held calls still run on the connections it removes; they
    answer once released: no call fails, nothing is cancelled."""
    backend = backends.one()
    pool = autoscale(min_size=1, max_size=3, high_calls=1, low_calls=1)
    name = driver.start(backends.config(1, strategy=Newest(), pool=pool, drain_timeout=20.0))
    driver.await_ready(min_ready=1)
    assert backend.server is not None
    backend.server.delay = 3.0  # every echo call takes 3 s before it answers (or holds)
    slow = [driver.begin(b"slow", timeout=20) for _ in range(2)]
    driver.wait_status(lambda s: settled(s, 2), timeout=10)
    held = [driver.begin(HOLD, timeout=30)]
    driver.wait_status(lambda s: settled(s, 3), timeout=10)
    held.append(driver.begin(HOLD, timeout=30))
    status = driver.wait_status(lambda s: s.in_flight == 4)
    assert [w.in_flight for w in status.workers] == [2, 1, 1]
    assert [call.result(timeout=10) for call in slow] == [b"slow", b"slow"]
    driver.wait_status(lambda s: settled(s, 1), timeout=10)
    assert not any(call.done() for call in held)  # still running on the removed connections
    backend.release_held()
    assert [call.result(timeout=10) for call in held] == [HOLD, HOLD]
    assert backend.cancelled == 0
    steps = signals.wait("pool.autoscaled", lambda e: e[-1][1]["to_size"] == 1, sender=name)
    assert [m["to_size"] for _, m, _ in steps][:2] == [2, 3]


def test_scale_calls_on_an_autoscaled_pool_move_the_size_within_its_range(
    driver: Driver, backends: Backends, signals: Signals
) -> None:
    """min_size 2, max_size 4: the pool starts at pool.size 5 clamped to 4; scale_up, scale_down
    and resize stop at the range's ends instead of raising, a call that cannot move is a
    no-op; bad counts still raise; status shows the range."""
    backends.one()
    pool = {"autoscale": {"min_size": 2, "max_size": 4, "interval": 60.0}}
    name = driver.start(backends.config(5, pool=pool))
    driver.await_ready(min_ready=4)
    status = driver.status()
    assert (status.expected_size, status.autoscale) == (4, (2, 4))
    assert driver.scale_up(3) == 4  # at max_size already: nothing happens
    assert driver.scale_down(5) == 2
    driver.wait_status(lambda s: settled(s, 2))
    assert driver.scale_down(1) == 2
    assert driver.resize(10) == 4
    assert driver.resize(1) == 2
    assert driver.scale_up(1) == 3
    driver.wait_status(lambda s: settled(s, 3))
    ups = [(m["requested"], m["new_size"]) for m in signals.measurements("pool.scale_up", name)]
    downs = [(m["requested"], m["new_size"]) for m in signals.measurements("pool.scale_down", name)]
    assert (ups, downs) == ([(2, 4), (1, 3)], [(2, 2), (2, 2)])
    for method, count, error in [
        ("scale_up", 0, PoolSizeError),
        ("scale_down", -1, PoolSizeError),
        ("resize", 0, PoolSizeError),
        ("resize", "2", TypeError),
    ]:
        with pytest.raises(error):
            getattr(driver, method)(count)
    assert driver.status().expected_size == 3
    assert not signals.of("pool.autoscaled", name)


def test_a_pool_of_fixed_size_shows_no_autoscale_range_and_is_never_autoscaled(
    driver: Driver, backends: Backends, signals: Signals
) -> None:
    """Without pool.autoscale, status().autoscale is None and idle or busy the size stays."""
    backend = backends.one()
    name = driver.start(backends.config(3))
    driver.await_ready(min_ready=3)
    held = [driver.begin(HOLD) for _ in range(4)]
    status = driver.wait_status(lambda s: s.in_flight == 4)
    assert (status.autoscale, status.expected_size) == (None, 3)
    backend.release_held()
    assert [call.result(timeout=5) for call in held] == [HOLD] * 4
    assert driver.status().expected_size == 3 and not signals.of("pool.autoscaled", name)
