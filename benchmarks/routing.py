"""Figure 9: RPCs through the pool channel (``grpcpool.channel``), routed per call.

9a. Unary echo calls on a stub built once on ``grpcpool.channel(name)``,
    beside the same calls on hand-made distinct channels (figure 4's shape
    and baseline): what routing each call at call time costs.
9b. One slow connection: the server delays every echo call on one chosen
    connection by 50 ms (``benchmarks.server``'s ``Slow`` control method,
    sent on that connection). A pool of 4 with ``round_robin``,
    ``power_of_two`` and ``least_in_flight``, 16 callers: the share of calls
    the slow connection got and the p50 and p99 latencies. grpcio's one
    channel with ``connectionScaling`` opens more connections only when its
    first one is out of streams, so it runs against a second server with
    ``max_concurrent_streams`` 4, beside ``least_in_flight`` on that same
    server; there the connection that carried the mark is the slow one.
9c. Figure 5's stream-limited server (``max_concurrent_streams`` 4, 20 ms
    handler, 32 callers): a ``least_in_flight`` pool of 8 through the pool
    channel beside one channel with ``connectionScaling``, failed calls
    counted.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import grpcpool
from benchmarks.harness import (
    Figure,
    Goal,
    Settings,
    compared,
    guarded,
    interleave,
    median,
    percentile,
    pinned,
    split_cpus,
)
from benchmarks.pools import distinct_channels, pool_config, running_pool, unique_name
from benchmarks.rpc import SCALING_CONFIG, Outcome, Picker, drive, round_robin_picker
from benchmarks.server import ECHO_METHOD, ServerProcess, distinct_peers, mark_slow, slow_calls

__all__ = ["run"]

SLOW_MS = 50.0
SLOW_WIDTH = 4  # pool size and maxConnectionsPerSubchannel in figure 9b
SLOW_CALLERS = 16
SLOW_SCALING_CONFIG = json.dumps({"connectionScaling": {"maxConnectionsPerSubchannel": SLOW_WIDTH}})
STRATEGIES = ("round_robin", "power_of_two", "least_in_flight")


def _constant(stub: Any) -> Picker:
    """A picker that always returns ``stub``: the pool channel routes inside each call."""
    return lambda: stub


def _pool_channel_stub(name: str) -> Any:
    """The echo multi-callable on ``grpcpool.channel(name)``, built once as a user would."""
    return grpcpool.channel(name).unary_unary(ECHO_METHOD)


def _timed(stub: Any, latencies: list[float]) -> Any:
    """``stub``, recording each successful call's seconds in ``latencies``.

    ``list.append`` is atomic under the GIL, so all callers share one list.
    """
    perf_counter = time.perf_counter

    def call(request: bytes, **options: Any) -> Any:
        started = perf_counter()
        response = stub(request, **options)
        latencies.append(perf_counter() - started)
        return response

    return call


# --- figure 9a -------------------------------------------------------------------------


def _rate(pick: Picker, threads: int, calls: int) -> float:
    return drive(pick, threads, calls=calls).rate


def _figure_9a(settings: Settings, cpus: frozenset[int] | None) -> list[Figure]:
    size: int = settings.pick(4, 2)
    threads = 4
    calls = settings.pick(400, 20)  # per thread and round
    rounds = settings.pick(15, 2)
    name = unique_name("routing")
    with (
        ServerProcess(threads=16, cpus=cpus) as server,
        running_pool(pool_config(server.port, size, name)),
        distinct_channels(server.target, size) as channels,
    ):
        pickers = {
            "pool channel": _constant(_pool_channel_stub(name)),
            "hand-made": round_robin_picker(channels),
        }
        for pick in pickers.values():  # warm up: callables, connections, server threads
            drive(pick, threads, calls=settings.pick(50, 5))
        results = interleave(
            rounds,
            {
                label: functools.partial(_rate, pick, threads, calls)
                for label, pick in pickers.items()
            },
        )
    return [
        compared(
            "9a",
            f"unary echo via a stub built once on grpcpool.channel() "
            f"({threads} caller threads, pool of {size}, round_robin, 64 B echo)",
            results["pool channel"],
            "calls/s",
            f"{size} hand-made distinct channels",
            results["hand-made"],
            goal=Goal(">=", 0.97, ">= 0.97x"),
        )
    ]


# --- figure 9b -------------------------------------------------------------------------


@dataclass
class _SlowRound:
    """One round against a server with one slow connection."""

    latencies: list[float] = field(default_factory=list)
    slow: int = 0
    total: int = 0
    failed: Counter[str] = field(default_factory=Counter)
    peers: int = 0
    rate: float = 0.0

    @property
    def share(self) -> float:
        return self.slow / self.total * 100 if self.total else float("nan")


@contextmanager
def _slow_client(kind: str, server: ServerProcess) -> Iterator[Any]:
    """A fresh client of ``kind`` whose first connection is marked slow; its echo stub."""
    if kind == "scaling":
        options = ("grpc.service_config", SLOW_SCALING_CONFIG)
        with distinct_channels(server.target, 1, options) as (channel,):
            mark_slow(channel, SLOW_MS)  # the only connection yet: later ones are fast
            yield channel.unary_unary(ECHO_METHOD)
        return
    name = unique_name(f"slow-{kind}")
    with running_pool(pool_config(server.port, SLOW_WIDTH, name, strategy=kind)):
        mark_slow(grpcpool.get_channel(name), SLOW_MS)  # one connection of the pool
        yield _pool_channel_stub(name)


def _slow_round(kind: str, server: ServerProcess, duration: float) -> _SlowRound:
    result = _SlowRound()
    with _slow_client(kind, server) as stub:
        distinct_peers(server.target, reset=True)
        outcome = drive(_constant(_timed(stub, result.latencies)), SLOW_CALLERS, duration=duration)
        result.slow, result.total = slow_calls(server.target)
        result.peers = distinct_peers(server.target, reset=True)
    result.failed, result.rate = outcome.failed, outcome.rate
    return result


def _figure_9b(settings: Settings, cpus: frozenset[int] | None) -> list[Figure]:
    duration = settings.pick(1.5, 0.2)
    rounds = settings.pick(3, 1)
    # (label, kind, which server): the strategies on a server without a stream
    # limit; connectionScaling and least_in_flight on one with a limit of 4.
    runs = [(kind, kind, "free") for kind in STRATEGIES]
    runs += [("scaling", "scaling", "limited"), ("limited", "least_in_flight", "limited")]
    results: dict[str, list[_SlowRound]] = {label: [] for label, _, _ in runs}
    with (
        ServerProcess(threads=64, track_peers=True, cpus=cpus) as free,
        ServerProcess(max_streams=4, threads=64, track_peers=True, cpus=cpus) as limited,
    ):
        servers = {"free": free, "limited": limited}

        def measure(label: str, kind: str, where: str) -> float:
            results[label].append(_slow_round(kind, servers[where], duration))
            return 0.0

        for server in servers.values():  # warm up the servers' threads
            _slow_round("round_robin", server, settings.pick(0.3, 0.05))
        interleave(
            rounds,
            {label: functools.partial(measure, label, kind, where) for label, kind, where in runs},
        )

    def p(label: str, fraction: float) -> list[float]:
        return [percentile(r.latencies, fraction) * 1000 for r in results[label]]

    def share(label: str) -> list[float]:
        return [r.share for r in results[label]]

    def detail(label: str) -> str:
        rounds_ = results[label]
        failed: Counter[str] = Counter()
        for r in rounds_:
            failed.update(r.failed)
        failures = ", ".join(f"{n} {code}" for code, n in failed.items()) or "0"
        peers = "/".join(str(r.peers) for r in rounds_)
        return (
            f"p50 {median(p(label, 0.5)):.1f} ms; {median(share(label)):.1f}% of calls on the "
            f"slow connection; {median([r.rate for r in rounds_]):,.0f} calls/s; "
            f"{sum(r.total for r in rounds_)} calls, failed {failures}; "
            f"server saw {peers} connection(s) per round"
        )

    shape = f"pool of {SLOW_WIDTH}, one connection +{SLOW_MS:.0f} ms, {SLOW_CALLERS} callers"
    figures = [
        compared(
            "9b",
            f"least_in_flight: share of calls on the slow connection ({shape})",
            share("least_in_flight"),
            "%",
            "round_robin",
            share("round_robin"),
            goal=Goal("<=", 10.0, "<= 10 %"),
            judge="value",
        ),
        compared(
            "9b",
            f"least_in_flight: p99 latency ({shape})",
            p("least_in_flight", 0.99),
            "ms",
            "round_robin p99",
            p("round_robin", 0.99),
            goal=Goal("<=", 1 / 3, "<= 0.333x"),
            note=detail("least_in_flight"),
        ),
    ]
    for label in ("power_of_two", "round_robin"):
        figures.append(
            compared(
                "9b",
                f"{label}: p99 latency (same)",
                p(label, 0.99),
                "ms",
                "round_robin p99",
                p("round_robin", 0.99),
                note=detail(label),
            )
        )
    figures.append(
        compared(
            "9b",
            f"one channel + connectionScaling (maxConnectionsPerSubchannel {SLOW_WIDTH}): "
            "p99 latency, server max_concurrent_streams 4",
            p("scaling", 0.99),
            "ms",
            "least_in_flight, same server",
            p("limited", 0.99),
            note=f"{detail('scaling')}; least_in_flight there: {detail('limited')}",
        )
    )
    return figures


# --- figure 9c -------------------------------------------------------------------------


@contextmanager
def _limited_client(kind: str, server: ServerProcess, width: int) -> Iterator[Picker]:
    if kind == "pool channel":
        name = unique_name("limited-channel")
        with running_pool(pool_config(server.port, width, name, strategy="least_in_flight")):
            yield _constant(_pool_channel_stub(name))
    else:
        options = ("grpc.service_config", SCALING_CONFIG)
        with distinct_channels(server.target, 1, options) as channels:
            yield round_robin_picker(channels)


def _failed_share(outcome: Outcome) -> float:
    """The % of one round's calls that failed."""
    failed = sum(outcome.failed.values())
    total = outcome.ok + failed
    return failed / total * 100 if total else float("nan")


