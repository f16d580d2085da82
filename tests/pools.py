"""Pools on 127.0.0.1 for the tests that drive grpcpool's API.

A port with nothing listening, a plaintext loopback config, and a pool under
its own Supervisor. :mod:`tests.workers` runs one ChannelWorker on its own
instead.
"""

from __future__ import annotations

import socket
from typing import Any

import pykka

import grpcpool
from grpcpool import Config
from grpcpool.core import ReadyConnection


def free_port() -> int:
    """A port on 127.0.0.1 with nothing listening (just released by the OS)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def loopback_config(
    port: int, size: int = 2, *, pool: dict[str, Any] | None = None, **connection: Any
) -> Config:
    """Plaintext to 127.0.0.1 with quick reconnects (backoff 0.05-0.5 s, connect 2 s).

    Keyword arguments override connection keys; ``pool`` adds pool keys.
    """
    settings: dict[str, Any] = {"backoff_min": 0.05, "backoff_max": 0.5, "connect_timeout": 2.0}
    settings.update(connection)
    return Config.new(
        endpoint={"type": "local", "host": "127.0.0.1", "port": port},
        pool={"size": size, **(pool or {})},
        connection=settings,
    )


def start_pool(
    supervisors: list[pykka.ActorRef[Any]], config: Config, name: str
) -> grpcpool.PoolProxy:
    """Starts a pool under a new Supervisor the ``supervisors`` fixture stops later."""
    supervisors.append(grpcpool.Supervisor.start(children=[grpcpool.PoolSpec(config, name=name)]))
    return grpcpool.pool(name)


# The registry keeps one ReadyConnection per ready channel across views; tests
# that build views by hand get the same by asking for a channel's connection
# here. Keyed by id (plain object() channels cannot be weakly referenced),
# checked by identity so a reused id never returns another channel's.
_connections: dict[int, ReadyConnection] = {}


def ready_connections(channels: tuple[Any, ...]) -> tuple[ReadyConnection, ...]:
    """The ready connection of each channel, worker-1 first, the same object each time."""
    connections = []
    for index, channel in enumerate(channels, start=1):
        known = _connections.get(id(channel))
        if known is None or known.channel is not channel:
            known = _connections[id(channel)] = ReadyConnection(channel, f"worker-{index}")
        connections.append(known)
    return tuple(connections)

