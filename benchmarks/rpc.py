"""Figures 4 and 5: RPCs through the pool, against a server in another process.

4. Unary echo RPCs through ``get_channel()`` plus a stub cached per channel,
   beside the same RPCs on hand-made distinct channels (each with
   ``grpc.use_local_subchannel_pool``, as the pool's) and on one channel.
5. A stream-limited server (``grpc.max_concurrent_streams`` = 4, handler
   sleeping 20 ms) and 32 caller threads: a pool of 8 beside one channel, one
   channel with grpcio's ``connectionScaling`` service config, and 8 hand-made
   channels. Failed calls are counted, and the server reports how many
   distinct connections it saw, which shows whether grpcio honoured
   ``connectionScaling``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import itertools
import json
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
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
from benchmarks.pools import distinct_channels, pool_config, running_pool, unique_name
from benchmarks.server import ECHO_METHOD, ServerProcess, distinct_peers

__all__ = ["SCALING_CONFIG", "run"]

PAYLOAD = b"x" * 64
CALL_TIMEOUT = 10.0
WIDTH = 8  # pool size, hand-made channels and maxConnectionsPerSubchannel in figure 5
SCALING_CONFIG = json.dumps({"connectionScaling": {"maxConnectionsPerSubchannel": WIDTH}})

# A caller: returns a multicallable for the next RPC.
Picker = Callable[[], Any]


def _stub(channel: grpc.Channel) -> Any:
    return channel.unary_unary(ECHO_METHOD)


def pool_picker(name: str) -> Picker:
    """``get_channel(name)`` and a stub cached per channel: what a user writes."""
    stubs: dict[grpc.Channel, Any] = {}
    get_channel = grpcpool.get_channel

    def pick() -> Any:
        channel = get_channel(name)
        stub = stubs.get(channel)
        if stub is None:
            stub = stubs[channel] = _stub(channel)
        return stub

    return pick


def round_robin_picker(channels: tuple[grpc.Channel, ...]) -> Picker:
    """Hand-made round robin over ``channels``, stubs made up front."""
    stubs = tuple(_stub(channel) for channel in channels)
    count = len(stubs)
    tickets = itertools.count()

    def pick() -> Any:
        return stubs[next(tickets) % count]

    return pick


@dataclass
class Outcome:
    """What one round of calls did."""

    ok: int = 0
    failed: Counter[str] = field(default_factory=Counter)
    elapsed: float = 0.0
    peers: int = 0

    @property
    def rate(self) -> float:
        return self.ok / self.elapsed if self.elapsed > 0 else 0.0


def drive(pick: Picker, threads: int, *, calls: int = 0, duration: float = 0.0) -> Outcome:
    """Calls ``pick()(PAYLOAD)`` from ``threads`` threads.

    Each thread makes ``calls`` calls, or calls until ``duration`` seconds
    have passed. Failed calls are counted by status code, never raised.
    """
    outcome = Outcome()
    lock = threading.Lock()
    barrier = threading.Barrier(threads + 1)
    stop_at: list[float] = []

    def work() -> None:
        ok = 0
        failed: Counter[str] = Counter()
        barrier.wait(timeout=30)
        deadline = stop_at[0]
        made = 0
        while (made < calls) if calls else (time.monotonic() < deadline):
            made += 1
            try:
                pick()(PAYLOAD, timeout=CALL_TIMEOUT)
                ok += 1
            except grpc.RpcError as error:
                failed[_failure(error)] += 1
        with lock:
            outcome.ok += ok
            outcome.failed.update(failed)

    workers = [threading.Thread(target=work, name=f"caller-{i}") for i in range(threads)]
    for worker in workers:
        worker.start()
    stop_at.append(time.monotonic() + duration)
    started = time.perf_counter()
    barrier.wait(timeout=30)
    for worker in workers:
        worker.join(duration + CALL_TIMEOUT * max(1, calls) + 30)
    outcome.elapsed = time.perf_counter() - started
    return outcome


def _failure(error: grpc.RpcError) -> str:
    """A failed call's status code, plus ``REFUSED_STREAM`` when the server refused it."""
    if not isinstance(error, grpc.Call):
        return type(error).__name__
    code = error.code()
    name = code.name if code is not None else "UNKNOWN"
    if "error code 7" in (error.details() or ""):  # HTTP/2 RST_STREAM REFUSED_STREAM
        name += "/REFUSED_STREAM"
    return name


# --- figure 4 -------------------------------------------------------------------------


def _rate(pick: Picker, threads: int, calls: int) -> float:
    return drive(pick, threads, calls=calls).rate


def _figure_4(settings: Settings, cpus: frozenset[int] | None) -> list[Figure]:
    size: int = settings.pick(4, 2)
    threads = 4
    calls = settings.pick(600, 20)  # per thread and round
    rounds = settings.pick(11, 2)
    name = unique_name("rpc")
    with (
        ServerProcess(threads=16, cpus=cpus) as server,
        running_pool(pool_config(server.port, size, name)),
        distinct_channels(server.target, size) as channels,
        distinct_channels(server.target, 1) as single,
    ):
        pickers = {
            "pool": pool_picker(name),
            "hand-made": round_robin_picker(channels),
            "single": round_robin_picker(single),
        }
        for pick in pickers.values():  # warm up: stubs, connections, server threads
            drive(pick, threads, calls=settings.pick(50, 5))
        results = interleave(
            rounds,
            {
                label: functools.partial(_rate, pick, threads, calls)
                for label, pick in pickers.items()
            },
        )
    shape = f"{threads} caller threads, {size} channels, 64 B echo"
    return [
        compared(
            "4a",
            f"unary echo via get_channel() + cached stub ({shape})",
            results["pool"],
            "calls/s",
            f"{size} hand-made distinct channels",
            results["hand-made"],
            goal=Goal(">=", 0.97, ">= 0.97x"),
        ),
        compared(
            "4b",
            f"unary echo on one channel ({threads} caller threads)",
            results["single"],
            "calls/s",
            f"{size} hand-made distinct channels",
            results["hand-made"],
        ),
    ]