def _figure_9c(settings: Settings, cpus: frozenset[int] | None) -> list[Figure]:
    duration = settings.pick(2.0, 0.3)
    width = 8  # as maxConnectionsPerSubchannel in SCALING_CONFIG
    rounds = settings.pick(7, 2)
    kinds = ("pool channel", "scaling")
    outcomes: dict[str, list[Outcome]] = {kind: [] for kind in kinds}
    with ServerProcess(
        max_streams=4, sleep_ms=20, threads=64, track_peers=True, cpus=cpus
    ) as server:

        def measure(kind: str) -> float:
            with _limited_client(kind, server, width) as pick:
                distinct_peers(server.target, reset=True)
                outcome = drive(pick, 32, duration=duration)
                outcome.peers = distinct_peers(server.target, reset=True)
            outcomes[kind].append(outcome)
            return outcome.rate

        with _limited_client("scaling", server, width) as pick:  # warm up the server
            drive(pick, 32, duration=settings.pick(0.3, 0.05))
        rates = interleave(rounds, {kind: functools.partial(measure, kind) for kind in kinds})

    def detail(kind: str) -> str:
        runs = outcomes[kind]
        failed: Counter[str] = Counter()
        for run in runs:
            failed.update(run.failed)
        total = sum(o.ok for o in runs) + sum(failed.values())
        failures = ", ".join(f"{n} {code}" for code, n in failed.items()) or "0"
        share = sum(failed.values()) / total * 100 if total else 0.0
        peers = "/".join(str(o.peers) for o in runs)
        return (
            f"failed {failures} of {total} calls ({share:.2f}%); "
            f"server saw {peers} connection(s) per round"
        )

    shape = f"pool of {width} (max_concurrent_streams 4, 20 ms handler, 32 callers)"
    return [
        compared(
            "9c",
            f"pool channel, least_in_flight, {shape}",
            rates["pool channel"],
            "calls/s",
            "one channel + connectionScaling (maxConnectionsPerSubchannel 8)",
            rates["scaling"],
            goal=Goal(">=", 1.1, ">= 1.1x"),
            note=f"pool channel: {detail('pool channel')}; connectionScaling: {detail('scaling')}",
        ),
        compared(
            "9c",
            f"failed calls, pool channel, least_in_flight, {shape}",
            [_failed_share(o) for o in outcomes["pool channel"]],
            "%",
            "one channel + connectionScaling, same rounds",
            [_failed_share(o) for o in outcomes["scaling"]],
            goal=Goal("<", 1.0, "fewer (< 1x)"),
        ),
    ]


def run(settings: Settings) -> list[Figure]:
    """Figure 9, client and server processes on disjoint CPUs as in figures 4 and 5."""
    measures: tuple[Callable[[Settings, frozenset[int] | None], list[Figure]], ...] = (
        _figure_9a,
        _figure_9b,
        _figure_9c,
    )
    split = split_cpus()
    client, server = split if split is not None else (None, None)
    with pinned(set(client)) if client is not None else contextlib.nullcontext():
        figures = [
            figure
            for key, measure in zip(("9a", "9b", "9c"), measures, strict=True)
            for figure in guarded(
                key, f"figure {key}", functools.partial(measure, settings, server)
            )
        ]
    if client is None or server is None:
        return figures
    where = (
        f"client pinned to CPU {','.join(map(str, sorted(client)))}, "
        f"server process to CPU {','.join(map(str, sorted(server)))}"
    )
    return [
        dataclasses.replace(figure, note=f"{figure.note}; {where}" if figure.note else where)
        if figure.key == "9a" and not figure.error
        else figure
        for figure in figures
    ]
