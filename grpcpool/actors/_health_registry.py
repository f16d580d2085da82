"""HealthRegistry: the single writer of a sync pool's view.

Workers report every change of their connection to the registry; the pool's
supervisor tells it the expected size and the pool's lifecycle. The registry
runs each message through the pool's records machine
(:mod:`grpcpool.core._records`, shared with the asyncio pool), which builds
the next immutable :class:`~grpcpool.core.PoolView`; the registry publishes it
to the pool's entry with one assignment, which wakes ``await_ready`` waiters,
and then nudges the balancer. Nothing else writes the view.

Reports carry the worker's actor URN, so a late message from a dead worker
cannot put a closed channel back into rotation (the machine's rule).

Workers ``tell`` the registry about progress and ``ask`` it only when they are
about to close a channel, so that the channel has left the view first. The
registry never waits on anyone.
"""

from __future__ import annotations

import time
from types import TracebackType
from typing import Any

from grpcpool.actors._parts import PoolParts
from grpcpool.core._records import (
    ExpectedSize,
    ForgetWorkers,
    Publish,
    RecordsEffect,
    RecordsEvent,
    SetLifecycle,
    WorkersChanged,
    publish,
    records_after,
    step,
)
from grpcpool.core._reports import WorkerGone, WorkerReport
from grpcpool.supervisor import SupervisedActor

__all__ = ["ExpectedSize", "HealthRegistry", "SetLifecycle"]

_EVENTS = (WorkerReport, WorkerGone, ExpectedSize, SetLifecycle)


class HealthRegistry(SupervisedActor):
    """Tracks every worker of one pool and publishes the pool's view."""

    def __init__(self, parts: PoolParts) -> None:
        super().__init__()
        self._parts = parts
        self._entry = parts.entry
        # A registry restarted inside a running pool carries on; one that
        # starts a pool (or restarts a crashed one) starts it.
        self._records = records_after(self._entry.name, self._entry.strategy, self._entry.view)

    def on_start(self) -> None:
        self._records, effects = publish(self._records)
        self._run(effects)

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, _EVENTS):
            self._handle(message)
            return None
        return super().on_receive(message)

    def on_stop(self) -> None:
        # Nobody keeps the view current from here on: hand out nothing.
        self._handle(ForgetWorkers())

    def on_failure(
        self,
        exception_type: type[BaseException] | None,
        exception_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        # Until a new registry starts, hand out nothing rather than channels
        # that may be closing meanwhile.
        self._handle(ForgetWorkers())

    def _handle(self, event: RecordsEvent) -> None:
        self._records, effects = step(self._records, event, time.time())
        self._run(effects)

    def _run(self, effects: tuple[RecordsEffect, ...]) -> None:
        for effect in effects:
            if isinstance(effect, Publish):
                self._entry.publish(effect.view)
            elif isinstance(effect, WorkersChanged):
                self._parts.nudge()  # after the publish: the balancer looks at the new view

    def __repr__(self) -> str:
        view = self._entry.view
        return (
            f"<HealthRegistry {self._entry.name!r} {self._records.lifecycle} "
            f"[{len(view.channels)} ready of {len(self._records.workers)}]>"
        )
