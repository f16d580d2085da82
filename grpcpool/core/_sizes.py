"""The checks of counts and sizes that sync and asyncio pools share (pure).

Scaling and waiting take numbers from callers; a number the pool cannot take
is a :class:`~grpcpool.PoolSizeError` (a ``GrpcPoolError`` and a
``ValueError``) that names the pool and the numbers, raised before anything
changes. The sync PoolSupervisor and the asyncio Pool raise the same errors
with the same words, from here.
"""

from __future__ import annotations

from typing import Any

from grpcpool.errors import PoolSizeError

__all__ = [
    "below_one_worker",
    "check_count",
    "check_min_ready",
    "over_max_size",
    "resize_over_max_size",
]


def check_count(pool_name: str, name: str, value: Any) -> int:
    """A positive int, not a bool.

    Raises:
        TypeError: ``value`` is not an int (or is a bool).
        PoolSizeError: ``value`` is below 1 (also a ``ValueError``).
    """
    if isinstance(value, bool) or not isinstance(value, int):
        # The type, not the value: a value of unknown shape may be a secret.
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < 1:
        raise PoolSizeError(pool_name, f"{name} must be >= 1, got {value}")
    return value


def check_min_ready(pool_name: str, min_ready: int, size: int) -> None:
    """Refuses to wait for more ready channels than the pool has workers.

    Such a wait could only run out its timeout and then blame the pool's
    connections, which may all be fine; failing at once names the real
    mistake.

    Raises:
        PoolSizeError: ``min_ready`` is over ``size``, the pool's expected size.
    """
    if min_ready > size:
        raise PoolSizeError(
            pool_name,
            f"min_ready={min_ready} is more than the pool's {size} "
            f"worker{'s' if size != 1 else ''}, so it could never be ready; "
            f"wait for at most {size}, or scale the pool up first",
        )


def over_max_size(pool_name: str, size: int, count: int, limit: int) -> PoolSizeError:
    """The error for scaling ``size`` workers up by ``count``, past ``limit``."""
    return PoolSizeError(pool_name, f"scaling {size} up by {count} is over pool.max_size ({limit})")


def below_one_worker(pool_name: str, size: int, count: int) -> PoolSizeError:
    """The error for scaling ``size`` workers down by ``count``, to none."""
    return PoolSizeError(
        pool_name, f"scaling {size} down by {count} would leave no worker (a pool keeps at least 1)"
    )


def resize_over_max_size(pool_name: str, target: int, limit: int) -> PoolSizeError:
    """The error for resizing to ``target`` workers, past ``limit``."""
    return PoolSizeError(pool_name, f"resizing to {target} is over pool.max_size ({limit})")
