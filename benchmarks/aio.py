"""Figure 11: the asyncio pool (``grpcpool.aio``).

a. Unary echo RPCs through ``pool.channel()`` (the multi-callable built
   once) from N tasks on one event loop, beside the same RPCs on hand-made
   distinct ``grpc.aio`` channels (each with ``grpc.use_local_subchannel_pool``,
   as the pool's), round robin, with the same N tasks; interleaved rounds.
b. Threads a ready pool of 64 adds beyond grpcio's own (a plain ``grpc.aio``
   channel has been used first, so grpcio's poller thread already runs), and
   resident memory per connection, measured in a fresh child process
   (``python -m benchmarks.aio --port P``) as figure 7 is.
c. The echo server killed with SIGKILL under a ready pool of 16: per worker,
   the time from the kill to its ``channel.connection_down`` event (the
   moment its connection leaves the view), over several kills; then a new
   server on the same port: every worker ready again, and per worker its
   recovery minus the scheduled backoff (``reconnect_scheduled`` carries
   ``delay_ms``) still pending when the server came back.
d. ``pool.get_channel()`` per call inside the running loop, beside a bare
   ``tuple[next(counter) % n]`` read (as figure 1).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import functools
import gc
import itertools
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

import grpc

import grpcpool.aio
from benchmarks.footprint import rss_kib
from benchmarks.harness import (
    Figure,
    Goal,
    Settings,
    compared,
    guarded,
    guarded_async,
    interleave,
    median,
    ns_per_call,
    percentile,
    pinned,
    split_cpus,
)
from benchmarks.lifecycle import BACKOFF, Events, settled, subscribed
from benchmarks.pools import channel_options, pool_config, unique_name
from benchmarks.server import ECHO_METHOD, ServerProcess

__all__ = ["run"]

PAYLOAD = b"x" * 64
CALL_TIMEOUT = 10.0
SIZE = 4  # pool size and hand-made channels in 11a
TASKS = 16
FOOTPRINT_SIZE = 64
KILL_POOL_SIZE = 16
READY_TIMEOUT = 60.0
_DOWN_TIMEOUT = 10.0
_CHILD_TIMEOUT = 120.0
_SETTLE = 1.0
# Seconds the last channel.connected events get once the pool is ready again.
_EVENT_TIMEOUT = 2.0

# A caller: returns the multi-callable for the next RPC.
Picker = Callable[[], Any]


# --- 11a -------------------------------------------------------------------------------


async def _drive(pick: Picker, tasks: int, calls: int) -> float:
    """``tasks`` tasks each make ``calls`` echo calls; returns calls per second."""

    async def work() -> None:
        for _ in range(calls):
            await pick()(PAYLOAD, timeout=CALL_TIMEOUT)

    started = time.perf_counter()
    await asyncio.gather(*(work() for _ in range(tasks)))
    return tasks * calls / (time.perf_counter() - started)


async def _interleave(
    rounds: int, runs: dict[str, Callable[[], Awaitable[float]]]
) -> dict[str, list[float]]:
    """``harness.interleave`` for coroutines: each run once per round, order rotating."""
    names = list(runs)
    results: dict[str, list[float]] = {name: [] for name in names}
    for number in range(rounds):
        shift = number % len(names)
        for name in names[shift:] + names[:shift]:
            results[name].append(await runs[name]())
    return results


async def _figure_11a(settings: Settings, port: int) -> list[Figure]:
    size: int = settings.pick(SIZE, 2)
    calls = settings.pick(150, 5)  # per task and round
    rounds = settings.pick(7, 2)
    target = f"127.0.0.1:{port}"
    channels = [grpc.aio.insecure_channel(target, options=channel_options()) for _ in range(size)]
    try:
        async with grpcpool.aio.Pool(pool_config(port, size, unique_name("aio-rpc"))) as pool:
            await pool.await_ready(timeout=READY_TIMEOUT, min_ready=size)
            for channel in channels:
                await asyncio.wait_for(channel.channel_ready(), READY_TIMEOUT)
            routed = pool.channel().unary_unary(ECHO_METHOD)
            hand_made: tuple[Any, ...] = tuple(
                channel.unary_unary(ECHO_METHOD) for channel in channels
            )
            tickets = itertools.count()
            pickers: dict[str, Picker] = {
                "pool": lambda: routed,
                "hand-made": lambda: hand_made[next(tickets) % size],
            }
            for pick in pickers.values():  # warm up: connections, server threads
                await _drive(pick, TASKS, settings.pick(20, 2))
            results = await _interleave(
                rounds,
                {
                    label: functools.partial(_drive, pick, TASKS, calls)
                    for label, pick in pickers.items()
                },
            )
    finally:
        for channel in channels:
            await channel.close()
    return [
        compared(
            "11a",
            f"aio unary echo via pool.channel(), callable built once "
            f"({TASKS} tasks, {size} connections, 64 B echo)",
            results["pool"],
            "calls/s",
            f"{size} hand-made distinct grpc.aio channels",
            results["hand-made"],
            goal=Goal(">=", 0.97, ">= 0.97x"),
            note=f"one event loop; {rounds} rounds of {TASKS * calls} calls per side, interleaved",
        )
    ]


# --- 11d -------------------------------------------------------------------------------


async def _figure_11d(settings: Settings, port: int) -> list[Figure]:
    size: int = settings.pick(8, 2)
    rounds = settings.pick(7, 2)
    number = settings.pick(200_000, 2_000)
    async with grpcpool.aio.Pool(pool_config(port, size, unique_name("aio-hot"))) as pool:
        await pool.await_ready(timeout=READY_TIMEOUT, min_ready=size)
        runs = {
            "pool": ns_per_call("get_channel()", {"get_channel": pool.get_channel}, number),
            "bare": ns_per_call(
                "t[next(c) % n]",
                {"t": tuple(range(size)), "c": itertools.count(), "n": size},
                number,
            ),
            # Where the time goes (for the note only).
            "loop check": ns_per_call(
                "get_running_loop()", {"get_running_loop": asyncio.get_running_loop}, number
            ),
            "pick": ns_per_call("view.pick()", {"view": pool.view}, number),
        }
        # Inside the loop: get_channel checks that it is called on the pool's loop.
        results = interleave(rounds, runs)
    return [
        compared(
            "11d",
            f"aio pool.get_channel() inside the running loop, size {size}, round_robin",
            results["pool"],
            "ns/call",
            "bare tuple[next(c) % n]",
            results["bare"],
            goal=Goal("<=", 5.0, "<= 5x"),
            note=f"inside: asyncio.get_running_loop() (the check that the caller runs on the "
            f"pool's loop) {median(results['loop check']):.0f} ns, view.pick() "
            f"{median(results['pick']):.0f} ns",
        )
    ]


# --- 11b: in a child process -------------------------------------------------------------


def _reading(settle: float) -> dict[str, int]:
    gc.collect()
    time.sleep(settle)  # blocks the loop on purpose: nothing of ours should run meanwhile
    return {"threads": threading.active_count(), "rss_kib": rss_kib()}


async def _child(port: int, size: int, settle: float) -> dict[str, Any]:
    target = f"127.0.0.1:{port}"
    async with grpc.aio.insecure_channel(target, options=channel_options()) as channel:
        echo: Any = channel.unary_unary(ECHO_METHOD)
        await echo(b"warm", timeout=10)
    none = _reading(settle)
    async with grpcpool.aio.Pool(pool_config(port, 1, "footprint")) as pool:
        await pool.await_ready(timeout=READY_TIMEOUT)
        one = _reading(settle)
        await pool.scale_up(size - 1)
        await pool.await_ready(timeout=READY_TIMEOUT, min_ready=size)
        full = _reading(settle)
        names = sorted(thread.name for thread in threading.enumerate())
    return {"none": none, "one": one, "full": full, "size": size, "threads": names}


def _figure_11b(settings: Settings, port: int) -> list[Figure]:
    size = settings.pick(FOOTPRINT_SIZE, 2)
    settle = settings.pick(_SETTLE, 0.1)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.aio",
            f"--port={port}",
            f"--size={size}",
            f"--settle={settle}",
        ],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=_CHILD_TIMEOUT,
        check=False,
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"aio footprint child failed ({done.returncode}): {done.stderr[-2000:]}")
    result = json.loads(lines[-1])
    none, one, full = result["none"], result["one"], result["full"]
    added = full["threads"] - none["threads"]
    rss = (full["rss_kib"] - one["rss_kib"]) / (size - 1)
    rss_all = (full["rss_kib"] - none["rss_kib"]) / size
    return [
        Figure(
            "11b",
            f"threads a ready aio pool of {size} adds beyond grpcio's own",
            added,
            "threads",
            target="0",
            met=added == 0,
            note=f"threads {none['threads']} (grpc.aio warmed up, no pool) -> {one['threads']} "
            f"(pool of 1) -> {full['threads']} (pool of {size}): " + ", ".join(result["threads"]),
        ),
        Figure(
            "11b",
            f"RSS per connection (aio pool of {size} minus pool of 1, / {size - 1})",
            rss,
            "KiB",
            note=f"VmRSS {none['rss_kib']} (no pool) -> {one['rss_kib']} (pool of 1) -> "
            f"{full['rss_kib']} KiB (pool of {size}); {rss_all:.0f} KiB per connection "
            f"counting from no pool",
        ),
    ]


# --- 11c -------------------------------------------------------------------------------


async def _wait_for(predicate: Callable[[], bool], pool: grpcpool.aio.Pool, timeout: float) -> bool:
    """Waits on the pool's changes until ``predicate`` holds or ``timeout`` seconds pass."""
    deadline = time.monotonic() + timeout
    while not predicate():
        left = deadline - time.monotonic()
        if left <= 0:
            return predicate()
        await pool.wait_changed(min(left, 0.05))
    return True


