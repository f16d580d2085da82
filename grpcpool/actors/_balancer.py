"""Balancer: spreads a pool's connections over its host's addresses and refreshes them by age.

grpcio gives every channel to ``host:port`` the addresses its resolver
returns and, with its default ``pick_first``, connects to the first that
works: all N connections of a pool land on one backend, and a backend added
later gets nothing until a connection fails. The Balancer resolves the host
itself (``endpoint.resolver``; the system's ``getaddrinfo`` by default) and
pins each worker to one address, evenly. It asks again every
``endpoint.resolve_interval`` and whenever a connection cannot reconnect.

A worker that serves nothing (connecting, or waiting to reconnect) is
*repinned*: told to connect to another address at once, so connections on a
dead backend move to live ones in one step. A ready worker is *moved*, one at
a time per pool: the PoolSupervisor starts a replacement pinned to the target
address; once its connection is ready (and health-checked), the replaced
worker is retired and its channel drains for ``connection.drain_timeout``. So
a move never lowers the pool's capacity, and a replacement that cannot
connect in time is given up (and its address avoided for a while) without
touching the old one. The same step replaces each connection after
``connection.max_age`` (plus or minus 10%).

What to do is decided by :class:`grpcpool.core._planner.Planner` (pure);
this actor runs resolutions on short-lived threads (a resolver may block; an
actor must not) and abandons one that outlasts ``endpoint.resolve_timeout``,
hears from the HealthRegistry when a worker's state changes, and asks its
PoolSupervisor to repin, add and retire workers, without waiting on it.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any

import pykka

from grpcpool import telemetry
from grpcpool._resolving import resolve, timed_out
from grpcpool.actors._entry import PoolEntry
from grpcpool.actors._parts import PoolParts
from grpcpool.connection._announce import announce_pool
from grpcpool.connection._machine_types import Repin
from grpcpool.core._planner import Candidate, Planner
from grpcpool.core._resolution import Answers
from grpcpool.supervisor import SupervisedActor, TimerHandle, send_after

if TYPE_CHECKING:
    from grpcpool.actors._pool_supervisor import PoolSupervisorProxy

__all__ = ["Balancer", "Rebalance", "WorkersChanged"]

_log = logging.getLogger(__name__)

# The longest pause between two looks at connection ages (with max_age).
AGE_POLL = 1.0
# How long a retired worker is left out of plans while it leaves the view.
LEAVE_WAIT = 5.0
# The id a move's replacement goes by until the PoolSupervisor names it.
_UNNAMED = "(starting)"


@dataclass(frozen=True)
class _Resolve:
    reason: str  # "interval", "retry"


@dataclass(frozen=True)
class _Resolved:
    number: int
    addresses: tuple[str, ...] | None
    error: str | None
    duration: float


@dataclass(frozen=True)
class _ResolveTimeout:
    number: int


@dataclass(frozen=True)
class _Tick:
    """Time to look at the pool again; only the latest scheduled tick counts."""

    number: int


@dataclass(frozen=True)
class Rebalance:
    """The pool's workers changed (scaled, or one terminated by hand): look at the spread."""


@dataclass(frozen=True)
class WorkersChanged:
    """A worker of the pool changed state (from the HealthRegistry): look again."""


@dataclass
class _Move:
    """A replacement under way: ``replaced`` leaves once ``added`` is ready."""

    replaced: str
    address: str
    reason: str
    age: float
    deadline: float
    started: pykka.Future[Any]
    added: str | None = None


