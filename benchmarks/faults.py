"""What figure 13's scenarios share: four faulty backends, a pool over them, callers, a log.

Four :mod:`benchmarks.server` processes listen on 127.0.0.2-.5, one port, and
switch faults while they run (:meth:`~benchmarks.server.ServerProcess.fault`);
each counts the calls it received, failed ones and hedged attempts included,
so a backend's share of the calls is the servers' count, not the client's.

A pool of 8 (two connections per backend, a ``grpcpool.static_resolver``)
is called through ``grpcpool.channel(name)`` by 16 caller threads calling the
servers' ``Where`` method. Every call is logged as :class:`Call`: when it
ended, which backend answered it (or, for a call a ``fail`` fault failed,
which backend failed it: the server names itself in the details), how long
it took, and how it failed. Figures take windows of that log.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import Counter, deque
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import blinker
import grpc

import grpcpool
from benchmarks.callers import CALL_TIMEOUT, PAYLOAD, Backends, addresses
from benchmarks.harness import Settings, percentile
from benchmarks.server import WHERE_METHOD, ServerCounts, ServerProcess
from grpcpool import Config

__all__ = [
    "CALLERS",
    "FAULTY",
    "HOSTS",
    "NOT_CONNECTED",
    "OUTLIERS",
    "RAMP",
    "SHARE_WINDOW",
    "SIZE",
    "Call",
    "CallLog",
    "Signals",
    "Window",
    "calling",
    "describe",
    "heal",
    "measure_window",
    "pool_config",
    "run_seconds",
    "server",
    "server_counts",
    "shares",
    "wait_share",
    "warm_seconds",
    "watching",
]

HOSTS = ("127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5")
SIZE = 8
CALLERS = 16
# What a pool call raises when no connection is ready, as a Call's failure.
NOT_CONNECTED = "NotConnectedError"
_FAULT_DETAILS = "fails every call (benchmark fault)"
# Every fault is on this backend (figure 13's three failing backends: this and the next two).
FAULTY = HOSTS[1]
# The outlier detection (figures 13d-13f); base_ejection_time is the default.
OUTLIERS: dict[str, Any] = {
    "interval": 1.0,
    "failure_percentage": {"threshold": 50, "minimum_hosts": 2, "request_volume": 20},
    "success_rate": None,
    "max_ejection_percent": 50,
}
# Calls a share is judged over when a backend comes back: 25 per connection.
SHARE_WINDOW = 200
# Seconds callers just started get to be all under way before a window opens.
RAMP = 0.3


class Call(NamedTuple):
    """One call: when it ended (monotonic), the backend, its seconds, and its failure ("" if OK)."""

    at: float
    backend: str
    seconds: float
    failure: str


@dataclass
class CallLog:
    """Every call the callers made, in the order they ended (appended from many threads)."""

    calls: list[Call] = field(default_factory=list)

    def between(self, start: float, end: float) -> list[Call]:
        """The calls that ended at ``start`` or later and before ``end``."""
        return [call for call in self.calls if start <= call.at < end]

    def ok(self, start: float, end: float) -> list[Call]:
        return [call for call in self.between(start, end) if not call.failure]

    def rate(self, start: float, end: float) -> float:
        """Successful calls per second in the window."""
        return len(self.ok(start, end)) / (end - start) if end > start else float("nan")

    def p(self, fraction: float, start: float, end: float) -> float:
        """The ``fraction`` percentile latency of the successful calls, in ms."""
        return percentile([call.seconds for call in self.ok(start, end)], fraction) * 1000

    def failures(self, start: float, end: float) -> Counter[str]:
        """Failed calls by kind (status code, or ``NotConnectedError``)."""
        return Counter(call.failure for call in self.between(start, end) if call.failure)

    def failed_share(self, start: float, end: float) -> float:
        """The % of the window's calls that failed (NaN without a call)."""
        calls = self.between(start, end)
        failed = sum(1 for call in calls if call.failure)
        return failed / len(calls) * 100 if calls else float("nan")


