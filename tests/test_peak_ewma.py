"""The peak_ewma strategy's picker (grpcpool.PeakEwma) over items with call counts and stats.

The items stand in for ready connections: a ``calls`` set (calls in flight)
and a real :class:`~grpcpool.core._call_stats.CallStats`, fed with
:meth:`record` as the pool channel feeds it. The picker reads the real
clock, so estimates are recorded at ``time.monotonic()`` with a long decay
(they hardly drift during a test).
"""

from __future__ import annotations

import random
import time
from collections import Counter

import grpc
import pytest

from grpcpool import Config, PeakEwma
from grpcpool.core._call_stats import CallStats
from grpcpool.errors import ConfigError
from grpcpool.strategy import STRATEGY_NAMES, make_picker, resolve_strategy, routes_by_load

OK = grpc.StatusCode.OK
UNAVAILABLE = grpc.StatusCode.UNAVAILABLE


class Connection:
    """An item as a ready connection is to the picker: calls in flight and call stats."""

    def __init__(self, name: str, in_flight: int = 0, address: str | None = None) -> None:
        self.name = name
        self.address = address
        self.calls: set[object] = {object() for _ in range(in_flight)}
        self.stats = CallStats()

    def answered(self, seconds: float, times: int = 1, code: grpc.StatusCode = OK) -> None:
        """``times`` calls ended now, each after ``seconds``."""
        for _ in range(times):
            self.stats.record(seconds, code, time.monotonic())

    def __repr__(self) -> str:
        return f"Connection({self.name}, {len(self.calls)})"


def picks(strategy: PeakEwma, items: tuple[Connection, ...], count: int = 2000) -> Counter[str]:
    pick = make_picker(strategy, items)
    return Counter(pick().name for _ in range(count))


def test_peak_ewma_is_a_built_in_name_routing_by_load() -> None:
    """"peak_ewma" is a strategy name a config takes; it routes by load (its picker gets
    ready connections), and each resolution is a new instance with the pool's decay."""
    assert "peak_ewma" in STRATEGY_NAMES
    config = Config.new(
        endpoint={"type": "local", "host": "h", "port": 1},
        pool={"strategy": "peak_ewma", "ewma_decay": 3.0},
    )
    assert config.pool.strategy == "peak_ewma"
    first, second = resolve_strategy("peak_ewma", ewma_decay=3.0), resolve_strategy("peak_ewma")
    assert isinstance(first, PeakEwma) and isinstance(second, PeakEwma)
    assert first.latency is not second.latency
    assert (first.decay, second.decay) == (3.0, 10.0)
    assert routes_by_load(first)
    assert repr(first) == "PeakEwma(decay=3)"


def test_a_bad_decay_is_refused_naming_the_key() -> None:
    """PeakEwma(decay=0) or a negative decay: ConfigError naming pool.ewma_decay."""
    for bad in (0.0, -1.0):
        with pytest.raises(ConfigError, match=r"pool\.ewma_decay"):
            PeakEwma(bad)


def test_the_picker_hands_the_pool_latency_to_each_connection() -> None:
    """Building a picker makes each connection's stats keep an estimate with this pool's
    figures; before, they keep none."""
    items = (Connection("a"), Connection("b"))
    strategy = PeakEwma(5.0)
    assert all(item.stats.pool is None for item in items)
    make_picker(strategy, items)
    assert all(item.stats.pool is strategy.latency for item in items)


def test_a_slow_connection_loses_every_draw_to_idle_fast_ones() -> None:
    """Idle connections answering in 1 ms and one answering in 50 ms: the slow one is
    never picked, the fast ones share the calls."""
    items = (Connection("a"), Connection("slow"), Connection("b"), Connection("c"))
    strategy = PeakEwma(3600.0, random.Random(3))
    make_picker(strategy, items)
    for item in items:
        item.answered(0.050 if item.name == "slow" else 0.001, times=3)
    picked = picks(strategy, items)
    assert picked["slow"] == 0
    assert set(picked) == {"a", "b", "c"}


def test_a_slow_backend_s_two_connections_are_never_compared_with_each_other() -> None:
    """A pool of 8 over 4 backends, one backend slow on both its connections: the second
    draw is always on another backend, so the slow one is never picked (drawing both of
    its connections, 1 draw in 28, would otherwise send it the call)."""
    items = tuple(
        Connection(f"{address}{n}", address=address) for address in "abcd" for n in (1, 2)
    )
    strategy = PeakEwma(3600.0, random.Random(13))
    make_picker(strategy, items)
    for item in items:
        item.answered(0.050 if item.address == "a" else 0.001)
    picked = picks(strategy, items, 20_000)
    assert not any(name.startswith("a") for name in picked)
    assert len(picked) == 6


