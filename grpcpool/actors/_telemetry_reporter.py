"""TelemetryReporter: emits ``pool.status`` every ``pool.telemetry_interval``."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from grpcpool.actors._entry import PoolEntry
from grpcpool.connection._announce import announce_pool
from grpcpool.core._view import status_signal
from grpcpool.supervisor import SupervisedActor, TimerHandle, send_after

__all__ = ["TelemetryReporter"]

_log = logging.getLogger(__name__)


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
        entry = self._entry
        name = entry.name
        announce_pool(status_signal(entry.view, name, entry.capacity.queued), name, _log)
        self._timer = send_after(self._interval, self.actor_ref, _Tick())
        return None

    def on_stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
