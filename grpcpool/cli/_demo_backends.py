"""The demo's many-backends step: one pool spread over the addresses a resolver returns.

Three echo servers listen on 127.0.0.1, 127.0.0.2 and 127.0.0.3, all on one
port, as three replicas behind one name would. A pool of six resolves the
name with a resolver whose answer the demo changes, every half second:

1. the six connections sit two per backend, and calls reach all three;
2. a fourth server appears in the answer: connections move to it, one at a
   time and each made ready before the one it replaces leaves, until it has
   its share (checked: never fewer than six ready meanwhile);
3. one server leaves the answer and stops: its connections move to the
   others.

After each change the step prints, per backend, the connections the pool
pins there (``status().workers[i].address``) and the calls each server
answered. Each claim is checked (an even spread, no call to the gone
backend), so a balancer that stopped balancing fails the demo.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Sequence
from typing import Any

import pykka

import grpcpool
from grpcpool import telemetry
from grpcpool.cli._console import Console, format_duration, table
from grpcpool.cli.echo import EchoServer
from grpcpool.cli.echo.echo_pb2 import EchoRequest
from grpcpool.cli.echo.echo_pb2_grpc import EchoStub
from grpcpool.config import Config
from grpcpool.supervisor import Supervisor

__all__ = ["BACKENDS_POOL", "BACKENDS_SIZE", "BackendsFailed", "show_backends"]

BACKENDS_POOL = "demo-backends"
BACKENDS_SIZE = 6
HOSTS = ("127.0.0.1", "127.0.0.2", "127.0.0.3")
NEW_HOST = "127.0.0.4"
GONE_HOST = "127.0.0.2"
RESOLVE_INTERVAL = 0.5
CALLS = 60
CALL_TIMEOUT = 5.0
# Seconds a change gets to settle: a resolution, then one move per connection.
SETTLE_TIMEOUT = 6.0


class BackendsFailed(Exception):
    """The pool did not spread its connections as the step claims."""


def backends_config(port: int, answer: list[str]) -> Config:
    """A pool of six over whatever ``answer`` lists when the resolver is asked."""

    def resolver(host: str, port: int) -> list[str]:
        return list(answer)

    return Config.new(
        endpoint={
            "type": "local",
            "host": "echo.demo",
            "port": port,
            "resolver": resolver,
            "resolve_interval": RESOLVE_INTERVAL,
        },
        pool={"size": BACKENDS_SIZE, "name": BACKENDS_POOL},
        connection={"backoff_min": 0.05, "backoff_max": 0.5, "connect_timeout": 2.0},
    )


class _Refreshes:
    """Counts the pool's ``channel.refreshed`` events (one per connection moved)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.count = 0
        telemetry.channel_refreshed.connect(self._on_refreshed, sender=BACKENDS_POOL, weak=False)

    def _on_refreshed(self, sender: str, **_: Any) -> None:
        with self._lock:
            self.count += 1

    def take(self) -> int:
        """The count since the last take."""
        with self._lock:
            count, self.count = self.count, 0
        return count

    def close(self) -> None:
        telemetry.channel_refreshed.disconnect(self._on_refreshed, sender=BACKENDS_POOL)


