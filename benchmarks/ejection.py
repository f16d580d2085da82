"""Figures 13d and 13e: outlier detection ejects a failing backend; panic when most fail.

Both run ``round_robin`` with the issue's outlier detection
(:data:`benchmarks.faults.OUTLIERS`) against the four backends of
:mod:`benchmarks.outliers`, which describes the figures.

13d. One backend fails every call at once with ``UNAVAILABLE`` (its health
     service still says SERVING, so only the calls tell): the time from the
     fault until the pool sends ``pool.ejected`` for it, the share of calls
     that failed from the ejection until the backend heals (15 s after the
     fault), and the time from the ejection until the healed backend
     answers 20% of the last 200 calls again, which should be its ejection
     time (``base_ejection_time``, 30 s by default) plus at most an interval
     and the calls that fill the window.
13e. Three of four backends fail every call; with ``max_ejection_percent``
     100 the pool ejects all three, leaving 2 of its 8 connections usable,
     under the default ``panic_threshold`` of 50%: it panics and routes to
     every ready connection. The figure counts the distinct client
     connections the servers saw calls from after ``pool.panic``, and the
     calls the pool failed for want of a connection (``NotConnectedError``).
"""

from __future__ import annotations

import time

import grpcpool
from benchmarks.callers import Backends
from benchmarks.faults import (
    FAULTY,
    HOSTS,
    NOT_CONNECTED,
    OUTLIERS,
    SIZE,
    Signals,
    calling,
    describe,
    measure_window,
    pool_config,
    run_seconds,
    server,
    wait_share,
    warm_seconds,
    watching,
)
from benchmarks.harness import Figure, Goal, Settings, compared
from benchmarks.pools import running_pool, unique_name
from grpcpool import telemetry

__all__ = ["figure_13d", "figure_13e"]

EJECTION_GOAL = 2.0
FAILED_GOAL = 0.5
# The return is judged against the ejection time plus this (an interval, the window's calls).
RETURN_MARGIN = 2.0
# The 15 s fault phase is shorter than the default 30 s ejection time, so the
# backend heals while ejected; quick runs shorten both.
QUICK_EJECTION_TIME = 3.0
DEFAULT_EJECTION_TIME = 30.0


def figure_13d(settings: Settings, backends: Backends) -> list[Figure]:
    """One failing backend: ejection time, failed calls after it, the healed backend's return."""
    ejection_time = float(settings.pick(DEFAULT_EJECTION_TIME, QUICK_EJECTION_TIME))
    outliers = {**OUTLIERS, "base_ejection_time": ejection_time}
    fault_seconds = float(settings.pick(15.0, 2.5))
    name = unique_name("ejection")
    signals_seen = (telemetry.pool_ejected, telemetry.pool_unejected)
    config = pool_config(backends, name, strategy="round_robin", outlier_detection=outliers)
    with (
        watching(name, *signals_seen) as signals,
        running_pool(config),
        calling(name) as log,
    ):
        time.sleep(warm_seconds(settings) * 2)  # every unit past request_volume before the fault
        faulted = time.monotonic()
        server(backends, FAULTY).fault("fail")
        time.sleep(fault_seconds)
        healed_from = len(log.calls)
        server(backends, FAULTY).fault("heal")
        healed = time.monotonic()
        ejected = signals.first(telemetry.pool_ejected, faulted, FAULTY)
        limit = (ejected if ejected is not None else healed) + ejection_time + 10.0
        returned = wait_share(log, FAULTY, healed_from, max(limit, healed + 5.0))
    unejected = signals.first(telemetry.pool_unejected, faulted, FAULTY)
    after = ejected if ejected is not None else faulted + EJECTION_GOAL
    failures = log.failures(after, healed)
    calls = len(log.between(after, healed))
    others = [
        str(metadata.get("address"))
        for _, _, metadata in signals.of(telemetry.pool_ejected)
        if not str(metadata.get("address", "")).startswith(FAULTY + ":")
    ]
    took = ejected - faulted if ejected is not None else float("nan")
    back = returned - ejected if returned is not None and ejected is not None else float("nan")
    shape = (
        f"round_robin + outlier_detection (interval 1 s, failure_percentage 50, "
        f"minimum_hosts 2, request_volume 20, max_ejection_percent 50), {FAULTY} failing"
    )
    failed = ", ".join(f"{n} {kind}" for kind, n in failures.most_common()) or "0"
    return [
        compared(
            "13d",
            f"{shape}: fault -> pool.ejected",
            [took],
            "s",
            goal=Goal("<=", EJECTION_GOAL, f"<= {EJECTION_GOAL:g} s"),
            judge="value",
            note=(
                ("no pool.ejected for it" if ejected is None else "")
                + (f"; other units ejected: {', '.join(others)}" if others else "")
            ).strip("; "),
        ),
        compared(
            "13d",
            "failed calls from the ejection until the backend healed",
            [log.failed_share(after, healed)],
            "%",
            goal=Goal("<=", FAILED_GOAL, f"<= {FAILED_GOAL:g} %"),
            judge="value",
            note=(
                f"failed {failed} of {calls} calls in {healed - after:.1f} s"
                + ("" if ejected is not None else f" (counted from fault + {EJECTION_GOAL:g} s)")
            ),
        ),
        compared(
            "13d",
            f"healed {fault_seconds:g} s after the fault: ejection -> it answers >= 20% of the "
            f"last 200 calls (ejection time {ejection_time:g} s)",
            [back],
            "s",
            goal=Goal(
                "<=",
                ejection_time + RETURN_MARGIN,
                f"after {ejection_time:g} s, <= {ejection_time + RETURN_MARGIN:g} s",
            ),
            judge="value",
            note=(
                f"pool.unejected {unejected - ejected:.2f} s after the ejection"
                if unejected is not None and ejected is not None
                else "no pool.unejected seen"
            )
            + ("" if returned is not None else "; its share not reached")
            + (
                "; back BEFORE its ejection time"
                if back == back and back < ejection_time
                else ""
            ),
        ),
    ]


