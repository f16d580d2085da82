"""Registry: an asyncio pool's worker records and the view published from them.

The sync pool has a HealthRegistry actor as the one writer of its view; an
asyncio pool runs on one thread, so its registry is a plain object the pool
calls directly, and a report is published before the worker's next line
runs. Both drive the same records machine (:mod:`grpcpool.core._records`), so
``get_channel``, ``status`` and the pool channel read the same immutable
picture, built by the same rules, with the same pickers; and both apply the
same readiness-wait rules (:mod:`grpcpool.core._waiting`).

With ``pool.outlier_detection`` a task of the registry's
(:meth:`Registry.start_judging`) judges the pool's connections every
``interval``, as the sync HealthRegistry does on its timer; it is cancelled
with the pool. There is no such task with outlier detection off.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

import grpc

from grpcpool._config_capacity import DEFAULT_MAX_QUEUED_CALLS
from grpcpool._config_routing import DEFAULT_PANIC_THRESHOLD, OutlierDetection
from grpcpool.connection._announce import announce_pool
from grpcpool.connection._calls import CallLedger
from grpcpool.connection._machine_types import Emit, Report
from grpcpool.core._records import (
    ExpectedSize,
    Publish,
    RecordsEvent,
    ReplaceConnection,
    SetLifecycle,
    WorkersChanged,
    judgement,
    records_after,
    step,
)
from grpcpool.core._reports import WorkerGone, WorkerReport
from grpcpool.core._sizes import check_min_ready
from grpcpool.core._view import Lifecycle, PoolView, empty_view, status_signal
from grpcpool.core._waiting import wait_failed, wait_met
from grpcpool.strategy import Strategy
from grpcpool.tasks._capacity import AioCapacity

__all__ = ["Registry", "wait_event"]

_log = logging.getLogger(__name__)


async def wait_event(event: asyncio.Event, timeout: float | None) -> None:
    """Waits until ``event`` is set or ``timeout`` seconds pass, whichever is first.

    Not ``asyncio.wait_for``: on Python 3.11 a ``wait_for`` cancelled while
    the loop shuts down (``asyncio.run`` cancelling every task) can stay
    pending for its whole timeout. ``asyncio.wait`` returns at once on
    cancellation, and the inner wait is cancelled on the way out.
    """
    if event.is_set():
        return
    waiter = asyncio.get_running_loop().create_task(event.wait())
    try:
        await asyncio.wait({waiter}, timeout=timeout)
    finally:
        waiter.cancel()


class Registry:
    """Worker records -> the pool's view (loop thread only)."""

    def __init__(
        self,
        name: str,
        strategy: Strategy,
        expected: int,
        target: str,
        *,
        outlier_detection: OutlierDetection | None = None,
        panic_threshold: float = DEFAULT_PANIC_THRESHOLD,
        max_calls_per_connection: int | None = None,
        max_queued_calls: int = DEFAULT_MAX_QUEUED_CALLS,
    ) -> None:
        self._name = name
        self._target = target
        self._records = records_after(
            name,
            strategy,
            empty_view(name, expected, "starting"),
            outlier_detection=outlier_detection,
            panic_threshold=panic_threshold,
        )
        # The current view, replaced whole by each Publish: a plain attribute,
        # since get_channel reads it on every call.
        self.view: PoolView = self._records.view
        self._changed: asyncio.Event | None = None
        self._outlier_detection = outlier_detection
        self._judging: asyncio.Task[None] | None = None
        self._renew: Callable[[str], None] | None = None
        #: The pool's caps and queue of calls waiting for a slot; told of each view.
        self.capacity = AioCapacity(
            name, max_calls_per_connection, max_queued_calls, self._current_view
        )

    def _current_view(self) -> PoolView:
        return self.view

    @property
    def expected(self) -> int:
        """How many workers the pool is meant to have."""
        return self._records.expected

    def handle(self, event: RecordsEvent) -> bool:
        """Runs ``event`` through the records; True if a worker's record changed.

        A new view is in place, and waiters are woken, before this returns.
        """
        self._records, effects = step(self._records, event, time.time())
        changed = False
        for effect in effects:
            if isinstance(effect, Publish):
                self.view = effect.view
                self.capacity.view_changed(effect.view)
                self.wake()
            elif isinstance(effect, WorkersChanged):
                changed = True
            elif isinstance(effect, Emit):
                announce_pool(effect, self._name, _log)
            elif isinstance(effect, ReplaceConnection) and self._renew is not None:
                self._renew(effect.worker_id)
        return changed

    def start_judging(self, renew: Callable[[str], None]) -> None:
        """Starts judging the connections every interval, if outlier detection is on (once).

        ``renew`` tells a worker (by id) to connect afresh.
        """
        settings = self._outlier_detection
        if settings is None or self._judging is not None:
            return
        self._renew = renew
        self._judging = asyncio.get_running_loop().create_task(
            self._judge_every(settings.interval), name="grpcpool-outliers"
        )

    def stop_judging(self) -> None:
        """Stops judging (the pool stops)."""
        judging, self._judging = self._judging, None
        if judging is not None:
            judging.cancel()

    async def _judge_every(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                self.handle(judgement(self._records, time.monotonic()))
            except Exception:  # one bad judgement must not end outlier detection
                _log.exception("outlier judgement of pool %r failed", self._name)

    def report(
        self,
        worker_id: str,
        urn: str,
        address: str | None,
        effect: Report,
        *,
        channel: grpc.aio.Channel | None,
        suspect: Callable[[], None] | None,
        ledger: CallLedger | None = None,
        on_last_call: Callable[[], None] | None = None,
    ) -> bool:
        """A worker's machine reported ``effect``; True if the worker's record changed.

        ``channel`` and the rest are set only when the worker is ready.
        ``ledger`` counts the calls on ``channel``; ``on_last_call`` closes it
        once retired and its last call has ended (see ``ReadyConnection``).
        """
        report = WorkerReport(
            worker_id=worker_id,
            urn=urn,
            state=effect.state,
            reconnect_attempt=effect.reconnect_attempt,
            last_error=effect.last_error,
            channel=channel,  # type: ignore[arg-type]  # an aio pool's channel
            peer=(address or self._target) if channel else None,
            suspect=suspect,
            address=address,
            ledger=ledger,
            on_last_call=on_last_call,
        )
        return self.handle(report)

    def gone(self, worker_id: str, urn: str) -> bool:
        """The worker's incarnation ``urn`` has ended; True if its record left the view."""
        return self.handle(WorkerGone(worker_id, urn))

    def resize(self, expected: int) -> None:
        """The pool was scaled: a view with the new expected size is published."""
        self.handle(ExpectedSize(expected))

    def set_lifecycle(self, lifecycle: Lifecycle) -> None:
        """The pool moved to another stage of its life: a view saying so is published."""
        self.handle(SetLifecycle(lifecycle))

    def wake(self) -> None:
        """Wakes every waiter of :meth:`wait_changed`."""
        changed, self._changed = self._changed, None
        if changed is not None:
            changed.set()

    async def wait_changed(self, timeout: float | None) -> None:
        """Waits for the next change of the view, up to ``timeout`` seconds."""
        if self._changed is None:
            self._changed = asyncio.Event()
        await wait_event(self._changed, timeout)

    async def wait_ready(
        self, min_ready: int, timeout: float | None, ended: Callable[[], str | None]
    ) -> None:
        """Waits until ``min_ready`` channels are ready.

        Raises:
            PoolSizeError: ``min_ready`` is over the pool's size (at once: such
                a wait could only time out).
            PoolTimeoutError: Not within ``timeout`` seconds (saying why).
            PoolNotFoundError: The pool ended meanwhile.
        """
        check_min_ready(self._name, min_ready, self.expected)
        deadline = None if timeout is None else time.monotonic() + timeout
        while not wait_met(self.view, min_ready, ended()):
            left = None if deadline is None else deadline - time.monotonic()
            if ended() is not None or (left is not None and left <= 0):
                raise wait_failed(self._name, self.view, min_ready, timeout, ended())
            await self.wait_changed(left)

    async def report_status(self, interval: float) -> None:
        """Emits ``pool.status`` every ``interval`` seconds, as the sync reporter does."""
        while True:
            await asyncio.sleep(interval)
            status = status_signal(self.view, self._name, self.capacity.queued)
            announce_pool(status, self._name, _log)
