"""Tests for grpcpool.core._records: a pool's worker records and the view built from them.

Pure logic: the records and an event in, the wall-clock time passed in, the
new records and the effects out. Channels are plain objects; no server, no
actor, no loop. The HealthRegistry actor (tests/test_health_registry.py) and
the asyncio pool (tests/test_aio.py) drive this machine.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from grpcpool._status import WorkerState
from grpcpool.core._records import (
    ExpectedSize,
    ForgetWorkers,
    Publish,
    Records,
    RecordsEvent,
    SetLifecycle,
    WorkersChanged,
    publish,
    records_after,
    step,
)
from grpcpool.core._reports import WorkerGone, WorkerReport
from grpcpool.core._view import Lifecycle, PoolView, build_view, empty_view
from grpcpool.errors import NotConnectedError
from grpcpool.strategy import resolve_strategy
from tests.pools import ready_connections

NAME = "records"
ROUND_ROBIN = resolve_strategy("round_robin")
URN_A, URN_B = "urn:a", "urn:b"


def running(expected: int = 3) -> Records:
    """The records of a running pool with no worker on record yet."""
    previous = empty_view(NAME, expected, "running")
    return records_after(NAME, ROUND_ROBIN, previous)


def report(
    worker_id: str,
    state: WorkerState,
    channel: object | None = None,
    urn: str = URN_A,
    **fields: Any,
) -> WorkerReport:
    """A worker's report (``channel`` stands for a grpc channel)."""
    return WorkerReport(worker_id, urn, state, channel=channel, **fields)  # type: ignore[arg-type]


def run(records: Records, *events: RecordsEvent, now: float = 100.0) -> Records:
    """The records after ``events``, all at ``now``."""
    for event in events:
        records, _ = step(records, event, now)
    return records


def states(view: PoolView) -> dict[str, str]:
    """Worker id -> state, as the view shows them."""
    return {w.worker_id: w.state for w in view.workers}


# --- a keeper starting -------------------------------------------------------------


@pytest.mark.parametrize(
    ("previous", "carried_on"),
    [
        ("running", "running"),
        ("starting", "starting"),
        ("restarting", "starting"),
        ("stopped", "starting"),
    ],
)
def test_a_keeper_carries_on_a_running_pool_and_starts_any_other(
    previous: Lifecycle, carried_on: Lifecycle
) -> None:
    """Records made after a view keep its expected size and know no worker; the pool runs
    on only if it ran. Until published, the view is the one they were made after."""
    view = build_view(
        NAME,
        ROUND_ROBIN,
        empty_view(NAME, 1, "running"),
        connections=ready_connections((object(),)),
        workers=(),
        expected_size=7,
        lifecycle=previous,
    )

    records = records_after(NAME, ROUND_ROBIN, view)

    assert (records.lifecycle, records.expected, dict(records.workers)) == (carried_on, 7, {})
    assert records.view is view
    published, effects = publish(records)
    assert effects == (Publish(published.view),)
    assert (published.view.channels, published.view.workers) == ((), ())
    assert (published.view.lifecycle, published.view.expected_size) == (carried_on, 7)


# --- reports -----------------------------------------------------------------------


def test_a_report_publishes_the_new_view_then_says_the_workers_changed() -> None:
    """A report's effects: publish the view it makes, then poke whoever balances."""
    channel = object()

    records, effects = step(running(), report("worker-1", "ready", channel), 100.0)

    assert effects == (Publish(records.view), WorkersChanged())
    assert records.view.channels == (channel,)
    assert records.view.pick() is channel
    (worker,) = records.view.workers
    assert (worker.worker_id, worker.state, worker.since) == ("worker-1", "ready", 100.0)


def test_ready_channels_are_in_worker_start_order_and_a_record_keeps_its_place() -> None:
    """The view lists workers and channels by when the worker was first on record; a
    record replaced by a new report (even a new incarnation's) keeps its place."""
    channels = [object(), object(), object()]
    records = run(running(), *(report(f"worker-{i}", "connecting") for i in (1, 2, 3)))

    records = run(
        records,
        report("worker-3", "ready", channels[2]),
        report("worker-1", "ready", channels[0]),
        report("worker-2", "connecting", urn=URN_B),
        report("worker-2", "ready", channels[1], urn=URN_B),
    )

    assert records.view.channels == tuple(channels)
    assert [w.worker_id for w in records.view.workers] == ["worker-1", "worker-2", "worker-3"]


