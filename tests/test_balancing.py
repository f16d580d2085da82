"""Tests for grpcpool.core._balancing: the balancer's rules both pool drivers run.

Pure logic: events in, the new state and effects out, the clock passed in. The
last part drives the rules with random sequences of events through a fake pool
that carries out their effects, and checks what must hold whatever happens.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass, field, replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from grpcpool import telemetry
from grpcpool._config_timings import LEAVE_WAIT
from grpcpool._status import WorkerState, WorkerStatus
from grpcpool.config import Config
from grpcpool.connection._machine_types import Emit, Log
from grpcpool.core._balancing import Step, step
from grpcpool.core._balancing_types import (
    BalancerSettings,
    BalancerState,
    DropReplacements,
    Effect,
    Event,
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
    WorkersChanged,
    new_state,
)

A, B, C = "10.0.0.1:80", "10.0.0.2:80", "10.0.0.3:80"
SETTINGS = BalancerSettings(
    target="db:80",
    resolve_interval=30.0,
    resolve_timeout=10.0,
    move_limit=13.0,
    max_age=None,
    retry_min=1.0,
    retry_max=30.0,
)


def worker(
    worker_id: str, address: str | None, state: WorkerState = "ready", since: float = 0.0
) -> WorkerStatus:
    """A worker record pinned to ``address``."""
    return WorkerStatus(worker_id, state, since, address=address)


def fresh(settings: BalancerSettings = SETTINGS, seed: int = 1) -> BalancerState:
    return new_state(settings, random.Random(seed))


def of_type(effects: tuple[Effect, ...], kind: type) -> list[Effect]:
    return [effect for effect in effects if isinstance(effect, kind)]


def wake_of(effects: tuple[Effect, ...]) -> float | None:
    last = effects[-1]
    assert isinstance(last, Wake)
    return last.delay


def started(
    workers: tuple[WorkerStatus, ...],
    addresses: tuple[str, ...] | None = (A, B),
    settings: BalancerSettings = SETTINGS,
) -> Step:
    """A balancer started at monotonic 100 (wall 1000) with ``workers`` and ``addresses``."""
    return step(fresh(settings), Started(addresses, 0.01, workers), now=100.0, wall=1000.0)


def uneven() -> tuple[WorkerStatus, ...]:
    """Two ready workers on A, none on B: one has to move."""
    return (worker("w1", A, since=900.0), worker("w2", A, since=900.0))


# --- settings ----------------------------------------------------------------------------------


def test_settings_come_from_the_config() -> None:
    """A move's limit is connect_timeout + ping_timeout + 1 s; the rest is the config's."""
    config = Config.new(
        endpoint={
            "type": "local",
            "host": "db",
            "port": 80,
            "resolve_interval": 5.0,
            "resolve_timeout": 2.0,
        },
        connection={"connect_timeout": 4.0, "ping_timeout": 1.5, "max_age": 60.0},
    )
    settings_ = BalancerSettings.of(config)
    assert settings_.move_limit == 6.5
    assert (settings_.resolve_interval, settings_.resolve_timeout) == (5.0, 2.0)
    assert settings_.max_age == 60.0 and settings_.target == "db:80"


def test_a_step_refuses_what_is_not_an_event() -> None:
    """Anything but one of the balancer's events is a TypeError, not silently nothing."""
    with pytest.raises(TypeError, match="not a balancer event"):
        step(fresh(), "look", now=0.0, wall=0.0)  # type: ignore[arg-type]


# --- following the resolver ------------------------------------------------------------------


def test_a_start_with_an_answer_reports_it_and_resolves_again_after_the_interval() -> None:
    """The start-up answer fires pool.resolved like any other; replacements a crashed balancer
    left are dropped first; the next resolution is the interval away."""
    state, effects = started((worker("w1", A), worker("w2", B)))
    assert effects[0] == DropReplacements()
    resolved = of_type(effects, Emit)
    assert resolved == [
        Emit(
            telemetry.pool_resolved.name,
            {"addresses": 2, "duration": 0.01},
            {"added": [A, B], "removed": []},
        )
    ]
    assert of_type(effects, StartResolution) == []
    assert state.resolve_at == 130.0 and wake_of(effects) == 30.0


