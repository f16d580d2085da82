"""TelemetryReporter: emits ``pool.status`` every ``pool.telemetry_interval``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from grpcpool import telemetry
from grpcpool.pools._entry import PoolEntry
from grpcpool.supervisor import SupervisedActor, TimerHandle, send_after

__all__ = ["TelemetryReporter"]


@dataclass(frozen=True)
class _Tick:
    pass


class TelemetryReporter(SupervisedActor):
    """Reports a pool's expected and current size on a fixed period.

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
        name, view = self._entry.name, self._entry.view
        telemetry.emit(
            telemetry.pool_status,
            name,
            {"expected_size": view.expected_size, "current_size": len(view.channels)},
            {"pool_name": name},
        )
        self._timer = send_after(self._interval, self.actor_ref, _Tick())
        return None

    def on_stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
