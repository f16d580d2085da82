"""The watcher's pace (how often it sweeps) and reading a target's port: pure rules."""

from __future__ import annotations

import itertools

import pytest

from grpcpool.connection._pace import (
    COST_FACTOR,
    GROWTH,
    IDLE_PERIOD,
    MAX_PERIOD,
    MIN_PERIOD,
    Pace,
    fast_period,
)
from grpcpool.connection._sockets import target_port

CHEAP = 1e-5  # CPU seconds of a sweep of a few channels


def settle(pace: Pace, sweeps: int) -> list[float]:
    """The pauses after ``sweeps`` quiet sweeps of settled channels."""
    return [pace.after_sweep(CHEAP, changed=False, settled=True) for _ in range(sweeps)]


def test_unsettled_channels_are_swept_at_the_shortest_period() -> None:
    """While some channel is not settled (connecting, or unheard) the pace stays fast."""
    pace = Pace()
    pauses = [pace.after_sweep(CHEAP, changed=False, settled=False) for _ in range(50)]
    assert pauses == [MIN_PERIOD] * 50
    assert not pace.idle


def test_settled_channels_slow_down_by_doubling_up_to_the_idle_period() -> None:
    """Quiet sweeps of settled channels double the pause until the idle period."""
    pace = Pace()
    pauses = settle(pace, 12)
    assert pauses[:3] == [MIN_PERIOD * GROWTH, MIN_PERIOD * GROWTH**2, MIN_PERIOD * GROWTH**3]
    assert all(b == min(IDLE_PERIOD, a * GROWTH) for a, b in itertools.pairwise(pauses))
    assert pauses[-1] == IDLE_PERIOD
    assert pace.idle
    # Long enough to save the sweeps, short enough that the backstop still comes.
    assert sum(pauses[: pauses.index(IDLE_PERIOD)]) < 2.0


def test_a_change_snaps_the_pace_back_to_fast() -> None:
    """A sweep that saw a change makes the next pause the shortest, however idle before."""
    pace = Pace()
    settle(pace, 20)
    assert pace.after_sweep(CHEAP, changed=True, settled=True) == MIN_PERIOD
    assert not pace.idle
    assert settle(pace, 1) == [MIN_PERIOD * GROWTH]


def test_a_hint_snaps_the_pace_back_to_fast() -> None:
    """hurry() (a connection hung up) makes the pace fast until the sweeps settle again."""
    pace = Pace()
    settle(pace, 20)
    pace.hurry()
    assert pace.period == MIN_PERIOD
    assert not pace.idle
    assert settle(pace, 1) == [MIN_PERIOD * GROWTH]


def test_an_unsettled_channel_ends_the_idle_pace() -> None:
    """A sweep that finds some channel unsettled (say one no longer heard) is fast again."""
    pace = Pace()
    settle(pace, 20)
    assert pace.after_sweep(CHEAP, changed=False, settled=False) == MIN_PERIOD


def test_costly_sweeps_are_spaced_by_their_cost() -> None:
    """A costly sweep is followed by COST_FACTOR times its cost, between the bounds."""
    assert fast_period(0.0) == MIN_PERIOD
    assert fast_period(0.004) == pytest.approx(COST_FACTOR * 0.004)
    assert fast_period(10.0) == MAX_PERIOD
    pace = Pace()
    assert pace.after_sweep(0.004, changed=False, settled=False) == pytest.approx(0.2)


def test_an_idle_pause_is_never_shorter_than_the_cost_allows() -> None:
    """Settled channels whose sweep costs more than the idle period allows are swept
    at the cost's pace, never faster."""
    pace = Pace()
    costly = 0.03  # fast period: 1.5 s, above the idle period
    pauses = [pace.after_sweep(costly, changed=False, settled=True) for _ in range(5)]
    assert all(pause == pytest.approx(fast_period(costly)) for pause in pauses)


@pytest.mark.parametrize(
    ("target", "port"),
    [
        ("127.0.0.1:50051", 50051),
        ("localhost:8080", 8080),
        ("dns:///api.example.com:443", 443),
        ("dns://8.8.8.8/api.example.com:443", 443),
        ("dns:api.example.com:9000", 9000),
        ("ipv4:10.0.0.1:7000", 7000),
        ("ipv6:[::1]:7001", 7001),
        ("[::1]:7002", 7002),
    ],
)
def test_a_targets_port_is_read(target: str, port: int) -> None:
    """The port of every target form that names exactly one port."""
    assert target_port(target) == port


@pytest.mark.parametrize(
    "target",
    [
        "unix:/tmp/grpc.sock",
        "unix-abstract:grpc",
        "ipv4:10.0.0.1:7000,10.0.0.2:7000",
        "api.example.com",
        "::1",
        "host:0",
        "host:70000",
        "host:http",
    ],
)
def test_a_target_without_one_certain_port_gives_none(target: str) -> None:
    """No port for a Unix socket, several addresses, no port or a port that is none:
    the watcher then sweeps fast for that channel."""
    assert target_port(target) is None
