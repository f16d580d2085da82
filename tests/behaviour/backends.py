"""The backends a behaviour scenario's pools talk to: real grpcio servers on 127.0.0.2..5.

Every backend is a :class:`tests.servers.EchoServer` (with the health
service) on its own loopback address, all on one port, so a resolver can
answer any subset of them and a killed backend comes back where the pool
expects it. The servers are plain grpcio servers in this process for both
drivers: what differs between the scenarios' two runs is the client only.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Sequence
from typing import Any

from grpcpool import Config, PoolStatus
from tests.pools import free_port
from tests.servers import EchoServer

HOSTS = ("127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5")
#: The name a pool with a resolver of the test's asks for (never looked up).
SERVICE_HOST = "backends.test"

#: Connection settings every scenario's pool starts from: quick reconnects,
#: short connects and drains, so that a scenario waits on the pool, not on
#: its defaults (backoff 1-30 s, drain 30 s).
QUICK: dict[str, Any] = {
    "backoff_min": 0.05,
    "backoff_max": 0.5,
    "connect_timeout": 2.0,
    "drain_timeout": 1.0,
}


class Backend:
    """One echo server on one loopback address, which a scenario can kill and restart.

    Calls and peers are counted over every incarnation of the server.
    """

    def __init__(self, host: str, port: int, *, options: tuple[tuple[str, Any], ...] = ()) -> None:
        self.host = host
        self.options = options
        self._retired: list[EchoServer] = []
        self.server: EchoServer | None = EchoServer(port, host=host, options=options)
        self.port = self.server.port

    @property
    def address(self) -> str:
        """``"ip:port"``, as a resolver answers it and ``status().workers[i].address`` shows it."""
        return f"{self.host}:{self.port}"

    @property
    def calls(self) -> int:
        """Echo calls served, over every incarnation."""
        return sum(server.calls for server in self._servers())

    @property
    def cancelled(self) -> int:
        """Delayed or stalled echo calls that the client had cancelled when they would answer."""
        return sum(server.cancelled for server in self._servers())

    @property
    def peers(self) -> list[str]:
        """The client address of each echo call served, over every incarnation."""
        return [peer for server in self._servers() for peer in server.peers]

    @property
    def peak_running(self) -> int:
        """The most echo calls one peer (one connection) ever had in a handler at once."""
        return max((max(s.peak_running.values(), default=0) for s in self._servers()), default=0)

    @property
    def metadata(self) -> list[tuple[tuple[str, str], ...]]:
        """The metadata of each echo call served, over every incarnation."""
        return [seen for server in self._servers() for seen in server.metadata]

    def _servers(self) -> list[EchoServer]:
        return [*self._retired, *([self.server] if self.server is not None else [])]

    def kill(self) -> None:
        """Stops the server at once: its connections and calls are cut."""
        server, self.server = self.server, None
        if server is not None:
            server.stop(None)
            self._retired.append(server)

    def restart(self) -> None:
        """A new server on the same address and port (after :meth:`kill`)."""
        assert self.server is None, "kill() the backend first"
        self.server = EchoServer(self.port, host=self.host, options=self.options)

    def set_serving(self, serving: bool, service: str = "") -> None:
        """The health service's answer for ``service``: SERVING or NOT_SERVING."""
        assert self.server is not None
        self.server.set_serving(serving, service)

    def release_held(self) -> None:
        """Lets held calls answer (``tests.servers.HOLD``)."""
        if self.server is not None:
            self.server.release_held()

    def stop(self) -> None:
        """Stops the server for good; idempotent."""
        self.kill()


class Answer:
    """A resolver whose answer the scenario sets: a list of ``"ip:port"`` or an exception.

    The pool calls it on its own threads (sync) or its loop's executor
    (asyncio) while the scenario changes it, hence the lock.
    """

    def __init__(self, addresses: Sequence[str]) -> None:
        self._lock = threading.Lock()
        self._addresses = list(addresses)
        self._error: Exception | None = None
        self._garbage: object = None
        self.calls = 0

    def __call__(self, host: str, port: int) -> object:
        with self._lock:
            self.calls += 1
            if self._error is not None:
                raise self._error
            if self._garbage is not None:
                return self._garbage
            return list(self._addresses)

    def answer(self, addresses: Sequence[str]) -> None:
        """Answers ``addresses`` from now on (and stops failing)."""
        with self._lock:
            self._addresses = list(addresses)
            self._error = None
            self._garbage = None

    def fail(self, error: Exception) -> None:
        """Raises ``error`` from now on."""
        with self._lock:
            self._error = error

    def garbage(self, answer: object) -> None:
        """Returns ``answer`` (not a list of addresses) from now on."""
        with self._lock:
            self._garbage = answer


class Backends:
    """The scenario's backends, started on demand, and configs for pools over them."""

    def __init__(self) -> None:
        self.port = free_port()
        self.started: list[Backend] = []

    def start(self, count: int = 1, *, options: tuple[tuple[str, Any], ...] = ()) -> list[Backend]:
        """Starts ``count`` more backends on the next free loopback addresses.

        ``options`` are server channel arguments (``grpc.max_connection_age_ms``, ...).
        """
        first = len(self.started)
        assert first + count <= len(HOSTS), f"at most {len(HOSTS)} backends"
        hosts = HOSTS[first : first + count]
        new = [Backend(host, self.port, options=options) for host in hosts]
        self.started.extend(new)
        return new

    def one(self) -> Backend:
        """Starts a single backend and returns it."""
        [backend] = self.start(1)
        return backend

    def config(
        self,
        size: int = 2,
        *,
        resolver: Any = None,
        strategy: Any = None,
        pool: dict[str, Any] | None = None,
        endpoint: dict[str, Any] | None = None,
        **connection: Any,
    ) -> Config:
        """A plaintext config for a pool of ``size`` over the backends.

        Without ``resolver`` the pool connects to the first backend's IP;
        with one (an :class:`Answer`, say), to the addresses it answers for
        :data:`SERVICE_HOST`, asking again every 0.2 s. Keyword arguments
        override :data:`QUICK`'s connection keys; ``pool`` and ``endpoint``
        add keys of those sections.
        """
        if resolver is None:
            assert self.started, "start a backend first"
            where: dict[str, Any] = {"host": self.started[0].host}
        else:
            where = {"host": SERVICE_HOST, "resolver": resolver, "resolve_interval": 0.2}
        pool_keys: dict[str, Any] = {"size": size, **(pool or {})}
        if strategy is not None:
            pool_keys["strategy"] = strategy
        return Config.new(
            endpoint={"type": "local", "port": self.port, **where, **(endpoint or {})},
            pool=pool_keys,
            connection={**QUICK, **connection},
        )

    def release_held(self) -> None:
        """Lets every held call on every backend answer."""
        for backend in self.started:
            backend.release_held()

    def stop(self) -> None:
        """Stops every backend (held calls are released first)."""
        for backend in self.started:
            backend.stop()


def spread(status: PoolStatus) -> Counter[str | None]:
    """Ready workers per address, as ``status()`` reports them."""
    return Counter(worker.address for worker in status.workers if worker.state == "ready")


def settled(status: PoolStatus, size: int) -> bool:
    """Exactly ``size`` workers, all ready: no connection on its way in or out."""
    return len(status.workers) == size and status.current_size == size
