"""Planner: which connection of a pool to replace next, and where it should go.

Both pool drivers ask it: the sync pool's Balancer actor and the asyncio
pool's balancing task. It remembers only what a decision needs between two
looks at the pool (addresses to avoid for a while, each connection's
refresh time), takes the clock as arguments, and runs no I/O, so it is
tested without servers. Where an even spread needs a move it is
:func:`grpcpool.pools._spread.next_move`'s; otherwise a connection past its
``max_age`` is replaced where it is.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

from grpcpool._status import WorkerStatus
from grpcpool.pools._spread import Placement, next_move

__all__ = ["Candidate", "Planner"]


@dataclass(frozen=True)
class Candidate:
    """A replacement decided on: ``worker_id`` makes way for a worker on ``address``.

    Attributes:
        worker_id: The worker to replace.
        address: Where its replacement connects.
        reason: ``"rebalance"`` or ``"max_age"``.
        age: How long the replaced worker has been ready (seconds; 0 if it is not).
    """

    worker_id: str
    address: str
    reason: str
    age: float


class Planner:
    """Decides one replacement at a time for one pool.

    Args:
        max_age: ``connection.max_age`` (None: connections are not refreshed by age).
        avoid_for: How long an address that failed to take a connection is
            left out of the spread (seconds).
        rng: Draws each connection's refresh jitter (seed it in tests).
    """

    def __init__(
        self, max_age: float | None, avoid_for: float, rng: random.Random | None = None
    ) -> None:
        self._max_age = max_age
        self._avoid_for = avoid_for
        self._rng = rng or random.Random()
        self._avoid: dict[str, float] = {}  # address -> until (monotonic)
        self._due: dict[tuple[str, float], float] = {}  # (worker, ready since) -> refresh at

    def avoid(self, address: str, now: float) -> None:
        """Leaves ``address`` out of the spread for a while (a replacement there failed)."""
        self._avoid[address] = now + self._avoid_for

    def next(
        self,
        workers: Sequence[WorkerStatus],
        addresses: Sequence[str],
        *,
        now: float,
        wall: float,
    ) -> Candidate | None:
        """The next replacement, or None when the pool is as it should be.

        Args:
            workers: The pool's worker records (its view).
            addresses: The resolver's last good answer.
            now: ``time.monotonic()``.
            wall: ``time.time()`` (worker records carry wall-clock times).
        """
        self._avoid = {a: until for a, until in self._avoid.items() if until > now}
        placements = [Placement(w.worker_id, w.address, w.state) for w in workers]
        # An address whose connections all fail while others' work is dropped
        # from the answer (its connections move); an avoided one only gets no
        # new connection (those it has stay).
        answer = [a for a in addresses if not self._failing(a, placements, now)]
        move = next_move(placements, answer, self._rng, avoid=tuple(self._avoid))
        if move is not None:
            age = next(
                (
                    max(0.0, wall - w.since)
                    for w in workers
                    if w.worker_id == move.worker_id and w.state == "ready"
                ),
                0.0,
            )
            return Candidate(move.worker_id, move.address, move.reason, age)
        return self._aged(workers, wall)

    def next_refresh(self) -> float | None:
        """When (wall clock) the next connection falls due by age, if any is known."""
        return min(self._due.values()) if self._due else None

    def _failing(self, address: str, placements: list[Placement], now: float) -> bool:
        """True if no worker at ``address`` connects while workers elsewhere do: avoid it."""
        here = [p for p in placements if p.address == address]
        if not here or any(p.state != "backoff" for p in here):
            return False
        if any(p.state == "ready" and p.address != address for p in placements):
            self.avoid(address, now)
            return True
        return False

    def _aged(self, workers: Sequence[WorkerStatus], wall: float) -> Candidate | None:
        """The ready worker longest past its refresh time, if any (``connection.max_age``)."""
        max_age = self._max_age
        if max_age is None:
            return None
        due_now: tuple[float, str, str, float] | None = None
        live: dict[tuple[str, float], float] = {}
        for worker in workers:
            if worker.state != "ready" or worker.address is None:
                continue
            key = (worker.worker_id, worker.since)
            due = self._due.get(key)
            if due is None:
                due = worker.since + max_age * self._rng.uniform(0.9, 1.1)
            live[key] = due
            if due <= wall and (due_now is None or due < due_now[0]):
                due_now = (due, worker.worker_id, worker.address, wall - worker.since)
        self._due = live
        if due_now is None:
            return None
        _, worker_id, address, age = due_now
        return Candidate(worker_id, address, "max_age", age)