def test_a_start_without_an_answer_resolves_at_once_within_its_time_limit() -> None:
    """No answer yet: a resolution starts now, and the one wake-up is its time limit."""
    state, effects = started((worker("w1", None, "backoff"),), addresses=None)
    assert of_type(effects, StartResolution) == [StartResolution(1)]
    assert state.resolving_until == 110.0 and wake_of(effects) == 10.0


def test_a_resolution_past_its_time_limit_is_abandoned_and_its_late_answer_dropped() -> None:
    """At the time limit the resolution fails (one WARNING, the reason in the status) and is
    asked again with backoff; its answer arriving later changes nothing."""
    state, _ = started((worker("w1", None, "backoff"),), addresses=None)
    state, effects = step(state, TimerDue(state.workers), now=110.0, wall=1010.0)
    [warning] = of_type(effects, Log)
    assert isinstance(warning, Log) and warning.level == logging.WARNING
    assert "endpoint.resolve_timeout (10s)" in warning.message
    [problem] = of_type(effects, SetResolverError)
    assert isinstance(problem, SetResolverError)
    assert problem.problem is not None and "abandoned" in problem.problem
    assert state.resolving_until is None and state.resolve_at is not None
    assert 110.0 < state.resolve_at <= 112.0  # the first retry of the backoff

    late, effects = step(state, ResolutionDone(1, (A,), None, 11.0), now=111.0, wall=1011.0)
    assert effects == (Wake(effects[-1].delay),)  # type: ignore[union-attr]
    assert late.answers.addresses == ()


def test_an_answer_clears_the_problem_and_plans_with_the_new_addresses() -> None:
    """A good answer clears the resolver error, schedules the interval, and the workers that
    wait for an address are repinned to it at once."""
    state, _ = started((worker("w1", None, "backoff"),), addresses=None)
    state, effects = step(state, ResolutionDone(1, (A,), None, 0.2), now=100.5, wall=1000.5)
    assert SetResolverError(None) in effects
    assert RepinWorker("w1", A) in effects
    assert state.resolve_at == 130.5


def test_a_connection_that_cannot_reconnect_asks_the_resolver_at_most_once_a_second() -> None:
    """A placed worker backing off starts a resolution; another look within a second does not."""
    workers = (worker("w1", A), worker("w2", B, "backoff", since=999.0))
    state, effects = started(workers)
    assert of_type(effects, StartResolution) == [StartResolution(1)]
    state, effects = step(state, ResolutionDone(1, (A, B), None, 0.1), now=100.2, wall=1000.2)
    state, effects = step(state, WorkersChanged(workers), now=100.5, wall=1000.5)
    assert of_type(effects, StartResolution) == []
    state, effects = step(state, WorkersChanged(workers), now=101.5, wall=1001.5)
    assert of_type(effects, StartResolution) == [StartResolution(2)]


# --- moves ----------------------------------------------------------------------------------------


def test_a_move_starts_a_replacement_and_retires_the_replaced_once_it_is_ready() -> None:
    """Make-before-break: the replacement starts pinned to B; once it is ready the replaced
    worker is retired (the replacement takes its place) and channel.refreshed fires."""
    state, effects = started(uneven())
    [start] = of_type(effects, StartReplacement)
    assert isinstance(start, StartReplacement) and start.address == B
    assert state.move is not None and state.move.deadline == 113.0
    state, _ = step(state, ReplacementStarted(start.number, "w3"), now=100.1, wall=1000.1)

    ready = (*uneven(), worker("w3", B, since=1000.5))
    state, effects = step(state, WorkersChanged(ready), now=100.5, wall=1000.5)
    assert RetireWorker(start.replacing, "w3") in effects
    assert Emit(
        telemetry.channel_refreshed.name,
        {"age": 100.0},
        {"worker_id": start.replacing, "address": B, "reason": "rebalance"},
    ) in effects
    assert state.move is None and of_type(effects, StartReplacement) == []
    assert dict(state.leaving) == {start.replacing: 100.5 + LEAVE_WAIT}


def test_one_move_at_a_time() -> None:
    """While a move runs, an uneven pool starts no second one."""
    workers = (worker("w1", A), worker("w2", A), worker("w3", A), worker("w4", A))
    state, effects = started(workers, addresses=(A, B, C))
    assert len(of_type(effects, StartReplacement)) == 1
    for now in (101.0, 102.0, 103.0):
        state, effects = step(state, WorkersChanged(workers), now=now, wall=now + 900.0)
        assert of_type(effects, StartReplacement) == []


