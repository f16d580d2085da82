"""The asyncio pool's public face: :class:`Pool` and the module functions of :mod:`grpcpool.aio`."""


from __future__ import annotations

import grpc

from grpcpool._names import held_by
from grpcpool._process import PROCESS
from grpcpool._status import PoolStatus
from grpcpool.actors._entry import POOLS as SYNC_POOLS
from grpcpool.api._aio_channel import AioPoolChannel
from grpcpool.config import DEFAULT_POOL_NAME
from grpcpool.errors import PoolNotFoundError
from grpcpool.tasks import POOLS, TaskPool

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


class Pool(TaskPool):
    """A pool of ``grpc.aio`` channels on the running event loop.

    Use it as an async context manager (``async with Pool(cfg, name="kv") as
    pool:``) or call :meth:`start` and :meth:`stop`. It belongs to the loop
    it was started on: any use from another loop or thread raises
    :class:`~grpcpool.GrpcPoolError`.

    Args:
        config: The same :class:`~grpcpool.Config` as a sync pool's, with
            ``grpc.aio`` interceptors in ``endpoint.interceptors`` if any
            (a ``grpc.aio`` channel cannot use sync ones).
        name: The pool's name; falls back to ``config.pool.name``, then
            ``"default"``.
    """

    def channel(self) -> AioPoolChannel:
        """The pool as one ``grpc.aio.Channel``: build stubs on it once (see ``AioPoolChannel``)."""
        return AioPoolChannel(self.name)


def pool(name: str = DEFAULT_POOL_NAME) -> Pool:
    """The running asyncio pool ``name``.

    Raises:
        PoolNotFoundError: No asyncio pool of that name runs (the message
            says so if the name is a sync pool's).
    """
    found = POOLS.get(name)
    if not isinstance(found, Pool):
        raise _not_found(name)
    return found


def _not_found(name: str) -> PoolNotFoundError:
    if held_by(name) == "sync":
        return PoolNotFoundError(name, running="sync")
    return PoolNotFoundError(name, PROCESS.ended_pools.get(name))


def get_channel(name: str = DEFAULT_POOL_NAME) -> grpc.aio.Channel:
    """A ready ``grpc.aio.Channel`` of pool ``name`` (see :meth:`Pool.get_channel`)."""
    found = POOLS.get(name)
    if found is None:
        raise _not_found(name)
    return found.get_channel()


def channel(name: str = DEFAULT_POOL_NAME) -> AioPoolChannel:
    """The asyncio pool ``name`` as one ``grpc.aio.Channel`` (see :meth:`Pool.channel`).

    As ``grpcpool.channel``: the pool need not be running yet; calls fail
    with ``UNAVAILABLE`` (a :class:`~grpcpool.PoolCallError`) until an
    asyncio pool of that name has a ready connection, and a stub built on it
    follows the name across a stop and a new pool.

    Raises:
        ConfigError: ``name`` is not a str of 1 to 128 characters.
    """
    return AioPoolChannel(name)


def status(name: str = DEFAULT_POOL_NAME) -> PoolStatus:
    """The health of pool ``name`` now, an asyncio or a running sync pool.

    Raises:
        PoolNotFoundError: No pool of that name runs.
    """
    found = POOLS.get(name)
    if found is not None:
        return found.status()
    entry = SYNC_POOLS.get(name)  # a sync pool: its view answers from any thread
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
