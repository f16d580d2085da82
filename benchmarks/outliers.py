"""Figure 13: routing around slow and failing backends.

Four backends (:mod:`benchmarks.faults`: server processes on 127.0.0.2-.5,
faults switched while they run), a pool of 8 through ``grpcpool.channel``,
16 caller threads, 15 s per run; each run warms up on healthy backends
first, then the fault is switched on and the run measured. Every fault is
on 127.0.0.3. Each figure's control runs in the same run.

13a. One backend +50 ms on every call, ``peak_ewma``: its share of the calls
     (the servers' counts; goal <= 1%), and p99 and calls/s beside the same
     pool over the 3 healthy backends only (<= 1.25x, >= 0.95x), the two
     pools measured in 3 interleaved rounds of 5 s each (15 s per pool).
13b. That backend healed: the time until it answers >= 20% of the last 200
     calls again (its fair share is 25%; goal <= 20 s).
13c. One backend failing every call at once with ``UNAVAILABLE`` while its
     health service says SERVING, ``peak_ewma``: its share (<= 2%).
13d. The same fault under ``round_robin`` with ``outlier_detection``
     (``interval`` 1 s, ``failure_percentage`` ``threshold`` 50,
     ``minimum_hosts`` 2, ``request_volume`` 20, ``max_ejection_percent`` 50,
     ``success_rate`` off, the default ``base_ejection_time`` of 30 s): the
     time from the fault to ``pool.ejected`` (<= 2 s), the share of calls
     that failed after the ejection (<= 0.5%), and, the backend healed 15 s
     after the fault, the time from its ejection until it answers 20% of
     the calls again (goal: after its ejection time, within 2 s of it).
     (:mod:`benchmarks.ejection`)
13e. Three of the four backends failing, the same outlier detection with
     ``max_ejection_percent`` 100 and the default ``panic_threshold`` (50%):
     the distinct connections the servers saw calls from once the pool
     panicked (goal: every ready connection), and the calls the pool itself
     failed with ``NotConnectedError`` (goal 0). (:mod:`benchmarks.ejection`)
13f. No fault: ``peak_ewma`` beside ``round_robin``, both with the outlier
     detection of 13d, in 4 interleaved rounds (15 s of ``round_robin``,
     7.5 s of ``peak_ewma`` each): calls/s (>= 0.97x), each
     backend's share under ``peak_ewma`` (25% +- 5), and the ejections of
     either pool over the rounds (``round_robin``'s rounds total 60 s of
     calls in a full run; goal 0).
13g, 13h. Hedging (:mod:`benchmarks.hedging`).

In a full run the runs add up to about four and a half minutes (quick: 25 s).
"""

from __future__ import annotations

import functools
import time

from benchmarks import ejection, hedging
from benchmarks.callers import Backends
from benchmarks.faults import (
    FAULTY,
    HOSTS,
    OUTLIERS,
    RAMP,
    CallLog,
    Window,
    calling,
    describe,
    heal,
    measure_window,
    pool_config,
    run_seconds,
    server,
    wait_share,
    warm_seconds,
    watching,
)
from benchmarks.harness import Figure, Goal, Settings, compared, guarded, interleave
from benchmarks.pools import running_pool, unique_name
from grpcpool import telemetry

__all__ = ["STRATEGY", "run"]

# The strategy under test (figures 13a-13c, 13f).
STRATEGY = "peak_ewma"
SLOW_MS = 50
SLOW_SHARE_GOAL = 1.0
HEAL_GOAL = 20.0
FAILING_SHARE_GOAL = 2.0
EVEN_SHARE = 100 / len(HOSTS)
EVEN_MARGIN = 5.0
SERVER_THREADS = 32


def _steady(
    backends: Backends, settings: Settings, hosts: tuple[str, ...], fault: str = ""
) -> tuple[CallLog, Window]:
    """A ``STRATEGY`` pool over ``hosts``; ``fault`` on :data:`FAULTY` after the warm-up."""
    name = unique_name("steady")
    with running_pool(pool_config(backends, name, hosts, strategy=STRATEGY)), calling(name) as log:
        time.sleep(warm_seconds(settings))
        if fault:
            server(backends, FAULTY).fault(fault)
        window = measure_window(backends, run_seconds(settings))
    heal(backends)
    return log, window


