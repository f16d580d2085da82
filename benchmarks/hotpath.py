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
from benchmarks.harness import Figure, Settings, interleave, median, ns_per_call
from benchmarks.pools import pool_config, running_pool, unique_name
from benchmarks.server import ServerProcess
from grpcpool.pools import lookup
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
) -> dict[str, float]:
    """ns per call of ``get_channel(name)`` and of the bare read, medians of ``rounds``.

    With ``strategy``, also of that strategy's picker alone; with
    ``breakdown``, also of the steps inside ``get_channel``.
    """
    runs = {
        "pool": ns_per_call(
            "get_channel(name)", {"get_channel": grpcpool.get_channel, "name": name}, number
        ),
        "bare": ns_per_call("t[next(c) % n]", _bare_read(size), number),
    }
    if strategy is not None:
        pick = resolve_strategy(strategy).picker(tuple(range(size)))
        runs["select"] = ns_per_call("pick()", {"pick": pick}, number)
    if breakdown:
        # Where the time goes, step by step (internal names: for the record only).
        entry = lookup(name)
        runs["lookup"] = ns_per_call("lookup(name)", {"lookup": lookup, "name": name}, number)
        runs["state"] = ns_per_call("entry.get_channel()", {"entry": entry}, number)
        runs["select"] = ns_per_call("view.pick()", {"view": entry.view}, number)
    results = interleave(rounds, runs)
    return {key: median(values) for key, values in results.items()}


def _measure_in_child(port: int, size: int, rounds: int, number: int) -> dict[str, float]:
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    command = [
        sys.executable,
        "-m",
        "benchmarks.hotpath",
        f"--port={port}",
        f"--size={size}",
        f"--rounds={rounds}",
        f"--number={number}",
    ]
    done = subprocess.run(
        command, cwd=root, capture_output=True, text=True, timeout=_CHILD_TIMEOUT, check=False
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"hotpath child failed ({done.returncode}): {done.stderr[-2000:]}")
    answer: dict[str, float] = json.loads(lines[-1])
    return answer


def _figure_1(settings: Settings, port: int) -> list[Figure]:
    rounds = settings.pick(7, 2)
    number = settings.pick(200_000, 2_000)
    sizes = settings.pick(SIZES, (1, 2, 3))
    small: int = settings.pick(8, 2)
    figures: list[Figure] = []
    per_size: dict[int, float] = {}
    for size in sizes:
        if size >= _CHILD_SIZE:
            result = _measure_in_child(port, size, rounds, number)
        else:
            name = unique_name("hot")
            with running_pool(pool_config(port, size, name)):
                result = measure_size(name, size, rounds, number, breakdown=size == small)
        per_size[size] = result["pool"]
        ratio = result["pool"] / result["bare"]
        figures.append(
            Figure(
                "1a",
                f"get_channel(name), size {size}, round_robin",
                result["pool"],
                "ns/call",
                "bare tuple[next(c) % n]",
                result["bare"],
                ratio,
                "<= 5x",
                ratio <= 5.0,
                _size_note(size, small, result),
            )
        )
    for strategy in STRATEGIES[1:]:
        name = unique_name("hot")
        with running_pool(pool_config(port, small, name, strategy=strategy)):
            result = measure_size(name, small, rounds, number, strategy)
        ratio = result["pool"] / result["bare"]
        figures.append(
            Figure(
                "1b",
                f"get_channel(name), size {small}, {strategy}",
                result["pool"],
                "ns/call",
                "bare tuple[next(c) % n]",
                result["bare"],
                ratio,
                "",  # the <= 5x target is the default strategy's (1a)
                None,
                f"{strategy} picker alone: {result['select']:.0f} ns/call; each "
                "CPython random() draw costs about as much as the whole bare tuple read",
            )
        )
    large = max(per_size)
    base = min((size for size in per_size if size > 1), default=large)
    if large > base:
        spread = per_size[large] / per_size[base]
        figures.append(
            Figure(
                "1c",
                f"flatness: get_channel at size {large} / at size {base}",
                per_size[large],
                "ns/call",
                f"get_channel at size {base}",
                per_size[base],
                spread,
                "flat (<= 1.25x)",
                spread <= 1.25,
                "O(1): no cost grows with the pool",
            )
        )
    return figures


def _size_note(size: int, small: int, result: dict[str, float]) -> str:
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
            f"inside get_channel(name): lookup(name) {result['lookup']:.0f} ns, "
            f"PoolEntry.get_channel() {result['state']:.0f} ns, "
            f"of which view.pick() {result['select']:.0f} ns"
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
    proxy, ask = median(results["proxy"]), median(results["ask"])
    return [
        Figure(
            "2",
            f"pool_proxy.get_channel().get(), size {size}",
            proxy,
            "ns/call",
            "pykka ask to a trivial actor",
            ask,
            proxy / ask,
            "<= 0.05x (1/20)",
            proxy / ask <= 0.05,
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
    single = median(results["1"])
    figures = []
    for threads in THREADS:
        cost = median(results[str(threads)])
        ratio = cost / single
        target = "<= 1.5x" if threads == 16 else ""
        figures.append(
            Figure(
                "3",
                f"get_channel aggregate, {threads} thread(s), size {size} "
                f"({1e9 / cost / 1e6:.2f} M calls/s)",
                cost,
                "ns/call",
                "1 thread",
                single,
                ratio,
                target,
                (ratio <= 1.5) if threads == 16 else None,
            )
        )
    return figures


def run(settings: Settings) -> list[Figure]:
    """Figures 1, 2 and 3 against one echo server process."""
    with ServerProcess() as server:
        return [
            *_figure_1(settings, server.port),
            *_figure_2(settings, server.port),
            *_figure_3(settings, server.port),
        ]


def _child(argv: list[str]) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--size", type=int, required=True)
    parser.add_argument("--rounds", type=int, required=True)
    parser.add_argument("--number", type=int, required=True)
    args = parser.parse_args(argv)
    name = unique_name("hot")
    config = pool_config(args.port, args.size, name)
    supervisor = grpcpool.Supervisor.start(children=[grpcpool.PoolSpec(config, name=name)])
    grpcpool.await_ready(name, timeout=60.0, min_ready=args.size)
    result = measure_size(name, args.size, args.rounds, args.number)
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