def _honoured(runs: list[Outcome]) -> str:
    """Whether grpcio opened more than one connection for the connectionScaling channel."""
    most = max((run.peers for run in runs), default=0)
    if most > 1:
        return f"grpcio honours connectionScaling: one channel opened up to {most} connections"
    return "grpcio did NOT honour connectionScaling: one channel kept one connection"


# --- figure 5 -------------------------------------------------------------------------


@contextmanager
def _client(kind: str, target: str, port: int, width: int) -> Iterator[Picker]:
    """A fresh client of ``kind``, connected, closed on exit."""
    if kind == "pool":
        name = unique_name("limited")
        with running_pool(pool_config(port, width, name)):
            yield pool_picker(name)
    elif kind == "hand-made":
        with distinct_channels(target, width) as channels:
            yield round_robin_picker(channels)
    elif kind == "single":
        with distinct_channels(target, 1) as channels:
            yield round_robin_picker(channels)
    elif kind == "scaling":
        with distinct_channels(target, 1, ("grpc.service_config", SCALING_CONFIG)) as channels:
            yield round_robin_picker(channels)
    else:
        raise ValueError(kind)


def _limited_round(kind: str, server: ServerProcess, duration: float, width: int) -> Outcome:
    with _client(kind, server.target, server.port, width) as pick:
        distinct_peers(server.target, reset=True)
        outcome = drive(pick, 32, duration=duration)
        outcome.peers = distinct_peers(server.target, reset=True)
    return outcome


def _figure_5(settings: Settings, cpus: frozenset[int] | None) -> list[Figure]:
    duration = settings.pick(2.0, 0.3)
    width: int = settings.pick(WIDTH, 2)
    rounds = settings.pick(3, 1)
    kinds = ("pool", "single", "scaling", "hand-made")
    outcomes: dict[str, list[Outcome]] = {kind: [] for kind in kinds}
    with ServerProcess(
        max_streams=4, sleep_ms=20, threads=64, track_peers=True, cpus=cpus
    ) as server:
        _limited_round("single", server, settings.pick(0.3, 0.05), width)  # warm up the server

        def measure(kind: str) -> float:
            outcome = _limited_round(kind, server, duration, width)
            outcomes[kind].append(outcome)
            return outcome.rate

        rates = interleave(rounds, {kind: functools.partial(measure, kind) for kind in kinds})

    def detail(kind: str) -> str:
        runs = outcomes[kind]
        total = sum(o.ok for o in runs) + sum(sum(o.failed.values()) for o in runs)
        failed: Counter[str] = Counter()
        for run in runs:
            failed.update(run.failed)
        failures = ", ".join(f"{n} {code}" for code, n in failed.items()) or "0"
        share = sum(failed.values()) / total * 100 if total else 0.0
        peers = "/".join(str(o.peers) for o in runs)
        return (
            f"failed {failures} of {total} calls ({share:.2f}%); "
            f"server saw {peers} connection(s) per round"
        )

    shape = "max_concurrent_streams 4, 20 ms handler, 32 callers"
    return [
        compared(
            "5a",
            f"pool of {width} ({shape})",
            rates["pool"],
            "calls/s",
            "one channel",
            rates["single"],
            goal=Goal(">=", 4.0, ">= 4x"),
            note=detail("pool"),
        ),
        compared(
            "5b",
            f"pool of {width} vs connectionScaling (maxConnectionsPerSubchannel {WIDTH})",
            rates["pool"],
            "calls/s",
            "one channel + connectionScaling",
            rates["scaling"],
            goal=Goal(">=", 0.9, ">= 0.9x"),
            note=f"{_honoured(outcomes['scaling'])}; {detail('scaling')}",
        ),
        compared(
            "5c",
            f"pool of {width} vs {width} hand-made distinct channels",
            rates["pool"],
            "calls/s",
            f"{width} hand-made channels",
            rates["hand-made"],
            note=detail("hand-made"),
        ),
        compared(
            "5d",
            "one channel (baseline of 5a)",
            rates["single"],
            "calls/s",
            note=detail("single"),
        ),
    ]


def run(settings: Settings) -> list[Figure]:
    """Figures 4 and 5, each against its own echo server process.

    With two CPUs or more, the client (this process) and the server run on
    disjoint halves of them: on a 2-core machine that keeps the two processes
    from trading one core, which otherwise spreads rounds by +-35%.
    """
    split = split_cpus()
    client, server = split if split is not None else (None, None)
    with pinned(set(client)) if client is not None else contextlib.nullcontext():
        figures = [
            *guarded("4", "unary echo", lambda: _figure_4(settings, server)),
            *guarded("5", "stream-limited server", lambda: _figure_5(settings, server)),
        ]
    if client is None or server is None:
        return figures
    where = (
        f"client pinned to CPU {','.join(map(str, sorted(client)))}, "
        f"server process to CPU {','.join(map(str, sorted(server)))}"
    )
    return [
        dataclasses.replace(f, note=f"{f.note}; {where}" if f.note else where)
        if f.key in ("4a", "5a") and not f.error
        else f
        for f in figures
    ]