def _failure(error: Exception) -> tuple[str, str]:
    """(how the call failed, the backend that failed it or "")."""
    if isinstance(error, grpcpool.PoolCallError):
        return NOT_CONNECTED, ""
    if not isinstance(error, grpc.Call):
        return type(error).__name__, ""
    code = error.code()
    details = error.details() or ""
    backend = details.split(" ", 1)[0] if details.endswith(_FAULT_DETAILS) else ""
    return (code.name if code is not None else "UNKNOWN"), backend


@contextmanager
def calling(name: str, threads: int = CALLERS) -> Iterator[CallLog]:
    """``threads`` threads calling ``Where`` through ``grpcpool.channel(name)`` until the block ends.

    A failure of any kind is logged, never raised: a caller thread that died
    would make every later figure of the run wrong.
    """
    stub = grpcpool.channel(name).unary_unary(WHERE_METHOD)
    log = CallLog()
    stop = threading.Event()

    def work() -> None:
        record = log.calls.append  # atomic under the GIL
        perf_counter, monotonic = time.perf_counter, time.monotonic
        while not stop.is_set():
            started = perf_counter()
            try:
                backend = stub(PAYLOAD, timeout=CALL_TIMEOUT).decode()
            except Exception as error:  # logged, see the docstring
                failure, backend = _failure(error)
                record(Call(monotonic(), backend, perf_counter() - started, failure))
                continue
            record(Call(monotonic(), backend, perf_counter() - started, ""))

    workers = [threading.Thread(target=work, name=f"caller-{i}") for i in range(threads)]
    for worker in workers:
        worker.start()
    try:
        yield log
    finally:
        stop.set()
        for worker in workers:
            worker.join(CALL_TIMEOUT + 30)


def pool_config(
    backends: Backends, name: str, hosts: Sequence[str] = HOSTS, **pool: Any
) -> Config:
    """A pool of :data:`SIZE` over ``hosts`` (a static resolver); ``pool`` adds pool keys.

    Quick reconnects, as in figure 10: a backend that fails calls stays up,
    so the connection settings play no part in these figures.
    """
    return Config.new(
        endpoint={
            "type": "local",
            "host": "backends.test",
            "port": backends.port,
            "resolver": grpcpool.static_resolver(addresses(backends.port, hosts)),
        },
        pool={"size": SIZE, "name": name, **pool},
        connection={"backoff_min": 0.05, "backoff_max": 0.5, "connect_timeout": 2.0},
    )


def run_seconds(settings: Settings) -> float:
    """How long a run is measured: 15 s (quick: 1 s)."""
    return float(settings.pick(15.0, 1.0))


def warm_seconds(settings: Settings) -> float:
    """How long the callers run on healthy backends before a fault: 1 s (quick: 0.3 s)."""
    return float(settings.pick(1.0, 0.3))


def server(backends: Backends, host: str) -> ServerProcess:
    """The server process of the backend on ``host``."""
    return backends.servers[backends.hosts.index(host)]


def heal(backends: Backends) -> None:
    """Turns every fault of every backend off."""
    for server in backends.servers:
        server.fault("heal")


def server_counts(backends: Backends) -> dict[str, ServerCounts]:
    """Each backend's counts since the last ask, by host; resets them."""
    return {
        host: server.counts() for host, server in zip(backends.hosts, backends.servers, strict=True)
    }


def shares(counts: Mapping[str, ServerCounts]) -> dict[str, float]:
    """Each backend's % of the calls the servers received (NaN for all without a call)."""
    total = sum(count.calls for count in counts.values())
    return {
        host: count.calls / total * 100 if total else float("nan")
        for host, count in counts.items()
    }


