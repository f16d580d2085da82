"""Caller threads and backend processes that figure 10's measurements share.

Every backend is a :mod:`benchmarks.server` process on its own loopback
address (127.0.0.1, 127.0.0.2, ...), all on one port, so a resolver's answer
lists replicas the way DNS would. Callers call the servers' ``Where`` method,
whose reply names the backend that served it, so a tally of replies is a
count of calls per backend.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import grpc

from benchmarks.server import ServerProcess

__all__ = [
    "CALL_TIMEOUT",
    "PAYLOAD",
    "Backends",
    "Tally",
    "addresses",
    "callers",
    "counts",
    "share_reached",
]

PAYLOAD = b"x" * 64
CALL_TIMEOUT = 10.0


def _failure(error: grpc.RpcError) -> str:
    code = error.code() if isinstance(error, grpc.Call) else None
    return code.name if code is not None else type(error).__name__


@dataclass
class Tally:
    """What a set of callers saw: calls per backend, failures, and optionally each call."""

    per_host: Counter[str] = field(default_factory=Counter)
    failed: Counter[str] = field(default_factory=Counter)
    # (monotonic time, backend) of every successful call, when logging.
    log: list[tuple[float, str]] | None = None
    elapsed: float = 0.0

    @property
    def calls(self) -> int:
        """Successful calls."""
        return sum(self.per_host.values())

    @property
    def failures(self) -> int:
        """Failed calls, of every kind."""
        return sum(self.failed.values())

    def failed_share(self) -> float:
        """The % of all calls that failed (NaN when there was no call)."""
        total = self.calls + self.failures
        return self.failures / total * 100 if total else float("nan")

    def spread(self, hosts: Sequence[str]) -> float:
        """Calls of the busiest backend over calls of the idlest (inf if one got none)."""
        numbers = [self.per_host[host] for host in hosts]
        return max(numbers) / min(numbers) if min(numbers) else float("inf")


@contextmanager
def callers(stub: Any, threads: int, *, log: bool = False) -> Iterator[Tally]:
    """``threads`` threads calling ``stub`` until the block ends; the tally after.

    A failure of any kind is counted, never raised: a caller thread that
    died would make every later figure of the round wrong.
    """
    tally = Tally(log=[] if log else None)
    lock = threading.Lock()
    stop = threading.Event()
    monotonic = time.monotonic

    def work() -> None:
        seen: Counter[str] = Counter()
        failed: Counter[str] = Counter()
        record = tally.log.append if tally.log is not None else None
        while not stop.is_set():
            try:
                host = stub(PAYLOAD, timeout=CALL_TIMEOUT).decode()
            except grpc.RpcError as error:
                failed[_failure(error)] += 1
                continue
            except Exception as error:  # counted, see the docstring
                failed[type(error).__name__] += 1
                continue
            seen[host] += 1
            if record is not None:
                record((monotonic(), host))  # list.append is atomic under the GIL
        with lock:
            tally.per_host.update(seen)
            tally.failed.update(failed)

    workers = [threading.Thread(target=work, name=f"caller-{i}") for i in range(threads)]
    started = time.perf_counter()
    for worker in workers:
        worker.start()
    try:
        yield tally
    finally:
        stop.set()
        for worker in workers:
            worker.join(CALL_TIMEOUT + 30)
        tally.elapsed = time.perf_counter() - started


class Backends:
    """One server process per host, all on one port; each can be killed and restarted.

    The first server picks a free port (or takes ``port``) and the others
    bind the same one. A restarted server listens on the same address and
    port, where the clients still look for it. Every server still running
    is stopped on exit.

    Args:
        hosts: The loopback addresses, one server each.
        port: 0 for a free port.
        options: Passed to every :class:`ServerProcess` (``threads``,
            ``track_peers``, ...).
    """

    def __init__(self, hosts: Sequence[str], port: int = 0, **options: Any) -> None:
        self.hosts = tuple(hosts)
        self.servers: list[ServerProcess] = []
        self._options = options
        try:
            for host in self.hosts:
                self.servers.append(ServerProcess(port, host=host, **options))
                port = self.servers[0].port
        except BaseException:
            self.close()
            raise
        self.port = port

    def kill(self, index: int) -> None:
        """SIGKILL for backend ``index``: its connections are reset at once."""
        self.servers[index].kill()

    def restart(self, index: int) -> float:
        """A new server for backend ``index`` on its address and port; when it listened.

        Returns:
            The moment (``time.monotonic()``) the new server bound its port.
        """
        self.servers[index].kill()
        self.servers[index] = ServerProcess(self.port, host=self.hosts[index], **self._options)
        return self.servers[index].ready_at

    def close(self) -> None:
        """Stops every server."""
        for server in self.servers:
            server.stop()

    def __enter__(self) -> Backends:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


def share_reached(
    log: Sequence[tuple[float, str]], host: str, since: float, share: float, window: int
) -> float | None:
    """When ``host`` first served ``share`` of the last ``window`` calls, at ``since`` or later.

    Args:
        log: ``(time, backend)`` of each successful call, in any order.
        host: The backend watched.
        since: Only a moment at or after this counts (the same clock as ``log``).
        share: The fraction of the window it must have served (0.2 for 20%).
        window: How many of the latest calls each moment looks back over.

    Returns:
        The time of the call that completed the first such window, or None.
    """
    calls = sorted(log)
    on_host = 0
    for index, (at, served) in enumerate(calls):
        on_host += served == host
        if index >= window:
            on_host -= calls[index - window][1] == host
        if at >= since and index + 1 >= window and on_host >= share * window:
            return at
    return None


def addresses(port: int, hosts: Sequence[str]) -> list[str]:
    """``host:port`` for each host."""
    return [f"{host}:{port}" for host in hosts]


def counts(tally: Tally, hosts: Sequence[str]) -> str:
    """Calls per backend, in ``hosts`` order: ``"3128/3128/3129"``."""
    return "/".join(str(tally.per_host[host]) for host in hosts)