def test_a_replacement_that_fails_to_connect_is_stopped_and_its_address_avoided() -> None:
    """A replacement backing off: one WARNING, it is stopped, the replaced worker stays, and
    the address is not a destination for a while."""
    state, effects = started(uneven())
    [start] = of_type(effects, StartReplacement)
    assert isinstance(start, StartReplacement)
    state, _ = step(state, ReplacementStarted(start.number, "w3"), now=100.1, wall=1000.1)
    failing = (*uneven(), worker("w3", B, "backoff", since=1000.4))
    state, effects = step(state, WorkersChanged(failing), now=100.5, wall=1000.5)
    assert Log(
        logging.WARNING, f"a replacement on {B} failed to connect; keeping {start.replacing}"
    ) in effects
    assert StopReplacement("w3") in effects and of_type(effects, RetireWorker) == []
    assert state.planner.retry_at(B, 100.5) is None  # avoided, not down
    state, effects = step(state, WorkersChanged(uneven()), now=100.6, wall=1000.6)
    assert of_type(effects, StartReplacement) == []


def test_a_replacement_not_ready_in_time_is_given_up_at_the_deadline() -> None:
    """The move's deadline is the one wake-up; at it the replacement is stopped."""
    state, effects = started(uneven())
    [start] = of_type(effects, StartReplacement)
    assert isinstance(start, StartReplacement)
    assert wake_of(effects) == 13.0
    state, _ = step(state, ReplacementStarted(start.number, "w3"), now=100.1, wall=1000.1)
    slow = (*uneven(), worker("w3", B, "connecting", since=1000.1))
    state, effects = step(state, TimerDue(slow), now=113.0, wall=1013.0)
    assert Log(
        logging.WARNING,
        f"a replacement on {B} was not ready within 13.0s; keeping {start.replacing}",
    ) in effects
    assert StopReplacement("w3") in effects and state.move is None


def test_a_replacement_never_named_is_dropped_at_the_deadline_and_later() -> None:
    """Given up before the driver named its replacement: every replacement is dropped; when
    its name comes after all, that one is stopped too."""
    state, effects = started(uneven())
    [start] = of_type(effects, StartReplacement)
    assert isinstance(start, StartReplacement)
    state, effects = step(state, TimerDue(uneven()), now=113.0, wall=1013.0)
    assert DropReplacements() in effects and state.move is None
    state, effects = step(state, ReplacementStarted(start.number, "w9"), now=113.5, wall=1013.5)
    assert StopReplacement("w9") in effects


def test_a_replacement_that_could_not_start_ends_the_move_with_a_warning() -> None:
    """The driver could not start it: one WARNING naming why, the address avoided."""
    state, effects = started(uneven())
    [start] = of_type(effects, StartReplacement)
    assert isinstance(start, StartReplacement)
    state, effects = step(
        state, ReplacementNotStarted(start.number, "boom"), now=100.2, wall=1000.2
    )
    assert of_type(effects, Log) == [Log(logging.WARNING, "could not start a replacement: boom")]
    assert state.move is None


def test_a_replacement_whose_replaced_worker_is_gone_is_stopped_not_kept() -> None:
    """The replaced worker left (scaled down) before the replacement was ready: the pool must
    not grow, so the replacement is stopped; nothing is retired, nothing refreshed."""
    state, effects = started(uneven())
    [start] = of_type(effects, StartReplacement)
    assert isinstance(start, StartReplacement)
    state, _ = step(state, ReplacementStarted(start.number, "w3"), now=100.1, wall=1000.1)
    others = tuple(w for w in uneven() if w.worker_id != start.replacing)
    state, effects = step(
        state, WorkersChanged((*others, worker("w3", B, since=1000.4))), now=100.5, wall=1000.5
    )
    assert StopReplacement("w3") in effects
    assert of_type(effects, RetireWorker) == [] and of_type(effects, Emit) == []


def test_a_replacement_the_driver_could_not_swap_in_is_stopped() -> None:
    """The driver found the replaced worker gone while retiring it (ReplacedGone): the
    replacement is stopped and left out of plans."""
    state, _ = started((worker("w1", A), worker("w2", B)))
    state, effects = step(state, ReplacedGone("w7"), now=101.0, wall=1001.0)
    assert StopReplacement("w7") in effects and "w7" in dict(state.leaving)


