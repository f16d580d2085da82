"""grpcpool.aio: the pool on the asyncio event loop, with no thread per connection.

``async with grpcpool.aio.Pool(config, name="kv") as pool:`` starts a pool of
``grpc.aio`` channels on the running loop. Each connection is a task driving
the same worker state machine as the sync pool's actors; connectivity comes
from ``grpc.aio``'s own completion queue, so a pool adds no thread. The view,
pickers, strategies, status records, errors and telemetry signals are the
sync pool's. The module functions find a running asyncio pool by name; the
names are shared with the sync pools (one pool per name in the process), and
asking here for a sync pool's name says so.
"""

from __future__ import annotations

from typing import Any

import grpc

from grpcpool._names import held_by
from grpcpool._process import PROCESS
from grpcpool._status import PoolStatus
from grpcpool.aio._channel import AioPoolChannel
from grpcpool.aio._pool import POOLS, Pool
from grpcpool.config import DEFAULT_POOL_NAME
from grpcpool.errors import PoolNotFoundError

__all__ = [
    "AioPoolChannel",
    "Pool",
    "await_ready",
    "channel",
    "get_channel",
    "pool",
    "resize",
    "scale_down",
    "scale_up",
    "status",
    "stop",
]


def pool(name: str = DEFAULT_POOL_NAME) -> Pool:
    """The running asyncio pool ``name``.

    Raises:
        PoolNotFoundError: No asyncio pool of that name runs (the message
            says so if the name is a sync pool's).
    """
    found = POOLS.get(name)
    if found is None:
        raise _not_found(name)
    return found


def _not_found(name: str) -> PoolNotFoundError:
    return PoolNotFoundError(name, running="sync" if held_by(name) == "sync" else None)


def get_channel(name: str = DEFAULT_POOL_NAME) -> grpc.aio.Channel:
    """A ready ``grpc.aio.Channel`` of pool ``name`` (see :meth:`Pool.get_channel`)."""
    found = POOLS.get(name)
    if found is None:
        raise _not_found(name)
    return found.get_channel()


def channel(name: str = DEFAULT_POOL_NAME) -> Any:
    """Pool ``name`` as one ``grpc.aio.Channel`` (see :meth:`Pool.channel`)."""
    return pool(name).channel()


def status(name: str = DEFAULT_POOL_NAME) -> PoolStatus:
    """The health of pool ``name`` now, an asyncio or a running sync pool.

    Raises:
        PoolNotFoundError: No pool of that name runs.
    """
    found = POOLS.get(name)
    if found is not None:
        return found.status()
    entry = PROCESS.pools.get(name)  # a sync pool: its view answers from any thread
    if entry is not None:
        return entry.status()
    raise _not_found(name)


async def await_ready(
    name: str = DEFAULT_POOL_NAME, timeout: float | None = 10.0, min_ready: int = 1
) -> None:
    """Waits until ``min_ready`` channels of pool ``name`` are ready."""
    await pool(name).await_ready(timeout, min_ready)


async def scale_up(name: str, count: int) -> int:
    """Adds ``count`` workers to pool ``name``; returns the new expected size."""
    return await pool(name).scale_up(count)


async def scale_down(name: str, count: int) -> int:
    """Removes ``count`` workers from pool ``name``; returns the new expected size."""
    return await pool(name).scale_down(count)


async def resize(name: str, target: int) -> int:
    """Scales pool ``name`` to ``target`` workers; returns the new expected size."""
    return await pool(name).resize(target)


async def stop(name: str = DEFAULT_POOL_NAME) -> None:
    """Stops pool ``name`` if it runs. Idempotent.

    Raises:
        PoolNotFoundError: ``name`` is a sync pool's (``grpcpool.stop`` stops
            it); a name no pool holds is no error.
    """
    found = POOLS.get(name)
    if found is not None:
        await found.stop()
    elif held_by(name) == "sync":
        raise _not_found(name)
