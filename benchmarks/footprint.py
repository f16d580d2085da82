"""Figure 7: threads and resident memory per worker; the watcher's CPU.

Measured in a fresh child process (``python -m benchmarks.footprint``) so
that nothing the other benchmarks left behind counts. Three readings: grpc
warmed up (one channel connected, used and closed) and no pool; a ready pool
of 1; the same pool scaled up to 64 and ready. A pool cannot have 0 workers,
so "pool of 64 minus pool of 0" is taken as (64 - 1) / 63 per worker: the
cost of one more worker. (64 - no pool) / 64 also counts the pool's fixed
actors (supervisors, registry, reporter) and the timer thread.

Threads are ``threading.active_count()``; memory is ``VmRSS`` from
``/proc/self/status``. Then the pool grows to 1,024 ready connections and
idles for a few seconds: figure 7d is the CPU time the one connectivity
watcher thread used meanwhile (from ``/proc/self/task/<tid>/stat``), as a
share of one core, with the whole process's share beside it.
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
# The idle pool whose CPU cost is measured (figure 7d).
LARGE_POOL_SIZE = 1024
_CPU_SECONDS = 3.0
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


def _thread_cpu_seconds(thread: threading.Thread | None) -> float:
    """CPU seconds (user + system) a thread has used so far (Linux)."""
    if thread is None or thread.native_id is None:
        return 0.0
    with open(f"/proc/self/task/{thread.native_id}/stat", encoding="ascii") as stat:
        # Fields after the command name, which is in parentheses.
        fields = stat.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def _cpu_shares(seconds: float) -> dict[str, float]:
    """The process's and the watcher thread's CPU over ``seconds``, in % of one core."""
    watcher = next((t for t in threading.enumerate() if t.name == "grpcpool-watcher"), None)
    wall, process, own = time.monotonic(), time.process_time(), _thread_cpu_seconds(watcher)
    time.sleep(seconds)  # the pool idles meanwhile: this is what is measured
    wall = time.monotonic() - wall
    return {
        "process": 100 * (time.process_time() - process) / wall,
        "watcher": 100 * (_thread_cpu_seconds(watcher) - own) / wall,
    }


def _child(
    port: int, size: int, settle: float, large: int, cpu_seconds: float
) -> dict[str, object]:
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
        grpcpool.scale_up("footprint", large - size)
        grpcpool.await_ready("footprint", timeout=120.0, min_ready=large)
        time.sleep(settle)  # let the start-up's short-lived work end
        cpu = _cpu_shares(cpu_seconds)
    return {
        "none": none,
        "one": one,
        "full": full,
        "size": size,
        "kinds": dict(kinds),
        "large": large,
        "cpu": cpu,
    }


def _kind(thread: threading.Thread) -> str:
    """A thread's name without its number: ``ChannelWorker``, ``grpc poll``, ..."""
    name = thread.name
    if name.startswith(("grpcpool-timer", "grpcpool-watcher")):
        return name
    if name.endswith("(_run)"):
        return "grpc connectivity poll (_run)"
    return name.split("-")[0].split(" ")[0]


def run(settings: Settings) -> list[Figure]:
    size = settings.pick(POOL_SIZE, 2)
    large = settings.pick(LARGE_POOL_SIZE, 4)
    settle = settings.pick(_SETTLE, 0.1)
    cpu_seconds = settings.pick(_CPU_SECONDS, 0.2)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    with ServerProcess() as server:
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "benchmarks.footprint",
                f"--port={server.port}",
                f"--size={size}",
                f"--large={large}",
                f"--settle={settle}",
                f"--cpu-seconds={cpu_seconds}",
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
            target="<= 1.05",
            met=threads <= 1.05,
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
        Figure(
            "7d",
            f"connectivity watcher's CPU, idle ready pool of {result['large']}",
            result["cpu"]["watcher"],
            "% of a core",
            target="<= 5",
            met=result["cpu"]["watcher"] <= 5,
            note=f"whole process meanwhile (health pings every 25 s per connection "
            f"included): {result['cpu']['process']:.1f}% of a core",
        ),
    ]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--size", type=int, default=POOL_SIZE)
    parser.add_argument("--settle", type=float, default=_SETTLE)
    parser.add_argument("--large", type=int, default=LARGE_POOL_SIZE)
    parser.add_argument("--cpu-seconds", type=float, default=_CPU_SECONDS)
    args = parser.parse_args(argv)
    result = _child(args.port, args.size, args.settle, args.large, args.cpu_seconds)
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
