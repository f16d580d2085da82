"""A seeded storm of faults against three real backends, and the judging of what callers saw.

Three echo servers run in their own processes (``benchmarks.server``) on
127.0.0.2 and 127.0.0.3, and on 127.0.0.4 behind a :class:`FaultProxy` that
listens on 127.0.0.1, all on one port. A pool reaches them through a
resolver whose answer the storm changes too. The faults, drawn from a seed:

* ``kill``: SIGKILL, then a new process on the same address and port;
* ``stop``: SIGSTOP, then SIGCONT (connections stay open, nothing answers);
* ``black_hole``: the proxy swallows every byte both ways (the third backend);
* ``drop``: the resolver leaves one address out for a while (not a fault of
  the backend, which keeps serving).

At every moment at least one backend is up and in the answer. What happened
to each backend is recorded as it happens (a restarted server counts as
faulted until it listens again), so that each failed call can be judged
against the backend its connection was on.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import random
import signal
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from benchmarks.server import ServerProcess
from grpcpool.strategy import RoundRobin
from tests.faultproxy import FaultProxy

__all__ = [
    "Backends",
    "CallRecord",
    "Recording",
    "Storm",
    "judge_calls",
    "last_address",
    "storm_seconds",
]

T = TypeVar("T")

# The address of the connection the current call (thread or task) was routed to.
last_address: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "last_address", default=None
)


def storm_seconds() -> float:
    """How long the storm lasts: 60 s, or ``GRPCPOOL_CHAOS_SECONDS``."""
    return float(os.environ.get("GRPCPOOL_CHAOS_SECONDS", "60"))


class Recording:
    """Round robin over the ready connections that records each pick's address.

    A strategy is the one place that sees which connection a call of the
    pool channel goes to, so the storm's judge can tell which backend a
    failed call was on.
    """

    routes_by_load = True  # the picker gets ReadyConnection objects

    def picker(self, items: tuple[T, ...]) -> Callable[[], T]:
        inner = RoundRobin().picker(items)

        def pick() -> T:
            item = inner()
            last_address.set(getattr(item, "address", None))
            return item

        return pick


class Backends:
    """Three backends: two direct, one behind a fault proxy. Thread-safe.

    Attributes:
        port: The port all three listen on.
        addresses: Each backend's address as the pool dials it.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        first = ServerProcess(host="127.0.0.2")
        self.port = first.port
        self._servers = [first]
        try:
            self._servers.append(ServerProcess(self.port, host="127.0.0.3"))
            self._servers.append(ServerProcess(self.port, host="127.0.0.4"))
            self.proxy = FaultProxy(self.port, "127.0.0.4").start()
        except BaseException:
            self.close()
            raise
        self.addresses = [
            f"127.0.0.2:{self.port}",
            f"127.0.0.3:{self.port}",
            self.proxy.address,
        ]
        self._stopped = [False, False, False]
        self._answer = list(self.addresses)
        # Backend index -> [start, end) of each fault (end None while it lasts).
        self.faults: list[list[list[float | None]]] = [[], [], []]
        # The same for the times the resolver left a backend out.
        self.drops: list[list[list[float | None]]] = [[], [], []]

    # --- the resolver -----------------------------------------------------------------

    def resolve(self, host: str, port: int) -> list[str]:
        with self._lock:
            return list(self._answer)

    def drop(self, index: int) -> None:
        with self._lock:
            self._answer = [a for a in self.addresses if a != self.addresses[index]]
            self.drops[index].append([time.monotonic(), None])

    def restore_answer(self) -> None:
        with self._lock:
            self._answer = list(self.addresses)
            for spans in self.drops:
                if spans and spans[-1][1] is None:
                    spans[-1][1] = time.monotonic()

    # --- faults -------------------------------------------------------------------------

    def _began(self, index: int) -> None:
        with self._lock:
            self.faults[index].append([time.monotonic(), None])

    def _ended(self, index: int) -> None:
        with self._lock:
            self.faults[index][-1][1] = time.monotonic()

    def kill(self, index: int) -> None:
        self._began(index)
        self._servers[index].kill()

    def restart(self, index: int) -> None:
        host = ("127.0.0.2", "127.0.0.3", "127.0.0.4")[index]
        self._servers[index] = ServerProcess(self.port, host=host)
        self._ended(index)

    def stop(self, index: int) -> None:
        self._began(index)
        self._stopped[index] = True
        os.kill(self._servers[index].pid, signal.SIGSTOP)

    def resume(self, index: int) -> None:
        os.kill(self._servers[index].pid, signal.SIGCONT)
        self._stopped[index] = False
        self._ended(index)

    def black_hole(self, index: int) -> None:
        self._began(index)
        self.proxy.black_hole()

    def pass_through(self, index: int) -> None:
        self.proxy.pass_through()
        self._ended(index)

    def faulted_between(self, index: int, start: float, end: float) -> bool:
        """Whether backend ``index`` was faulted at any time in ``[start, end]``."""
        return self._overlaps(self.faults[index], start, end)

    def usable_throughout(self, index: int, start: float, end: float) -> bool:
        """Whether backend ``index`` was up and in the answer all through ``[start, end]``."""
        faulted = self._overlaps(self.faults[index], start, end)
        return not faulted and not self._overlaps(self.drops[index], start, end)

    def _overlaps(self, spans: list[list[float | None]], start: float, end: float) -> bool:
        with self._lock:
            copied = [(s, e) for s, e in spans]
        return any(s is not None and s <= end and (e is None or e >= start) for s, e in copied)

    def index_of(self, address: str) -> int:
        return self.addresses.index(address)

    def close(self) -> None:
        for index, server in enumerate(self._servers):
            if index < len(self._stopped) and self._stopped[index]:
                os.kill(server.pid, signal.SIGCONT)
            server.kill()
        proxy = getattr(self, "proxy", None)
        if proxy is not None:
            proxy.stop()


