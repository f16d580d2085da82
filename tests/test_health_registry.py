"""Tests for grpcpool.actors._health_registry: a real HealthRegistry actor
publishing views to a pool's entry.

Reports are sent with ``ask`` where the test needs to know they were handled;
a worker ``tell``s them, and the registry handles both the same way. The
registry never touches the pool's channels object, so its parts get none;
channels are plain ``object()`` instances.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from typing import Any, cast

import grpc
import pykka
import pytest

from grpcpool import Config
from grpcpool._process import PROCESS
from grpcpool.actors._entry import PoolEntry, claim, release
from grpcpool.actors._health_registry import ExpectedSize, HealthRegistry, SetLifecycle
from grpcpool.actors._parts import PoolParts
from grpcpool.connection import PoolChannels
from grpcpool.core._reports import WorkerGone, WorkerReport
from grpcpool.core._view import Lifecycle, PoolView, build_view
from grpcpool.errors import NotConnectedError
from tests.pools import ready_connections

URN_A = "urn:uuid:aaaaaaaa-0000-0000-0000-000000000001"
URN_B = "urn:uuid:bbbbbbbb-0000-0000-0000-000000000002"
PREFIX = "registry-test-"
_names = itertools.count(1)


@pytest.fixture
def entry() -> Iterator[PoolEntry]:
    """A pool of size 3 in the process table, released after the test."""
    config = Config.new(
        endpoint={"type": "local", "host": "127.0.0.1", "port": 9}, pool={"size": 3}
    )
    claimed = claim(f"{PREFIX}{next(_names)}", config, token=object(), parent=None, child_id=None)
    try:
        yield claimed
    finally:
        release(claimed, "test over")
    assert claimed.name not in PROCESS.pools


@pytest.fixture
def parts(entry: PoolEntry) -> PoolParts:
    """The pool's parts; the registry never uses ``channels``."""
    return PoolParts(entry, cast(PoolChannels, None))


@pytest.fixture
def start_registry(parts: PoolParts) -> Iterator[Any]:
    """Starts HealthRegistry actors on ``parts`` (as the PoolSupervisor does); stops them after."""
    refs: list[pykka.ActorRef[Any]] = []

    def start() -> pykka.ActorRef[Any]:
        before = parts.entry.view
        ref = HealthRegistry.start(parts)
        refs.append(ref)
        parts.registry = ref
        # on_start runs on the actor's thread: wait for the view it publishes.
        changed(parts.entry, before)
        return ref

    try:
        yield start
    finally:
        for ref in reversed(refs):
            ref.stop(timeout=5)


@pytest.fixture
def registry(start_registry: Any) -> pykka.ActorRef[Any]:
    """A registry of a running pool (started, then told the pool runs)."""
    ref: pykka.ActorRef[Any] = start_registry()
    ref.ask(SetLifecycle("running"), timeout=5)
    return ref


def changed(entry: PoolEntry, before: PoolView) -> PoolView:
    """Waits until ``entry`` has a view other than ``before``; returns it."""
    with entry.changed:
        assert entry.changed.wait_for(lambda: entry.view is not before, timeout=5)
    return entry.view


def report(
    registry: pykka.ActorRef[Any],
    worker_id: str,
    state: Any,
    channel: object | None = None,
    urn: str = URN_A,
    **fields: Any,
) -> None:
    """Sends a WorkerReport and waits until the registry has handled it."""
    message = WorkerReport(worker_id=worker_id, urn=urn, state=state, channel=channel, **fields)
    registry.ask(message, timeout=5)


def states(entry: PoolEntry) -> dict[str, str]:
    """Worker id -> state, from the current view."""
    return {w.worker_id: w.state for w in entry.view.workers}


def after(moment: float) -> None:
    """Returns once the wall clock has moved past ``moment`` (microseconds at most)."""
    deadline = time.monotonic() + 1.0
    while time.time() <= moment:
        assert time.monotonic() < deadline, "the wall clock did not move"


# --- what the old registry promised -----------------------------------------------


def test_start_publishes_an_empty_starting_view(entry: PoolEntry, start_registry: Any) -> None:
    """on_start publishes a new view: nothing ready, no records, the configured size,
    starting (a new pool hands nothing out until its supervisor says it runs)."""
    initial = entry.view

    start_registry()

    view = entry.view
    assert view is not initial
    assert (view.channels, view.workers) == ((), ())
    assert view.expected_size == 3
    assert view.lifecycle == "starting"


