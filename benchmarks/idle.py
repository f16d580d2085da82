"""Figure 12: what an idle ready pool costs in CPU, beside bare grpcio channels.

Each reading is taken in a fresh child process (``python -m benchmarks.idle``)
against an echo server in a process of its own: the child opens its channels
or pool, waits until everything is ready, lets it settle, then measures its
own CPU time (every thread's, ``time.process_time``) over a window, as a share
of one core. Nothing calls meanwhile: this is what a pool costs for being
there.

a. Controls: 256 bare grpcio channels (sync, then ``grpc.aio``), connected
   and left alone.
b. Sync pools (``grpcpool``) of 1 and 256 with the default connection
   settings, health pings every 25 s included, and the pool of 256 with pings
   off: the difference is what the pings cost, and the connectivity watcher
   thread's own share is in the notes.
c. The same for asyncio pools (``grpcpool.aio``).

A window with pings lasts exactly one ping interval, so every connection
pings once in it, whenever its pings fall; the others last
:data:`QUIET_WINDOW` seconds. A pool of 1 pings once per 25 s, about a
millisecond of CPU: its window is the short one.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any

from benchmarks.harness import Figure, Settings
from benchmarks.server import ServerProcess

__all__ = ["run"]

LARGE = 256
# The connection.ping_interval default: a window with pings is one interval.
PING_INTERVAL = 25.0
QUIET_WINDOW = 10.0
# Seconds after everything is ready before the window opens: start-up work
# ends and the watcher slows to its idle pace.
SETTLE = 3.0
# The goal for a ready idle pool of 256, health pings included.
GOAL = 0.3
_CHILD_TIMEOUT = 300.0


@dataclass(frozen=True)
class _Case:
    label: str
    kind: str  # bare, bare-aio, sync, aio
    size: int
    pings: bool

    def window(self, settings: Settings) -> float:
        full = PING_INTERVAL if self.pings and self.size > 1 else QUIET_WINDOW
        return float(settings.pick(full, 0.3))

    def ping_interval(self, settings: Settings) -> float | None:
        return float(settings.pick(PING_INTERVAL, 0.1)) if self.pings else None


def _cases(large: int) -> list[_Case]:
    return [
        _Case(f"{large} bare grpcio channels (sync)", "bare", large, False),
        _Case(f"{large} bare grpc.aio channels", "bare-aio", large, False),
        _Case("sync pool of 1", "sync", 1, True),
        _Case(f"sync pool of {large}", "sync", large, True),
        _Case(f"sync pool of {large}, pings off", "sync", large, False),
        _Case("asyncio pool of 1", "aio", 1, True),
        _Case(f"asyncio pool of {large}", "aio", large, True),
        _Case(f"asyncio pool of {large}, pings off", "aio", large, False),
    ]


# --- in the child -----------------------------------------------------------------------


def _thread_cpu(name: str) -> float:
    """CPU seconds the live thread called ``name`` has used (0 if there is none)."""
    for thread in threading.enumerate():
        if thread.name == name and thread.ident is not None:
            return time.clock_gettime(time.pthread_getcpuclockid(thread.ident))
    return 0.0


def _window(seconds: float) -> dict[str, float]:
    """This process's CPU over ``seconds`` of idling, in % of one core; the watcher's too."""
    wall, cpu = time.monotonic(), time.process_time()
    watcher = _thread_cpu("grpcpool-watcher")
    time.sleep(seconds)  # everything idles meanwhile: this is what is measured
    wall = time.monotonic() - wall
    return {
        "process": 100 * (time.process_time() - cpu) / wall,
        "watcher": 100 * (_thread_cpu("grpcpool-watcher") - watcher) / wall,
    }


def _config(port: int, size: int, ping_interval: float | None) -> Any:
    from benchmarks.pools import pool_config, unique_name

    return pool_config(port, size, unique_name("idle"), connection={"ping_interval": ping_interval})


def _sync(
    port: int, kind: str, size: int, ping: float | None, settle: float, window: float
) -> dict[str, float]:
    from benchmarks.pools import distinct_channels, running_pool

    if kind == "bare":
        with distinct_channels(f"127.0.0.1:{port}", size):
            time.sleep(settle)
            return _window(window)
    with running_pool(_config(port, size, ping)):
        time.sleep(settle)
        return _window(window)


async def _aio(
    port: int, kind: str, size: int, ping: float | None, settle: float, window: float
) -> dict[str, float]:
    import grpc

    import grpcpool.aio
    from benchmarks.pools import channel_options

    if kind == "bare-aio":
        target = f"127.0.0.1:{port}"
        channels = [
            grpc.aio.insecure_channel(target, options=channel_options()) for _ in range(size)
        ]
        try:
            for channel in channels:
                await asyncio.wait_for(channel.channel_ready(), 30)
            await asyncio.sleep(settle)
            return await asyncio.to_thread(_window, window)
        finally:
            for channel in channels:
                await channel.close()
    async with grpcpool.aio.Pool(_config(port, size, ping)) as pool:
        await pool.await_ready(timeout=60, min_ready=size)
        await asyncio.sleep(settle)
        # The loop idles on as it would; the window is timed from a thread.
        return await asyncio.to_thread(_window, window)


def _child(args: argparse.Namespace) -> dict[str, float]:
    ping = None if args.ping_interval <= 0 else args.ping_interval
    sizes = (args.port, args.kind, args.size, ping, args.settle, args.window)
    if args.kind in ("bare", "sync"):
        return _sync(*sizes)
    return asyncio.run(_aio(*sizes))


# --- in the parent ------------------------------------------------------------------------


def _measure(port: int, case: _Case, settings: Settings) -> dict[str, float]:
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.idle",
            f"--port={port}",
            f"--kind={case.kind}",
            f"--size={case.size}",
            f"--ping-interval={case.ping_interval(settings) or 0}",
            f"--settle={settings.pick(SETTLE, 0.1)}",
            f"--window={case.window(settings)}",
        ],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=_CHILD_TIMEOUT,
        check=False,
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"idle child failed ({done.returncode}): {done.stderr[-2000:]}")
    reading: dict[str, float] = json.loads(lines[-1])
    return reading


def run(settings: Settings) -> list[Figure]:
    large = settings.pick(LARGE, 2)
    cases = _cases(large)
    with ServerProcess() as server:
        readings = {case.label: _measure(server.port, case, settings) for case in cases}
    bare, bare_aio = (readings[case.label]["process"] for case in cases[:2])
    figures = [
        Figure("12a", cases[0].label, bare, "% of a core", note="connected, never called"),
        Figure("12a", cases[1].label, bare_aio, "% of a core", note="connected, never called"),
    ]
    groups = (
        ("12b", bare, cases[0].label, cases[2:5]),
        ("12c", bare_aio, cases[1].label, cases[5:8]),
    )
    for key, control, name, (one, full, quiet) in groups:
        pings = readings[full.label]["process"] - readings[quiet.label]["process"]
        for case in (one, full, quiet):
            value = readings[case.label]["process"]
            goal = case is full and case.kind == "sync"
            figures.append(
                Figure(
                    key,
                    f"idle ready {case.label}",
                    value,
                    "% of a core",
                    baseline=name,
                    baseline_value=control,
                    ratio=value / control if control else None,
                    target=f"< {GOAL}%" if goal else "",
                    met=value < GOAL if goal else None,
                    spread_of="value",
                    note=_note(case, readings[case.label], pings, settings),
                )
            )
    return figures


def _note(case: _Case, reading: dict[str, float], pings: float, settings: Settings) -> str:
    window = f"{case.window(settings):g} s window"
    watcher = (
        f"; connectivity watcher thread {reading['watcher']:.3f}%" if case.kind == "sync" else ""
    )
    if not case.pings:
        return f"{window}{watcher}"
    interval = case.ping_interval(settings)
    assert interval is not None
    if case.size == 1:
        return f"{window}, health ping every {interval:g} s{watcher}"
    per_ping = pings / 100 * interval / case.size * 1e6
    return (
        f"{window}, one health ping per connection in it{watcher}; the pings: "
        f"{pings:+.3f}% over pings off, ~{per_ping:.0f} us of CPU each"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--kind", choices=("bare", "bare-aio", "sync", "aio"), required=True)
    parser.add_argument("--size", type=int, required=True)
    parser.add_argument("--ping-interval", type=float, default=0.0)
    parser.add_argument("--settle", type=float, default=SETTLE)
    parser.add_argument("--window", type=float, default=QUIET_WINDOW)
    print(json.dumps(_child(parser.parse_args(argv))), flush=True)


if __name__ == "__main__":
    main()
