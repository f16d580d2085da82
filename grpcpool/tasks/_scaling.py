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
from collections.abc import Awaitable, Callable

from grpcpool.connection._announce import announce_pool
from grpcpool.core._scaling import resize_by, scale_up_by, scaled_down, scaled_up, workers_to_stop
from grpcpool.tasks._parts import ScalingLinks

__all__ = ["resize", "scale_down", "scale_up"]

_log = logging.getLogger(__name__)


async def scale_up(pool: ScalingLinks, count: int) -> int:
    """Adds ``count`` workers where the spread is thinnest (autoscaled: up to its ``max_size``);
    returns the new expected size."""
    registry, workers, config = pool.registry, pool.workers, pool.config.pool
    count = scale_up_by(pool.name, registry.expected, count, config.max_size, config.autoscale)
    if not count:  # autoscaled, at its max_size
        return registry.expected
    started = time.monotonic()
    for _ in range(count):
        workers.add(workers.thinnest_address())
    registry.resize(registry.expected + count)
    pool.changed()
    took = time.monotonic() - started
    announce_pool(scaled_up(count, count, took, registry.expected), pool.name, _log)
    return registry.expected


async def scale_down(pool: ScalingLinks, count: int) -> int:
    """Stops the ``count`` newest workers (never below 1; autoscaled: below its ``min_size``);
    returns the new expected size."""
    registry, workers, autoscale = pool.registry, pool.workers, pool.config.pool.autoscale
    stopping = workers_to_stop(pool.name, registry.expected, workers.own(), count, autoscale)
    if not stopping:  # autoscaled, at its min_size
        return registry.expected
    started = time.monotonic()
    # The new size first: each worker's leaving publishes a view that has it.
    registry.resize(registry.expected - len(stopping))
    await workers.stop(stopping)
    pool.changed()
    took = time.monotonic() - started
    announce_pool(scaled_down(len(stopping), took, registry.expected), pool.name, _log)
    return registry.expected


async def resize(
    pool: ScalingLinks,
    target: int,
    up: Callable[[int], Awaitable[int]],
    down: Callable[[int], Awaitable[int]],
) -> int:
    """Scales to ``target`` workers with ``up`` or ``down``; the same size is a no-op.

    ``up`` and ``down`` are the pool's ``scale_up`` and ``scale_down``, which
    check first that the pool runs.
    """
    expected, config = pool.registry.expected, pool.config.pool
    change = resize_by(pool.name, expected, target, config.max_size, config.autoscale)
    if change > 0:
        return await up(change)
    if change < 0:
        return await down(-change)
    return expected