@dataclasses.dataclass
class _Kill:
    detection: list[float]  # per worker, s from kill to connection_down
    empty: float  # s from kill to no connection in the view
    all_ready: float  # s from the new server listening to every worker ready
    excess: list[float]  # per worker, recovery minus the backoff pending at restart


async def _kill_rounds(size: int, rounds: int) -> list[_Kill]:
    name = unique_name("aio-kill")
    events = Events(name)
    results: list[_Kill] = []
    server = ServerProcess()
    try:
        config = pool_config(server.port, size, name, connection=BACKOFF)
        async with grpcpool.aio.Pool(config) as pool:
            await pool.await_ready(timeout=READY_TIMEOUT, min_ready=size)
            with subscribed(events):
                for _ in range(rounds):
                    with events.lock:
                        events.down.clear()
                    killed_at = time.monotonic()
                    server.kill()
                    if not await _wait_for(lambda: not pool.view.channels, pool, _DOWN_TIMEOUT):
                        raise RuntimeError("the view kept connections after the kill")
                    empty = time.monotonic() - killed_at
                    if not await _wait_for(lambda: len(events.down) >= size, pool, _DOWN_TIMEOUT):
                        raise RuntimeError(
                            f"only {len(events.down)} of {size} workers saw the kill"
                        )
                    with events.lock:
                        detection = [at - killed_at for at in events.down.values()]
                    # Off the loop: starting a process takes long, and the workers' timers must run.
                    server = await asyncio.to_thread(ServerProcess, server.port)
                    back_at = server.ready_at
                    await pool.await_ready(timeout=_DOWN_TIMEOUT, min_ready=size)
                    all_ready = time.monotonic() - back_at
                    recovered = functools.partial(events.all_recovered, back_at)
                    await _wait_for(recovered, pool, _EVENT_TIMEOUT)
                    excess = [extra for _, extra in settled(events.recoveries(back_at))]
                    results.append(_Kill(detection, empty, all_ready, excess))
    finally:
        server.stop()
    return results


