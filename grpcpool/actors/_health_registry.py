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

With ``pool.outlier_detection`` the registry also judges the pool's
connections every ``interval``: it sends itself a message on the process
timer (``send_after``), hands the machine the calls' outcomes, publishes the
view the verdict makes, sends the signals and tells a worker whose
connection was ejected twice in a row to connect afresh (``Renew``). The
timer goes with the registry; there is none with outlier detection off.
"""

from __future__ import annotations

import contextlib
import logging
import time
from types import TracebackType
from typing import Any

import pykka

from grpcpool.actors._parts import PoolParts
from grpcpool.connection._announce import announce_pool
from grpcpool.connection._machine_types import Emit, Renew
from grpcpool.core._records import (
    ExpectedSize,
    ForgetWorkers,
    Publish,
    RecordsEffect,
    RecordsEvent,
    ReplaceConnection,
    SetLifecycle,
    WorkersChanged,
    judgement,
    publish,
    records_after,
    step,
)
from grpcpool.core._reports import WorkerGone, WorkerReport
from grpcpool.supervisor import SupervisedActor, TimerHandle, send_after

__all__ = ["ExpectedSize", "HealthRegistry", "SetLifecycle"]

_EVENTS = (WorkerReport, WorkerGone, ExpectedSize, SetLifecycle)

_log = logging.getLogger(__name__)


class _JudgeDue:
    """The registry's own timer message: an interval of outlier detection has passed."""


class HealthRegistry(SupervisedActor):
    """Tracks every worker of one pool and publishes the pool's view."""

    def __init__(self, parts: PoolParts) -> None:
        super().__init__()
        self._parts = parts
        self._entry = parts.entry
        pool = parts.config.pool
        # A registry restarted inside a running pool carries on; one that
        # starts a pool (or restarts a crashed one) starts it.
        self._records = records_after(
            self._entry.name,
            self._entry.strategy,
            self._entry.view,
            outlier_detection=pool.outlier_detection,
            panic_threshold=pool.panic_threshold,
        )
        self._judge_timer: TimerHandle | None = None

    def on_start(self) -> None:
        self._records, effects = publish(self._records)
        self._run(effects)
        self._schedule_judgement()

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, _EVENTS):
            self._handle(message)
            return None
        if isinstance(message, _JudgeDue):
            self._records, effects = step(
                self._records, judgement(self._records, time.monotonic()), time.time()
            )
            self._run(effects)
            self._schedule_judgement()
            return None
        return super().on_receive(message)

    def on_stop(self) -> None:
        self._stop_judging()
        # Nobody keeps the view current from here on: hand out nothing.
        self._handle(ForgetWorkers())

    def on_failure(
        self,
        exception_type: type[BaseException] | None,
        exception_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._stop_judging()
        # Until a new registry starts, hand out nothing rather than channels
        # that may be closing meanwhile.
        self._handle(ForgetWorkers())

    def _schedule_judgement(self) -> None:
        settings = self._parts.config.pool.outlier_detection
        if settings is not None:
            self._judge_timer = send_after(settings.interval, self.actor_ref, _JudgeDue())

    def _stop_judging(self) -> None:
        if self._judge_timer is not None:
            self._judge_timer.cancel()
            self._judge_timer = None

    def _handle(self, event: RecordsEvent) -> None:
        self._records, effects = step(self._records, event, time.time())
        self._run(effects)

    def _run(self, effects: tuple[RecordsEffect, ...]) -> None:
        for effect in effects:
            if isinstance(effect, Publish):
                self._entry.publish(effect.view)
            elif isinstance(effect, WorkersChanged):
                self._parts.nudge()  # after the publish: the balancer looks at the new view
            elif isinstance(effect, Emit):
                announce_pool(effect, self._entry.name, _log)
            elif isinstance(effect, ReplaceConnection):
                worker = self._parts.workers.get(effect.worker_id)
                if worker is not None:  # one gone is nothing to tell
                    with contextlib.suppress(pykka.ActorDeadError):
                        worker.tell(Renew())

    def __repr__(self) -> str:
        view = self._entry.view
        return (
            f"<HealthRegistry {self._entry.name!r} {self._records.lifecycle} "
            f"[{len(view.channels)} ready of {len(self._records.workers)}]>"
        )
