"""TelemetryReporter: emits ``pool.status`` every ``pool.telemetry_interval``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from grpcpool import telemetry
from grpcpool.pools._entry import PoolEntry
from grpcpool.pools._view import PoolView
from grpcpool.supervisor import SupervisedActor, TimerHandle, send_after

__all__ = ["TelemetryReporter", "report_pool_status"]


def report_pool_status(name: str, view: PoolView) -> None:
    """Emits ``pool.status`` for pool ``name`` from one view (sync and asyncio pools alike)."""
    status = view.status(name)
    telemetry.emit(
        telemetry.pool_status,
        name,
        {
            "expected_size": status.expected_size,
            "current_size": status.current_size,
            "in_flight": status.in_flight,
        },
        {"pool_name": name},
    )


@dataclass(frozen=True)
class _Tick:
    pass


class TelemetryReporter(SupervisedActor):
    """Reports a pool's expected and current size, and its calls in flight, on a fixed period.

    All three come from one view of the pool, so a report never mixes two
    moments. Calls in flight are counted as they start and end; a report is
    the only way that count reaches the metrics exporters, which sample it
    here rather than hearing of every call.

    The period is driven by timer messages, so the reporter's thread only
    wakes to report and can always be stopped promptly.
    """

    def __init__(self, entry: PoolEntry) -> None:
        super().__init__()
        self._entry = entry
        self._interval = entry.config.pool.telemetry_interval
        self._timer: TimerHandle | None = None

    def on_start(self) -> None:
        self._timer = send_after(self._interval, self.actor_ref, _Tick())

    def on_receive(self, message: Any) -> Any:
        if not isinstance(message, _Tick):
            return super().on_receive(message)
        report_pool_status(self._entry.name, self._entry.view)
        self._timer = send_after(self._interval, self.actor_ref, _Tick())
        return None

    def on_stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