def _figure_11c(settings: Settings) -> list[Figure]:
    size = settings.pick(KILL_POOL_SIZE, 2)
    rounds = settings.pick(3, 1)
    results = asyncio.run(_kill_rounds(size, rounds))
    detection = [d * 1e3 for r in results for d in r.detection]
    empty = median([r.empty * 1e3 for r in results])
    excess = [d * 1e3 for r in results for d in r.excess]
    all_ready = median([r.all_ready * 1e3 for r in results])
    backoff = ", ".join(f"{key}={value}" for key, value in BACKOFF.items())
    pool = f"aio pool of {size}, {rounds} kill(s)"
    p50 = percentile(detection, 0.5)
    return [
        Figure(
            "11c",
            f"server kill -> connection out of the view, p50 per worker ({pool})",
            p50,
            "ms",
            target="<= 50 ms",
            met=p50 <= 50,
            note=f"max {max(detection):.1f} ms over {len(detection)} workers; "
            f"view empty {empty:.1f} ms after the kill (median)",
        ),
        Figure(
            "11c",
            f"server restart -> every worker ready ({pool})",
            all_ready,
            "ms",
            note=f"backoff settings: {backoff}",
        ),
        Figure(
            "11c",
            "restart recovery minus pending scheduled backoff, max per worker",
            max(excess),
            "ms",
            target="<= 200 ms",
            met=max(excess) <= 200,
            note=f"p50 {percentile(excess, 0.5):.1f} ms",
        ),
    ]


# --- the group -------------------------------------------------------------------------


async def _on_loop(settings: Settings, port: int) -> tuple[list[Figure], list[Figure]]:
    rpc = await guarded_async("11a", "aio unary echo", lambda: _figure_11a(settings, port))
    hot = await guarded_async("11d", "aio pool.get_channel()", lambda: _figure_11d(settings, port))
    return rpc, hot


def run(settings: Settings) -> list[Figure]:
    """Figure 11. 11a and 11d pin client and server to disjoint CPUs, as figure 4 does."""
    split = split_cpus()
    client, server_cpus = split if split is not None else (None, None)
    with ServerProcess(threads=16, cpus=server_cpus) as server:
        with pinned(set(client)) if client is not None else contextlib.nullcontext():
            rpc, hot = asyncio.run(_on_loop(settings, server.port))
        footprint = guarded("11b", "aio pool footprint", lambda: _figure_11b(settings, server.port))
    if client is not None and server_cpus is not None:
        where = (
            f"client pinned to CPU {','.join(map(str, sorted(client)))}, "
            f"server process to CPU {','.join(map(str, sorted(server_cpus)))}"
        )
        rpc = [
            figure if figure.error else dataclasses.replace(figure, note=f"{figure.note}; {where}")
            for figure in rpc
        ]
    kills = guarded("11c", "aio server kill and restart", lambda: _figure_11c(settings))
    return [*rpc, *footprint, *kills, *hot]


def main(argv: list[str] | None = None) -> None:
    """The footprint child (11b): prints one JSON line."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--size", type=int, default=FOOTPRINT_SIZE)
    parser.add_argument("--settle", type=float, default=_SETTLE)
    args = parser.parse_args(argv)
    result = asyncio.run(_child(args.port, args.size, args.settle))
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
