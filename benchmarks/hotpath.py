"""Figures 1-3: the hot path.

1. ``grpcpool.get_channel(name)`` per call beside a bare
   ``tuple[next(counter) % n]`` read, for pool sizes 1, 8, 64 and 512, and
   per strategy (at size 8).
2. ``pool_proxy.get_channel().get()`` beside a pykka ``ask`` round trip to a
   trivial actor.
3. ``get_channel`` aggregate throughput with 1, 4 and 16 threads.

Both sides of a comparison run the same timeit loop in the same rounds,
interleaved; neither subtracts the loop's own cost.

The 512-worker pool is measured in a child process (``python -m
benchmarks.hotpath --size 512 --port P``), which then stops it and reports
how long that took. If the stop has not finished within
:data:`_CHILD_STOP_WAIT` seconds (grpcio's ``Channel.close`` waits for the
connectivity poll in flight, up to 200 ms, so a pool that closes its workers
one after another needs about 100 s for 512), the child exits instead, which
closes every connection at once.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import itertools
import json
import os
import subprocess
import sys
import threading
import time
from typing import Any

import pykka

import grpcpool
from benchmarks.harness import (
    Figure,
    Goal,
    Settings,
    compared,
    guarded,
    interleave,
    median,
    not_measured,
    ns_per_call,
)
from benchmarks.pools import pool_config, running_pool, unique_name
from benchmarks.server import ServerProcess
from grpcpool.api import lookup
from grpcpool.strategy import resolve_strategy

__all__ = ["run"]

SIZES = (1, 8, 64, 512)
STRATEGIES = ("round_robin", "random", "power_of_two")
THREADS = (1, 4, 16)
# Sizes at or above this run in a child process that exits instead of stopping.
_CHILD_SIZE = 512
_CHILD_TIMEOUT = 120.0
# Seconds the child waits for its pool to stop before it exits anyway.
_CHILD_STOP_WAIT = 20.0


def _bare_read(size: int) -> dict[str, Any]:
    return {"t": tuple(range(size)), "c": itertools.count(), "n": size}


def measure_size(
    name: str,
    size: int,
    rounds: int,
    number: int,
    strategy: str | None = None,
    breakdown: bool = False,
    other: str | None = None,
) -> dict[str, list[float]]:
    """ns per call of ``get_channel(name)`` and of the bare read, one per round.

    With ``strategy``, also of that strategy's picker alone; with
    ``breakdown``, also of the steps inside ``get_channel``; with ``other``
    (another pool's name), also of ``get_channel(other)`` in the same rounds.
    """
    runs = {
        "pool": ns_per_call(
            "get_channel(name)", {"get_channel": grpcpool.get_channel, "name": name}, number
        ),
        "bare": ns_per_call("t[next(c) % n]", _bare_read(size), number),
    }
    if other is not None:
        runs["other"] = ns_per_call(
            "get_channel(name)", {"get_channel": grpcpool.get_channel, "name": other}, number
        )
    if strategy is not None:
        pick = resolve_strategy(strategy).picker(tuple(range(size)))
        runs["select"] = ns_per_call("pick()", {"pick": pick}, number)
    if breakdown:
        # Where the time goes, step by step (internal names: for the record only).
        entry = lookup(name)
        runs["lookup"] = ns_per_call("lookup(name)", {"lookup": lookup, "name": name}, number)
        runs["state"] = ns_per_call("entry.get_channel()", {"entry": entry}, number)
        runs["select"] = ns_per_call("view.pick()", {"view": entry.view}, number)
    return interleave(rounds, runs)


def _measure_in_child(port: int, size: int, rounds: int, number: int, other: int) -> dict[str, Any]:
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    command = [
        sys.executable,
        "-m",
        "benchmarks.hotpath",
        f"--port={port}",
        f"--size={size}",
        f"--rounds={rounds}",
        f"--number={number}",
        f"--other={other}",
    ]
    done = subprocess.run(
        command, cwd=root, capture_output=True, text=True, timeout=_CHILD_TIMEOUT, check=False
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"hotpath child failed ({done.returncode}): {done.stderr[-2000:]}")
    answer: dict[str, Any] = json.loads(lines[-1])
    return answer


def _measure(
    port: int, size: int, rounds: int, number: int, breakdown: bool, other: int
) -> dict[str, Any]:
    """:func:`measure_size` for a pool of ``size``, beside a pool of ``other`` if not 0."""
    if size >= _CHILD_SIZE:
        return _measure_in_child(port, size, rounds, number, other)
    name, other_name = unique_name("hot"), unique_name("hot")
    with contextlib.ExitStack() as stack:
        stack.enter_context(running_pool(pool_config(port, size, name)))
        if other:
            stack.enter_context(running_pool(pool_config(port, other, other_name)))
        return dict(
            measure_size(
                name, size, rounds, number, breakdown=breakdown, other=other_name if other else None
            )
        )


def _figure_1(settings: Settings, port: int) -> list[Figure]:
    rounds = settings.pick(7, 2)
    number = settings.pick(200_000, 2_000)
    sizes = settings.pick(SIZES, (1, 2, 3))
    small: int = settings.pick(8, 2)
    large = max(sizes)
    five = Goal("<=", 5.0, "<= 5x")
    figures: list[Figure] = []
    for size in sizes:
        measure = f"get_channel(name), size {size}, round_robin"

        def one(size: int = size, measure: str = measure) -> list[Figure]:
            other = small if size == large and large > small else 0
            result = _measure(port, size, rounds, number, size == small, other)
            found = [
                compared(
                    "1a",
                    measure,
                    result["pool"],
                    "ns/call",
                    "bare tuple[next(c) % n]",
                    result["bare"],
                    goal=five,
                    note=_size_note(size, small, result),
                )
            ]
            if other:
                # The same rounds timed both pools: no drift between them.
                found.append(
                    compared(
                        "1c",
                        f"flatness: get_channel at size {size} / at size {other}",
                        result["pool"],
                        "ns/call",
                        f"get_channel at size {other}, same rounds",
                        result["other"],
                        goal=Goal("<=", 1.25, "flat (<= 1.25x)"),
                        note="O(1): no cost grows with the pool",
                    )
                )
            return found

        figures.extend(guarded("1a", measure, one))
    flatness = [figure for figure in figures if figure.key == "1c"]
    figures = [figure for figure in figures if figure.key != "1c"]
    if large > small and not flatness:
        flatness = [not_measured("1c", "flatness", f"the size {large} measurement failed (see 1a)")]
    for strategy in STRATEGIES[1:]:
        measure = f"get_channel(name), size {small}, {strategy}"

        def picked(strategy: str = strategy, measure: str = measure) -> list[Figure]:
            name = unique_name("hot")
            with running_pool(pool_config(port, small, name, strategy=strategy)):
                result = measure_size(name, small, rounds, number, strategy)
            return [
                compared(
                    "1b",
                    measure,
                    result["pool"],
                    "ns/call",
                    "bare tuple[next(c) % n]",
                    result["bare"],
                    # The <= 5x target is the default strategy's (1a).
                    note=f"{strategy} picker alone: {median(result['select']):.0f} ns/call; "
                    "each CPython random() draw costs about as much as the whole bare "
                    "tuple read",
                )
            ]

        figures.extend(guarded("1b", measure, picked))
    return figures + flatness


def _size_note(size: int, small: int, result: dict[str, Any]) -> str:
    if size == 1:
        return "size 1 skips the strategy"
    if size >= _CHILD_SIZE:
        stop = result.get("stop_ms", float("nan"))
        stopped = (
            f"supervisor.stop() took {stop:.0f} ms"
            if stop == stop
            else f"supervisor.stop() had not finished after {_CHILD_STOP_WAIT:.0f} s, "
            "so the child exited instead (see 6d)"
        )
        return f"measured in a child process; {stopped}"
    if size == small and "lookup" in result:
        return (
            f"inside get_channel(name): lookup(name) {median(result['lookup']):.0f} ns, "
            f"PoolEntry.get_channel() {median(result['state']):.0f} ns, "
            f"of which view.pick() {median(result['select']):.0f} ns"
        )
    return ""


class _Echo(pykka.ThreadingActor):
    def on_receive(self, message: Any) -> Any:
        return message


def _figure_2(settings: Settings, port: int) -> list[Figure]:
    rounds = settings.pick(7, 2)
    name = unique_name("proxy")
    size: int = settings.pick(8, 2)
    actor = _Echo.start()
    try:
        with running_pool(pool_config(port, size, name)):
            results = interleave(
                rounds,
                {
                    "proxy": ns_per_call(
                        "proxy.get_channel().get()",
                        {"proxy": grpcpool.pool(name)},
                        settings.pick(100_000, 1_000),
                    ),
                    "ask": ns_per_call(
                        "ref.ask(message, timeout=10.0)",
                        {"ref": actor, "message": "ping"},
                        settings.pick(5_000, 100),
                    ),
                },
            )
    finally:
        actor.stop(timeout=10)
    return [
        compared(
            "2",
            f"pool_proxy.get_channel().get(), size {size}",
            results["proxy"],
            "ns/call",
            "pykka ask to a trivial actor",
            results["ask"],
            goal=Goal("<=", 0.05, "<= 0.05x (1/20)"),
        )
    ]


def _threaded_round(name: str, threads: int, total: int) -> float:
    """Runs ``total`` get_channel calls split over ``threads``; ns per call, aggregate."""
    per_thread = total // threads
    barrier = threading.Barrier(threads + 1)
    get_channel = grpcpool.get_channel

    def work() -> None:
        barrier.wait(timeout=30)
        for _ in itertools.repeat(None, per_thread):
            get_channel(name)

    workers = [threading.Thread(target=work, name=f"bench-{i}") for i in range(threads)]
    for worker in workers:
        worker.start()
    barrier.wait(timeout=30)
    started = time.perf_counter()
    for worker in workers:
        worker.join(60)
    elapsed = time.perf_counter() - started
    return elapsed / (per_thread * threads) * 1e9


def _figure_3(settings: Settings, port: int) -> list[Figure]:
    rounds = settings.pick(5, 2)
    total = settings.pick(320_000, 3_200)
    name = unique_name("threads")
    size: int = settings.pick(8, 2)
    with running_pool(pool_config(port, size, name)):
        results = interleave(
            rounds,
            {
                str(threads): functools.partial(_threaded_round, name, threads, total)
                for threads in THREADS
            },
        )
    figures = []
    for threads in THREADS:
        cost = median(results[str(threads)])
        figures.append(
            compared(
                "3",
                f"get_channel aggregate, {threads} thread(s), size {size} "
                f"({1e9 / cost / 1e6:.2f} M calls/s)",
                results[str(threads)],
                "ns/call",
                "1 thread",
                results["1"],
                goal=Goal("<=", 1.5, "<= 1.5x") if threads == 16 else None,
            )
        )
    return figures


def run(settings: Settings) -> list[Figure]:
    """Figures 1, 2 and 3 against one echo server process."""
    with ServerProcess() as server:
        return [
            *_figure_1(settings, server.port),
            *guarded(
                "2", "pool_proxy.get_channel().get()", lambda: _figure_2(settings, server.port)
            ),
            *guarded("3", "get_channel aggregate", lambda: _figure_3(settings, server.port)),
        ]


def _child(argv: list[str]) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--size", type=int, required=True)
    parser.add_argument("--rounds", type=int, required=True)
    parser.add_argument("--number", type=int, required=True)
    parser.add_argument("--other", type=int, default=0, help="size of a second pool timed alike")
    args = parser.parse_args(argv)
    names = [unique_name("hot")]
    specs = [grpcpool.PoolSpec(pool_config(args.port, args.size, names[0]), name=names[0])]
    if args.other:
        names.append(unique_name("hot"))
        specs.append(grpcpool.PoolSpec(pool_config(args.port, args.other, names[1]), name=names[1]))
    supervisor = grpcpool.Supervisor.start(children=specs)
    for name, spec in zip(names, specs, strict=True):
        grpcpool.await_ready(name, timeout=60.0, min_ready=spec.config.pool.size)
    result: dict[str, Any] = dict(
        measure_size(
            names[0], args.size, args.rounds, args.number, other=names[1] if args.other else None
        )
    )
    # Stop the pool, but give up (and exit, which closes every connection) if
    # that takes more than _CHILD_STOP_WAIT seconds; see the module docstring.
    started = time.perf_counter()
    stopper = threading.Thread(target=supervisor.stop, kwargs={"timeout": 120.0}, daemon=True)
    stopper.start()
    stopper.join(_CHILD_STOP_WAIT)
    result["stop_ms"] = (
        float("nan") if stopper.is_alive() else (time.perf_counter() - started) * 1e3
    )
    print(json.dumps(result), flush=True)
    if stopper.is_alive():
        os._exit(0)


if __name__ == "__main__":
    _child(sys.argv[1:])
