"""WorkerTasks: an asyncio pool's worker tasks, supervised one-for-one.

The sync pool's workers are actors under a PoolSupervisor; an asyncio pool's
are tasks, and this is their supervisor: a task that crashes (an exception
out of the worker's machine driver, a bug) is restarted with the same id and
address, and more than ``MAX_RESTARTS`` plus the number of workers crashes
within ``MAX_SECONDS`` end the pool, the intensity the sync PoolSupervisor
applies with its defaults, kept by the same rules
(:mod:`grpcpool.core._intensity`). An outage never crashes a worker.

Each worker task is an incarnation with a URN of its own, which its reports
carry, as a sync worker's carry its actor's: the pool's records tell a
restarted worker's reports from its predecessor's by it. The workers report
here (:class:`~grpcpool.tasks._parts.WorkerRecords`), where the URNs are
known, and a replaced incarnation's news goes no further.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import logging
import time
from collections.abc import Callable

import grpc

from grpcpool.connection._announce import announce_as
from grpcpool.connection._calls import CallLedger
from grpcpool.connection._machine_types import Renew, Repin, Report, Stop
from grpcpool.core._intensity import RestartWindow, gave_up, pool_restart_limit, record_restart
from grpcpool.core._intensity import restarted as restarted_signal
from grpcpool.core._scaling import thinnest_address
from grpcpool.core._scaling import worker_id as worker_id_of
from grpcpool.tasks._parts import Incarnation, SupervisorLinks, WorkerLinks
from grpcpool.tasks._worker import Worker

__all__ = ["MAX_RESTARTS", "MAX_SECONDS", "WorkerTasks"]

_log = logging.getLogger(__name__)

MAX_RESTARTS = 3
MAX_SECONDS = 5.0


class WorkerTasks:
    """The workers of one asyncio pool and the tasks that run them (loop thread only).

    Args:
        pool: What it may use of its pool.

    Attributes:
        workers: The current worker of each id, in start order.
        stopping: Set once the pool stops: a task ending now is not a crash.
    """

    def __init__(self, pool: SupervisorLinks) -> None:
        self._pool = pool
        # What each worker task may use of the pool: its reports come here.
        self._links = WorkerLinks(pool.name, pool.config, self, pool.channels)
        self.workers: dict[str, Worker] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._numbers = itertools.count(1)
        self._incarnations = itertools.count(1)
        self._urns: dict[str, str] = {}
        self._restarts = RestartWindow(MAX_SECONDS)
        self.stopping = False
        self._given_up = False
        # Workers started to replace another, until the move ends: not part
        # of the pool's size, never scaled down.
        self.replacements: set[str] = set()

    def add(
        self, address: str | None, worker_id: str | None = None, *, replacement: bool = False
    ) -> str:
        """Starts a worker (a new id unless one is given: a restart); returns its id.

        ``replacement``: the worker takes another's place in a move (see
        :attr:`replacements`).
        """
        worker_id = worker_id or worker_id_of(next(self._numbers))
        worker = Worker(self._links, worker_id, address)
        self.workers[worker_id] = worker
        self._urns[worker_id] = f"{self._pool.name}/{worker_id}#{next(self._incarnations)}"
        self._tasks[worker_id] = asyncio.get_running_loop().create_task(
            self._supervise(worker), name=f"grpcpool-{self._pool.name}-{worker_id}"
        )
        if replacement:
            self.replacements.add(worker_id)
        return worker_id

    def is_current(self, worker: Incarnation) -> bool:
        """False for a worker that has since been replaced by a restart."""
        return self.workers.get(worker.worker_id) is worker

    def urn_of(self, worker: Incarnation) -> str | None:
        """The URN of ``worker``'s incarnation; None once a restart has replaced it."""
        return self._urns.get(worker.worker_id) if self.is_current(worker) else None

    async def stop(self, worker_ids: list[str] | None = None) -> None:
        """Stops the given workers (all by default) and waits until their tasks end."""
        ids = list(self.workers) if worker_ids is None else worker_ids
        ids = [worker_id for worker_id in ids if worker_id in self.workers]  # some may be gone
        tasks = [self._tasks[worker_id] for worker_id in ids if worker_id in self._tasks]
        for worker_id in ids:
            self.replacements.discard(worker_id)
            self.workers[worker_id].tell(Stop())
        await asyncio.gather(*tasks, return_exceptions=True)

    def repin(self, worker_id: str, address: str) -> None:
        """Tells a worker that serves nothing to connect to ``address`` (a no-op if it is gone)."""
        worker = self.workers.get(worker_id)
        if worker is not None:
            worker.tell(Repin(address))

    def renew(self, worker_id: str) -> None:
        """Tells a worker to let its ready connection go and connect afresh (a no-op if it is
        gone, or not ready)."""
        worker = self.workers.get(worker_id)
        if worker is not None:
            worker.tell(Renew())

    def own(self) -> list[str]:
        """The ids of the pool's own workers, in start order (a move's replacement excepted)."""
        return [w for w in self.workers if w not in self.replacements]

    def thinnest_address(self) -> str | None:
        """The address with the fewest workers (where a new one should go), if any."""
        return thinnest_address(worker.address for worker in self.workers.values())

    # --- what workers tell the pool (WorkerRecords) ---------------------------------------

    def report(
        self,
        worker: Incarnation,
        effect: Report,
        *,
        channel: grpc.aio.Channel | None,
        suspect: Callable[[], None] | None,
        ledger: CallLedger | None,
    ) -> None:
        """Passes a current worker's report to the pool's records (see ``WorkerRecords``)."""
        urn = self.urn_of(worker)  # None: a worker already replaced by a restart
        if urn is None:
            return
        channels = self._pool.channels
        last_call = (
            None if channel is None else functools.partial(channels.last_call_ended, channel)
        )
        if self._pool.registry.report(
            worker.worker_id,
            urn,
            worker.address,
            effect,
            channel=channel,
            suspect=suspect,
            ledger=ledger,
            on_last_call=last_call,
        ):
            self._pool.changed()

    def gone(self, worker: Incarnation) -> None:
        """A current worker's task has ended: its record leaves the pool's records."""
        urn = self.urn_of(worker)
        if urn is not None and self._pool.registry.gone(worker.worker_id, urn):
            self._pool.changed()

    async def _supervise(self, worker: Worker) -> None:
        try:
            await worker.run()
        except asyncio.CancelledError:
            if not self.stopping:
                self._pool.abandoned()
            raise
        except Exception as error:
            self._crashed(worker, error)
            return
        if self.is_current(worker):
            del self.workers[worker.worker_id]
            self._tasks.pop(worker.worker_id, None)
            self._urns.pop(worker.worker_id, None)

    def _crashed(self, worker: Worker, error: Exception) -> None:
        """Restarts a crashed worker, or ends the pool past the restart intensity (once)."""
        if self.stopping or self._given_up:
            return
        limit = pool_restart_limit(MAX_RESTARTS, len(self.workers))
        self._restarts, verdict = record_restart(self._restarts, time.monotonic(), limit)
        name = self._pool.name
        supervisor = f"pool:{name}"
        reason = f"{type(error).__name__}: {error}"
        restarts = verdict.restarts
        if verdict.give_up:
            self._given_up = True
            _log.error("pool %r: %d restarts within %ss; giving up", name, restarts, MAX_SECONDS)
            announce_as(gave_up(supervisor, reason, restarts), supervisor)
            self._pool.give_up()
            return
        _log.error("pool %r %s crashed (%s); restarting it", name, worker.worker_id, reason)
        signal = restarted_signal(supervisor, worker.worker_id, reason, restarts)
        announce_as(signal, supervisor)
        self.add(worker.address, worker.worker_id)
