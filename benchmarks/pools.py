"""Starting and stopping grpcpool pools (and hand-made channels) for the benchmarks."""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import grpc
import pykka

import grpcpool
from grpcpool import Config, PoolSpec, Supervisor

__all__ = [
    "distinct_channels",
    "pool_config",
    "running_pool",
    "unique_name",
    "wait_channels_ready",
]

# Seconds any pool gets to become ready, and to stop.
READY_TIMEOUT = 60.0
STOP_TIMEOUT = 60.0

_names = itertools.count(1)


def unique_name(prefix: str) -> str:
    """A pool name not used before in this process."""
    return f"{prefix}-{next(_names)}"


def pool_config(
    port: int,
    size: int,
    name: str,
    *,
    strategy: str = "round_robin",
    connection: Mapping[str, Any] | None = None,
) -> Config:
    """A plaintext pool of ``size`` channels to ``127.0.0.1:port``."""
    return Config.new(
        endpoint={"type": "local", "host": "127.0.0.1", "port": port},
        pool={"size": size, "name": name, "strategy": strategy, "max_size": max(1024, size)},
        connection=dict(connection or {}),
    )


@contextmanager
def running_pool(config: Config, *, ready: bool = True) -> Iterator[pykka.ActorRef[Any]]:
    """Runs ``config`` under its own supervisor; waits until every worker is ready.

    The supervisor (and with it the pool, its threads and channels) is stopped
    on exit, whatever happens inside.
    """
    name = config.pool_name()
    supervisor = Supervisor.start(children=[PoolSpec(config, name=name)])
    try:
        if ready:
            grpcpool.await_ready(name, timeout=READY_TIMEOUT, min_ready=config.pool.size)
        yield supervisor
    finally:
        supervisor.stop(timeout=STOP_TIMEOUT)


def channel_options(*extra: tuple[str, Any]) -> tuple[tuple[str, Any], ...]:
    """Options for a hand-made channel with a connection of its own.

    grpcio shares one connection between channels with equal arguments (its
    global subchannel pool); ``grpc.use_local_subchannel_pool`` stops that,
    exactly as grpcpool does for its workers.
    """
    return (("grpc.use_local_subchannel_pool", 1), *extra)


@contextmanager
def distinct_channels(
    target: str, count: int, *extra: tuple[str, Any], ready: bool = True
) -> Iterator[tuple[grpc.Channel, ...]]:
    """``count`` hand-made insecure channels, each its own connection; closed on exit."""
    channels = tuple(
        grpc.insecure_channel(target, options=channel_options(*extra)) for _ in range(count)
    )
    try:
        if ready:
            wait_channels_ready(channels)
        yield channels
    finally:
        for channel in channels:
            channel.close()


def wait_channels_ready(channels: tuple[grpc.Channel, ...], timeout: float = 10.0) -> None:
    """Blocks until every channel is connected (READY), or raises ``grpc.FutureTimeoutError``."""
    for channel in channels:
        grpc.channel_ready_future(channel).result(timeout=timeout)