def test_a_channel_reaches_the_view_only_with_a_ready_report() -> None:
    """A channel attached to a connecting, backoff or stopped report is not handed out."""
    records = run(
        running(),
        report("worker-1", "connecting", object()),
        report("worker-2", "backoff", object()),
        report("worker-3", "stopped", object()),
        report("worker-4", "ready"),  # ready, but nothing to hand out
    )

    assert records.view.channels == ()
    assert states(records.view) == {
        "worker-1": "connecting",
        "worker-2": "backoff",
        "worker-3": "stopped",
        "worker-4": "ready",
    }
    with pytest.raises(NotConnectedError):
        records.view.pick()


def test_a_stale_report_changes_nothing_and_has_no_effect() -> None:
    """A non-connecting report from another incarnation than the one on record is stale:
    the very same records come back, with nothing to do."""
    records = run(running(), report("worker-1", "ready", object(), urn=URN_A))

    for stale in (
        report("worker-1", "backoff", urn=URN_B, last_error="late"),
        report("worker-1", "ready", object(), urn=URN_B),
        report("worker-1", "stopped", urn=URN_B),
    ):
        after, effects = step(records, stale, 200.0)
        assert (after, effects) == (records, ())


def test_connecting_from_a_new_incarnation_replaces_the_record() -> None:
    """A restarted worker's first report (connecting, new URN) replaces the old record; from
    then on the old URN is the stale one, for reports and for WorkerGone alike."""
    old_channel, new_channel = object(), object()
    records = run(running(), report("worker-1", "ready", old_channel, urn=URN_A))

    records = run(records, report("worker-1", "connecting", urn=URN_B))
    assert (records.view.channels, states(records.view)) == ((), {"worker-1": "connecting"})

    records = run(
        records,
        report("worker-1", "ready", old_channel, urn=URN_A),
        WorkerGone("worker-1", URN_A),
    )
    assert (records.view.channels, states(records.view)) == ((), {"worker-1": "connecting"})

    records = run(records, report("worker-1", "ready", new_channel, urn=URN_B))
    assert records.view.channels == (new_channel,)


def test_since_is_kept_for_the_same_state_address_and_incarnation_only() -> None:
    """``since`` stays while one incarnation reports one state at one address; a new
    state, a move to another address or a new incarnation starts it anew."""
    records = run(running(), report("worker-1", "backoff", address="a:1"), now=10.0)

    records = run(
        records, report("worker-1", "backoff", reconnect_attempt=2, address="a:1"), now=20.0
    )
    (worker,) = records.view.workers
    assert (worker.since, worker.reconnect_attempt) == (10.0, 2)

    records = run(records, report("worker-1", "backoff", address="b:1"), now=30.0)
    assert records.view.workers[0].since == 30.0  # moved
    records = run(records, report("worker-1", "connecting", address="b:1"), now=40.0)
    assert records.view.workers[0].since == 40.0  # another state
    records = run(records, report("worker-1", "connecting", urn=URN_B, address="b:1"), now=50.0)
    assert records.view.workers[0].since == 50.0  # another incarnation


def test_a_channel_reported_ready_again_keeps_its_connection_and_the_picker_turn() -> None:
    """The same channel reported ready again keeps its ReadyConnection (its calls in
    flight) and the round robin's turn; another channel gets a new connection."""
    a, b, c = object(), object(), object()
    records = run(
        running(), *(report(f"worker-{i}", "ready", ch) for i, ch in enumerate((a, b, c)))
    )
    assert [records.view.pick(), records.view.pick()] == [a, b]
    connection = records.view.connections[1]

    again = run(records, report("worker-1", "ready", b, peer="10.0.0.1:1"))

    assert again.view is not records.view
    assert again.view.connections[1] is connection
    assert again.view.pick is records.view.pick
    assert [again.view.pick() for _ in range(3)] == [c, a, b]
    moved = run(again, report("worker-1", "ready", object()))
    assert moved.view.connections[1] is not connection


