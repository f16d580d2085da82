"""HealthRegistry: the single writer of a pool's view.

Workers report every change of their connection to the registry; the pool's
supervisor tells it the expected size and the pool's lifecycle. After each
message the registry builds a new immutable :class:`~grpcpool.pools.PoolView`
and publishes it to the pool's entry with one assignment, which wakes
``await_ready`` waiters. Nothing else writes the view.

Reports carry the worker's actor URN. A report from an earlier incarnation of
a worker (one that has since been restarted) is ignored, so a late message
from a dead worker cannot put a closed channel back into rotation.

Workers ``tell`` the registry about progress and ``ask`` it only when they are
about to close a channel, so that the channel has left the view first. The
registry never waits on anyone.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from types import TracebackType
from typing import Any

from grpcpool._status import WorkerStatus
from grpcpool.pools._parts import PoolParts
from grpcpool.pools._ready import ReadyConnection
from grpcpool.pools._reports import WorkerGone, WorkerReport
from grpcpool.pools._view import Lifecycle, build_view
from grpcpool.supervisor import SupervisedActor

__all__ = ["ExpectedSize", "HealthRegistry", "SetLifecycle"]


@dataclass(frozen=True)
class ExpectedSize:
    """The pool's supervisor scaled it: this many workers are meant to run."""

    size: int


@dataclass(frozen=True)
class SetLifecycle:
    """The pool's supervisor moves the pool to another stage of its life."""

    lifecycle: Lifecycle


@dataclass
class _Record:
    urn: str
    status: WorkerStatus
    connection: ReadyConnection | None


class HealthRegistry(SupervisedActor):
    """Tracks every worker of one pool and publishes the pool's view."""

    def __init__(self, parts: PoolParts) -> None:
        super().__init__()
        self._parts = parts
        self._entry = parts.entry
        previous = self._entry.view
        # A registry restarted inside a running pool carries on; one that
        # starts a pool (or restarts a crashed one) starts it.
        self._expected = previous.expected_size
        self._lifecycle: Lifecycle = "running" if previous.lifecycle == "running" else "starting"
        # Insertion order is worker start order; the view keeps it.
        self._records: dict[str, _Record] = {}

    def on_start(self) -> None:
        self._publish()

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, WorkerReport):
            self._on_report(message)
        elif isinstance(message, WorkerGone):
            self._on_gone(message)
        elif isinstance(message, ExpectedSize):
            self._expected = message.size
        elif isinstance(message, SetLifecycle):
            self._lifecycle = message.lifecycle
        else:
            return super().on_receive(message)
        self._publish()
        if isinstance(message, WorkerGone | WorkerReport):
            # After the publish: the balancer looks at the new view.
            self._parts.nudge()
        return None

    def on_stop(self) -> None:
        # Nobody keeps the view current from here on: hand out nothing.
        self._records.clear()
        self._publish()

    def on_failure(
        self,
        exception_type: type[BaseException] | None,
        exception_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        # Until a new registry starts, hand out nothing rather than channels
        # that may be closing meanwhile.
        self._records.clear()
        self._publish()

    def _on_report(self, report: WorkerReport) -> None:
        record = self._records.get(report.worker_id)
        if record is not None and record.urn != report.urn and report.state != "connecting":
            # Only a worker starting afresh may replace another incarnation's
            # record; anything else from a different URN is stale.
            return
        status = WorkerStatus(
            worker_id=report.worker_id,
            state=report.state,
            since=time.time(),
            reconnect_attempt=report.reconnect_attempt,
            last_error=report.last_error,
            peer=report.peer,
            address=report.address,
        )
        if (
            record is not None
            and record.urn == report.urn
            and (record.status.state, record.status.address) == (report.state, report.address)
        ):
            status = replace(status, since=record.status.since)  # a move starts it anew
        connection = None
        if report.state == "ready" and report.channel is not None:
            # The same channel keeps its record, and with it the count of
            # its calls in flight and its multi-callables.
            kept = record.connection if record is not None else None
            if kept is not None and kept.channel is report.channel:
                connection = kept
            else:
                connection = ReadyConnection(
                    report.channel,
                    report.worker_id,
                    report.suspect,
                    report.address,
                    report.ledger,
                    report.on_last_call,
                )
        self._records[report.worker_id] = _Record(report.urn, status, connection)

    def _on_gone(self, message: WorkerGone) -> None:
        record = self._records.get(message.worker_id)
        if record is not None and record.urn == message.urn:
            del self._records[message.worker_id]

    def _publish(self) -> None:
        records = list(self._records.values())
        entry = self._entry
        entry.publish(
            build_view(
                entry.name,
                entry.strategy,
                entry.view,
                connections=tuple(r.connection for r in records if r.connection is not None),
                workers=tuple(r.status for r in records),
                expected_size=self._expected,
                lifecycle=self._lifecycle,
            )
        )

    def __repr__(self) -> str:
        view = self._entry.view
        return (
            f"<HealthRegistry {self._entry.name!r} {self._lifecycle} "
            f"[{len(view.channels)} ready of {len(self._records)}]>"
        )
