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

Every rule is :mod:`grpcpool.core._balancing`'s (pure, shared with the
asyncio pool); this actor is its driver. It turns what it hears into the
rules' events (a worker's state changed, from the HealthRegistry's nudge;
the workers changed, from the PoolSupervisor; a resolution's answer; its one
timer) and carries out their effects: resolutions run on short-lived threads
(a resolver may block; an actor must not), a push resolver's watch tells the
actor each set it pushes (from the resolver's thread), workers are told to repin
straight, and moves go through the PoolSupervisor (:class:`MoveOwner`),
never waited on.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import pykka

from grpcpool._resolving import Pushed, resolve, watch
from grpcpool._status import WorkerStatus
from grpcpool.actors._entry import PoolEntry
from grpcpool.actors._parts import MoveOwner, PoolParts
from grpcpool.connection._announce import announce_pool
from grpcpool.connection._machine_types import Emit, Log, Repin
from grpcpool.core import _balancing_types as rules
from grpcpool.core._balancing import step
from grpcpool.resolver import WatchHandle
from grpcpool.supervisor import SupervisedActor, TimerHandle, send_after

__all__ = ["Balancer", "Rebalance", "WorkersChanged"]

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Tick:
    """The rules' wake-up; only the latest scheduled tick counts."""

    number: int


@dataclass(frozen=True)
class Rebalance:
    """The pool's workers changed (scaled, or one terminated by hand): look at the spread."""


@dataclass(frozen=True)
class WorkersChanged:
    """A worker of the pool changed state (from the HealthRegistry): look again."""


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
        owner: MoveOwner,
        parts: PoolParts,
        addresses: tuple[str, ...] | None,
        took: float = 0.0,
    ) -> None:
        super().__init__()
        self._entry = entry
        self._owner = owner
        self._parts = parts
        self._addresses = addresses
        self._took = took
        self._state = rules.new_state(rules.BalancerSettings.of(entry.config))
        # The replacement being started: its move's number and the future of its id.
        self._starting: tuple[int, pykka.Future[str]] | None = None
        self._tick: TimerHandle | None = None
        self._ticks = 0  # the number of the latest tick scheduled
        self._watch: WatchHandle | None = None  # a push resolver's current watch
        self._watch_number = 0

    # --- actor hooks ----------------------------------------------------------------

    def on_start(self) -> None:
        me = self.actor_ref
        self._parts.nudge.attach(lambda: me.tell(WorkersChanged()))
        self._step(rules.Started(self._addresses, self._took, self._workers()))

    def on_receive(self, message: Any) -> Any:
        event: rules.Event
        if isinstance(message, WorkersChanged | Rebalance):
            if isinstance(message, WorkersChanged):
                self._parts.nudge.taken()
            event = rules.WorkersChanged(self._workers())
        elif isinstance(message, _Tick):
            if message.number != self._ticks:
                return None  # an older tick, replaced meanwhile
            self._tick = None
            event = rules.TimerDue(self._workers())
        elif isinstance(
            message, rules.ResolutionDone | rules.ReplacedGone | rules.Pushed | rules.WatchFailed
        ):
            event = message  # from a resolution's or a watch's thread; from the PoolSupervisor
            if isinstance(message, rules.WatchFailed) and message.watch == self._watch_number:
                self._close_watch()
        else:
            return super().on_receive(message)
        self._hear_starting()
        self._step(event)
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
        # the timer must not outlive this incarnation either.
        self._let_go()
        super().on_failure(exception_type, exception_value, traceback)

    def _let_go(self) -> None:
        self._parts.nudge.attach(None)
        if self._tick is not None:
            self._tick.cancel()
        self._close_watch()

    def _close_watch(self) -> None:
        handle, self._watch = self._watch, None
        self._entry.resolver_watch = None
        if handle is not None:
            try:
                handle.close()
            except Exception as error:  # a user resolver's close may raise anything
                _log.warning("pool %r: closing the resolver's watch failed: %r", self._entry.name, error)

    def __repr__(self) -> str:
        move = self._state.move
        moving = f" moving {move.replaced}" if move is not None else ""
        addresses = len(self._state.answers.addresses)
        return f"<Balancer {self._entry.name!r} {addresses} addresses{moving}>"

    # --- the rules and their effects -----------------------------------------------------

    def _workers(self) -> tuple[WorkerStatus, ...]:
        return tuple(self._entry.view.workers)

    def _hear_starting(self) -> None:
        """Tells the rules about the replacement being started, once the PoolSupervisor has."""
        if self._starting is None:
            return
        number, future = self._starting
        try:
            worker_id = future.get(timeout=0)
        except pykka.Timeout:
            return
        except Exception as error:  # the supervisor could not start it
            self._starting = None
            self._step(rules.ReplacementNotStarted(number, str(error)))
            return
        self._starting = None
        self._step(rules.ReplacementStarted(number, worker_id))

    def _step(self, event: rules.Event) -> None:
        self._state, effects = step(self._state, event, now=time.monotonic(), wall=time.time())
        for effect in effects:
            # The PoolSupervisor stops this actor before itself; until then a
            # call to it can only fail if it is already gone (the pool is ending).
            with contextlib.suppress(pykka.ActorDeadError):
                self._carry_out(effect)

    def _carry_out(self, effect: rules.Effect) -> None:
        owner = self._owner
        match effect:
            case Emit() | Log():
                announce_pool(effect, self._entry.name, _log)
            case rules.Wake(delay):
                self._schedule(delay)
            case rules.StartResolution(number):
                self._resolve(number)
            case rules.StartWatch(number):
                self._start_watch(number)
            case rules.SetResolverError(problem):
                self._entry.resolver_error = problem
            case rules.RepinWorker(worker_id, address):
                # A worker that became ready meanwhile ignores it; one gone is nothing to tell.
                worker = self._parts.workers.get(worker_id)
                if worker is not None:
                    worker.tell(Repin(address))
            case rules.StartReplacement(number, address, _):
                self._starting = (number, owner.add_pinned_worker(address))
            case rules.RetireWorker(worker_id, replacement):
                owner.retire_worker(worker_id, replacement)
            case rules.StopReplacement(worker_id):
                owner.retire_worker(worker_id)
            case rules.DropReplacements():
                owner.drop_replacements()

    def _resolve(self, number: int) -> None:
        me, config = self.actor_ref, self._entry.config

        def run() -> None:
            # Abandoned after endpoint.resolve_timeout: it finishes on its
            # own and the rules drop its answer.
            addresses, error, duration = resolve(config)
            with contextlib.suppress(pykka.ActorDeadError):
                me.tell(rules.ResolutionDone(number, addresses, error, duration))

        threading.Thread(target=run, name="grpcpool-resolve", daemon=True).start()

    def _start_watch(self, number: int) -> None:
        self._close_watch()
        me = self.actor_ref

        def on_set(pushed: Pushed) -> None:
            with contextlib.suppress(pykka.ActorDeadError):
                me.tell(rules.Pushed(number, *pushed))

        def on_failed(error: str) -> None:
            with contextlib.suppress(pykka.ActorDeadError):
                me.tell(rules.WatchFailed(number, error))

        self._watch_number = number
        self._watch = watch(self._entry.config, on_set, on_failed)
        self._entry.resolver_watch = self._watch

    def _schedule(self, delay: float | None) -> None:
        """The one wake-up the rules ask for, replacing the one before."""
        if self._tick is not None and not self._tick.done:
            self._tick.cancel()
        self._tick = None
        if delay is None:
            return
        self._ticks += 1
        self._tick = send_after(delay, self.actor_ref, _Tick(self._ticks))
