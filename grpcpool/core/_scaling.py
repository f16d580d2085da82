"""What scaling a pool means, for a pool with these workers (pure).

The sync PoolSupervisor scales by starting and terminating worker actors,
the asyncio pool by starting and stopping worker tasks; what they start and
stop is decided here, once: the checks of the count (the errors of
:mod:`grpcpool.core._sizes`, raised before anything changes), which workers
a scale-down stops and in which order (the newest first), what a resize
amounts to, where a new worker goes, the ids new workers get, and the
``pool.scale_up``/``pool.scale_down`` signals, as :class:`Emit` effects the
drivers run with :func:`grpcpool.connection._announce.announce_pool`.

On an autoscaled pool (``pool.autoscale``) the three calls check their
argument as always, then clamp the size they ask for into the autoscale
range instead of raising past it: the answer is the size reached (the same
size, a no-op, when the range allows no move).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from grpcpool import telemetry
from grpcpool._config_capacity import Autoscale
from grpcpool.connection._machine_types import Emit
from grpcpool.core._sizes import (
    below_one_worker,
    check_count,
    over_max_size,
    resize_over_max_size,
)

__all__ = [
    "WORKER_PREFIX",
    "is_worker",
    "resize_by",
    "scale_up_by",
    "scaled_down",
    "scaled_up",
    "thinnest_address",
    "worker_id",
    "workers_to_stop",
]

WORKER_PREFIX = "worker-"
"""Every worker's id starts so; the number after it grows with each new worker."""

_SCALE_UP = telemetry.pool_scale_up.name
_SCALE_DOWN = telemetry.pool_scale_down.name


def worker_id(number: int) -> str:
    """The id of the pool's ``number``-th worker (``"worker-3"``); ids are never reused."""
    return f"{WORKER_PREFIX}{number}"


def is_worker(child_id: str) -> bool:
    """Whether ``child_id`` (one of a pool's parts) is a worker's."""
    return child_id.startswith(WORKER_PREFIX)


def scale_up_by(
    pool_name: str, size: int, count: object, limit: int, autoscale: Autoscale | None = None
) -> int:
    """Checks adding ``count`` workers to a pool of ``size``; returns the count.

    With ``autoscale``, the count that takes the pool to at most its
    ``max_size`` (0: none).

    Raises:
        TypeError: ``count`` is not an int (or is a bool).
        PoolSizeError: ``count`` is below 1, or ``size + count`` is over
            ``limit`` (``pool.max_size``) without ``autoscale``.
    """
    count = check_count(pool_name, "count", count)
    if autoscale is not None:
        return max(0, min(size + count, autoscale.bounds[1]) - size)
    if size + count > limit:
        raise over_max_size(pool_name, size, count, limit)
    return count


def workers_to_stop(
    pool_name: str,
    size: int,
    workers: Sequence[str],
    count: object,
    autoscale: Autoscale | None = None,
) -> list[str]:
    """The workers a scale-down by ``count`` stops: the newest, newest first.

    Args:
        pool_name: For the errors.
        size: The pool's size now.
        workers: The pool's own workers in start order (never a replacement
            started for a move: it is not the pool's to scale).
        count: How many to stop.
        autoscale: The pool's ``pool.autoscale``: no more stop than leave
            ``min_size`` (perhaps none).

    Raises:
        TypeError: ``count`` is not an int (or is a bool).
        PoolSizeError: ``count`` is below 1 or, without ``autoscale``,
            would leave no worker.
    """
    count = check_count(pool_name, "count", count)
    if autoscale is not None:
        count = max(0, size - max(size - count, autoscale.bounds[0]))
        if count == 0:
            return []
    if size - count < 1:
        raise below_one_worker(pool_name, size, count)
    return list(reversed(workers[-count:]))


def resize_by(
    pool_name: str, size: int, target: object, limit: int, autoscale: Autoscale | None = None
) -> int:
    """What resizing a pool of ``size`` to ``target`` takes.

    With ``autoscale``, ``target`` is first clamped into its range.

    Returns:
        The number of workers to add (above 0) or to stop (below 0); 0 for
        the same size, a no-op.

    Raises:
        TypeError: ``target`` is not an int (or is a bool).
        PoolSizeError: ``target`` is below 1, or over ``limit`` without
            ``autoscale``.
    """
    target = check_count(pool_name, "target", target)
    if autoscale is not None:
        low, high = autoscale.bounds
        return min(max(target, low), high) - size
    if target > limit:
        raise resize_over_max_size(pool_name, target, limit)
    return target - size


def thinnest_address(addresses: Iterable[str | None]) -> str | None:
    """Where a new worker goes: the address the fewest of ``addresses`` name (first on a tie).

    ``addresses`` are the workers' (None: not pinned, left out). None when no
    worker is pinned: the new worker starts on ``host:port`` and the balancer
    moves it once it has an answer.
    """
    counts: dict[str, int] = {}
    for address in addresses:
        if address is not None:
            counts[address] = counts.get(address, 0) + 1
    return min(counts, key=counts.__getitem__) if counts else None


def scaled_up(requested: int, succeeded: int, duration: float, new_size: int) -> Emit:
    """``pool.scale_up``: ``requested`` workers asked for, ``succeeded`` of them started."""
    measurements = {
        "duration": duration,
        "requested": requested,
        "succeeded": succeeded,
        "failed": requested - succeeded,
        "new_size": new_size,
    }
    return Emit(_SCALE_UP, measurements, {})


def scaled_down(requested: int, duration: float, new_size: int) -> Emit:
    """``pool.scale_down``: ``requested`` workers stopped."""
    measurements = {
        "duration": duration,
        "requested": requested,
        "terminated": requested,
        "new_size": new_size,
    }
    return Emit(_SCALE_DOWN, measurements, {})