# --- waking --------------------------------------------------------------------------------------


def test_max_age_wakes_exactly_when_the_next_connection_falls_due() -> None:
    """With max_age, the one wake-up is the soonest refresh due time, not a poll."""
    aged = replace(SETTINGS, max_age=60.0, resolve_interval=None)
    workers = (worker("w1", A, since=1000.0), worker("w2", B, since=1000.0))
    state, effects = started(workers, settings=aged)
    due = state.planner.next_refresh()
    assert due is not None and 1054.0 <= due <= 1066.0
    assert wake_of(effects) == pytest.approx(due - 1000.0)


def test_a_refresh_under_way_waits_for_its_news_or_deadline_not_in_a_loop() -> None:
    """While a max_age replacement connects, the connection past its age is no reason to wake
    at once: the wake-up is the move's deadline."""
    aged = replace(SETTINGS, max_age=60.0, resolve_interval=None)
    workers = (worker("w1", A, since=900.0), worker("w2", B, since=1000.0))
    state, effects = started(workers, settings=aged)
    [start] = of_type(effects, StartReplacement)
    assert isinstance(start, StartReplacement) and start.replacing == "w1"
    state, _ = step(state, ReplacementStarted(start.number, "w3"), now=100.1, wall=1000.1)
    connecting = (*workers, worker("w3", A, "connecting", since=1000.1))
    state, effects = step(state, WorkersChanged(connecting), now=100.2, wall=1000.2)
    assert wake_of(effects) == pytest.approx(12.8)


def test_nothing_pending_asks_for_no_wake_up() -> None:
    """An even pool, no interval, no max_age: only news changes anything."""
    quiet = replace(SETTINGS, resolve_interval=None)
    _, effects = started((worker("w1", A), worker("w2", B)), settings=quiet)
    assert effects[-1] == Wake(None)


# --- random sequences through a fake pool ----------------------------------------------------------


@dataclass
class FakePool:
    """Carries out the rules' effects on worker records, as a driver would, and checks them."""

    state: BalancerState
    workers: dict[str, WorkerStatus]
    expected: int
    now: float = 100.0
    numbers: int = 100
    replacements: set[str] = field(default_factory=set)
    retired: dict[str, float] = field(default_factory=dict)  # lingering in the snapshot
    named: set[str] = field(default_factory=set)  # replacements the driver named
    unnamed: list[tuple[int, str]] = field(default_factory=list)
    resolving: list[int] = field(default_factory=list)

    @property
    def wall(self) -> float:
        return self.now + 900.0

    def snapshot(self) -> tuple[WorkerStatus, ...]:
        return tuple(self.workers.values())

    def feed(self, event: Event) -> None:
        before = self.state
        self.state, effects = step(before, event, now=self.now, wall=self.wall)
        self.check(before, effects)
        answers: list[Event] = []
        for effect in effects:
            answers += self.carry_out(effect)
        for answer in answers:
            self.feed(answer)

    def check(self, before: BalancerState, effects: tuple[Effect, ...]) -> None:
        state, seen = self.state, {w.worker_id for w in self.state.workers}
        # Exactly one wake-up, last; and one while anything waits on time.
        assert [e for e in effects if isinstance(e, Wake)] == [effects[-1]]
        delay = wake_of(effects)
        for pending in (
            state.resolving_until,
            state.resolve_at,
            state.move.deadline if state.move is not None else None,
        ):
            if pending is not None:
                assert delay is not None and self.now + delay <= max(pending, self.now) + 1e-9
        # At most one move under way: no second replacement while one runs.
        starts = [e for e in effects if isinstance(e, StartReplacement)]
        assert len(starts) <= 1
        if starts:
            assert before.move is None or before.move.number != state.moves
        assert len(self.replacements) <= 1
        for effect in effects:
            match effect:
                case RepinWorker(worker_id, _):
                    assert worker_id in seen and worker_id not in self.retired
                case StartReplacement(_, _, replacing):
                    assert replacing in seen and replacing not in self.retired
                case RetireWorker(worker_id, replacement):
                    assert {worker_id, replacement} <= seen and worker_id not in self.retired
                case StopReplacement(worker_id):
                    assert worker_id in self.named

    def carry_out(self, effect: Effect) -> list[Event]:
        match effect:
            case RepinWorker(worker_id, address) if worker_id in self.workers:
                self.workers[worker_id] = worker(worker_id, address, "connecting", self.wall)
            case StartReplacement(number, address, _):
                self.numbers += 1
                worker_id = f"w{self.numbers}"
                self.workers[worker_id] = worker(worker_id, address, "connecting", self.wall)
                self.replacements.add(worker_id)
                self.unnamed.append((number, worker_id))
            case RetireWorker(worker_id, replacement):
                if worker_id not in self.workers or worker_id in self.replacements:
                    return [ReplacedGone(replacement)]
                self.replacements.discard(replacement)
                self.retired[worker_id] = self.now
            case StopReplacement(worker_id):
                self.replacements.discard(worker_id)
                self.workers.pop(worker_id, None)
            case DropReplacements():
                for worker_id in self.replacements:
                    self.workers.pop(worker_id, None)
                self.replacements.clear()
            case StartResolution(number):
                self.resolving.append(number)
        return []

    def members(self) -> int:
        return len(
            [w for w in self.workers if w not in self.replacements and w not in self.retired]
        )


