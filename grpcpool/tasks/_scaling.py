"""Scaling an asyncio pool: workers started or stopped, the new size published.

The sync pool scales in its PoolSupervisor actor; an asyncio pool scales on
its loop, here, with the same checks and errors (``grpcpool.core._sizes``)
and the same ``pool.scale_up``/``pool.scale_down`` signals. The caller (a
:class:`~grpcpool.aio.Pool` method) has checked that the pool runs and that
it is on the pool's loop.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from grpcpool import telemetry
from grpcpool.core._sizes import (
    below_one_worker,
    check_count,
    over_max_size,
    resize_over_max_size,
)

if TYPE_CHECKING:
    from grpcpool.tasks._pool import TaskPool as Pool

__all__ = ["resize", "scale_down", "scale_up"]


async def scale_up(pool: Pool, count: int) -> int:
    """Adds ``count`` workers where the spread is thinnest; returns the new expected size."""
    registry, workers = pool._registry, pool._workers
    check_count(pool.name, "count", count)
    limit = pool.config.pool.max_size
    if registry.expected + count > limit:
        raise over_max_size(pool.name, registry.expected, count, limit)
    started = time.monotonic()
    for _ in range(count):
        workers.add(workers.thinnest_address())
    registry.expected += count
    registry.publish()
    _poke_balancer(pool)
    _emit(
        pool,
        telemetry.pool_scale_up,
        started,
        {"requested": count, "succeeded": count, "failed": 0},
    )
    return registry.expected


async def scale_down(pool: Pool, count: int) -> int:
    """Stops the ``count`` newest workers (never below 1); returns the new expected size."""
    registry, workers = pool._registry, pool._workers
    check_count(pool.name, "count", count)
    if registry.expected - count < 1:
        raise below_one_worker(pool.name, registry.expected, count)
    started = time.monotonic()
    newest = workers.newest(count)
    registry.expected -= count
    await workers.stop(newest)
    registry.publish()
    _poke_balancer(pool)
    _emit(pool, telemetry.pool_scale_down, started, {"requested": count, "terminated": count})
    return registry.expected


async def resize(pool: Pool, target: int) -> int:
    """Scales to ``target`` workers; the same size is a no-op."""
    check_count(pool.name, "target", target)
    if target > pool.config.pool.max_size:
        raise resize_over_max_size(pool.name, target, pool.config.pool.max_size)
    expected = pool._registry.expected
    if target > expected:
        return await pool.scale_up(target - expected)
    if target < expected:
        return await pool.scale_down(expected - target)
    return expected


def _poke_balancer(pool: Pool) -> None:
    if pool._balancer is not None:
        pool._balancer.poke()


def _emit(pool: Pool, signal: Any, started: float, measurements: dict[str, Any]) -> None:
    telemetry.emit(
        signal,
        pool.name,
        {
            "duration": time.monotonic() - started,
            **measurements,
            "new_size": pool._registry.expected,
        },
        {"pool_name": pool.name},
    )
