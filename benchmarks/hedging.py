"""Figures 13g and 13h: hedged calls (``pool.hedging``) against the four backends of figure 13.

Both use ``round_robin``, so that hedging alone acts on the latencies (a
latency-aware strategy would also steer calls away from a stalling backend),
and hedge the ``Where`` method the callers call, ``max_attempts`` 2,
``budget`` 0.1.

13g. ``delay`` ``"p95"`` (the method's 95th percentile latency in the pool,
     learnt): a healthy run, then the same pool with one backend stalling
     every 20th of its calls (5%) for 200 ms: the stalled run's p99 beside
     the healthy run's (goal <= 1.3x), and the hedged attempts in it, as a
     share of the calls (goal <= 10%). Hedged attempts are the attempts
     after the first that ``call.hedged`` reports (``attempts - 1``); a win
     is a call answered by one of them.
13h. Every backend +50 ms on every call, with a fixed ``delay`` of 10 ms:
     every call would be hedged without the budget, so the hedged attempts'
     share of the calls shows the budget capping them (goal <= ``budget``).
     A ``"p95"`` delay would follow the backends up and hedge about 5% of
     the calls, below the budget, and show nothing of it.
     The budget holds over its own sliding window (10 slots of 1 s); the
     figure's 15 s window is not aligned on those slots, and a call ends
     (and is counted here) up to 50 ms after the budget counted it, so the
     goal allows one attempt over ``budget`` x calls.
"""

from __future__ import annotations

import time
from typing import Any

from benchmarks.callers import Backends
from benchmarks.faults import (
    FAULTY,
    CallLog,
    Signals,
    Window,
    calling,
    describe,
    measure_window,
    pool_config,
    run_seconds,
    server,
    warm_seconds,
    watching,
)
from benchmarks.harness import Figure, Goal, Settings, compared
from benchmarks.pools import running_pool, unique_name
from benchmarks.server import WHERE_METHOD
from grpcpool import telemetry

__all__ = ["figure_13g", "figure_13h"]

BUDGET = 0.1
HEDGING: dict[str, Any] = {
    "methods": [WHERE_METHOD],
    "delay": "p95",
    "max_attempts": 2,
    "budget": BUDGET,
}
STALL_EVERY = 20
STALL_MS = 200
P99_GOAL = 1.3
HEDGED_GOAL = 10.0
ALL_SLOW_MS = 50
FIXED_DELAY = 0.01


def _hedges(signals: Signals, window: Window) -> tuple[int, int]:
    """(hedged attempts, calls a hedged attempt won) that ``call.hedged`` reported in ``window``."""
    attempts = wins = 0
    for at, measurements, _ in signals.of(telemetry.call_hedged):
        if not window.start <= at < window.end:
            continue
        made, won = measurements.get("attempts"), measurements.get("won")
        if isinstance(made, int):
            attempts += max(0, made - 1)
        if isinstance(won, int) and won >= 1:
            wins += 1
    return attempts, wins


def _hedged_share(signals: Signals, log: CallLog, window: Window) -> float:
    calls = len(log.between(window.start, window.end))
    return _hedges(signals, window)[0] / calls * 100 if calls else float("nan")


def _detail(signals: Signals, log: CallLog, window: Window) -> str:
    attempts, wins = _hedges(signals, window)
    return f"{describe(log, window)}; hedged attempts {attempts}, won by one {wins}"


def figure_13g(settings: Settings, backends: Backends) -> list[Figure]:
    """One backend stalling 5% of its calls: p99 beside the healthy run, hedged attempts."""
    name = unique_name("hedging")
    config = pool_config(backends, name, strategy="round_robin", hedging=HEDGING)
    with (
        watching(name, telemetry.call_hedged) as signals,
        running_pool(config),
        calling(name) as log,
    ):
        time.sleep(warm_seconds(settings) * 2)  # the method's p95 learnt
        healthy = measure_window(backends, run_seconds(settings))
        server(backends, FAULTY).fault(f"stall {STALL_EVERY} {STALL_MS}")
        stalled = measure_window(backends, run_seconds(settings))
    shape = (
        f"hedging delay p95, max_attempts 2, budget {BUDGET:g}, round_robin; {FAULTY} stalls "
        f"every {STALL_EVERY}th call {STALL_MS} ms"
    )
    return [
        compared(
            "13g",
            f"{shape}: p99 latency",
            [log.p(0.99, stalled.start, stalled.end)],
            "ms",
            "the same pool just before, no stall",
            [log.p(0.99, healthy.start, healthy.end)],
            goal=Goal("<=", P99_GOAL, f"<= {P99_GOAL:g}x"),
            note=f"stalled: {_detail(signals, log, stalled)}; "
            f"healthy: {_detail(signals, log, healthy)}",
        ),
        compared(
            "13g",
            "hedged attempts, % of calls, one backend stalling",
            [_hedged_share(signals, log, stalled)],
            "%",
            "healthy run",
            [_hedged_share(signals, log, healthy)],
            goal=Goal("<=", HEDGED_GOAL, f"<= {HEDGED_GOAL:g} %"),
            judge="value",
        ),
    ]


def figure_13h(settings: Settings, backends: Backends) -> list[Figure]:
    """Every backend slow past a fixed hedging delay: the budget caps the hedged attempts."""
    name = unique_name("hedging-budget")
    hedging = {**HEDGING, "delay": FIXED_DELAY}
    config = pool_config(backends, name, strategy="round_robin", hedging=hedging)
    with (
        watching(name, telemetry.call_hedged) as signals,
        running_pool(config),
        calling(name) as log,
    ):
        time.sleep(warm_seconds(settings))
        for each in backends.servers:
            each.fault(f"delay {ALL_SLOW_MS}")
        window = measure_window(backends, run_seconds(settings))
    calls = len(log.between(window.start, window.end))
    one_attempt = 100 / calls if calls else 0.0
    return [
        compared(
            "13h",
            f"every backend +{ALL_SLOW_MS} ms, hedging delay {FIXED_DELAY * 1000:g} ms (every "
            f"call past it), budget {BUDGET:g}: hedged attempts, % of calls",
            [_hedged_share(signals, log, window)],
            "%",
            goal=Goal(
                "<=",
                BUDGET * 100 + one_attempt,
                f"<= {BUDGET * 100:g} % (the budget) + one attempt",
            ),
            judge="value",
            note=_detail(signals, log, window),
        )
    ]