# --- 13a, 13b --------------------------------------------------------------------------


def _figure_13ab(settings: Settings, backends: Backends) -> list[Figure]:
    rounds = settings.pick(3, 1)
    seconds = run_seconds(settings) / rounds
    healthy = tuple(host for host in HOSTS if host != FAULTY)
    # Role -> the hosts its pool spans: the control over the 3 healthy
    # backends only, the candidate over all 4, one of them slow.
    spans = {"baseline": healthy, "candidate": HOSTS}
    names = {role: unique_name(f"slow-{role}") for role in spans}
    results: dict[str, list[tuple[CallLog, Window]]] = {role: [] for role in spans}

    def measure(role: str) -> float:
        with calling(names[role]) as log:
            window = measure_window(backends, seconds, RAMP)
        results[role].append((log, window))
        return log.rate(window.start, window.end)

    limit = settings.pick(HEAL_GOAL + 5.0, 3.0)
    configs = {
        role: pool_config(backends, names[role], hosts, strategy=STRATEGY)
        for role, hosts in spans.items()
    }
    with running_pool(configs["baseline"]), running_pool(configs["candidate"]):
        for name in names.values():  # warm up on healthy backends
            with calling(name):
                time.sleep(warm_seconds(settings))
        server(backends, FAULTY).fault(f"delay {SLOW_MS}")
        rates = interleave(rounds, {role: functools.partial(measure, role) for role in spans})
        with calling(names["candidate"]) as log:
            time.sleep(RAMP)
            healed_from = len(log.calls)
            server(backends, FAULTY).fault("heal")
            healed = time.monotonic()
            reached = wait_share(log, FAULTY, healed_from, healed + limit)
    heal(backends)
    back = reached - healed if reached is not None else float("nan")

    def p99s(role: str) -> list[float]:
        return [log.p(0.99, window.start, window.end) for log, window in results[role]]

    def details(role: str) -> str:
        return "; ".join(describe(log, window) for log, window in results[role])

    shape = f"{FAULTY} +{SLOW_MS} ms, pool of 8 over 4 backends, 16 callers"
    control = "the same pool over the 3 healthy backends only"
    return [
        compared(
            "13a",
            f"{STRATEGY}: share of calls on the slow backend ({shape})",
            [window.shares()[FAULTY] for _, window in results["candidate"]],
            "%",
            goal=Goal("<=", SLOW_SHARE_GOAL, f"<= {SLOW_SHARE_GOAL:g} %"),
            judge="value",
            note=f"{details('candidate')}; 3 healthy backends only: {details('baseline')}",
        ),
        compared(
            "13a",
            f"{STRATEGY}: p99 latency, one backend +{SLOW_MS} ms",
            p99s("candidate"),
            "ms",
            control,
            p99s("baseline"),
            goal=Goal("<=", 1.25, "<= 1.25x"),
        ),
        compared(
            "13a",
            f"{STRATEGY}: calls/s, one backend +{SLOW_MS} ms",
            rates["candidate"],
            "calls/s",
            control,
            rates["baseline"],
            goal=Goal(">=", 0.95, ">= 0.95x"),
            note=f"{rounds} interleaved rounds of {seconds:g} s per pool",
        ),
        compared(
            "13b",
            f"{STRATEGY}: slow backend healed -> it answers >= 20% of the last 200 calls",
            [back],
            "s",
            goal=Goal("<=", HEAL_GOAL, f"<= {HEAL_GOAL:g} s"),
            judge="value",
            note="" if reached is not None else f"not reached within {limit:g} s",
        ),
    ]


# --- 13c -------------------------------------------------------------------------------


def _figure_13c(settings: Settings, backends: Backends) -> list[Figure]:
    log, window = _steady(backends, settings, HOSTS, fault="fail")
    return [
        compared(
            "13c",
            f"{STRATEGY}: share of calls on a backend failing every call with UNAVAILABLE "
            "(health SERVING)",
            [window.shares()[FAULTY]],
            "%",
            goal=Goal("<=", FAILING_SHARE_GOAL, f"<= {FAILING_SHARE_GOAL:g} %"),
            judge="value",
            note=describe(log, window),
        )
    ]