class Balancer(SupervisedActor):
    """Keeps one pool's workers spread over its live addresses and refreshed by age.

    Args:
        entry: The pool's entry (its config and current view).
        owner: The pool's PoolSupervisor (its typed proxy), which adds
            and retires workers; the Balancer never waits on it.
        parts: The pool incarnation's shared pieces: the workers' actors (to
            repin them) and the nudge the HealthRegistry rings when a
            worker's state changes.
        addresses: The answer the pool started with, if it had one.
        took: How long that answer took (seconds), for its ``pool.resolved``.
    """

    def __init__(
        self,
        entry: PoolEntry,
        owner: PoolSupervisorProxy,
        parts: PoolParts,
        addresses: tuple[str, ...] | None,
        took: float = 0.0,
    ) -> None:
        super().__init__()
        self._parts = parts
        self._nudge = parts.nudge
        self._took = took
        config = entry.config
        self._entry = entry
        self._owner = owner
        self._interval = config.endpoint.resolve_interval
        self._answers = Answers(config.endpoint.target, self._interval)
        self._start_answer = addresses
        self._max_age = config.connection.max_age
        connection = config.connection
        # A replacement must be ready (and health-checked) within this.
        self._move_limit = connection.connect_timeout + connection.ping_timeout + 1.0
        self._planner = Planner(self._max_age, connection.backoff_min, connection.backoff_max)
        self._move: _Move | None = None
        # Workers retired by this balancer, until they have left the view:
        # plans must not count them.
        self._leaving: dict[str, float] = {}
        self._resolutions = 0  # the number of the latest resolution started
        self._resolving = False
        self._timers: set[TimerHandle] = set()
        self._tick: TimerHandle | None = None
        self._ticks = 0  # the number of the latest tick scheduled

    # --- actor hooks ----------------------------------------------------------------

    def on_start(self) -> None:
        me = self.actor_ref
        self._nudge.attach(lambda: me.tell(WorkersChanged()))

        if self._start_answer:
            # The answer the pool started with, reported like any other.
            self._take(self._start_answer, None, self._took)
        if not self._answers.addresses:
            self._start_resolution()
        elif self._interval is not None:
            self._later(self._interval, _Resolve("interval"))
        self._plan()

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, WorkersChanged):
            self._nudge.taken()
            self._plan()
        elif isinstance(message, _Resolve):
            self._on_resolve(message)
        elif isinstance(message, _Resolved):
            self._on_resolved(message)
        elif isinstance(message, _ResolveTimeout):
            self._on_resolve_timeout(message)
        elif isinstance(message, _Tick):
            if message.number == self._ticks:  # an older tick, replaced meanwhile, is dropped
                self._tick = None
                self._plan()
        elif isinstance(message, Rebalance):
            self._plan()
        else:
            return super().on_receive(message)
        return None

    def on_stop(self) -> None:
        self._let_go()

    def on_failure(
        self,
        exception_type: type[BaseException] | None,
        exception_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        # pykka calls on_failure, not on_stop, for a crash: the receiver and
        # the timers must not outlive this incarnation either.
        self._let_go()
        super().on_failure(exception_type, exception_value, traceback)

    def _let_go(self) -> None:
        self._nudge.attach(None)
        for timer in self._timers:
            timer.cancel()
        if self._tick is not None:
            self._tick.cancel()

    def __repr__(self) -> str:
        moving = f" moving {self._move.replaced}" if self._move else ""
        return f"<Balancer {self._entry.name!r} {len(self._answers.addresses)} addresses{moving}>"

    # --- resolution -------------------------------------------------------------------

    def _on_resolve(self, message: _Resolve) -> None:
        self._start_resolution()

    def _start_resolution(self) -> None:
        if self._resolving:
            return
        self._resolving = True
        self._resolutions += 1
        number, me, config = self._resolutions, self.actor_ref, self._entry.config

        def run() -> None:
            addresses, error, duration = resolve(config)
            with contextlib.suppress(pykka.ActorDeadError):
                me.tell(_Resolved(number, addresses, error, duration))

        threading.Thread(target=run, name="grpcpool-resolve", daemon=True).start()
        self._later(config.endpoint.resolve_timeout, _ResolveTimeout(number))

    def _on_resolve_timeout(self, message: _ResolveTimeout) -> None:
        if message.number != self._resolutions or not self._resolving:
            return  # answered in time
        # Abandoned: its thread finishes on its own and its answer is dropped.
        config = self._entry.config
        self._finish_resolution(None, timed_out(config), config.endpoint.resolve_timeout)

    def _on_resolved(self, message: _Resolved) -> None:
        if message.number != self._resolutions or not self._resolving:
            return  # a resolution abandoned for taking too long
        self._finish_resolution(message.addresses, message.error, message.duration)

    def _take(self, addresses: tuple[str, ...] | None, error: str | None, took: float) -> bool:
        changed, effects = self._answers.take(addresses, error, took)
        for effect in effects:
            announce_pool(effect, self._entry.name, _log)
        return changed

    def _finish_resolution(
        self, addresses: tuple[str, ...] | None, error: str | None, duration: float
    ) -> None:
        self._resolving = False
        changed = self._take(addresses, error, duration)
        self._entry.resolver_error = self._answers.problem
        delay = self._answers.retry_delay()
        if delay is not None:
            self._later(delay, _Resolve("retry" if self._answers.problem else "interval"))
        if changed:
            self._plan()

    # --- moves --------------------------------------------------------------------------

    def _plan(self) -> None:
        """Advances the move under way, makes the repins and moves due; sets the next look."""
        if self._move is not None:
            self._advance(self._move)
        now = time.monotonic()
        workers = self._entry.view.workers
        present = {w.worker_id for w in workers}
        self._leaving = {
            worker_id: until
            for worker_id, until in self._leaving.items()
            if until > now and worker_id in present
        }
        move = self._move
        moving = {move.replaced: move.added or _UNNAMED} if move is not None else None
        plan = self._planner.plan(
            workers,
            self._answers.addresses,
            now=now,
            wall=time.time(),
            moving=moving,
            leaving=self._leaving,
        )
        # The PoolSupervisor stops this actor before itself; until then a
        # call to it can only fail if it is already gone (the pool is ending).
        with contextlib.suppress(pykka.ActorDeadError):
            for repin in plan.repins:
                self._repin(repin.worker_id, repin.address)
            if plan.move is not None and self._move is None:
                self._begin(plan.move)
        if plan.reconnecting and self._answers.failure_resolve_due(now):
            self._start_resolution()  # a connection cannot reconnect: is the answer stale?
        self._schedule_tick(plan.wake_in)

    def _repin(self, worker_id: str, address: str) -> None:
        """Tells a worker that serves nothing to connect to ``address``, straight.

        A worker that became ready meanwhile ignores it; one already gone is
        nothing to tell.
        """
        worker = self._parts.workers.get(worker_id)
        if worker is not None:
            with contextlib.suppress(pykka.ActorDeadError):
                worker.tell(Repin(address))

    def _begin(self, move: Candidate) -> None:
        started = self._owner.add_pinned_worker(move.address)
        self._move = _Move(
            move.worker_id,
            move.address,
            move.reason,
            move.age,
            time.monotonic() + self._move_limit,
            started,
        )

    def _advance(self, move: _Move) -> None:
        if move.added is None:
            try:
                move.added = move.started.get(timeout=0)
            except pykka.Timeout:
                return self._give_up_if_late(move)
            except Exception as error:  # the supervisor could not start it
                _log.warning("pool %r: could not start a replacement: %s", self._entry.name, error)
                self._planner.avoid(move.address, time.monotonic())
                self._move = None
                return None
        if self._state_of(move.added) == "ready":
            self._retire(move.replaced, move.added)
            self._planner.moved(move.address)
            telemetry.emit(
                telemetry.channel_refreshed,
                self._entry.name,
                {"age": move.age},
                {
                    "pool_name": self._entry.name,
                    "worker_id": move.replaced,
                    "address": move.address,
                    "reason": move.reason,
                },
            )
            self._move = None
            return None
        return self._give_up_if_late(move)

    def _give_up_if_late(self, move: _Move) -> None:
        failed = move.added is not None and self._state_of(move.added) == "backoff"
        if not failed and time.monotonic() < move.deadline:
            return
        _log.warning(
            "pool %r: a replacement on %s %s; keeping %s",
            self._entry.name,
            move.address,
            "failed to connect" if failed else f"was not ready within {self._move_limit:.1f}s",
            move.replaced,
        )
        if move.added is not None:
            self._retire(move.added)
        else:
            # Not even started yet: whenever it starts, it is dropped.
            with contextlib.suppress(pykka.ActorDeadError):
                self._owner.drop_replacements()
        self._planner.avoid(move.address, time.monotonic())
        self._move = None

    def _state_of(self, worker_id: str) -> str | None:
        for worker in self._entry.view.workers:
            if worker.worker_id == worker_id:
                return worker.state
        return None

    def _retire(self, worker_id: str, replacement: str | None = None) -> None:
        # Not waited for: the supervisor drains the worker's channel, and a
        # worker already gone (scaled down meanwhile) is nothing to retire.
        self._leaving[worker_id] = time.monotonic() + LEAVE_WAIT
        with contextlib.suppress(pykka.ActorDeadError):
            self._owner.retire_worker(worker_id, replacement)

    # --- timers -------------------------------------------------------------------------

    def _later(self, delay: float, message: Any) -> None:
        self._timers = {timer for timer in self._timers if not timer.done}
        self._timers.add(send_after(delay, self.actor_ref, message))

    def _schedule_tick(self, wake_in: float | None) -> None:
        """The next look: the plan's wake time, a move's deadline, or the next age check."""
        if self._tick is not None and not self._tick.done:
            self._tick.cancel()
            self._tick = None
        delays = [] if wake_in is None else [wake_in]
        if self._move is not None:
            delays.append(self._move.deadline - time.monotonic())
        if self._max_age is not None:
            delays.append(AGE_POLL)
        if not delays:
            return
        self._ticks += 1
        self._tick = send_after(max(0.0, min(delays)), self.actor_ref, _Tick(self._ticks))