def show_backends(console: Console) -> None:
    """Runs the many-backends step and stops everything it started.

    Raises:
        BackendsFailed: The connections were not spread evenly over the
            answer, or a call reached a backend that had left it.
        RuntimeError: An echo server could not bind its address.
        grpc.RpcError: A call failed.
        GrpcPoolError: The pool could not be started.
    """
    servers: dict[str, EchoServer] = {}
    supervisor: pykka.ActorRef[Supervisor] | None = None
    refreshes = _Refreshes()
    try:
        first = EchoServer(host=HOSTS[0])
        servers[HOSTS[0]] = first
        port = first.port
        for host in HOSTS[1:]:
            servers[host] = EchoServer(port, host=host)
        answer = [f"{host}:{port}" for host in HOSTS]
        console.line(
            f"    echo servers on {', '.join(HOSTS)}, all on port {port}; a pool of "
            f"{BACKENDS_SIZE} whose resolver answers them (asked every {RESOLVE_INTERVAL:g} s)"
        )
        supervisor = Supervisor.start(children=[grpcpool.PoolSpec(backends_config(port, answer))])
        grpcpool.await_ready(BACKENDS_POOL, timeout=5, min_ready=BACKENDS_SIZE)
        stub = EchoStub(grpcpool.channel(BACKENDS_POOL))
        _show(console, stub, servers, HOSTS)

        servers[NEW_HOST] = EchoServer(port, host=NEW_HOST)
        refreshes.take()
        changed = time.monotonic()
        answer.append(f"{NEW_HOST}:{port}")
        hosts: tuple[str, ...] = (*HOSTS, NEW_HOST)
        fewest = _settle(hosts)
        console.line(
            f"    {NEW_HOST} joins the answer: {_connections(refreshes.take())} moved to it in "
            f"{format_duration(time.monotonic() - changed)}, never fewer than {fewest} ready"
        )
        if fewest < BACKENDS_SIZE:
            raise BackendsFailed(f"only {fewest} connections were ready while moving")
        _show(console, stub, servers, hosts)

        changed = time.monotonic()
        answer.remove(f"{GONE_HOST}:{port}")
        servers.pop(GONE_HOST).stop()
        hosts = tuple(host for host in hosts if host != GONE_HOST)
        _settle(hosts)
        console.line(
            f"    {GONE_HOST} leaves the answer and stops: {_connections(refreshes.take())} "
            f"moved to the others in {format_duration(time.monotonic() - changed)}"
        )
        _show(console, stub, servers, hosts)
    finally:
        if supervisor is not None:
            supervisor.stop()
        for server in servers.values():
            server.stop()
        refreshes.close()


def _spread(status: grpcpool.PoolStatus) -> Counter[str]:
    """Ready connections per backend host."""
    return Counter(
        (worker.address or "unpinned").rsplit(":", 1)[0]
        for worker in status.workers
        if worker.state == "ready"
    )


def _connections(count: int) -> str:
    return f"{count} connection{'' if count == 1 else 's'}"


def _settle(hosts: Sequence[str]) -> int:
    """Waits until every connection is ready and spread evenly over ``hosts``.

    Returns:
        The fewest ready connections seen meanwhile (sampled every 5 ms).
    """
    deadline = time.monotonic() + SETTLE_TIMEOUT
    fewest = [BACKENDS_SIZE]

    def even() -> bool:
        status = grpcpool.status(BACKENDS_POOL)
        fewest[0] = min(fewest[0], status.current_size)
        counts = [_spread(status)[host] for host in hosts]
        return (
            len(status.workers) == BACKENDS_SIZE
            and sum(counts) == BACKENDS_SIZE
            and max(counts) - min(counts) <= 1
        )

    while not even():
        if time.monotonic() >= deadline:
            spread = dict(_spread(grpcpool.status(BACKENDS_POOL)))
            raise BackendsFailed(
                f"connections not spread evenly over {', '.join(hosts)} after "
                f"{SETTLE_TIMEOUT:g} s: {spread}"
            )
        time.sleep(0.005)
    return fewest[0]


def _show(
    console: Console, stub: EchoStub, servers: dict[str, EchoServer], hosts: Sequence[str]
) -> None:
    """Makes ``CALLS`` calls and prints connections and calls per backend; checks both."""
    before = {host: sum(server.peer_counts().values()) for host, server in servers.items()}
    for n in range(CALLS):
        stub.Say(EchoRequest(text=f"call {n}"), timeout=CALL_TIMEOUT)
    calls = {host: sum(servers[host].peer_counts().values()) - before[host] for host in hosts}
    spread = _spread(grpcpool.status(BACKENDS_POOL))
    rows = [(host, str(spread[host]), str(calls[host])) for host in hosts]
    lines = table(("backend", "connections", "calls"), rows).split("\n")
    console.line("\n".join("    " + line for line in lines))
    stray = sum(spread.values()) - sum(spread[host] for host in hosts)
    if stray or sum(calls.values()) != CALLS or not all(calls.values()):
        raise BackendsFailed(
            f"{CALLS} calls went {calls} over connections {dict(spread)}, not over {list(hosts)}"
        )
