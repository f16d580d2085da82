"""A pool's balancer, as a pure state machine: follow the resolver, keep the spread, refresh.

:func:`step` takes the balancer's state, an event and the time, and returns
the new state and the effects a driver must run, in order. It starts no
thread or task, calls no actor or grpc, and reads no clock, so every rule
below is tested without servers, and the sync pool's Balancer actor
(``grpcpool.actors._balancer``) and the asyncio pool's balancing task
(``grpcpool.tasks._balancer``) are drivers of the same rules:

* Following the resolver: the answer the pool started with is judged like
  any other (:class:`~grpcpool.core._resolution.Answers`); without one the
  pool resolves at once, and then every ``endpoint.resolve_interval`` (after
  a failure with no answer yet: with backoff), and whenever a connection
  cannot reconnect (at most once a second). A resolution unanswered after
  ``endpoint.resolve_timeout`` is abandoned: its late answer is dropped.
* Placement: each look at the pool asks the
  :class:`~grpcpool.core._planner.Planner`; workers that serve nothing are
  repinned at once, and a ready worker is moved make-before-break, one at a
  time: a replacement starts pinned to the target address; once it is ready
  the replaced worker is retired (its channel drains) and
  ``channel.refreshed`` fires. A replacement that fails to connect, or is not
  ready within ``connect_timeout + ping_timeout + MOVE_SLACK``, is given up
  (one WARNING) and its address avoided for a while; the replaced worker
  stays. The same step replaces a connection past ``connection.max_age``.
* The pool's size is the user's: a replacement whose replaced worker is gone
  by the time it is ready (scaled down meanwhile) is stopped, not kept, and
  so is one whose move ended with a balancer that crashed (a balancer that
  starts drops every replacement left).
* Time: the balancer asks for ONE wake-up, at the soonest moment time alone
  changes something (an address's retry time, a slow connect, a refresh due,
  the move's deadline, the next resolution or its time limit, a retired
  worker's leave wait); news of the workers comes as events.
"""

from __future__ import annotations

import logging
from dataclasses import replace

from grpcpool import telemetry
from grpcpool._config_timings import LEAVE_WAIT
from grpcpool.connection._machine_types import Emit, Log
from grpcpool.core._balancing_types import (
    BalancerState,
    DropReplacements,
    Effect,
    Event,
    Move,
    Pushed,
    RepinWorker,
    ReplacedGone,
    ReplacementNotStarted,
    ReplacementStarted,
    ResolutionDone,
    RetireWorker,
    SetResolverError,
    Started,
    StartReplacement,
    StartResolution,
    StopReplacement,
    TimerDue,
    Wake,
    WatchFailed,
    WorkersChanged,
)
from grpcpool.core._planner import Candidate
from grpcpool.core._resolution import timed_out

__all__ = ["UNNAMED", "Step", "step"]

# What step returns: the new state and the effects to run, in order.
Step = tuple[BalancerState, tuple[Effect, ...]]

# The id a move's replacement goes by in plans until the driver names it.
UNNAMED = "(starting)"

_REFRESHED = telemetry.channel_refreshed.name


def step(state: BalancerState, event: Event, *, now: float, wall: float) -> Step:
    """Moves the balancer on by one event.

    Args:
        state: The current state.
        event: What happened.
        now: The time, in monotonic seconds.
        wall: The wall-clock time (``time.time()``): worker records carry it.

    Returns:
        The new state and the effects to run, in order; the last is always
        the one :class:`Wake` the driver keeps.

    Raises:
        TypeError: ``event`` is not one of the balancer's events.
    """
    if not isinstance(event, Event):
        raise TypeError(f"not a balancer event: {event!r}")
    run = _Run(state, now, wall)
    match event:
        case Started():
            run.start(event)
        case ResolutionDone():
            if event.number == state.resolutions and state.resolving_until is not None:
                run.finish_resolution(event.addresses, event.error, event.took)
            # else: abandoned for taking too long; its answer is dropped
        case Pushed():
            if state.settings.push and event.watch == state.watching.number:
                run.pushed(event)
            # else: from a watch closed since; dropped
        case WatchFailed():
            if state.settings.push and event.watch == state.watching.number:
                run.watch_failed(event.error)
        case WorkersChanged():
            run.workers = event.workers
            run.look()
        case TimerDue():
            run.workers = event.workers
            run.timer_due()
        case ReplacementStarted():
            run.named(event)
        case ReplacementNotStarted():
            run.not_started(event)
        case ReplacedGone():
            if run.move is not None and run.move.added == event.worker_id:
                run.move = None
            run.stop(event.worker_id)
    return run.finish()


