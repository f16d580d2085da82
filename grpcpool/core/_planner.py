"""Planner: where a pool's connections should be, and which ones to move next.

Both pool drivers ask it: the sync pool's Balancer actor and the asyncio
pool's balancing task. It remembers only what a decision needs between two
looks at the pool (which addresses failed and when to try them again, each
connection's refresh time), takes the clock as arguments, and runs no I/O,
so it is tested without servers.

A plan has two kinds of moves:

* A *repin* moves a worker that serves nothing (connecting, or waiting to
  reconnect) to another address at once: nothing is lost by it, so any
  number happen together. A pool whose connections sit on a dead backend
  moves them to the live ones in one step.
* A *move* replaces a ready worker, make-before-break: a replacement starts
  on the new address and the old worker leaves once it is ready. One at a
  time per pool; an uneven spread, an address that left the resolver's
  answer, or ``connection.max_age`` ask for one.

Where an even spread needs a worker is
:func:`grpcpool.core._spread.next_move`'s decision. What this module adds is
each address's health, judged from the workers pinned there: an address
whose workers all fail (backing off, failed before, or connecting for longer
than ``SLOW_CONNECT``) is *down*: its workers move elsewhere and it gets none
until a retry time, which backs off from ``connection.backoff_min`` to
``ADDRESS_RETRY_MAX``; then it may take connections again, and a worker that
is ready there clears it. A replacement that failed on an address makes it
*avoided* in the same way, but only as a destination: the connections it has
stay.
"""

from __future__ import annotations

import random
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field

from grpcpool._config_timings import ADDRESS_RETRY_MAX, SLOW_CONNECT
from grpcpool._status import WorkerStatus
from grpcpool.backoff import Backoff
from grpcpool.core._spread import Placement, next_move

__all__ = ["Candidate", "Plan", "Planner", "Repin", "is_failing"]


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


@dataclass(frozen=True)
class Repin:
    """Move ``worker_id``, which serves nothing, to ``address`` at once."""

    worker_id: str
    address: str


@dataclass(frozen=True)
class Plan:
    """What to do now, and when to look again.

    Attributes:
        repins: Workers to move at once (none of them is ready).
        move: The next make-before-break replacement, if one may start now.
        wake_in: Seconds until the plan may change by time alone (an address
            may be tried again, a connect turns slow, a connection falls due
            by age, this last only when the plan has no repin or move and
            none is under way: those bring news); None when only news can
            change it.
        reconnecting: A placed worker waits to reconnect: the resolver's
            answer may be stale, so the pool should ask again (its driver
            limits how often).
    """

    repins: tuple[Repin, ...] = ()
    move: Candidate | None = None
    wake_in: float | None = None
    reconnecting: bool = False


def is_failing(worker: WorkerStatus, wall: float) -> bool:
    """True for a worker that is not ready and has shown it cannot connect where it is.

    It waits to reconnect, has failed before, or has been connecting for
    longer than ``SLOW_CONNECT``.
    """
    if worker.state == "backoff":
        return True
    if worker.state != "connecting":
        return False
    return worker.reconnect_attempt > 0 or wall - worker.since > SLOW_CONNECT


def _failed_at(worker: WorkerStatus, wall: float) -> float:
    """When (wall clock) a failing worker last showed it, as far as its record tells.

    Entering backoff is a failure, and so is a connect running past
    ``SLOW_CONNECT``; a retry that is still connecting has failed before,
    at a time the record no longer holds (0: old news).
    """
    if worker.state != "connecting":
        return worker.since
    if wall - worker.since > SLOW_CONNECT:
        return worker.since + SLOW_CONNECT
    return 0.0


@dataclass
class _Trouble:
    """An address that failed: no new connection goes there before ``until`` (monotonic)."""

    backoff: Backoff
    until: float
    seen: float = field(default=0.0)  # the wall time of the failure it answers