def figure_13e(settings: Settings, backends: Backends) -> list[Figure]:
    """Three failing backends: calls reach every ready connection, the pool fails none itself."""
    failing = HOSTS[1:]
    settle = float(settings.pick(5.0, 2.5))
    name = unique_name("panic")
    outliers = {**OUTLIERS, "max_ejection_percent": 100}
    config = pool_config(backends, name, strategy="round_robin", outlier_detection=outliers)
    with (
        watching(name, telemetry.pool_ejected, telemetry.pool_panic) as signals,
        running_pool(config),
        calling(name) as log,
    ):
        time.sleep(warm_seconds(settings))
        faulted = time.monotonic()
        for host in failing:
            server(backends, host).fault("fail")
        deadline = faulted + settle
        while time.monotonic() < deadline and _panicked(signals, faulted) is None:
            time.sleep(0.05)
        panicked = _panicked(signals, faulted)
        window = measure_window(
            backends, max(run_seconds(settings) - (time.monotonic() - faulted), 0.5)
        )
        ready = grpcpool.status(name).current_size
    reached = sum(count.peers for count in window.counts.values())
    not_connected = log.failures(faulted, window.end)[NOT_CONNECTED]
    ejected = len(signals.of(telemetry.pool_ejected))
    when = (
        f"pool.panic {panicked - faulted:.2f} s after the fault"
        if panicked is not None
        else f"no pool.panic within {settle:g} s of the fault"
    )
    per_backend = "/".join(str(count.peers) for count in window.counts.values())
    return [
        compared(
            "13e",
            f"3 of 4 backends failing ({', '.join(failing)}), round_robin + outlier_detection "
            "(max_ejection_percent 100), panic_threshold 50: connections the calls reached",
            [float(reached)],
            "conns",
            goal=Goal(">=", SIZE, f">= {SIZE} (every connection of the pool)"),
            judge="value",
            note=(
                f"{when}; {ejected} pool.ejected; connections per backend .2/.3/.4/.5 "
                f"{per_backend}; pool of {SIZE}, {ready} ready at the end; "
                f"{describe(log, window)}"
            ),
        ),
        compared(
            "13e",
            "calls the pool failed itself (NotConnectedError), 3 of 4 backends failing",
            [float(not_connected)],
            "calls",
            goal=Goal("<=", 0, "0"),
            judge="value",
        ),
    ]


def _panicked(signals: Signals, since: float) -> float | None:
    """When the pool first reported entering panic at ``since`` or later."""
    for at, measurements, _ in signals.of(telemetry.pool_panic):
        if at >= since and measurements.get("active") == 1:
            return at
    return None