@dataclass(frozen=True)
class _Fault:
    kind: str  # "kill", "stop", "black_hole", "drop"
    index: int
    start: float
    end: float


def _schedule(seed: int, seconds: float) -> list[_Fault]:
    """Faults for ``seconds`` from ``seed``, one backend up and in the answer at every moment."""
    rng = random.Random(seed)
    faults: list[_Fault] = []
    t = 0.5
    while t < seconds:
        kind = rng.choice(["kill", "stop", "black_hole", "drop", "kill", "stop"])
        index = 2 if kind == "black_hole" else rng.randrange(3)
        fault = _Fault(kind, index, t, t + rng.uniform(1.0, 4.0))
        if _keeps_one_up([*faults, fault], fault.start, fault.end) and not any(
            f.index == index and f.start < fault.end and f.end > fault.start for f in faults
        ):
            faults.append(fault)
        t += rng.uniform(0.4, 1.5)
    return faults


def _keeps_one_up(faults: Sequence[_Fault], start: float, end: float) -> bool:
    moment = start
    while moment <= end:
        down = {f.index for f in faults if f.start <= moment <= f.end}
        if len(down) >= 3:
            return False
        moment += 0.05
    return True


class Storm:
    """Runs a seeded fault schedule against ``backends`` on its own thread.

    Attributes:
        last_fault_end: When the last fault ended (monotonic), once it has.
    """

    def __init__(self, backends: Backends, seed: int, seconds: float) -> None:
        self._backends = backends
        self.faults = _schedule(seed, seconds)
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name="chaos-storm", daemon=True)
        self.last_fault_end: float | None = None
        self.error: BaseException | None = None

    def start(self) -> None:
        self._thread.start()

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "the storm did not end"
        if self.error is not None:
            raise self.error

    def cancel(self) -> None:
        self._done.set()

    def _run(self) -> None:
        backends = self._backends
        begin = {
            "kill": backends.kill,
            "stop": backends.stop,
            "black_hole": backends.black_hole,
            "drop": backends.drop,
        }
        finish = {
            "kill": backends.restart,
            "stop": backends.resume,
            "black_hole": backends.pass_through,
            "drop": lambda index: backends.restore_answer(),
        }
        actions: list[tuple[float, int, Callable[[int], Any], int]] = []
        for fault in self.faults:
            actions.append((fault.start, 1, begin[fault.kind], fault.index))
            actions.append((fault.end, 0, finish[fault.kind], fault.index))
        actions.sort(key=lambda action: (action[0], action[1]))
        started = time.monotonic()
        try:
            for at, _, action, index in actions:
                if self._done.wait(max(0.0, started + at - time.monotonic())):
                    break
                action(index)
        except BaseException as error:  # reported by join
            self.error = error
        finally:
            # Whatever happened, leave every backend up and in the answer.
            for index in range(3):
                with contextlib.suppress(Exception):
                    if backends._stopped[index]:
                        backends.resume(index)
            backends.proxy.pass_through()
            backends.restore_answer()
            self.last_fault_end = time.monotonic()


@dataclass(frozen=True)
class CallRecord:
    """One call: when it started and ended, and how it failed (None: it did not)."""

    start: float
    end: float
    code: str | None
    address: str | None  # the connection it was routed to; None: no ready connection


@dataclass
class Verdict:
    """What the judge found among the calls."""

    calls: int = 0
    failed: int = 0
    unexcused: list[CallRecord] = field(default_factory=list)
    no_ready_buckets: int = 0


def judge_calls(records: Sequence[CallRecord], backends: Backends, healthy_for: float) -> Verdict:
    """Each failed call must have been on a backend faulted between ``healthy_for`` seconds
    before it started and its end; a call that found no ready connection counts against the
    pool in 100 ms buckets when some backend in the answer had been up for ``healthy_for``."""
    verdict = Verdict(calls=len(records))
    buckets: set[int] = set()
    for record in records:
        if record.code is None:
            continue
        verdict.failed += 1
        if record.address is None:
            up = any(
                backends.usable_throughout(i, record.start - healthy_for, record.start)
                for i in range(3)
            )
            if up:
                buckets.add(int(record.start * 10))
            continue
        index = backends.index_of(record.address)
        if not backends.faulted_between(index, record.start - healthy_for, record.end):
            verdict.unexcused.append(record)
    verdict.no_ready_buckets = len(buckets)
    return verdict
