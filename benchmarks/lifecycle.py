"""Figure 6: how fast a pool notices a dead server, recovers, starts and stops.

- Server kill: the echo server process gets SIGKILL; for every worker, the
  time from the kill to its ``channel.connection_down`` event (p50, max).
- Server restart: a new server process on the same port; the time from the
  moment it listens to every worker ready, and per worker the recovery minus
  the part of its scheduled backoff delay (``reconnect_scheduled`` carries
  ``delay_ms``) still pending when the server came back.
- Pool start: ``Supervisor.start`` to every worker ready, sizes 1, 16, 64;
  and, measured in the same rounds, ``supervisor.stop()``.

The kill/restart pool uses small backoff settings (:data:`BACKOFF`), stated
in the figures' notes, and enough reconnect attempts that no limit warning is logged
while the server is away.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import blinker

import grpcpool
from benchmarks.harness import (
    Figure,
    Goal,
    Settings,
    compared,
    deadline_wait,
    guarded,
    median,
    percentile,
)
from benchmarks.pools import READY_TIMEOUT, STOP_TIMEOUT, pool_config, running_pool, unique_name
from benchmarks.server import ServerProcess
from grpcpool import PoolSpec, Supervisor, telemetry

__all__ = ["BACKOFF", "Events", "recovery", "run", "settled", "subscribed"]

BACKOFF: dict[str, Any] = {
    "backoff_min": 0.05,
    "backoff_max": 0.25,
    "connect_timeout": 2.0,
    "max_reconnect_attempts": 1000,
}
START_SIZES = (1, 16, 64)
KILL_POOL_SIZE = 16
# Seconds to wait for every worker to notice a kill, and to recover.
_DOWN_TIMEOUT = 10.0
# Seconds the last channel.connected events get to arrive once the pool is ready.
_EVENT_TIMEOUT = 2.0


def recovery(
    back_at: float,
    down_at: float,
    connected: Sequence[float],
    scheduled: Sequence[tuple[float, float]],
) -> tuple[float, float] | None:
    """One worker's recovery after a restart: (seconds to reconnect, excess over its backoff).

    ``back_at`` is when the new server could first accept a connection,
    ``down_at`` when this worker saw the old one die, ``connected`` its
    ``channel.connected`` times and ``scheduled`` its ``reconnect_scheduled``
    (time, delay) pairs. The excess is the recovery minus the part of the
    latest backoff scheduled before the reconnect that was still pending at
    ``back_at``: what the pool added beyond the wait it chose.

    A reconnect is the first ``connected`` after ``down_at``. It can carry a
    time before ``back_at`` when ``back_at`` is read late (a parent reading
    the server's READY line after clients already connected); it then counts
    as an instant recovery, never as an error. Returns ``None`` while the
    worker has not reconnected.
    """
    after = [at for at in connected if at > down_at]
    if not after:
        return None
    reconnected = min(after)
    due = max((at + delay for at, delay in scheduled if at < reconnected), default=back_at)
    pending = max(0.0, due - back_at)
    took = max(0.0, reconnected - back_at)
    return took, took - pending


@dataclass
class Events:
    """Timestamps (time.monotonic) of the telemetry events of one pool.

    Receivers run on whatever thread emits (sync pools) or on the loop
    (asyncio pools); the lock makes both safe.
    """

    pool: str
    down: dict[str, float] = field(default_factory=dict)
    scheduled: dict[str, list[tuple[float, float]]] = field(
        default_factory=lambda: defaultdict(list)
    )
    connected: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    lock: threading.Lock = field(default_factory=threading.Lock)

    def on_down(self, sender: str, measurements: Any, metadata: dict[str, Any]) -> None:
        now = time.monotonic()
        if sender == self.pool:
            with self.lock:
                self.down.setdefault(metadata["worker_id"], now)

    def on_scheduled(
        self, sender: str, measurements: dict[str, Any], metadata: dict[str, Any]
    ) -> None:
        now = time.monotonic()
        if sender == self.pool:
            with self.lock:
                self.scheduled[metadata["worker_id"]].append((now, measurements["delay_ms"] / 1e3))

    def on_connected(self, sender: str, measurements: Any, metadata: dict[str, Any]) -> None:
        now = time.monotonic()
        if sender == self.pool:
            with self.lock:
                self.connected[metadata["worker_id"]].append(now)

    def recoveries(self, back_at: float) -> dict[str, tuple[float, float] | None]:
        """:func:`recovery` of every worker that saw the kill."""
        with self.lock:
            return {
                worker: recovery(back_at, down_at, self.connected[worker], self.scheduled[worker])
                for worker, down_at in self.down.items()
            }

    def all_recovered(self, back_at: float) -> bool:
        return all(value is not None for value in self.recoveries(back_at).values())


@contextmanager
def subscribed(events: Events) -> Iterator[None]:
    """``events`` records the pool's down, scheduled and connected signals meanwhile."""
    pairs: list[tuple[blinker.NamedSignal, Any]] = [
        (telemetry.channel_connection_down, events.on_down),
        (telemetry.channel_reconnect_scheduled, events.on_scheduled),
        (telemetry.channel_connected, events.on_connected),
    ]
    for signal, receiver in pairs:
        signal.connect(receiver, weak=False)
    try:
        yield
    finally:
        for signal, receiver in pairs:
            signal.disconnect(receiver)


def settled(recoveries: dict[str, tuple[float, float] | None]) -> list[tuple[float, float]]:
    """The (recovery, excess) pairs, or a clear error naming the workers without one.

    The pool said every worker is ready, so a missing ``channel.connected``
    event is a fault of the telemetry, reported as such.
    """
    missing = sorted(worker for worker, value in recoveries.items() if value is None)
    if missing:
        raise RuntimeError(
            f"{len(missing)} worker(s) ready again without a channel.connected event "
            f"after the kill: {', '.join(missing[:4])}"
        )
    return [value for value in recoveries.values() if value is not None]


@dataclass
class _KillRound:
    detection: list[float]  # per worker, seconds from kill to connection_down
    all_ready: float  # seconds from restart to every worker ready
    recovery: list[float]  # per worker, seconds from restart to connected
    excess: list[float]  # per worker, recovery minus the backoff still pending at restart


def _kill_round(server: ServerProcess, size: int) -> tuple[_KillRound, ServerProcess]:
    """Kills ``server`` under a ready pool and starts its successor; returns both."""
    name = unique_name("kill")
    events = Events(name)
    config = pool_config(server.port, size, name, connection=BACKOFF)
    successor: ServerProcess | None = None
    try:
        with running_pool(config), subscribed(events):
            killed_at = time.monotonic()
            server.kill()
            if not deadline_wait(lambda: len(events.down) >= size, _DOWN_TIMEOUT, 0.001):
                raise RuntimeError(f"only {len(events.down)} of {size} workers saw the kill")
            successor = ServerProcess(port=server.port)
            back_at = successor.ready_at
            grpcpool.await_ready(name, timeout=_DOWN_TIMEOUT, min_ready=size)
            all_ready = time.monotonic() - back_at
            deadline_wait(lambda: events.all_recovered(back_at), _EVENT_TIMEOUT)
            pairs = settled(events.recoveries(back_at))
            with events.lock:
                detection = [at - killed_at for at in events.down.values()]
    except BaseException:
        if successor is not None:
            successor.stop()
        raise
    assert successor is not None
    recovered = [took for took, _ in pairs]
    excess = [extra for _, extra in pairs]
    return _KillRound(detection, all_ready, recovered, excess), successor


def _kill_figures(settings: Settings) -> list[Figure]:
    rounds = settings.pick(3, 1)
    size = settings.pick(KILL_POOL_SIZE, 2)
    results: list[_KillRound] = []
    server = ServerProcess()
    try:
        for _ in range(rounds):
            result, server = _kill_round(server, size)
            results.append(result)
    finally:
        server.stop()
    detection = [d * 1e3 for r in results for d in r.detection]
    recovery = [d * 1e3 for r in results for d in r.recovery]
    excess = [d * 1e3 for r in results for d in r.excess]
    all_ready = median([r.all_ready * 1e3 for r in results])
    backoff = ", ".join(f"{key}={value}" for key, value in BACKOFF.items())
    pool = f"pool of {size}, {rounds} round(s)"
    return [
        Figure(
            "6a",
            f"server kill -> connection_down, p50 per worker ({pool})",
            percentile(detection, 0.5),
            "ms",
            target="<= 50 ms",
            met=percentile(detection, 0.5) <= 50,
            note=f"max {max(detection):.1f} ms over {len(detection)} workers",
        ),
        Figure(
            "6a",
            "server kill -> connection_down, max per worker",
            max(detection),
            "ms",
        ),
        Figure(
            "6b",
            f"server restart -> every worker ready ({pool})",
            all_ready,
            "ms",
            note=f"backoff settings: {backoff}; per-worker recovery p50 "
            f"{percentile(recovery, 0.5):.0f} ms, max {max(recovery):.0f} ms",
        ),
        Figure(
            "6b",
            "restart recovery minus pending scheduled backoff, max per worker",
            max(excess),
            "ms",
            target="<= 200 ms",
            met=max(excess) <= 200,
            note=f"p50 {percentile(excess, 0.5):.1f} ms; recovery <= scheduled delay + 200 ms",
        ),
    ]


def _start_round(port: int, size: int) -> tuple[float, float]:
    """Seconds from ``Supervisor.start`` to every worker ready, and to stop."""
    name = unique_name("start")
    config = pool_config(port, size, name)
    started = time.perf_counter()
    supervisor = Supervisor.start(children=[PoolSpec(config, name=name)])
    try:
        grpcpool.await_ready(name, timeout=READY_TIMEOUT, min_ready=size)
        ready = time.perf_counter() - started
    finally:
        stopping = time.perf_counter()
        supervisor.stop(timeout=STOP_TIMEOUT)
        stopped = time.perf_counter() - stopping
    return ready, stopped


def _start_figures(settings: Settings) -> list[Figure]:
    rounds = settings.pick(3, 1)
    sizes = settings.pick(START_SIZES, (1, 2))
    ready: dict[int, list[float]] = defaultdict(list)
    stop: dict[int, list[float]] = defaultdict(list)
    with ServerProcess() as server:
        with running_pool(pool_config(server.port, 1, unique_name("warm"))):
            pass  # the first pool pays for imports and grpc's own threads
        for _ in range(rounds):
            for size in sizes:
                up, down = _start_round(server.port, size)
                ready[size].append(up * 1e3)
                stop[size].append(down * 1e3)
    figures = [
        compared(
            "6c",
            f"pool start -> all {size} ready",
            ready[size],
            "ms",
            goal=Goal("<=", 2000.0, "<= 2000 ms") if size == max(sizes) else None,
            judge="value",
        )
        for size in sizes
    ]
    for size in sizes:
        value = median(stop[size])
        figures.append(
            compared(
                "6d",
                f"supervisor.stop() of a ready pool of {size}",
                stop[size],
                "ms",
                note=f"{value / size:.1f} ms per worker; workers stop in parallel, and no "
                "channel close waits for a connectivity poll thread (there is none)"
                if size == max(sizes)
                else "",
            )
        )
    return figures


def run(settings: Settings) -> list[Figure]:
    """Figure 6: kill and restart, then start and stop."""
    return [
        *guarded("6a/6b", "server kill and restart", lambda: _kill_figures(settings)),
        *guarded("6c/6d", "pool start and stop", lambda: _start_figures(settings)),
    ]