def test_a_ready_connection_carries_the_reports_suspect_and_address() -> None:
    """The connection made for a ready report knows its worker, its address and whom to
    tell that a call on it failed."""
    told: list[str] = []
    channel = object()

    records = run(
        running(),
        report("worker-1", "ready", channel, suspect=lambda: told.append("x"), address="a:1"),
    )

    (connection,) = records.view.connections
    assert (connection.channel, connection.worker_id, connection.address) == (
        channel,
        "worker-1",
        "a:1",
    )
    connection.report_unavailable(100.0)
    assert told == ["x"]


# --- gone ----------------------------------------------------------------------------


def test_gone_removes_the_record_of_its_incarnation_only() -> None:
    """WorkerGone of the incarnation on record removes it (published, workers changed); of
    another incarnation or an unknown worker it changes nothing."""
    first, second = object(), object()
    records = run(
        running(), report("worker-1", "ready", first), report("worker-2", "ready", second)
    )

    for ignored in (WorkerGone("worker-1", URN_B), WorkerGone("worker-9", URN_A)):
        assert step(records, ignored, 1.0) == (records, ())

    after, effects = step(records, WorkerGone("worker-1", URN_A), 1.0)
    assert effects == (Publish(after.view), WorkersChanged())
    assert (after.view.channels, states(after.view)) == ((second,), {"worker-2": "ready"})
    assert "worker-1" in records.workers  # the records stepped from are left as they were


# --- size, lifecycle, forgetting -----------------------------------------------------


def test_expected_size_and_lifecycle_publish_without_poking_the_balancer() -> None:
    """ExpectedSize and SetLifecycle publish a view saying so, every time (the same value
    again too), and no worker changed."""
    records = running()

    for event in (ExpectedSize(2), ExpectedSize(2), SetLifecycle("running"), ExpectedSize(0)):
        after, effects = step(records, event, 1.0)
        assert effects == (Publish(after.view),)
        assert after.view is not records.view
        records = after
    assert (records.view.expected_size, records.expected) == (0, 0)


def test_a_negative_expected_size_is_refused() -> None:
    """An expected size below 0 is a driver's bug, refused where it is made."""
    with pytest.raises(ValueError, match="never negative, got -1"):
        ExpectedSize(-1)


def test_channels_are_handed_out_only_while_running() -> None:
    """A starting pool records ready workers but hands nothing out; running hands them
    out with no new report; restarting and stopped take them out, saying why."""
    first, second = object(), object()
    records = records_after(NAME, ROUND_ROBIN, empty_view(NAME, 2, "starting"))
    records = run(records, report("worker-1", "ready", first), report("worker-2", "ready", second))
    assert (records.view.channels, records.view.lifecycle) == ((), "starting")

    records = run(records, SetLifecycle("running"))
    assert records.view.channels == (first, second)

    for lifecycle in ("restarting", "stopped"):
        records = run(records, SetLifecycle(lifecycle))
        assert records.view.channels == ()
        with pytest.raises(NotConnectedError, match=lifecycle):
            records.view.pick()


def test_forgetting_the_workers_hands_out_nothing_and_keeps_size_and_lifecycle() -> None:
    """ForgetWorkers (the keeper stops or crashes) publishes a view with no channel and no
    record; the size and lifecycle stay for a successor to carry on."""
    records = run(running(2), report("worker-1", "ready", object()))

    after, effects = step(records, ForgetWorkers(), 1.0)

    assert effects == (Publish(after.view),)
    assert (after.view.channels, after.view.workers) == ((), ())
    assert (after.view.lifecycle, after.view.expected_size) == ("running", 2)


def test_anything_else_is_refused() -> None:
    """A message that is not a records event is a TypeError, as is an unhashable worker id."""
    with pytest.raises(TypeError, match="not a records event"):
        step(running(), "hello", 1.0)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        step(running(), report(["worker-1"], "ready", object()), 1.0)  # type: ignore[arg-type]


# --- random sequences ----------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Channel:
    """A channel that remembers which incarnation reported it."""

    urn: str