# --- 13f -------------------------------------------------------------------------------


def _figure_13f(settings: Settings, backends: Backends) -> list[Figure]:
    rounds = settings.pick(4, 1)
    # Role -> strategy; the roles keep the two pools apart whatever STRATEGY is.
    kinds = {"baseline": "round_robin", "candidate": STRATEGY}
    # round_robin's rounds add up to the 60 s of the "ejects nothing" goal.
    seconds = {"baseline": settings.pick(15.0, 1.0), "candidate": run_seconds(settings) / 2}
    names = {role: unique_name(f"calm-{kind}") for role, kind in kinds.items()}
    results: dict[str, list[tuple[CallLog, Window]]] = {role: [] for role in kinds}

    def measure(role: str) -> float:
        with calling(names[role]) as log:
            window = measure_window(backends, seconds[role], RAMP)
        results[role].append((log, window))
        return log.rate(window.start, window.end)

    configs = {
        role: pool_config(backends, names[role], strategy=kind, outlier_detection=OUTLIERS)
        for role, kind in kinds.items()
    }
    with (
        watching(names["baseline"], telemetry.pool_ejected) as baseline_ejections,
        watching(names["candidate"], telemetry.pool_ejected) as candidate_ejections,
        running_pool(configs["baseline"]),
        running_pool(configs["candidate"]),
    ):
        for name in names.values():  # warm up: callables, connections, latency estimates
            with calling(name):
                time.sleep(warm_seconds(settings))
        rates = interleave(rounds, {role: functools.partial(measure, role) for role in kinds})
    off_even = [
        max(abs(share - EVEN_SHARE) for share in window.shares().values())
        for _, window in results["candidate"]
    ]
    ejections = [
        len(baseline_ejections.of(telemetry.pool_ejected)),
        len(candidate_ejections.of(telemetry.pool_ejected)),
    ]

    def details(role: str) -> str:
        return "; ".join(describe(log, window) for log, window in results[role])

    return [
        compared(
            "13f",
            f"no fault: {STRATEGY} calls/s, pool of 8 over 4 backends, 16 callers, "
            "outlier detection on",
            rates["candidate"],
            "calls/s",
            "round_robin, same outlier detection",
            rates["baseline"],
            goal=Goal(">=", 0.97, ">= 0.97x"),
            note=f"{STRATEGY}: {details('candidate')}; round_robin: {details('baseline')}",
        ),
        compared(
            "13f",
            f"no fault: {STRATEGY}, the largest distance of a backend's share from "
            f"{EVEN_SHARE:g}%",
            off_even,
            "pp",
            goal=Goal("<=", EVEN_MARGIN, f"<= {EVEN_MARGIN:g} pp"),
            judge="value",
        ),
        compared(
            "13f",
            f"no fault: ejections over {rounds * seconds['baseline']:g} s of calls "
            f"(round_robin) and {rounds * seconds['candidate']:g} s ({STRATEGY})",
            [float(sum(ejections))],
            "ejections",
            goal=Goal("<=", 0, "0"),
            judge="value",
            note=f"round_robin {ejections[0]}, {STRATEGY} {ejections[1]}",
        ),
    ]


def run(settings: Settings) -> list[Figure]:
    """Figure 13 against four backend processes, every fault healed between scenarios."""
    figures: list[Figure] = []
    with Backends(HOSTS, threads=SERVER_THREADS, track_peers=True) as backends:
        for key, measure, label in (
            ("13a/13b", _figure_13ab, "one slow backend"),
            ("13c", _figure_13c, "one failing backend"),
            ("13d", ejection.figure_13d, "outlier detection"),
            ("13e", ejection.figure_13e, "three failing backends (panic)"),
            ("13f", _figure_13f, "no fault"),
            ("13g", hedging.figure_13g, "hedging, one backend stalling"),
            ("13h", hedging.figure_13h, "hedging, every backend slow"),
        ):
            figures.extend(guarded(key, label, functools.partial(measure, settings, backends)))
            heal(backends)
    return figures
