"""Figure 14: capacity: per-connection call caps, the call queue and autoscale.

One server process with ``grpc.max_concurrent_streams`` 4 and a 20 ms
handler (figure 5's shape); the client and the server on disjoint CPUs.

14a. 32 and then 128 callers: the pool channel of a pool with
     ``max_calls_per_connection`` 4 and ``autoscale`` (``min_size`` 2,
     ``max_size`` 64), beside one grpcio channel with A105's
     ``connectionScaling`` (``maxConnectionsPerSubchannel`` 64), in
     interleaved rounds of 5 s (15 s per side and caller count): calls/s
     (goal >= 1.2x) and failed calls (goal 0 for the pool; A105's failures
     are the control).
     Each caller waits for its answer, so no client passes callers /
     20 ms calls/s (1,600 at 32 callers).
14b. Load steps on that pool (``max_step`` 4): 4 callers, then 128, then
     2: the time from the step up until the calls/s of the last 0.5 s reach 90% of the
     plateau's (goal <= 2 s), the time from the step down until the pool's
     size is ``min_size`` (goal <= 15 s), and the failed calls over the run
     (goal 0).
14c. Refused streams: 32 callers on 8 hand-made channels that never have
     more than 4 (then 3) calls in flight each: the share of calls the
     server refuses (measured, no goal); the same callers through a pool of
     8 with ``max_calls_per_connection`` 4, without autoscale: failed calls
     (goal 0: refused calls are routed again).
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import grpc

import grpcpool
from benchmarks.harness import (
    Figure,
    Goal,
    Settings,
    compared,
    guarded,
    interleave,
    pinned,
    split_cpus,
)
from benchmarks.pools import distinct_channels, running_pool, unique_name
from benchmarks.rpc import PAYLOAD, Outcome, Picker, drive, round_robin_picker
from benchmarks.server import ECHO_METHOD, ServerProcess
from grpcpool import Config

__all__ = ["run"]

MAX_STREAMS = 4
HANDLER_MS = 20
CAP = 4
MIN_SIZE = 2
MAX_SIZE = 64
A105_CONFIG = json.dumps({"connectionScaling": {"maxConnectionsPerSubchannel": MAX_SIZE}})
CALL_TIMEOUT = 10.0
RATE_GOAL = 1.2
RISE_GOAL = 2.0
SHRINK_GOAL = 15.0
RISE_SHARE = 0.9
RISE_WINDOW = 0.5
SERVER_THREADS = 300
# 14b's autoscale.max_step: 128 callers need 32 to 48 connections (4 calls
# each, fewer once a server refused streams); at the default 2 a step a
# second, shrinking that far takes 15 to 23 s.
STEPS_MAX_STEP = 4


def _pool_config(
    port: int, name: str, *, autoscale: bool, size: int = MIN_SIZE, max_step: int | None = None
) -> Config:
    pool: dict[str, Any] = {
        "name": name,
        "size": size,
        "max_size": max(MAX_SIZE, size),
        "strategy": "least_in_flight",
        "max_calls_per_connection": CAP,
    }
    if autoscale:
        pool["autoscale"] = {"min_size": MIN_SIZE, "max_size": MAX_SIZE}
        if max_step is not None:
            pool["autoscale"]["max_step"] = max_step
    return Config.new(endpoint={"type": "local", "host": "127.0.0.1", "port": port}, pool=pool)


@contextmanager
def _client(kind: str, server: ServerProcess) -> Iterator[Picker]:
    """``"pool"``: the autoscaled pool's channel; ``"a105"``: one connectionScaling channel."""
    if kind == "pool":
        name = unique_name("capacity")
        with running_pool(_pool_config(server.port, name, autoscale=True)):
            stub = grpcpool.channel(name).unary_unary(ECHO_METHOD)
            yield lambda: stub
    else:
        with distinct_channels(server.target, 1, ("grpc.service_config", A105_CONFIG)) as channels:
            yield round_robin_picker(channels)


def _failed(outcomes: list[Outcome]) -> tuple[int, int, str]:
    failed: Counter[str] = Counter()
    for outcome in outcomes:
        failed.update(outcome.failed)
    total = sum(o.ok for o in outcomes) + sum(failed.values())
    kinds = ", ".join(f"{n} {code}" for code, n in failed.most_common()) or "none"
    return sum(failed.values()), total, kinds


# --- 14a -------------------------------------------------------------------------------


def _measure(pick: Picker, callers: int, seconds: float, outcomes: list[Outcome]) -> float:
    outcome = drive(pick, callers, duration=seconds)
    outcomes.append(outcome)
    return outcome.rate