class _Run:
    """One step's working copy of the state, and the effects it decides, in order."""

    def __init__(self, state: BalancerState, now: float, wall: float) -> None:
        self.state = state
        self.now = now
        self.wall = wall
        self.effects: list[Effect] = []
        self.workers = state.workers
        self.move = state.move
        self.moves = state.moves
        self.leaving = dict(state.leaving)
        self.resolutions = state.resolutions
        self.resolving_until = state.resolving_until
        self.resolve_at = state.resolve_at
        self.plan_wake_at = state.plan_wake_at

    def finish(self) -> Step:
        """The new state, and the effects with the one wake-up last."""
        soonest = [
            at
            for at in (
                self.plan_wake_at,
                self.resolve_at,
                self.resolving_until,
                self.move.deadline if self.move is not None else None,
                self.state.watching.retry_at,
                *self.leaving.values(),
            )
            if at is not None
        ]
        delay = max(0.0, min(soonest) - self.now) if soonest else None
        state = replace(
            self.state,
            workers=self.workers,
            move=self.move,
            moves=self.moves,
            leaving=tuple(self.leaving.items()),
            resolutions=self.resolutions,
            resolving_until=self.resolving_until,
            resolve_at=self.resolve_at,
            plan_wake_at=self.plan_wake_at,
            wake_at=None if delay is None else self.now + delay,
        )
        return state, (*self.effects, Wake(delay))

    # --- the resolver ---------------------------------------------------------------

    def start(self, event: Started) -> None:
        # Replacements left by a balancer that crashed: their moves ended with it.
        self.effects.append(DropReplacements())
        self.workers = event.workers
        if event.addresses:
            # The answer the pool started with, reported like any other.
            self.take(event.addresses, None, event.took)
        interval = self.state.settings.resolve_interval
        if self.state.settings.push:
            self.effects.append(self.state.watching.start())  # followed, never polled
        elif not self.state.answers.addresses:
            self.start_resolution()
        elif interval is not None:
            self.resolve_at = self.now + interval
        self.look()

    def start_resolution(self) -> None:
        if self.resolving_until is not None or self.state.settings.push:
            return  # one at a time; a push resolver is not asked
        self.resolutions += 1
        self.resolving_until = self.now + self.state.settings.resolve_timeout
        self.effects.append(StartResolution(self.resolutions))

    def take(self, addresses: tuple[str, ...] | None, error: str | None, took: float) -> bool:
        changed, announced = self.state.answers.take(addresses, error, took)
        self.effects.extend(announced)
        return changed

    def finish_resolution(
        self, addresses: tuple[str, ...] | None, error: str | None, took: float
    ) -> None:
        self.resolving_until = None
        changed = self.take(addresses, error, took)
        answers = self.state.answers
        self.effects.append(SetResolverError(answers.problem))
        delay = answers.retry_delay()
        self.resolve_at = None if delay is None else self.now + delay
        if changed:
            self.look()

    def timer_due(self) -> None:
        limit = self.state.settings.resolve_timeout
        if self.resolving_until is not None and self.now >= self.resolving_until:
            # Abandoned: whatever runs it finishes on its own, its answer dropped.
            self.finish_resolution(None, timed_out(limit), limit)
        if self.resolve_at is not None and self.now >= self.resolve_at:
            self.resolve_at = None
            self.start_resolution()  # unless one runs: its end schedules the next
        if self.state.watching.due(self.now):
            self.effects.append(self.state.watching.start())
        self.look()

    def pushed(self, event: Pushed) -> None:
        settings, answers = self.state.settings, self.state.answers
        changed, announced = answers.take_pushed(
            event.addresses, event.error, event.revision, allow_empty=settings.allow_empty
        )
        self.effects.extend(announced)
        self.state.watching.answered()
        self.effects.append(SetResolverError(answers.problem))
        if changed:
            self.look()

    def watch_failed(self, error: str) -> None:
        self.take(None, error, 0.0)  # keeps the last known addresses
        self.effects.append(SetResolverError(self.state.answers.problem))
        self.state.watching.failed(self.now)

    # --- looking at the pool -----------------------------------------------------------

    def look(self) -> None:
        """Advances the move under way, then makes the repins and the move the plan asks for."""
        if self.move is not None:
            self.advance(self.move)
        present = {w.worker_id for w in self.workers}
        self.leaving = {
            worker_id: until
            for worker_id, until in self.leaving.items()
            if until > self.now and worker_id in present
        }
        move = self.move
        plan = self.state.planner.plan(
            self.workers,
            self.state.answers.addresses,
            now=self.now,
            wall=self.wall,
            moving={move.replaced: move.added or UNNAMED} if move is not None else None,
            leaving=self.leaving,
        )
        for repin in plan.repins:
            self.effects.append(RepinWorker(repin.worker_id, repin.address))
        if plan.move is not None and self.move is None:
            self.begin(plan.move)
        if plan.reconnecting and self.state.answers.failure_resolve_due(self.now):
            self.start_resolution()  # a connection cannot reconnect: is the answer stale?
        self.plan_wake_at = None if plan.wake_in is None else self.now + plan.wake_in

    def begin(self, candidate: Candidate) -> None:
        self.moves += 1
        limit = self.state.settings.move_limit
        self.effects.append(StartReplacement(self.moves, candidate.address, candidate.worker_id))
        self.move = Move(
            self.moves,
            candidate.worker_id,
            candidate.address,
            candidate.reason,
            candidate.age,
            self.now + limit,
        )

    def advance(self, move: Move) -> None:
        """Ends the move under way if its replacement is ready, failed or late."""
        added = move.added
        if added is not None and self.state_of(added) == "ready":
            self.moved(move, added)
            return
        failed = added is not None and self.state_of(added) == "backoff"
        if failed or self.now >= move.deadline:
            self.give_up(move, failed)

    def moved(self, move: Move, added: str) -> None:
        self.move = None
        self.state.planner.moved(move.address)
        if self.state_of(move.replaced) in (None, "stopped"):
            # The worker it was to replace is gone (scaled down): the pool
            # must not grow, so the replacement goes too.
            self.stop(added)
            return
        self.leaving[move.replaced] = self.now + LEAVE_WAIT
        self.effects.append(RetireWorker(move.replaced, added))
        self.effects.append(
            Emit(
                _REFRESHED,
                {"age": move.age},
                {"worker_id": move.replaced, "address": move.address, "reason": move.reason},
            )
        )

    def give_up(self, move: Move, failed: bool) -> None:
        limit = self.state.settings.move_limit
        why = "failed to connect" if failed else f"was not ready within {limit:.1f}s"
        self.effects.append(
            Log(
                logging.WARNING,
                f"a replacement on {move.address} {why}; keeping {move.replaced}",
            )
        )
        if move.added is not None:
            self.stop(move.added)
        else:
            # Not even started yet: whenever it starts, it is dropped.
            self.effects.append(DropReplacements())
        self.state.planner.avoid(move.address, self.now)
        self.move = None

    def stop(self, worker_id: str) -> None:
        self.leaving[worker_id] = self.now + LEAVE_WAIT
        self.effects.append(StopReplacement(worker_id))

    def state_of(self, worker_id: str) -> str | None:
        for worker in self.workers:
            if worker.worker_id == worker_id:
                return worker.state
        return None

    # --- what the driver tells about a replacement --------------------------------------

    def named(self, event: ReplacementStarted) -> None:
        move = self.move
        if move is not None and move.number == event.number and move.added is None:
            self.move = replace(move, added=event.worker_id)
        elif move is None or move.number != event.number:
            # Its move was given up before it started: it must not stay.
            self.stop(event.worker_id)

    def not_started(self, event: ReplacementNotStarted) -> None:
        move = self.move
        if move is None or move.number != event.number or move.added is not None:
            return
        self.effects.append(Log(logging.WARNING, f"could not start a replacement: {event.error}"))
        self.state.planner.avoid(move.address, self.now)
        self.move = None
