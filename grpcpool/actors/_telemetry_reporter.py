"""TelemetryReporter: emits ``pool.status`` every ``pool.telemetry_interval``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from grpcpool import telemetry
from grpcpool._pool_state import PoolState
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

    def __init__(self, pool: PoolState) -> None:
        super().__init__()
        self._pool = pool
        self._interval = pool.config.pool.telemetry_interval
        self._timer: TimerHandle | None = None

    def on_start(self) -> None:
        self._timer = send_after(self._interval, self.actor_ref, _Tick())

    def on_receive(self, message: Any) -> Any:
        if not isinstance(message, _Tick):
            return super().on_receive(message)
        pool = self._pool
        telemetry.emit(
            telemetry.pool_status,
            pool.name,
            {"expected_size": pool.expected_size, "current_size": len(pool.snapshot)},
            {"pool_name": pool.name},
        )
        self._timer = send_after(self._interval, self.actor_ref, _Tick())
        return None

    def on_stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