def test_ready_channels_are_published_in_worker_start_order(
    entry: PoolEntry, registry: pykka.ActorRef[Any]
) -> None:
    """Ready channels enter the view ordered by when their workers started, not became ready."""
    channels = {f"worker-{i}": object() for i in (1, 2, 3)}
    for worker_id in channels:
        report(registry, worker_id, "connecting")
    assert entry.view.channels == ()

    for worker_id in ("worker-3", "worker-1", "worker-2"):
        report(registry, worker_id, "ready", channels[worker_id], peer="127.0.0.1:1")

    view = entry.view
    assert view.channels == tuple(channels.values())
    assert [w.worker_id for w in view.workers] == ["worker-1", "worker-2", "worker-3"]
    assert all(w.state == "ready" and w.peer == "127.0.0.1:1" for w in view.workers)
    assert [entry.get_channel() for _ in range(3)] == list(channels.values())
    assert entry.status().status == "healthy"


def test_backoff_and_gone_take_channels_out(
    entry: PoolEntry, registry: pykka.ActorRef[Any]
) -> None:
    """A backoff report removes the worker's channel; WorkerGone removes the worker's record."""
    first, second = object(), object()
    report(registry, "worker-1", "ready", first)
    report(registry, "worker-2", "ready", second)

    report(registry, "worker-1", "backoff", reconnect_attempt=1, last_error="idle")
    assert entry.view.channels == (second,)
    backoff = entry.view.workers[0]
    assert (backoff.state, backoff.reconnect_attempt, backoff.last_error) == ("backoff", 1, "idle")

    registry.ask(WorkerGone("worker-2", URN_A), timeout=5)
    assert entry.view.channels == ()
    assert states(entry) == {"worker-1": "backoff"}
    with pytest.raises(NotConnectedError):
        entry.get_channel()


def test_channel_is_published_only_for_a_ready_report(
    entry: PoolEntry, registry: pykka.ActorRef[Any]
) -> None:
    """A channel attached to a non-ready report never reaches the view."""
    report(registry, "worker-1", "connecting", object())
    report(registry, "worker-1", "backoff", object())
    report(registry, "worker-2", "stopped", object())

    assert entry.view.channels == ()
    assert states(entry) == {"worker-1": "backoff", "worker-2": "stopped"}


def test_reports_from_a_stale_urn_are_ignored(
    entry: PoolEntry, registry: pykka.ActorRef[Any]
) -> None:
    """A non-connecting report or WorkerGone from another incarnation's URN changes nothing."""
    channel = object()
    report(registry, "worker-1", "ready", channel, urn=URN_A)
    before = entry.view.workers

    report(registry, "worker-1", "backoff", urn=URN_B, last_error="late")
    report(registry, "worker-1", "ready", object(), urn=URN_B)
    registry.ask(WorkerGone("worker-1", URN_B), timeout=5)

    assert entry.view.channels == (channel,)
    assert entry.view.workers == before


def test_connecting_from_a_new_urn_replaces_the_record(
    entry: PoolEntry, registry: pykka.ActorRef[Any]
) -> None:
    """A restarted worker's first report (connecting, new URN) replaces the old incarnation."""
    old_channel, new_channel = object(), object()
    report(registry, "worker-1", "ready", old_channel, urn=URN_A)
    report(registry, "worker-2", "connecting", urn=URN_A)

    report(registry, "worker-1", "connecting", urn=URN_B)
    assert entry.view.channels == ()
    assert states(entry) == {"worker-1": "connecting", "worker-2": "connecting"}

    # From now on the old URN is the stale one.
    report(registry, "worker-1", "ready", old_channel, urn=URN_A)
    registry.ask(WorkerGone("worker-1", URN_A), timeout=5)
    assert entry.view.channels == ()

    report(registry, "worker-1", "ready", new_channel, urn=URN_B)
    assert entry.view.channels == (new_channel,)
    assert [w.worker_id for w in entry.view.workers] == ["worker-1", "worker-2"]  # place kept


def test_since_is_kept_while_the_state_is_unchanged(
    entry: PoolEntry, registry: pykka.ActorRef[Any]
) -> None:
    """Repeated reports of the same state keep `since`; a new state or incarnation resets it."""
    report(registry, "worker-1", "backoff", urn=URN_A, reconnect_attempt=1)
    first = entry.view.workers[0]
    after(first.since)

    report(registry, "worker-1", "backoff", urn=URN_A, reconnect_attempt=2, last_error="refused")
    again = entry.view.workers[0]
    assert again.since == first.since
    assert (again.reconnect_attempt, again.last_error) == (2, "refused")

    report(registry, "worker-1", "connecting", urn=URN_A)
    assert entry.view.workers[0].since > first.since

    connecting_since = entry.view.workers[0].since
    after(connecting_since)
    report(registry, "worker-1", "connecting", urn=URN_B)  # same state, new incarnation
    assert entry.view.workers[0].since > connecting_since