STATES: list[WorkerState] = ["connecting", "ready", "backoff"]
ANSWERS = st.one_of(st.none(), st.lists(st.sampled_from([A, B, C]), min_size=1, unique=True))


@settings(max_examples=300, deadline=None)
@given(
    size=st.integers(1, 5),
    max_age=st.sampled_from([None, 5.0]),
    seed=st.integers(0, 2**16),
    data=st.data(),
)
def test_whatever_happens_the_rules_hold(
    size: int, max_age: float | None, seed: int, data: st.DataObject
) -> None:
    """Random news (states, answers, scaling, names, time) through a fake pool: one wake-up
    always, a second one pending things never miss; at most one move; no effect on a worker
    the snapshot lacks or the balancer retired; the pool keeps the size it was given."""
    settings_ = replace(SETTINGS, max_age=max_age, resolve_interval=5.0, move_limit=4.0)
    pool = FakePool(
        fresh(settings_, seed),
        {f"w{i}": worker(f"w{i}", A, "ready", 1000.0) for i in range(size)},
        expected=size,
    )
    pool.feed(Started((A, B), 0.01, pool.snapshot()))
    for _ in range(data.draw(st.integers(1, 40))):
        action = data.draw(st.sampled_from(["state", "time", "answer", "scale", "name", "leave"]))
        if action == "state" and pool.workers:
            worker_id = data.draw(st.sampled_from(sorted(pool.workers)))
            old = pool.workers[worker_id]
            new = data.draw(st.sampled_from(STATES))
            pool.workers[worker_id] = replace(old, state=new, since=pool.wall)
        elif action == "time":
            pool.now += data.draw(st.floats(0.0, 3.0))
            # A retired worker leaves the snapshot well within LEAVE_WAIT.
            for worker_id, when in list(pool.retired.items()):
                if pool.now - when >= LEAVE_WAIT - 1.0:
                    del pool.retired[worker_id]
                    pool.workers.pop(worker_id, None)
            pool.feed(TimerDue(pool.snapshot()))
            continue
        elif action == "answer" and pool.resolving:
            answer = data.draw(ANSWERS)
            addresses = None if answer is None else tuple(answer)
            error = "no such host" if addresses is None else None
            pool.feed(ResolutionDone(pool.resolving.pop(0), addresses, error, 0.1))
            continue
        elif action == "scale" and pool.members() > 1:
            members = [w for w in pool.workers if w not in pool.replacements | set(pool.retired)]
            gone = data.draw(st.sampled_from(members))
            del pool.workers[gone]
            pool.expected -= 1
        elif action == "name" and pool.unnamed:
            number, worker_id = pool.unnamed.pop(0)
            pool.named.add(worker_id)
            pool.feed(ReplacementStarted(number, worker_id))
            continue
        elif action == "leave" and pool.retired:
            worker_id = data.draw(st.sampled_from(sorted(pool.retired)))
            del pool.retired[worker_id]
            pool.workers.pop(worker_id, None)
        pool.feed(WorkersChanged(pool.snapshot()))
        assert pool.members() == pool.expected
    assert pool.members() == pool.expected
