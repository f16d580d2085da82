"""WorkerTasks: an asyncio pool's worker tasks, supervised one-for-one.

The sync pool's workers are actors under a PoolSupervisor; an asyncio pool's
are tasks, and this is their supervisor: a task that crashes (an exception
out of the worker's machine driver, a bug) is restarted with the same id and
address, and more than ``MAX_RESTARTS`` plus the number of workers crashes
within ``MAX_SECONDS`` end the pool, the intensity the sync PoolSupervisor
applies with its defaults. An outage never crashes a worker.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import logging
import time
from typing import TYPE_CHECKING

from grpcpool import telemetry
from grpcpool.connection._machine_types import Repin, Stop
from grpcpool.tasks._worker import Worker

if TYPE_CHECKING:
    from grpcpool.tasks._pool import TaskPool as Pool

__all__ = ["MAX_RESTARTS", "MAX_SECONDS", "WorkerTasks"]

_log = logging.getLogger(__name__)

MAX_RESTARTS = 3
MAX_SECONDS = 5.0


class WorkerTasks:
    """The workers of one asyncio pool and the tasks that run them (loop thread only).

    Attributes:
        workers: The current worker of each id, in start order.
        stopping: Set once the pool stops: a task ending now is not a crash.
    """

    def __init__(self, pool: Pool) -> None:
        self._pool = pool
        self.workers: dict[str, Worker] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._numbers = itertools.count(1)
        self._restarts: collections.deque[float] = collections.deque()
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
        worker_id = worker_id or f"worker-{next(self._numbers)}"
        worker = Worker(self._pool, worker_id, address)
        self.workers[worker_id] = worker
        self._tasks[worker_id] = asyncio.get_running_loop().create_task(
            self._supervise(worker), name=f"grpcpool-{self._pool.name}-{worker_id}"
        )
        if replacement:
            self.replacements.add(worker_id)
        return worker_id

    def is_current(self, worker: Worker) -> bool:
        """False for a worker that has since been replaced by a restart."""
        return self.workers.get(worker.worker_id) is worker

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

    def newest(self, count: int) -> list[str]:
        """The ids of the ``count`` newest workers (a move's replacement excepted)."""
        return [w for w in self.workers if w not in self.replacements][-count:]

    def thinnest_address(self) -> str | None:
        """The address with the fewest workers (where a new one should go), if any."""
        counts: dict[str, int] = {}
        for worker in self.workers.values():
            if worker.address is not None:
                counts[worker.address] = counts.get(worker.address, 0) + 1
        return min(counts, key=counts.__getitem__) if counts else None

    async def _supervise(self, worker: Worker) -> None:
        try:
            await worker.run()
        except asyncio.CancelledError:
            if not self.stopping:
                self._pool._abandoned()
            raise
        except Exception as error:
            self._crashed(worker, error)
            return
        if self.is_current(worker):
            del self.workers[worker.worker_id]
            self._tasks.pop(worker.worker_id, None)

    def _crashed(self, worker: Worker, error: Exception) -> None:
        """Restarts a crashed worker, or ends the pool past the restart intensity (once)."""
        if self.stopping or self._given_up:
            return
        now = time.monotonic()
        self._restarts.append(now)
        while self._restarts and self._restarts[0] < now - MAX_SECONDS:
            self._restarts.popleft()
        name = self._pool.name
        supervisor = f"pool:{name}"
        reason = f"{type(error).__name__}: {error}"
        restarts = len(self._restarts)
        if restarts > MAX_RESTARTS + len(self.workers):
            self._given_up = True
            _log.error("pool %r: %d restarts within %ss; giving up", name, restarts, MAX_SECONDS)
            telemetry.emit(
                telemetry.supervisor_shutdown,
                supervisor,
                {"restarts": restarts},
                {"supervisor": supervisor, "reason": reason},
            )
            self._pool._give_up()
            return
        _log.error("pool %r %s crashed (%s); restarting it", name, worker.worker_id, reason)
        telemetry.emit(
            telemetry.supervisor_child_restarted,
            supervisor,
            {"restarts": restarts},
            {"supervisor": supervisor, "child_id": worker.worker_id, "reason": reason},
        )
        self.add(worker.address, worker.worker_id)