def test_ask_worker_gone_returns_after_the_view_changed(
    entry: PoolEntry, registry: pykka.ActorRef[Any]
) -> None:
    """ask(WorkerGone) answers only once the channel is out of the published view."""
    channel = object()
    registry.tell(WorkerReport("worker-1", URN_A, "ready", channel=channel))
    registry.tell(WorkerReport("worker-2", URN_A, "connecting"))

    registry.ask(WorkerGone("worker-1", URN_A), timeout=5)

    # No waiting here: the removal is published before the answer.
    assert entry.view.channels == ()
    assert states(entry) == {"worker-2": "connecting"}


def test_gone_for_an_unknown_worker_is_ignored(
    entry: PoolEntry, registry: pykka.ActorRef[Any]
) -> None:
    """WorkerGone for a worker the registry never heard of changes nothing."""
    channel = object()
    report(registry, "worker-1", "ready", channel)

    registry.ask(WorkerGone("worker-9", URN_A), timeout=5)

    assert entry.view.channels == (channel,)
    assert states(entry) == {"worker-1": "ready"}


def test_a_routine_report_keeps_the_picker_turn(
    entry: PoolEntry, registry: pykka.ActorRef[Any]
) -> None:
    """A report that leaves the ready set alone (a ready worker reporting ready again)
    publishes a new view whose round robin carries on where it was."""
    a, b, c = object(), object(), object()
    for number, channel in enumerate((a, b, c), start=1):
        report(registry, f"worker-{number}", "ready", channel)
    assert [entry.get_channel(), entry.get_channel()] == [a, b]
    before = entry.view

    report(registry, "worker-2", "ready", b, peer="127.0.0.1:2")

    assert entry.view is not before
    assert entry.view.pick is before.pick
    assert [entry.get_channel() for _ in range(3)] == [c, a, b]


# --- size and lifecycle -----------------------------------------------------------


def test_expected_size_publishes_a_new_view(
    entry: PoolEntry, registry: pykka.ActorRef[Any]
) -> None:
    """ExpectedSize publishes a view with the new size; the status follows it."""
    report(registry, "worker-1", "ready", object())
    report(registry, "worker-2", "ready", object())
    assert entry.status().status == "degraded"  # 2 of 3
    before = entry.view

    registry.ask(ExpectedSize(2), timeout=5)

    assert entry.view is not before
    assert entry.view.expected_size == 2
    assert entry.view.channels == before.channels
    status = entry.status()
    assert (status.expected_size, status.current_size, status.status) == (2, 2, "healthy")

    registry.ask(ExpectedSize(5), timeout=5)
    assert entry.status().status == "degraded"


def test_set_lifecycle_publishes_a_new_view(entry: PoolEntry, start_registry: Any) -> None:
    """Each SetLifecycle publishes a view in that lifecycle."""
    ref = start_registry()

    for lifecycle in ("running", "restarting", "stopped", "running"):
        before = entry.view
        ref.ask(SetLifecycle(lifecycle), timeout=5)
        assert entry.view is not before
        assert entry.view.lifecycle == lifecycle


def test_channels_are_handed_out_only_while_running(entry: PoolEntry, start_registry: Any) -> None:
    """Ready reports of a starting pool are recorded but nothing is handed out; once the
    pool runs, its ready channels are (with no new report); restarting takes them out."""
    ref = start_registry()
    first, second = object(), object()
    report(ref, "worker-1", "ready", first)
    report(ref, "worker-2", "ready", second)

    assert states(entry) == {"worker-1": "ready", "worker-2": "ready"}
    assert entry.view.channels == ()
    with pytest.raises(NotConnectedError):
        entry.get_channel()
    assert entry.wait_ready(1, timeout=0) is False

    ref.ask(SetLifecycle("running"), timeout=5)
    assert entry.view.channels == (first, second)
    assert [entry.get_channel() for _ in range(2)] == [first, second]
    assert entry.wait_ready(2, timeout=0) is True

    ref.ask(SetLifecycle("restarting"), timeout=5)
    assert entry.view.channels == ()
    with pytest.raises(NotConnectedError, match="restarting"):
        entry.get_channel()

    ref.ask(SetLifecycle("stopped"), timeout=5)
    report(ref, "worker-3", "ready", object())
    assert entry.view.channels == ()
    with pytest.raises(NotConnectedError, match="stopped"):
        entry.get_channel()