class Signals:
    """The telemetry events one pool sent while watched: ``(monotonic, signal, measurements, metadata)``."""

    def __init__(self) -> None:
        self.events: list[tuple[float, str, dict[str, Any], dict[str, Any]]] = []

    def of(self, signal: blinker.NamedSignal) -> list[tuple[float, dict[str, Any], dict[str, Any]]]:
        """The events of ``signal``: ``(monotonic, measurements, metadata)``."""
        return [(at, m, d) for at, name, m, d in list(self.events) if name == signal.name]

    def first(self, signal: blinker.NamedSignal, since: float, host: str = "") -> float | None:
        """When ``signal`` first came at ``since`` or later (about ``host``, if given)."""
        for at, _, metadata in self.of(signal):
            if at >= since and (not host or str(metadata.get("address", "")).startswith(host + ":")):
                return at
        return None


@contextmanager
def watching(name: str, *signals: blinker.NamedSignal) -> Iterator[Signals]:
    """Records ``signals`` sent by the pool called ``name`` while the block runs."""
    seen = Signals()
    receivers = []
    for signal in signals:

        def receive(
            sender: str,
            *,
            measurements: dict[str, Any],
            metadata: dict[str, Any],
            _name: str = signal.name,
        ) -> None:
            seen.events.append((time.monotonic(), _name, measurements, metadata))

        signal.connect(receive, sender=name, weak=False)
        receivers.append((signal, receive))
    try:
        yield seen
    finally:
        for signal, receive in receivers:
            signal.disconnect(receive, sender=name)


@dataclass(frozen=True)
class Window:
    """A stretch of a run: its start and end (monotonic) and what each server counted in it."""

    start: float
    end: float
    counts: dict[str, ServerCounts]

    def shares(self) -> dict[str, float]:
        return shares(self.counts)


def measure_window(backends: Backends, seconds: float, ramp: float = 0.0) -> Window:
    """Lets the callers run ``seconds``, after ``ramp``; the servers' counts over them.

    A window that follows a fault opens at once, so it holds the moments the
    pool takes to notice; callers just started want :data:`RAMP` first.
    """
    time.sleep(ramp)
    server_counts(backends)  # from here on
    start = time.monotonic()
    time.sleep(seconds)
    end = time.monotonic()
    return Window(start, end, server_counts(backends))


def describe(log: CallLog, window: Window) -> str:
    """Shares per backend, p50/p99, calls/s and failures of one window, for a note."""
    per_backend = "/".join(f"{share:.1f}" for share in window.shares().values())
    failures = log.failures(window.start, window.end)
    failed = ", ".join(f"{n} {kind}" for kind, n in failures.most_common()) or "0"
    calls = len(log.between(window.start, window.end))
    return (
        f"shares .{'/.'.join(h.rsplit('.', 1)[1] for h in window.counts)} {per_backend} %; "
        f"p50 {log.p(0.5, window.start, window.end):.2f} ms, "
        f"p99 {log.p(0.99, window.start, window.end):.2f} ms; "
        f"{log.rate(window.start, window.end):,.0f} calls/s; failed {failed} of {calls}"
    )


def wait_share(log: CallLog, host: str, since: int, until: float) -> float | None:
    """When ``host`` first answered 20% of the last :data:`SHARE_WINDOW` successful calls
    logged from index ``since`` on; waits for it until ``until`` (monotonic), else None.

    Reads the log as it grows, each call once, so watching costs the callers
    little CPU.
    """
    recent: deque[str] = deque(maxlen=SHARE_WINDOW)
    on_host = 0
    index = since
    while True:
        end = len(log.calls)
        for call in itertools.islice(log.calls, index, end):
            if call.failure:
                continue
            if len(recent) == SHARE_WINDOW:
                on_host -= recent[0] == host
            recent.append(call.backend)
            on_host += call.backend == host
            if len(recent) == SHARE_WINDOW and on_host >= 0.2 * SHARE_WINDOW:
                return call.at
        index = end
        if time.monotonic() >= until:
            return None
        time.sleep(0.1)
