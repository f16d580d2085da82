"""Scaling an asyncio pool: workers started or stopped, the new size published.

The sync pool scales in its PoolSupervisor actor; an asyncio pool scales on
its loop, here. What a scale call means (its checks and errors, which
workers go, the ``pool.scale_up``/``pool.scale_down`` signals) is decided by
:mod:`grpcpool.core._scaling`, for both. The caller (a
:class:`~grpcpool.aio.Pool` method) has checked that the pool runs and that
it is on the pool's loop.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from grpcpool.connection._announce import announce_pool
from grpcpool.core._scaling import resize_by, scale_up_by, scaled_down, scaled_up, workers_to_stop

if TYPE_CHECKING:
    from grpcpool.tasks._pool import TaskPool as Pool

__all__ = ["resize", "scale_down", "scale_up"]

_log = logging.getLogger(__name__)


async def scale_up(pool: Pool, count: int) -> int:
    """Adds ``count`` workers where the spread is thinnest; returns the new expected size."""
    registry, workers = pool._registry, pool._workers
    count = scale_up_by(pool.name, registry.expected, count, pool.config.pool.max_size)
    started = time.monotonic()
    for _ in range(count):
        workers.add(workers.thinnest_address())
    registry.resize(registry.expected + count)
    _poke_balancer(pool)
    took = time.monotonic() - started
    announce_pool(scaled_up(count, count, took, registry.expected), pool.name, _log)
    return registry.expected


async def scale_down(pool: Pool, count: int) -> int:
    """Stops the ``count`` newest workers (never below 1); returns the new expected size."""
    registry, workers = pool._registry, pool._workers
    stopping = workers_to_stop(pool.name, registry.expected, workers.own(), count)
    started = time.monotonic()
    # The new size first: each worker's leaving publishes a view that has it.
    registry.resize(registry.expected - count)
    await workers.stop(stopping)
    _poke_balancer(pool)
    took = time.monotonic() - started
    announce_pool(scaled_down(count, took, registry.expected), pool.name, _log)
    return registry.expected


async def resize(pool: Pool, target: int) -> int:
    """Scales to ``target`` workers; the same size is a no-op."""
    expected = pool._registry.expected
    change = resize_by(pool.name, expected, target, pool.config.pool.max_size)
    if change > 0:
        return await pool.scale_up(change)
    if change < 0:
        return await pool.scale_down(-change)
    return expected


def _poke_balancer(pool: Pool) -> None:
    if pool._balancer is not None:
        pool._balancer.poke()