@pytest.mark.parametrize(
    ("previous", "carried_on"),
    [
        ("running", "running"),
        ("starting", "starting"),
        ("restarting", "starting"),
        ("stopped", "starting"),
    ],
)
def test_a_new_registry_carries_on_a_running_pool_and_starts_any_other(
    entry: PoolEntry, start_registry: Any, previous: Lifecycle, carried_on: Lifecycle
) -> None:
    """A registry started where the last view was running (itself restarted inside a
    running pool) publishes running at once and hands out the next ready channel; after
    any other lifecycle it publishes starting. Either way it keeps the expected size."""
    entry.publish(
        build_view(
            entry.name,
            entry.strategy,
            entry.view,
            connections=ready_connections((object(),)),
            workers=(),
            expected_size=7,
            lifecycle=previous,
        )
    )

    ref = start_registry()

    view = entry.view
    assert view.lifecycle == carried_on
    assert view.expected_size == 7
    assert (view.channels, view.workers) == ((), ())  # the new registry knows no worker yet
    channel = object()
    report(ref, "worker-1", "ready", channel)
    assert entry.view.channels == ((channel,) if carried_on == "running" else ())


def test_on_stop_publishes_a_view_with_no_channels(entry: PoolEntry, start_registry: Any) -> None:
    """A stopping registry publishes a view with no channels and no records (nobody keeps
    it current any more); size and lifecycle stay, so a successor carries on."""
    ref = start_registry()
    ref.ask(SetLifecycle("running"), timeout=5)
    ref.ask(ExpectedSize(2), timeout=5)
    report(ref, "worker-1", "ready", object())
    report(ref, "worker-2", "ready", object())
    assert len(entry.view.channels) == 2

    ref.stop(timeout=5)

    view = entry.view
    assert (view.channels, view.workers) == ((), ())
    assert (view.lifecycle, view.expected_size) == ("running", 2)
    with pytest.raises(NotConnectedError):
        entry.get_channel()
    assert entry.status().status == "down"


def test_a_crashing_registry_publishes_a_view_with_no_channels(
    entry: PoolEntry, registry: pykka.ActorRef[Any]
) -> None:
    """When a told message crashes the registry, it hands out nothing until a new one starts."""
    report(registry, "worker-1", "ready", object())
    before = entry.view
    assert len(before.channels) == 1

    # An unhashable worker id fails the record lookup: an unexpected crash.
    registry.tell(WorkerReport(cast(str, ["worker-1"]), URN_A, "ready", channel=object()))

    view = changed(entry, before)
    assert (view.channels, view.workers) == ((), ())
    assert registry.actor_stopped.wait(timeout=5)
    with pytest.raises(NotConnectedError):
        entry.get_channel()


def _judge_timers() -> list[Any]:
    """The outlier-detection timers pending on the process timer."""
    scheduler = PROCESS.scheduler
    if scheduler is None:
        return []
    with scheduler._condition:
        return [h for h in scheduler._heap if type(h.message).__name__ == "_JudgeDue"]


def test_the_registry_judges_outliers_on_its_timer_and_stops_it_with_itself() -> None:
    """With pool.outlier_detection the registry judges every interval on the process timer:
    an address whose calls all fail leaves the view (status says ejected). The timer stops
    with the registry; a registry without outlier detection schedules none."""
    detection = {
        "interval": 0.05,
        "success_rate": None,
        "failure_percentage": {"minimum_hosts": 2, "request_volume": 5},
        "max_ejection_percent": 50,
    }
    config = Config.new(
        endpoint={"type": "local", "host": "127.0.0.1", "port": 9},
        pool={"size": 2, "outlier_detection": detection},
    )
    entry = claim(f"{PREFIX}{next(_names)}", config, token=object(), parent=None, child_id=None)
    parts = PoolParts(entry, cast(PoolChannels, None))
    ref = HealthRegistry.start(parts)
    try:
        ref.ask(SetLifecycle("running"), timeout=5)
        for worker, address in (("worker-1", "10.0.0.1:1"), ("worker-2", "10.0.0.2:1")):
            ref.ask(WorkerReport(worker, URN_A, "ready", channel=object(), address=address))
        assert _judge_timers()
        working, failing = (c.stats for c in entry.view.connections)
        deadline = time.monotonic() + 5
        while not entry.status().workers[1].ejected:
            assert time.monotonic() < deadline, entry.status()
            for _ in range(10):  # calls ending, as the pool channel tells them
                working.record(0.001, grpc.StatusCode.OK, 0.0)
                failing.record(0.001, grpc.StatusCode.INTERNAL, 0.0)
            time.sleep(0.01)
        assert [c.worker_id for c in entry.view.connections] == ["worker-1"]
    finally:
        ref.stop(timeout=5)
        release(entry, "test over")
    assert not _judge_timers()


def test_a_registry_without_outlier_detection_schedules_no_judgement(
    registry: pykka.ActorRef[Any],
) -> None:
    """Outlier detection off (the default): no timer of the registry's."""
    report(registry, "worker-1", "ready", object())
    assert not _judge_timers()
