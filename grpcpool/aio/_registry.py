"""Registry: an asyncio pool's worker records and the view published from them.

The sync pool has a HealthRegistry actor as the one writer of its view; an
asyncio pool runs on one thread, so its registry is a plain object the
workers call directly, and a report is published before the worker's next
line runs. The view is built by the sync pool's ``build_view``, so
``get_channel``, ``status`` and the pool channel read the same kind of
immutable picture with the same pickers.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import grpc

from grpcpool._status import WorkerState, WorkerStatus
from grpcpool.actors._telemetry_reporter import report_pool_status
from grpcpool.core import CallLedger
from grpcpool.errors import PoolNotFoundError, PoolTimeoutError
from grpcpool.pools._ready import ReadyConnection
from grpcpool.pools._view import Lifecycle, PoolView, build_view, empty_view, unready_cause
from grpcpool.strategy import Strategy

__all__ = ["Registry", "wait_event"]


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
    """Worker records -> the pool's view (loop thread only).

    Attributes:
        view: The current view; replaced whole by :meth:`publish`.
        expected: How many workers the pool is meant to have.
        lifecycle: Where the pool is in its life.
    """

    def __init__(self, name: str, strategy: Strategy, expected: int, target: str) -> None:
        self._name = name
        self._strategy = strategy
        self._target = target
        self.expected = expected
        self.lifecycle: Lifecycle = "starting"
        self.view: PoolView = empty_view(name, expected, "starting")
        self._records: dict[str, tuple[WorkerStatus, ReadyConnection | None]] = {}
        self._changed: asyncio.Event | None = None

    def report(
        self,
        worker_id: str,
        address: str | None,
        *,
        state: WorkerState,
        reconnect_attempt: int,
        last_error: str | None,
        channel: grpc.aio.Channel | None,
        suspect: Callable[[], None] | None,
        ledger: CallLedger | None = None,
        on_last_call: Callable[[], None] | None = None,
    ) -> None:
        """A worker's new state: its record is replaced and a new view published.

        ``ledger`` counts the calls on ``channel``; ``on_last_call`` closes it
        once retired and its last call has ended (see ``ReadyConnection``).
        """
        previous = self._records.get(worker_id)
        since = time.time()
        if previous is not None and (previous[0].state, previous[0].address) == (state, address):
            since = previous[0].since  # the same state (a move starts it anew)
        status = WorkerStatus(
            worker_id=worker_id,
            state=state,
            since=since,
            reconnect_attempt=reconnect_attempt,
            last_error=last_error,
            peer=(address or self._target) if channel else None,
            address=address,
        )
        connection = None
        if channel is not None:
            kept = previous[1] if previous is not None else None
            same = kept is not None and kept.channel is channel  # type: ignore[comparison-overlap]
            connection = kept if same else None
            if connection is None:
                connection = ReadyConnection(
                    channel,  # type: ignore[arg-type]
                    worker_id,
                    suspect,
                    address,
                    ledger,
                    on_last_call,
                )
        self._records[worker_id] = (status, connection)
        self.publish()

    def gone(self, worker_id: str) -> None:
        """A worker has ended: its record leaves the view."""
        if self._records.pop(worker_id, None) is not None:
            self.publish()

    def publish(self) -> None:
        """Builds the next view from the records and wakes whoever waits for a change."""
        records = list(self._records.values())
        self.view = build_view(
            self._name,
            self._strategy,
            self.view,
            connections=tuple(c for _, c in records if c is not None),
            workers=tuple(s for s, _ in records),
            expected_size=self.expected,
            lifecycle=self.lifecycle,
        )
        self.wake()

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
            PoolTimeoutError: Not within ``timeout`` seconds (saying why).
            PoolNotFoundError: The pool ended meanwhile.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while len(self.view.channels) < min_ready:
            if ended() is not None:
                raise PoolNotFoundError(self._name, ended())
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                ready = len(self.view.channels)
                detail = f"{ready} of {min_ready} required channels ready after {timeout}s"
                cause, last_error = unready_cause(self.view.workers)
                if cause is not None:
                    detail = f"{detail} ({cause})"
                raise PoolTimeoutError(self._name, detail, last_error=last_error)
            await self.wait_changed(left)

    async def report_status(self, interval: float) -> None:
        """Emits ``pool.status`` every ``interval`` seconds, as the sync reporter does."""
        while True:
            await asyncio.sleep(interval)
            report_pool_status(self._name, self.view)
