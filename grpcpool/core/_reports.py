"""What a pool's workers tell whoever keeps the pool's records (sync: the HealthRegistry).

Workers import this module, not the registry: a worker needs to know what to
report, not who keeps the records.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import grpc

from grpcpool._status import WorkerState
from grpcpool.connection._calls import CallLedger

__all__ = ["WorkerGone", "WorkerReport"]

@dataclass(frozen=True)
class WorkerReport:
    """A worker's new state. ``channel`` is set only when ``state == "ready"``.

    Attributes:
        worker_id: Stable id within the pool (``"worker-3"``).
        urn: The reporting actor's URN; reports from an earlier incarnation
            of the worker are recognised by it and ignored.
        state: The state the worker has just entered.
        reconnect_attempt: Consecutive failed connects so far.
        last_error: Why the last connect failed or the connection ended.
        channel: The channel to hand out, when ready.
        peer: Where the channel is connected, when ready.
        suspect: Asks the worker to check ``channel`` now (a call on it
            failed with ``UNAVAILABLE``), when ready.
        address: The resolved address the worker is pinned to, if any.
        ledger: The calls in flight on ``channel``, when ready.
        on_last_call: Closes ``channel`` once retired and its last call has
            ended, when ready (see :class:`~grpcpool.core.ReadyConnection`).
    """

    worker_id: str
    urn: str
    state: WorkerState
    reconnect_attempt: int = 0
    last_error: str | None = None
    channel: grpc.Channel | None = None
    peer: str | None = None
    suspect: Callable[[], None] | None = None
    address: str | None = None
    ledger: CallLedger | None = None
    on_last_call: Callable[[], None] | None = None


@dataclass(frozen=True)
class WorkerGone:
    """A worker has stopped (or is stopping) and must leave the records."""

    worker_id: str
    urn: str
