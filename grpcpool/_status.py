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
        address: The resolved address (``"ip:port"``) its connections go to,
            or None when it connects to ``host:port`` through grpcio's own
            name resolution (before the pool's first resolution).
        in_flight: Calls running on its connection through the pool channel
            (:func:`grpcpool.channel`) when the status was taken; calls made
            on a channel from ``get_channel`` are not counted.
        ejected: Outlier detection (``pool.outlier_detection``) has taken
            its connection, or its address, out of routing for now. An
            ejected worker may still be ready (its connection open, and
            used if the pool panics: ``pool.panic_threshold``).
    """

    worker_id: str
    state: WorkerState
    since: float
    reconnect_attempt: int = 0
    last_error: str | None = None
    peer: str | None = None
    in_flight: int = 0
    address: str | None = None
    ejected: bool = False


@dataclass(frozen=True)
class PoolStatus:
    """A pool's health at one moment.

    Attributes:
        pool_name: The pool.
        expected_size: How many workers it is meant to have.
        current_size: How many channels are ready now (ejected ones included).
        status: ``"healthy"`` (all expected ready), ``"degraded"`` (some) or
            ``"down"`` (none).
        workers: One record per worker, in start order.
        in_flight: Calls running through the pool channel, over all workers.
        resolver_error: Why the pool's last resolution failed (an error, or
            no answer within ``endpoint.resolve_timeout``); None when it
            worked. A pool keeps its last good answer meanwhile.
        queued: Calls through the pool channel waiting for a free slot
            (``pool.max_calls_per_connection``, or connections whose servers
            refused streams), not yet in flight.
        autoscale: ``(min_size, max_size)``, the range ``pool.autoscale``
            moves the pool's size in; None for a pool of fixed size.
        resolver_state: A push resolver's watch: ``"connecting"``,
            ``"watching"``, ``"reconnecting"`` (the pool serves its last
            known addresses meanwhile) or what the resolver's handle says;
            None for a resolver that is asked (polled).
        resolver_revision: The registry revision of the watch's last set,
            when the resolver numbers them (etcd does); else None.
    """

    pool_name: str
    expected_size: int
    current_size: int
    status: Literal["healthy", "degraded", "down"]
    workers: tuple[WorkerStatus, ...]
    in_flight: int = 0
    resolver_error: str | None = None
    queued: int = 0
    autoscale: tuple[int, int] | None = None
    resolver_state: str | None = None
    resolver_revision: int | None = None

    @classmethod
    def of(
        cls,
        pool_name: str,
        expected_size: int,
        current_size: int,
        workers: tuple[WorkerStatus, ...],
        resolver_error: str | None = None,
        queued: int = 0,
        *,
        autoscale: tuple[int, int] | None = None,
    ) -> PoolStatus:
        if current_size == 0:
            status: Literal["healthy", "degraded", "down"] = "down"
        elif current_size >= expected_size:
            status = "healthy"
        else:
            status = "degraded"
        in_flight = sum(worker.in_flight for worker in workers)
        return cls(
            pool_name,
            expected_size,
            current_size,
            status,
            workers,
            in_flight,
            resolver_error,
            queued,
            autoscale=autoscale,
        )