@dataclass
class Model:
    """What the view must show, kept the obvious way.

    ``latest`` is each worker's newest incarnation; a worker whose newest
    incarnation is gone says nothing until it is started again, as a dead
    actor or task cannot.
    """

    latest: dict[str, str] = field(default_factory=dict)
    incarnations: dict[str, list[str]] = field(default_factory=dict)
    gone: set[str] = field(default_factory=set)
    records: dict[str, tuple[WorkerState, Channel | None]] = field(default_factory=dict)
    expected: int = 3
    lifecycle: Lifecycle = "running"
    started: int = 0


WORKERS = ("worker-1", "worker-2", "worker-3")

operations = st.one_of(
    st.tuples(st.just("start"), st.sampled_from(WORKERS)),
    st.tuples(
        st.just("say"),
        st.sampled_from(WORKERS),
        st.sampled_from(("connecting", "ready", "backoff")),
    ),
    st.tuples(
        st.just("stale"),
        st.sampled_from(WORKERS),
        st.sampled_from(("ready", "backoff", "stopped")),
        st.integers(0, 5),
    ),
    st.tuples(st.just("gone"), st.sampled_from(WORKERS), st.booleans(), st.integers(0, 5)),
    st.tuples(st.just("expected"), st.integers(0, 9)),
    st.tuples(st.just("lifecycle"), st.sampled_from(("running", "restarting", "stopped"))),
)


def apply(model: Model, operation: tuple[Any, ...]) -> RecordsEvent | None:
    """The event ``operation`` makes, with the model moved on; None if it cannot happen."""
    kind, *args = operation
    if kind == "start":
        (worker_id,) = args
        model.started += 1
        urn = f"urn:{worker_id}:{model.started}"
        model.latest[worker_id] = urn
        model.incarnations.setdefault(worker_id, []).append(urn)
        model.gone.discard(worker_id)
        model.records[worker_id] = ("connecting", None)
        return report(worker_id, "connecting", urn=urn)
    if kind == "say":
        worker_id, state = args
        if worker_id not in model.latest or worker_id in model.gone:
            return None
        urn = model.latest[worker_id]
        channel = Channel(urn) if state == "ready" else None
        model.records[worker_id] = (state, channel)
        return report(worker_id, state, channel, urn=urn)
    if kind == "stale":
        worker_id, state, pick = args
        earlier = model.incarnations.get(worker_id, [])[:-1]
        if not earlier or worker_id in model.gone:
            return None
        urn = earlier[pick % len(earlier)]
        return report(worker_id, state, Channel(urn) if state == "ready" else None, urn=urn)
    if kind == "gone":
        worker_id, latest, pick = args
        if worker_id not in model.latest or worker_id in model.gone:
            return None
        if latest:
            model.gone.add(worker_id)
            model.records.pop(worker_id, None)
            return WorkerGone(worker_id, model.latest[worker_id])
        earlier = model.incarnations[worker_id][:-1]
        return WorkerGone(worker_id, earlier[pick % len(earlier)]) if earlier else None
    if kind == "expected":
        model.expected = args[0]
        return ExpectedSize(args[0])
    model.lifecycle = args[0]
    return SetLifecycle(args[0])


@settings(max_examples=300, deadline=None)
@given(st.lists(operations, max_size=60))
def test_random_sequences_show_only_the_latest_incarnations(
    sequence: list[tuple[Any, ...]],
) -> None:
    """Whatever earlier incarnations still say, the view hands out exactly the channels the
    newest incarnation of each worker last reported ready (while the pool runs), records
    each worker's newest state, and its expected size is the last one set, never negative."""
    model = Model()
    records = running()
    now = 0.0
    for operation in sequence:
        event = apply(model, operation)
        if event is None:
            continue
        now += 1.0
        records, effects = step(records, event, now)
        view = records.view

        assert all(c.channel.urn == model.latest[c.worker_id] for c in view.connections)  # type: ignore[attr-defined]
        wanted = {w: ch for w, (state, ch) in model.records.items() if ch is not None}
        shown = {c.worker_id: c.channel for c in view.connections}
        assert shown == (wanted if model.lifecycle == "running" else {})
        assert {w.worker_id: w.state for w in view.workers} == {
            w: state for w, (state, _) in model.records.items()
        }
        assert all(records.workers[w].urn == model.latest[w] for w in model.records)
        assert view.expected_size == records.expected == model.expected >= 0
        assert view.lifecycle == model.lifecycle
        assert not effects or effects[0] == Publish(view)
