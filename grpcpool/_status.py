"""Read-only views of a pool's health: :class:`PoolStatus` and :class:`WorkerStatus`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["PoolStatus", "WorkerState", "WorkerStatus"]

WorkerState = Literal["connecting", "ready", "backoff", "stopped"]


@dataclass(frozen=True)
class WorkerStatus:
    """One worker, as the pool's HealthRegistry last heard of it.

    Attributes:
        worker_id: Stable id within the pool, e.g. ``"worker-3"``.
        state: ``"connecting"``, ``"ready"``, ``"backoff"`` (waiting to
            reconnect) or ``"stopped"``.
        since: ``time.time()`` when it entered that state.
        reconnect_attempt: Consecutive failed connects so far.
        last_error: Why the last connect failed or the connection ended.
        peer: The endpoint it is connected to, when connected.
    """

    worker_id: str
    state: WorkerState
    since: float
    reconnect_attempt: int = 0
    last_error: str | None = None
    peer: str | None = None


@dataclass(frozen=True)
class PoolStatus:
    """A pool's health at one moment.

    Attributes:
        pool_name: The pool.
        expected_size: How many workers it is meant to have.
        current_size: How many channels are ready now.
        status: ``"healthy"`` (all expected ready), ``"degraded"`` (some) or
            ``"down"`` (none).
        workers: One record per worker, in start order.
    """

    pool_name: str
    expected_size: int
    current_size: int
    status: Literal["healthy", "degraded", "down"]
    workers: tuple[WorkerStatus, ...]

    @classmethod
    def of(
        cls,
        pool_name: str,
        expected_size: int,
        current_size: int,
        workers: tuple[WorkerStatus, ...],
    ) -> PoolStatus:
        if current_size == 0:
            status: Literal["healthy", "degraded", "down"] = "down"
        elif current_size >= expected_size:
            status = "healthy"
        else:
            status = "degraded"
        return cls(pool_name, expected_size, current_size, status, workers)