class Planner:
    """Decides the moves of one pool.

    Args:
        max_age: ``connection.max_age`` (None: connections are not refreshed by age).
        retry_min: The first wait before a failed address is tried again
            (``connection.backoff_min``).
        retry_max: The longest such wait (``connection.backoff_max``, at most
            ``ADDRESS_RETRY_MAX``).
        rng: Draws the refresh and retry jitter (seed it in tests).
    """

    def __init__(
        self,
        max_age: float | None,
        retry_min: float,
        retry_max: float | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self._max_age = max_age
        self._rng = rng or random.Random()
        top = ADDRESS_RETRY_MAX if retry_max is None else min(retry_max, ADDRESS_RETRY_MAX)
        self._backoff = Backoff(retry_min, max(retry_min, top), rng=self._rng)
        self._down: dict[str, _Trouble] = {}  # address -> its workers all failed
        self._avoid: dict[str, _Trouble] = {}  # address -> a replacement there failed
        self._due: dict[tuple[str, float], float] = {}  # (worker, ready since) -> refresh at

    # --- what the driver tells -----------------------------------------------------------

    def avoid(self, address: str, now: float) -> None:
        """A replacement on ``address`` failed: send it no new connection for a while."""
        self._avoid[address] = self._trouble(self._avoid.get(address), now, ready=True)

    def moved(self, address: str) -> None:
        """A replacement on ``address`` became ready: it is a destination like any other."""
        self._avoid.pop(address, None)

    # --- planning ------------------------------------------------------------------------

    def plan(
        self,
        workers: Sequence[WorkerStatus],
        addresses: Sequence[str],
        *,
        now: float,
        wall: float,
        moving: Mapping[str, str] | None = None,
        leaving: Collection[str] = (),
    ) -> Plan:
        """What to do about the pool now.

        Args:
            workers: The pool's worker records (its view).
            addresses: The resolver's last good answer.
            now: ``time.monotonic()``.
            wall: ``time.time()`` (worker records carry wall-clock times).
            moving: The move under way, as replaced worker id -> its
                replacement's id; no new move starts while there is one.
            leaving: Workers retired but maybe still in the view: not counted.

        Returns:
            The :class:`Plan`.
        """
        moving = moving or {}
        counted = [w for w in workers if w.worker_id not in leaving and w.state != "stopped"]
        replacements = set(moving.values())
        members = [w for w in counted if w.worker_id not in replacements]
        any_ready = any(w.state == "ready" for w in counted)
        self._judge(members, addresses, now, wall, any_ready)
        self._avoid = {a: t for a, t in self._avoid.items() if t.until > now}
        troubles = (*self._down.values(), *self._avoid.values())
        wake = [t.until - now for t in troubles if t.until > now]
        wake += [
            w.since + SLOW_CONNECT - wall
            for w in members
            if w.state == "connecting" and not is_failing(w, wall)
        ]
        reconnecting = any(w.state == "backoff" and w.address is not None for w in members)
        if not addresses:
            return Plan(wake_in=_soonest(wake), reconnecting=reconnecting)
        usable = [a for a in addresses if self.retry_at(a, now) is None]
        # In the picture the spread sees, a move under way is done: its
        # replacement stands where it goes and the replaced worker is gone.
        placements = [
            Placement(w.worker_id, w.address, w.state)
            for w in counted
            if w.worker_id not in moving
        ]
        by_id = {w.worker_id: w for w in counted}
        repins: list[Repin] = []
        move: Candidate | None = None
        # With nothing ready, a failed replacement is no reason to keep
        # workers that serve nothing away from an address: trying costs
        # nothing, and the address may have healed since.
        avoid = set(self._avoid) if any_ready else set()
        # A first connect under way where it may go is left to finish: moving
        # it would only start it again elsewhere (it moves once it fails).
        fixed = set(replacements) | {
            w.worker_id
            for w in counted
            if w.state == "connecting" and w.address in usable and not is_failing(w, wall)
        }
        for _ in range(len(placements)):
            step = next_move(placements, usable, self._rng, avoid=avoid, fixed=fixed)
            if step is None:
                break
            mover = by_id[step.worker_id]
            if mover.state != "ready":
                repins.append(Repin(mover.worker_id, step.address))
                fixed.add(mover.worker_id)
                if step.address in self._down and any_ready:
                    # Failed before and due again: one worker tries it first
                    # (with nothing ready, all of them may: nothing is lost).
                    avoid.add(step.address)
                placements = [
                    Placement(p.worker_id, step.address, "connecting")
                    if p.worker_id == mover.worker_id
                    else p
                    for p in placements
                ]
                continue
            if not moving:
                move = Candidate(mover.worker_id, step.address, step.reason, _age(mover, wall))
            break
        if move is None and not moving and not repins:
            move = self._aged(members, wall)
            due = self.next_refresh()
            if move is None and due is not None:
                # Only when no move is due or under way: until a move ends,
                # its news or its deadline brings the next look.
                wake.append(due - wall)
        return Plan(tuple(repins), move, _soonest(wake), reconnecting)

    def next_refresh(self) -> float | None:
        """When (wall clock) the next connection falls due by age, if any is known."""
        return min(self._due.values()) if self._due else None

    # --- address health ------------------------------------------------------------------

    def _judge(
        self,
        workers: Sequence[WorkerStatus],
        addresses: Sequence[str],
        now: float,
        wall: float,
        any_ready: bool,
    ) -> None:
        """Marks addresses down or up from the workers pinned there."""
        here: dict[str, list[WorkerStatus]] = {}
        for worker in workers:
            if worker.address is not None:
                here.setdefault(worker.address, []).append(worker)
        for address, pinned in here.items():
            if any(w.state == "ready" for w in pinned):
                self._down.pop(address, None)
                continue
            if not all(is_failing(w, wall) for w in pinned):
                continue
            seen = max(_failed_at(w, wall) for w in pinned)
            trouble = self._down.get(address)
            if trouble is None or (trouble.until <= now and seen > trouble.seen):
                # Down, or failed again since it was last tried.
                self._down[address] = self._trouble(trouble, now, ready=any_ready, seen=seen)
        # A down address keeps its record (and its backoff) until a worker is
        # ready there or it leaves the answer; once its time is up it may
        # take connections again, and failing again backs it off further.
        known = set(addresses)
        self._down = {a: t for a, t in self._down.items() if a in known}
        if not any_ready:
            # Nothing is lost by trying while nothing works: try soon.
            soon = now + self._backoff.minimum / 2
            for trouble in self._down.values():
                trouble.until = min(trouble.until, soon)

    def _trouble(
        self, before: _Trouble | None, now: float, *, ready: bool, seen: float = 0.0
    ) -> _Trouble:
        backoff = before.backoff if before is not None else self._backoff
        delay, backoff = backoff.fail()
        if not ready:
            delay = min(delay, self._backoff.minimum / 2)
        return _Trouble(backoff, now + delay, seen)

    def retry_at(self, address: str, now: float) -> float | None:
        """When (monotonic) a down address may take connections again; None if it may now."""
        trouble = self._down.get(address)
        return None if trouble is None or trouble.until <= now else trouble.until

    # --- refresh by age --------------------------------------------------------------------

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


def _age(worker: WorkerStatus, wall: float) -> float:
    return max(0.0, wall - worker.since) if worker.state == "ready" else 0.0


def _soonest(delays: list[float]) -> float | None:
    return max(0.0, min(delays)) if delays else None
