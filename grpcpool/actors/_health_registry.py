"""HealthRegistry: the single writer of a pool's per-worker health.

Workers report every change of their connection to the registry; the
registry keeps one record per worker and, after each change, publishes a new
immutable snapshot of the ready channels (and of the worker records) to the
pool's :class:`~grpcpool._pool_state.PoolState` with one assignment, then wakes
``await_ready`` waiters.

Reports carry the worker's actor URN. A report from an earlier incarnation of
a worker (one that has since been restarted) is ignored, so a late message
from a dead worker cannot put a closed channel back into rotation.

Workers ``tell`` the registry about progress and ``ask`` it only when they are
about to close a channel, so that the channel has left the snapshot first.
The registry never waits on anyone.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, replace
from types import TracebackType
from typing import Any

import grpc
import pykka

from grpcpool._pool_state import PoolState
from grpcpool._status import WorkerState, WorkerStatus
from grpcpool.supervisor import SupervisedActor

__all__ = ["HealthRegistry", "WorkerGone", "WorkerReport", "send_to_registry"]

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WorkerReport:
    """A worker's new state. ``channel`` is set only when ``state == "ready"``."""

    worker_id: str
    urn: str
    state: WorkerState
    reconnect_attempt: int = 0
    last_error: str | None = None
    channel: grpc.Channel | None = None
    peer: str | None = None


@dataclass(frozen=True)
class WorkerGone:
    """A worker has stopped (or is stopping) and must leave the records."""

    worker_id: str
    urn: str


@dataclass
class _Entry:
    urn: str
    status: WorkerStatus
    channel: grpc.Channel | None


class HealthRegistry(SupervisedActor):
    """Tracks every worker of one pool and publishes the ready snapshot."""

    def __init__(self, pool: PoolState) -> None:
        super().__init__()
        self._pool = pool
        # Insertion order is worker start order; the snapshot keeps it.
        self._entries: dict[str, _Entry] = {}

    def on_start(self) -> None:
        self._pool.registry = self.actor_ref
        self._publish()

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, WorkerReport):
            self._on_report(message)
        elif isinstance(message, WorkerGone):
            self._on_gone(message)
        else:
            return super().on_receive(message)
        return None

    def on_failure(
        self,
        exception_type: type[BaseException] | None,
        exception_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        # Nobody keeps the snapshot current until a new registry starts:
        # hand out nothing rather than channels that may be closing.
        self._pool.publish((), ())

    def ready_count(self) -> int:
        """Number of workers currently ready."""
        return len(self._pool.snapshot)

    def _on_report(self, report: WorkerReport) -> None:
        entry = self._entries.get(report.worker_id)
        if entry is not None and entry.urn != report.urn and report.state != "connecting":
            # Only a worker starting afresh may replace another incarnation's
            # record; anything else from a different URN is stale.
            return
        now = time.time()
        status = WorkerStatus(
            worker_id=report.worker_id,
            state=report.state,
            since=now,
            reconnect_attempt=report.reconnect_attempt,
            last_error=report.last_error,
            peer=report.peer,
        )
        if entry is not None and entry.urn == report.urn and entry.status.state == report.state:
            status = replace(status, since=entry.status.since)
        channel = report.channel if report.state == "ready" else None
        self._entries[report.worker_id] = _Entry(report.urn, status, channel)
        self._publish()

    def _on_gone(self, message: WorkerGone) -> None:
        entry = self._entries.get(message.worker_id)
        if entry is None or entry.urn != message.urn:
            return
        del self._entries[message.worker_id]
        self._publish()

    def _publish(self) -> None:
        entries = list(self._entries.values())
        snapshot = tuple(e.channel for e in entries if e.channel is not None)
        self._pool.publish(snapshot, tuple(e.status for e in entries))

    def __repr__(self) -> str:
        return f"<HealthRegistry {self._pool.name!r} [{len(self._pool.snapshot)} ready of {len(self._entries)}]>"


# How long a worker waits for the registry to act on a synchronous report
# (dropping its channel from the snapshot before the channel is closed).
REGISTRY_TIMEOUT = 2.0


def send_to_registry(registry: pykka.ActorRef[Any], message: Any, *, sync: bool) -> None:
    """Tells the registry ``message``, or asks it (to be sure it has acted) when ``sync``.

    Never raises: a registry that is gone or failing is being restarted, and
    the new one asks every worker to report again.
    """
    try:
        if sync:
            registry.ask(message, timeout=REGISTRY_TIMEOUT)
        else:
            registry.tell(message)
    except pykka.ActorDeadError:
        pass
    except pykka.Timeout:
        _log.warning("health registry did not answer within %ss", REGISTRY_TIMEOUT)
    except Exception:
        _log.exception("health registry failed on %r", message)