def test_the_second_draw_spreads_over_the_other_backends() -> None:
    """Equal estimates over uneven addresses (3 connections on one, 1 on another, 1 on a
    third): every connection is picked, none more than twice as often as another."""
    items = tuple(
        Connection(name, address=address)
        for name, address in (("a1", "a"), ("a2", "a"), ("a3", "a"), ("b", "b"), ("c", "c"))
    )
    strategy = PeakEwma(3600.0, random.Random(17))
    make_picker(strategy, items)
    for item in items:
        item.answered(0.002)
    picked = picks(strategy, items, 10_000)
    assert len(picked) == 5
    assert max(picked.values()) < 2 * min(picked.values())


def test_calls_in_flight_multiply_the_latency() -> None:
    """Cost is latency x (in flight + 1): a 1 ms connection with 9 calls in flight (cost
    10 ms) loses to an idle 5 ms one, and wins again once its calls end."""
    busy, idle = Connection("busy", in_flight=9), Connection("idle")
    strategy = PeakEwma(3600.0, random.Random(5))
    make_picker(strategy, (busy, idle))
    busy.answered(0.001)
    idle.answered(0.005)
    assert set(picks(strategy, (busy, idle), 50)) == {"idle"}
    busy.calls.clear()
    assert set(picks(strategy, (busy, idle), 50)) == {"busy"}


def test_a_hiccup_on_a_busy_connection_does_not_hand_calls_to_a_slow_backend() -> None:
    """A busy healthy connection (4 calls in flight, 3 ms answers) had one 25 ms hiccup,
    then kept answering in 3 ms; an idle connection to a backend 50 ms slow: after a few
    dozen fast answers the hiccup has faded (each pulls at least 1/8 of the way), so the
    healthy one's cost, about 3 ms x 5, stays below the slow one's 55 ms and the slow
    backend gets no call. (A peak faded by time alone stayed at 25 ms x 5 = 125 ms for
    seconds, and the slow backend won.)"""
    busy = Connection("busy", in_flight=4, address="a")
    slow = Connection("slow", address="b")
    strategy = PeakEwma(3600.0, random.Random(11))
    make_picker(strategy, (busy, slow))
    slow.answered(0.055)
    busy.answered(0.003, times=20)
    busy.answered(0.025)
    busy.answered(0.003, times=40)
    assert busy.stats.latency(time.monotonic()) < 0.004
    assert set(picks(strategy, (busy, slow), 200)) == {"busy"}


def test_a_connection_failing_fast_loses_to_healthy_ones() -> None:
    """A connection whose calls fail in 0.2 ms looks slower than ones answering in 1 ms:
    after a few failures it is not picked."""
    items = (Connection("a"), Connection("failing"), Connection("b"))
    strategy = PeakEwma(3600.0, random.Random(7))
    make_picker(strategy, items)
    for item in items:
        if item.name == "failing":
            item.answered(0.0002, times=3, code=UNAVAILABLE)
        else:
            item.answered(0.001, times=3)
    assert picks(strategy, items)["failing"] == 0


def test_equal_connections_share_the_calls() -> None:
    """Equal estimates and loads: ties go to the first draw, so the picks spread over
    every connection."""
    items = tuple(Connection(str(i)) for i in range(5))
    strategy = PeakEwma(3600.0, random.Random(9))
    make_picker(strategy, items)
    for item in items:
        item.answered(0.002)
    picked = picks(strategy, items, 5000)
    assert set(picked) == {str(i) for i in range(5)}
    assert max(picked.values()) < 2 * min(picked.values())


def test_before_any_call_the_pick_follows_calls_in_flight() -> None:
    """No call has ended yet (every estimate unknown): the cost orders by calls in
    flight alone, so a connection holding a call loses to idle ones."""
    items = (Connection("busy", in_flight=1), Connection("a"), Connection("b"))
    picked = picks(PeakEwma(rng=random.Random(11)), items)
    assert picked["busy"] == 0 and set(picked) == {"a", "b"}


def test_over_bare_channels_the_pick_is_uniform() -> None:
    """Items without call counts or stats (channels): a uniform random choice; a pool
    of one always gets its only item."""
    pick = make_picker(PeakEwma(rng=random.Random(1)), (0, 1, 2, 3))
    picked = Counter(pick() for _ in range(4000))
    assert set(picked) == {0, 1, 2, 3}
    assert max(picked.values()) < 2 * min(picked.values())
    assert make_picker(PeakEwma(), ("only",))() == "only"
