"""Balancer: spreads a pool's connections over its host's addresses and refreshes them by age.

grpcio gives every channel to ``host:port`` the addresses its resolver
returns and, with its default ``pick_first``, connects to the first that
works: all N connections of a pool land on one backend, and a backend added
later gets nothing until a connection fails. The Balancer resolves the host
itself (``endpoint.resolver``; the system's ``getaddrinfo`` by default) and
pins each worker to one address, evenly. It asks again every
``endpoint.resolve_interval`` and whenever a connection cannot reconnect.

Every change is a *move*, made one at a time per pool: the PoolSupervisor
starts a replacement worker pinned to the target address; once its
connection is ready (and health-checked), the replaced worker is retired and
its channel drains for ``connection.drain_timeout``. So a move never lowers
the pool's capacity, and a replacement that cannot connect in time is given
up (and its address avoided for a while) without touching the old one. The
same step replaces each connection after ``connection.max_age`` (plus or
minus 10%).

What to move is decided by :mod:`grpcpool.pools._spread` (pure); this actor
only runs resolutions on short-lived threads (a resolver may block; an actor
must not), reads the pool's view, and asks its PoolSupervisor to add and
retire workers, without waiting on it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import pykka
from pykka.messages import ProxyCall

from grpcpool import telemetry
from grpcpool.actors._resolution import Answers, resolve
from grpcpool.pools._entry import PoolEntry
from grpcpool.pools._planner import Candidate, Planner
from grpcpool.supervisor import SupervisedActor, TimerHandle, send_after

__all__ = ["Balancer", "Rebalance"]

_log = logging.getLogger(__name__)

# How often a move in progress looks for its replacement being ready.
MOVE_POLL = 0.02
# The longest pause between two looks at connection ages (with max_age).
AGE_POLL = 1.0
# How long the next plan waits for a retired worker to leave the view.
LEAVE_WAIT = 5.0
# At most one resolution per this many seconds because connections fail.
FAILURE_RESOLVE_GAP = 1.0


@dataclass(frozen=True)
class _Resolve:
    reason: str  # "interval", "failure"


@dataclass(frozen=True)
class _Resolved:
    addresses: tuple[str, ...] | None
    error: str | None
    duration: float


@dataclass(frozen=True)
class _Tick:
    """Time to look at the pool again; only the latest scheduled tick counts."""

    number: int


@dataclass(frozen=True)
class Rebalance:
    """The pool's workers changed (scaled, or one terminated by hand): look at the spread."""


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
    """Keeps one pool's workers spread over its addresses and refreshed by age.

    Args:
        entry: The pool's entry (its config and current view).
        owner: The pool's PoolSupervisor, which adds and retires workers.
        addresses: The answer the pool started with, if it had one.
        took: How long that answer took (seconds), for its ``pool.resolved``.
    """

    def __init__(
        self,
        entry: PoolEntry,
        owner: pykka.ActorRef[Any],
        addresses: tuple[str, ...] | None,
        took: float = 0.0,
    ) -> None:
        super().__init__()
        self._took = took
        config = entry.config
        self._entry = entry
        self._owner = owner
        self._answers = Answers(entry.name, config.endpoint.target)
        self._start_answer = addresses
        self._interval = config.endpoint.resolve_interval
        self._max_age = config.connection.max_age
        connection = config.connection
        # A replacement must be ready (and health-checked) within this.
        self._move_limit = connection.connect_timeout + connection.ping_timeout + 1.0
        self._planner = Planner(self._max_age, max(connection.backoff_max, 5.0))
        self._move: _Move | None = None
        # A worker retired by the last move, until it has left the view: the
        # next plan must not count it.
        self._leaving: tuple[str, float] | None = None
        self._resolving = False
        self._last_failure_resolve = -FAILURE_RESOLVE_GAP
        self._timers: set[TimerHandle] = set()
        self._tick: TimerHandle | None = None
        self._ticks = 0  # the number of the latest tick scheduled
        self._receiver: Callable[..., None] | None = None

    # --- actor hooks ----------------------------------------------------------------

    def on_start(self) -> None:
        me, name = self.actor_ref, self._entry.name

        def on_reconnect(sender: str, **_: Any) -> None:
            # On the reconnecting worker's thread: only tell. An asyncio pool
            # of the same name emits this too, from inside its event loop (a
            # sync pool's actors never run one): not ours.
            if asyncio.events._get_running_loop() is not None:
                return
            with contextlib.suppress(pykka.ActorDeadError):
                me.tell(_Resolve("failure"))

        self._receiver = on_reconnect
        telemetry.channel_reconnect_scheduled.connect(on_reconnect, sender=name, weak=False)
        if self._start_answer:
            # The answer the pool started with, reported like any other.
            self._answers.take(self._start_answer, None, self._took)
        if not self._answers.addresses:
            self._start_resolution()
        elif self._interval is not None:
            self._later(self._interval, _Resolve("interval"))
        self._plan()

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, _Resolve):
            self._on_resolve(message)
        elif isinstance(message, _Resolved):
            self._on_resolved(message)
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
        if self._receiver is not None:
            telemetry.channel_reconnect_scheduled.disconnect(self._receiver)
            self._receiver = None
        for timer in self._timers:
            timer.cancel()
        if self._tick is not None:
            self._tick.cancel()

    def __repr__(self) -> str:
        moving = f" moving {self._move.replaced}" if self._move else ""
        return f"<Balancer {self._entry.name!r} {len(self._answers.addresses)} addresses{moving}>"

    # --- resolution -------------------------------------------------------------------

    def _on_resolve(self, message: _Resolve) -> None:
        if message.reason == "failure":
            now = time.monotonic()
            if now - self._last_failure_resolve < FAILURE_RESOLVE_GAP:
                return
            self._last_failure_resolve = now
        self._start_resolution()

    def _start_resolution(self) -> None:
        if self._resolving:
            return
        self._resolving = True
        me, config = self.actor_ref, self._entry.config

        def run() -> None:
            addresses, error, duration = resolve(config)
            with contextlib.suppress(pykka.ActorDeadError):
                me.tell(_Resolved(addresses, error, duration))

        threading.Thread(target=run, name="grpcpool-resolve", daemon=True).start()

    def _on_resolved(self, message: _Resolved) -> None:
        self._resolving = False
        if self._interval is not None:
            self._later(self._interval, _Resolve("interval"))
        if self._answers.take(message.addresses, message.error, message.duration):
            self._plan()

    # --- moves --------------------------------------------------------------------------

    def _plan(self) -> None:
        """Advances the move under way, or starts the next one; then sets the next look."""
        if self._move is not None:
            self._advance(self._move)
        if self._leaving is not None:
            worker_id, until = self._leaving
            if time.monotonic() < until and any(
                w.worker_id == worker_id for w in self._entry.view.workers
            ):
                self._schedule_tick(MOVE_POLL)
                return
            self._leaving = None
        if self._move is None and self._answers.addresses:
            move = self._next()
            if move is not None:
                self._begin(move)
        self._schedule_tick()

    def _next(self) -> Candidate | None:
        return self._planner.next(
            self._entry.view.workers,
            self._answers.addresses,
            now=time.monotonic(),
            wall=time.time(),
        )

    def _begin(self, move: Candidate) -> None:
        started = self._owner.ask(
            ProxyCall(attr_path=("add_pinned_worker",), args=(move.address,), kwargs={}),
            block=False,
        )
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
        if self._is_ready(move.added):
            self._retire(move.replaced, move.added)
            self._leaving = (move.replaced, time.monotonic() + LEAVE_WAIT)
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
        self._planner.avoid(move.address, time.monotonic())
        self._move = None

    def _is_ready(self, worker_id: str) -> bool:
        return self._state_of(worker_id) == "ready"

    def _state_of(self, worker_id: str) -> str | None:
        for worker in self._entry.view.workers:
            if worker.worker_id == worker_id:
                return worker.state
        return None

    def _retire(self, worker_id: str, replacement: str | None = None) -> None:
        # Not waited for: the supervisor drains the worker's channel, and a
        # worker already gone (scaled down meanwhile) is nothing to retire.
        self._owner.ask(
            ProxyCall(attr_path=("retire_worker",), args=(worker_id, replacement), kwargs={}),
            block=False,
        )

    # --- timers -------------------------------------------------------------------------

    def _later(self, delay: float, message: Any) -> None:
        self._timers = {timer for timer in self._timers if not timer.done}
        self._timers.add(send_after(delay, self.actor_ref, message))

    def _schedule_tick(self, delay: float | None = None) -> None:
        if self._tick is not None and not self._tick.done:
            self._tick.cancel()
            self._tick = None
        if delay is not None:
            pass
        elif self._move is not None:
            delay = MOVE_POLL
        elif self._max_age is not None:
            delay = self._until_next_refresh()
        else:
            self._tick = None
            return
        self._ticks += 1
        self._tick = send_after(delay, self.actor_ref, _Tick(self._ticks))

    def _until_next_refresh(self) -> float:
        due = self._planner.next_refresh()
        if due is None:
            return AGE_POLL
        return min(AGE_POLL, max(MOVE_POLL, due - time.time()))