def _figure_14a(settings: Settings, server: ServerProcess) -> list[Figure]:
    rounds = settings.pick(3, 1)
    seconds = settings.pick(5.0, 0.5)
    kinds = ("pool", "a105")
    figures: list[Figure] = []
    for callers in settings.pick((32, 128), (8,)):
        outcomes: dict[str, list[Outcome]] = {kind: [] for kind in kinds}
        with _client("pool", server) as pool, _client("a105", server) as a105:
            pickers = {"pool": pool, "a105": a105}

            rates = interleave(
                rounds,
                {
                    kind: functools.partial(
                        _measure, pickers[kind], callers, seconds, outcomes[kind]
                    )
                    for kind in kinds
                },
            )
        pool_failed, pool_total, pool_kinds = _failed(outcomes["pool"])
        a105_failed, a105_total, a105_kinds = _failed(outcomes["a105"])
        shape = (
            f"{callers} callers, server max_concurrent_streams {MAX_STREAMS}, "
            f"{HANDLER_MS} ms handler"
        )
        figures += [
            compared(
                "14a",
                f"pool channel, max_calls_per_connection {CAP}, autoscale {MIN_SIZE}..{MAX_SIZE}: "
                f"calls/s, {shape}",
                rates["pool"],
                "calls/s",
                f"one channel + connectionScaling (maxConnectionsPerSubchannel {MAX_SIZE})",
                rates["a105"],
                goal=Goal(">=", RATE_GOAL, f">= {RATE_GOAL:g}x"),
                note=f"{rounds} interleaved rounds of {seconds:g} s per side; no client passes "
                f"{callers} callers / {HANDLER_MS} ms = {callers * 1000 / HANDLER_MS:,.0f} calls/s",
            ),
            compared(
                "14a",
                f"failed calls, the same pool, {callers} callers",
                [float(pool_failed)],
                "calls",
                "connectionScaling, same rounds",
                [float(a105_failed)],
                goal=Goal("<=", 0, "0"),
                judge="value",
                note=f"pool: {pool_failed} of {pool_total} ({pool_kinds}); "
                f"connectionScaling: {a105_failed} of {a105_total} ({a105_kinds})",
            ),
        ]
    return figures


# --- 14b -------------------------------------------------------------------------------


class _Callers:
    """``threads`` caller threads of which the first ``active`` call; the rest wait.

    Every call's end is logged (monotonic time, failure or ""), so rates can
    be read over any stretch afterwards.
    """

    def __init__(self, stub: Callable[..., Any], threads: int) -> None:
        self.ends: list[tuple[float, str]] = []
        self._stub = stub
        self._active = 0
        self._changed = threading.Condition()
        self._stop = False
        self._threads = [
            threading.Thread(target=self._work, args=(i,), name=f"step-caller-{i}")
            for i in range(threads)
        ]

    def __enter__(self) -> _Callers:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        with self._changed:
            self._stop = True
            self._changed.notify_all()
        for thread in self._threads:
            thread.join(CALL_TIMEOUT + 10)

    def set_active(self, active: int) -> float:
        """Lets the first ``active`` threads call; returns the moment it took effect."""
        with self._changed:
            self._active = active
            self._changed.notify_all()
        return time.monotonic()

    def _work(self, index: int) -> None:
        record = self.ends.append  # atomic under the GIL
        while True:
            with self._changed:
                while not self._stop and index >= self._active:
                    self._changed.wait(1.0)
                if self._stop:
                    return
            try:
                self._stub(PAYLOAD, timeout=CALL_TIMEOUT)
                failure = ""
            except grpc.RpcError as error:
                code = error.code() if isinstance(error, grpc.Call) else None
                failure = code.name if code is not None else type(error).__name__
            record((time.monotonic(), failure))

    def rate(self, start: float, end: float) -> float:
        calls = sum(1 for at, failure in self.ends if start <= at < end and not failure)
        return calls / (end - start) if end > start else 0.0


def _rise_time(callers: _Callers, step: float, plateau: float, until: float) -> float:
    """Seconds from ``step`` until the last :data:`RISE_WINDOW` s ran at >= 90% of ``plateau``."""
    moment = step + RISE_WINDOW
    while moment <= until:
        if callers.rate(moment - RISE_WINDOW, moment) >= RISE_SHARE * plateau:
            return moment - step
        moment += 0.05
    return math.nan


