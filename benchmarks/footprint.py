"""Figure 7: threads and resident memory per worker.

Measured in a fresh child process (``python -m benchmarks.footprint``) so
that nothing the other benchmarks left behind counts. Three readings: grpc
warmed up (one channel connected, used and closed) and no pool; a ready pool
of 1; the same pool scaled up to 64 and ready. A pool cannot have 0 workers,
so "pool of 64 minus pool of 0" is taken as (64 - 1) / 63 per worker: the
cost of one more worker. (64 - no pool) / 64 also counts the pool's fixed
actors (supervisors, registry, reporter) and the timer thread.

Threads are ``threading.active_count()``; memory is ``VmRSS`` from
``/proc/self/status``.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import threading
import time
from collections import Counter

from benchmarks.harness import Figure, Settings
from benchmarks.server import ServerProcess

__all__ = ["rss_kib", "run"]

POOL_SIZE = 64
_CHILD_TIMEOUT = 120.0
# Seconds the process gets to settle before a reading (short-lived grpc threads end).
_SETTLE = 1.0


def rss_kib() -> int:
    """This process's resident set size in KiB (Linux)."""
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS in /proc/self/status")


def _reading(settle: float) -> dict[str, int]:
    gc.collect()
    time.sleep(settle)
    return {"threads": threading.active_count(), "rss_kib": rss_kib()}


def _child(port: int, size: int, settle: float) -> dict[str, object]:
    import grpc

    import grpcpool
    from benchmarks.pools import channel_options, pool_config, running_pool
    from benchmarks.server import ECHO_METHOD

    with grpc.insecure_channel(f"127.0.0.1:{port}", options=channel_options()) as channel:
        channel.unary_unary(ECHO_METHOD)(b"warm", timeout=10)
    none = _reading(settle)
    with running_pool(pool_config(port, 1, "footprint")):
        one = _reading(settle)
        grpcpool.scale_up("footprint", size - 1)
        grpcpool.await_ready("footprint", timeout=60.0, min_ready=size)
        full = _reading(settle)
        kinds = Counter(_kind(thread) for thread in threading.enumerate())
    return {"none": none, "one": one, "full": full, "size": size, "kinds": dict(kinds)}


def _kind(thread: threading.Thread) -> str:
    """A thread's name without its number: ``ChannelWorker``, ``grpc poll``, ..."""
    name = thread.name
    if name.startswith("grpcpool-timer"):
        return name
    if name.endswith("(_run)"):
        return "grpc connectivity poll (_run)"
    return name.split("-")[0].split(" ")[0]


def run(settings: Settings) -> list[Figure]:
    size = settings.pick(POOL_SIZE, 2)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    with ServerProcess() as server:
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "benchmarks.footprint",
                f"--port={server.port}",
                f"--size={size}",
            ],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=_CHILD_TIMEOUT,
            check=False,
        )
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"footprint child failed ({done.returncode}): {done.stderr[-2000:]}")
    result = json.loads(lines[-1])
    none, one, full = result["none"], result["one"], result["full"]
    threads = (full["threads"] - one["threads"]) / (size - 1)
    rss = (full["rss_kib"] - one["rss_kib"]) / (size - 1)
    threads_all = (full["threads"] - none["threads"]) / size
    rss_all = (full["rss_kib"] - none["rss_kib"]) / size
    kinds = ", ".join(f"{n} {kind}" for kind, n in sorted(result["kinds"].items()))
    return [
        Figure(
            "7a",
            f"threads per worker (pool of {size} minus pool of 1, / {size - 1})",
            threads,
            "threads",
            target="<= 2",
            met=threads <= 2,
            note=f"threads {none['threads']} (no pool) -> {one['threads']} (pool of 1) -> "
            f"{full['threads']} (pool of {size}): {kinds}",
        ),
        Figure(
            "7b",
            f"RSS per worker (pool of {size} minus pool of 1, / {size - 1})",
            rss,
            "KiB",
            note=f"VmRSS {none['rss_kib']} (no pool) -> {one['rss_kib']} (pool of 1) -> "
            f"{full['rss_kib']} KiB (pool of {size})",
        ),
        Figure(
            "7c",
            f"threads per worker incl. the pool's fixed actors (pool of {size} minus no pool)",
            threads_all,
            "threads",
        ),
        Figure(
            "7c",
            f"RSS per worker incl. the pool's fixed actors (pool of {size} minus no pool)",
            rss_all,
            "KiB",
        ),
    ]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--size", type=int, default=POOL_SIZE)
    parser.add_argument("--settle", type=float, default=_SETTLE)
    args = parser.parse_args(argv)
    print(json.dumps(_child(args.port, args.size, args.settle)), flush=True)


if __name__ == "__main__":
    main()
