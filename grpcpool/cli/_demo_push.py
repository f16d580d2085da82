"""The demo's push-resolver scene: a registry that pushes, followed at once.

Two echo servers on 127.0.0.1 and 127.0.0.2 share a port. A pool of four
follows an in-process registry through ``endpoint.resolver``'s push form
(``watch(host, port, on_change)``), as it would follow etcd with
:class:`grpcpool.resolver.EtcdResolver`: the registry first lists one
server, then both, then one again, then none (by mistake). The scene shows
how long the pool took to follow each change (no polling: milliseconds, not
``resolve_interval``), and checks that the emptied registry did not empty
the pool.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence

import pykka

import grpcpool
from grpcpool.cli._console import Console, format_duration
from grpcpool.cli.echo import EchoServer
from grpcpool.cli.echo.echo_pb2 import EchoRequest
from grpcpool.cli.echo.echo_pb2_grpc import EchoStub
from grpcpool.config import Config
from grpcpool.resolver import AddressSet
from grpcpool.supervisor import Supervisor

__all__ = ["PushFailed", "show_push"]

PUSH_POOL = "demo-push"
PUSH_SIZE = 4
HOSTS = ("127.0.0.1", "127.0.0.2")
# Seconds a change gets before the scene says the pool did not follow.
FOLLOW_TIMEOUT = 3.0
CALLS = 20

OnChange = Callable[[Sequence[str] | BaseException], None]


class PushFailed(Exception):
    """The pool did not follow the registry as the scene claims."""


class _Registry:
    """A push resolver over a list the scene changes: each change goes to every watch."""

    def __init__(self, addresses: Sequence[str]) -> None:
        self._lock = threading.Lock()
        self._addresses = list(addresses)
        self._revision = 1
        self._watches: dict[int, OnChange] = {}

    def watch(self, host: str, port: int, on_change: OnChange) -> _Handle:
        with self._lock:
            number = len(self._watches) + 1
            self._watches[number] = on_change
            current = AddressSet(self._addresses, self._revision)
        on_change(current)
        return _Handle(lambda: self._forget(number))

    def _forget(self, number: int) -> None:
        with self._lock:
            self._watches.pop(number, None)

    def set(self, addresses: Sequence[str]) -> None:
        with self._lock:
            self._addresses, self._revision = list(addresses), self._revision + 1
            pushed, watches = AddressSet(addresses, self._revision), list(self._watches.values())
        for on_change in watches:
            on_change(pushed)


class _Handle:
    def __init__(self, close: Callable[[], None]) -> None:
        self.close = close


def show_push(console: Console) -> None:
    """Runs the scene and stops everything it started.

    Raises:
        PushFailed: The pool did not follow a change in time, or an empty
            registry emptied it.
        RuntimeError: An echo server could not bind its address.
        grpc.RpcError: A call failed.
    """
    servers: list[EchoServer] = []
    supervisor: pykka.ActorRef[Supervisor] | None = None
    try:
        servers.append(EchoServer(host=HOSTS[0]))
        port = servers[0].port
        servers.append(EchoServer(port, host=HOSTS[1]))
        one, both = [f"{HOSTS[0]}:{port}"], [f"{host}:{port}" for host in HOSTS]
        registry = _Registry(one)
        config = Config.new(
            endpoint={"type": "local", "host": "echo.demo", "port": port, "resolver": registry},
            pool={"size": PUSH_SIZE, "name": PUSH_POOL},
            connection={"backoff_min": 0.05, "backoff_max": 0.5, "connect_timeout": 2.0},
        )
        console.line(
            f"    a pool of {PUSH_SIZE} follows a registry that pushes (watch(host, port, "
            "on_change)), as EtcdResolver does with etcd; it lists 127.0.0.1"
        )
        supervisor = Supervisor.start(children=[grpcpool.PoolSpec(config)])
        grpcpool.await_ready(PUSH_POOL, timeout=5, min_ready=PUSH_SIZE)
        stub = EchoStub(grpcpool.channel(PUSH_POOL))
        took = _change(registry, both)
        second = sum(servers[1].peer_counts().values())
        for n in range(CALLS):
            stub.Say(EchoRequest(text=f"push {n}"), timeout=5.0)
        share = sum(servers[1].peer_counts().values()) - second
        console.line(
            f"    127.0.0.2 registered: connections there {format_duration(took)} later, "
            f"and {share} of {CALLS} calls"
        )
        took = _change(registry, one)
        console.line(f"    127.0.0.2 deregistered: its connections gone {format_duration(took)} later")
        registry.set([])
        for n in range(CALLS):
            stub.Say(EchoRequest(text=f"empty {n}"), timeout=5.0)
        if _on() != {HOSTS[0]}:
            raise PushFailed(f"an empty registry moved the pool to {_on()}")
        console.line(
            "    the registry emptied by mistake: the pool keeps 127.0.0.1 (a WARNING says so) "
            f"and {CALLS} more calls answered"
        )
    finally:
        if supervisor is not None:
            supervisor.stop()
        for server in servers:
            server.stop()


def _on() -> set[str]:
    """The hosts the pool's ready connections go to."""
    workers = grpcpool.status(PUSH_POOL).workers
    return {(w.address or "").rsplit(":", 1)[0] for w in workers if w.state == "ready"}


def _change(registry: _Registry, addresses: list[str]) -> float:
    """Pushes ``addresses``; the seconds until the pool's ready connections are on exactly them."""
    wanted = {address.rsplit(":", 1)[0] for address in addresses}
    started = time.monotonic()
    registry.set(addresses)
    while _on() != wanted:
        if time.monotonic() - started > FOLLOW_TIMEOUT:
            raise PushFailed(f"the pool is on {_on()}, not {wanted}, {FOLLOW_TIMEOUT:g} s after")
        time.sleep(0.005)
    return time.monotonic() - started