def _figure_14b(settings: Settings, server: ServerProcess) -> list[Figure]:
    low, high, rest = 4, settings.pick(128, 16), 2  # callers
    first, plateau_for = settings.pick(5.0, 0.5), settings.pick(10.0, 1.0)
    settle = plateau_for / 2
    shrink_limit = settings.pick(SHRINK_GOAL + 10.0, 3.0)
    name = unique_name("steps")
    sizes: list[tuple[float, int]] = []
    config = _pool_config(server.port, name, autoscale=True, max_step=STEPS_MAX_STEP)
    with running_pool(config):
        stub = grpcpool.channel(name).unary_unary(ECHO_METHOD)
        with _Callers(stub, high) as callers:
            callers.set_active(low)
            time.sleep(first)
            up = callers.set_active(high)
            time.sleep(plateau_for)
            plateau_end = time.monotonic()
            plateau = callers.rate(plateau_end - settle, plateau_end)
            down = callers.set_active(rest)
            shrunk: float | None = None
            while time.monotonic() < down + shrink_limit:
                size = grpcpool.status(name).expected_size
                sizes.append((time.monotonic() - down, size))
                if size <= MIN_SIZE:
                    shrunk = time.monotonic() - down
                    break
                time.sleep(0.1)
            ended = time.monotonic()
        failed = Counter(failure for _, failure in callers.ends if failure)
    rise = _rise_time(callers, up, plateau, plateau_end)
    peak = max((size for _, size in sizes), default=0)
    failures = ", ".join(f"{n} {code}" for code, n in failed.most_common()) or "none"
    return [
        compared(
            "14b",
            f"load step {low} -> {high} callers: until the last {RISE_WINDOW:g} s run at >= "
            f"{RISE_SHARE:.0%} of the plateau's calls/s",
            [rise],
            "s",
            goal=Goal("<=", RISE_GOAL, f"<= {RISE_GOAL:g} s"),
            judge="value",
            note=f"plateau {plateau:,.0f} calls/s (the last {settle:g} s of {plateau_for:g} s)",
        ),
        compared(
            "14b",
            f"load step {high} -> {rest} callers: until the pool's size is min_size ({MIN_SIZE}); "
            f"autoscale max_step {STEPS_MAX_STEP}",
            [shrunk if shrunk is not None else math.nan],
            "s",
            goal=Goal("<=", SHRINK_GOAL, f"<= {SHRINK_GOAL:g} s"),
            judge="value",
            note=f"size at the step down {sizes[0][1] if sizes else '?'}, largest after it {peak}"
            + ("" if shrunk is not None else f"; not reached within {shrink_limit:g} s"),
        ),
        compared(
            "14b",
            "failed calls over the load steps",
            [float(sum(failed.values()))],
            "calls",
            goal=Goal("<=", 0, "0"),
            judge="value",
            note=f"{len(callers.ends)} calls in {ended - up + first:.1f} s; failed: {failures}",
        ),
    ]


# --- 14c -------------------------------------------------------------------------------


def _bounded_picker(channels: tuple[grpc.Channel, ...], limit: int) -> Callable[..., Any]:
    """Calls on ``channels`` in turn, never more than ``limit`` in flight on one channel."""
    stubs = [channel.unary_unary(ECHO_METHOD) for channel in channels]
    slots = [threading.BoundedSemaphore(limit) for _ in channels]
    turn = iter(range(1 << 62))
    lock = threading.Lock()

    def call(request: bytes, **options: Any) -> Any:
        with lock:
            start = next(turn)
        while True:  # the first channel from ``start`` on with a free slot
            for offset in range(len(stubs)):
                index = (start + offset) % len(stubs)
                if slots[index].acquire(blocking=False):
                    try:
                        return stubs[index](request, **options)
                    finally:
                        slots[index].release()
            time.sleep(0.0005)

    return call


def _refused(outcome: Outcome) -> float:
    refused = sum(n for code, n in outcome.failed.items() if code.endswith("REFUSED_STREAM"))
    total = outcome.ok + sum(outcome.failed.values())
    return refused / total * 100 if total else math.nan


def _figure_14c(settings: Settings, server: ServerProcess) -> list[Figure]:
    callers, width = 32, 8
    seconds = settings.pick(5.0, 0.5)
    figures: list[Figure] = []
    with distinct_channels(server.target, width) as channels:
        for limit in (CAP, CAP - 1):
            call = _bounded_picker(channels, limit)
            outcome = drive(lambda call=call: call, callers, duration=seconds)
            figures.append(
                compared(
                    "14c",
                    f"calls refused by a max_concurrent_streams {MAX_STREAMS} server, {callers} "
                    f"callers on {width} channels, never more than {limit} in flight on one",
                    [_refused(outcome)],
                    "%",
                    note=f"{outcome.ok} OK; failed {dict(outcome.failed) or 'none'}",
                )
            )
    name = unique_name("capped")
    with running_pool(_pool_config(server.port, name, autoscale=False, size=width)):
        stub = grpcpool.channel(name).unary_unary(ECHO_METHOD)
        outcome = drive(lambda: stub, callers, duration=seconds)
    failed = sum(outcome.failed.values())
    figures.append(
        compared(
            "14c",
            f"failed calls, pool of {width} with max_calls_per_connection {CAP} (refused calls "
            f"routed again), {callers} callers",
            [float(failed)],
            "calls",
            goal=Goal("<=", 0, "0"),
            judge="value",
            note=f"{outcome.ok} OK ({outcome.rate:,.0f} calls/s); "
            f"failed {dict(outcome.failed) or 'none'}",
        )
    )
    return figures


def run(settings: Settings) -> list[Figure]:
    """Figure 14 against one stream-limited server process on its own CPUs."""
    split = split_cpus()
    client, server_cpus = split if split is not None else (None, None)
    figures: list[Figure] = []
    with (
        pinned(set(client)) if client is not None else contextlib.nullcontext(),
        ServerProcess(
            max_streams=MAX_STREAMS,
            sleep_ms=HANDLER_MS,
            threads=SERVER_THREADS,
            cpus=server_cpus,
        ) as server,
    ):
        for key, measure in (("14a", _figure_14a), ("14b", _figure_14b), ("14c", _figure_14c)):
            figures.extend(
                guarded(key, f"figure {key}", functools.partial(measure, settings, server))
            )
    return figures
