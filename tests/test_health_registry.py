"""Tests for grpcpool.actors._health_registry: a real HealthRegistry actor
publishing to a PoolState.

Reports are sent with ``ask`` where the test needs to know they were handled;
a worker ``tell``s them, and the registry handles both the same way.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pykka
import pytest

from grpcpool import Config
from grpcpool._pool_state import PoolState
from grpcpool.actors._health_registry import HealthRegistry, WorkerGone, WorkerReport

URN_A = "urn:uuid:aaaaaaaa-0000-0000-0000-000000000001"
URN_B = "urn:uuid:bbbbbbbb-0000-0000-0000-000000000002"


@pytest.fixture
def pool() -> PoolState:
    return PoolState(
        "registry-test",
        Config.new(endpoint={"type": "local", "host": "127.0.0.1", "port": 9}, pool={"size": 3}),
    )


@pytest.fixture
def registry(pool: PoolState) -> Iterator[pykka.ActorRef[Any]]:
    ref = HealthRegistry.start(pool)
    try:
        yield ref
    finally:
        ref.stop(timeout=5)


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


def states(pool: PoolState) -> dict[str, str]:
    return {w.worker_id: w.state for w in pool.workers}


def test_start_registers_itself_on_the_pool_and_publishes_an_empty_snapshot(
    pool: PoolState, registry: pykka.ActorRef[Any]
) -> None:
    """on_start sets pool.registry to the actor and publishes an empty snapshot."""
    assert registry.proxy().ready_count().get(timeout=5) == 0  # on_start has run
    assert pool.registry == registry
    assert pool.snapshot == ()
    assert pool.workers == ()


def test_ready_channels_are_published_in_worker_start_order(
    pool: PoolState, registry: pykka.ActorRef[Any]
) -> None:
    """Ready channels enter the snapshot ordered by when their workers started, not became ready."""
    channels = {f"worker-{i}": object() for i in (1, 2, 3)}
    for worker_id in channels:
        report(registry, worker_id, "connecting")
    assert pool.snapshot == ()

    for worker_id in ("worker-3", "worker-1", "worker-2"):
        report(registry, worker_id, "ready", channels[worker_id], peer="127.0.0.1:1")

    assert pool.snapshot == tuple(channels.values())
    assert [w.worker_id for w in pool.workers] == ["worker-1", "worker-2", "worker-3"]
    assert all(w.state == "ready" and w.peer == "127.0.0.1:1" for w in pool.workers)
    assert registry.proxy().ready_count().get(timeout=5) == 3


def test_backoff_and_gone_take_channels_out(pool: PoolState, registry: pykka.ActorRef[Any]) -> None:
    """A backoff report removes the worker's channel; WorkerGone removes the worker's record."""
    first, second = object(), object()
    report(registry, "worker-1", "ready", first)
    report(registry, "worker-2", "ready", second)

    report(registry, "worker-1", "backoff", reconnect_attempt=1, last_error="idle")
    assert pool.snapshot == (second,)
    backoff = pool.workers[0]
    assert (backoff.state, backoff.reconnect_attempt, backoff.last_error) == ("backoff", 1, "idle")

    registry.ask(WorkerGone("worker-2", URN_A), timeout=5)
    assert pool.snapshot == ()
    assert states(pool) == {"worker-1": "backoff"}


def test_channel_is_published_only_for_a_ready_report(
    pool: PoolState, registry: pykka.ActorRef[Any]
) -> None:
    """A channel attached to a non-ready report never reaches the snapshot."""
    report(registry, "worker-1", "connecting", object())
    report(registry, "worker-1", "backoff", object())

    assert pool.snapshot == ()


def test_reports_from_a_stale_urn_are_ignored(
    pool: PoolState, registry: pykka.ActorRef[Any]
) -> None:
    """A non-connecting report or WorkerGone from another incarnation's URN changes nothing."""
    channel = object()
    report(registry, "worker-1", "ready", channel, urn=URN_A)
    before = pool.workers

    report(registry, "worker-1", "backoff", urn=URN_B, last_error="late")
    report(registry, "worker-1", "ready", object(), urn=URN_B)
    registry.ask(WorkerGone("worker-1", URN_B), timeout=5)

    assert pool.snapshot == (channel,)
    assert pool.workers == before


def test_connecting_from_a_new_urn_replaces_the_record(
    pool: PoolState, registry: pykka.ActorRef[Any]
) -> None:
    """A restarted worker's first report (connecting, new URN) replaces the old incarnation."""
    old_channel, new_channel = object(), object()
    report(registry, "worker-1", "ready", old_channel, urn=URN_A)
    report(registry, "worker-2", "connecting", urn=URN_A)

    report(registry, "worker-1", "connecting", urn=URN_B)
    assert pool.snapshot == ()
    assert states(pool) == {"worker-1": "connecting", "worker-2": "connecting"}

    # From now on the old URN is the stale one.
    report(registry, "worker-1", "ready", old_channel, urn=URN_A)
    registry.ask(WorkerGone("worker-1", URN_A), timeout=5)
    assert pool.snapshot == ()

    report(registry, "worker-1", "ready", new_channel, urn=URN_B)
    assert pool.snapshot == (new_channel,)
    assert [w.worker_id for w in pool.workers] == ["worker-1", "worker-2"]  # place kept


def test_since_is_kept_while_the_state_is_unchanged(
    pool: PoolState, registry: pykka.ActorRef[Any]
) -> None:
    """Repeated reports of the same state keep `since`; a new state or incarnation resets it."""
    report(registry, "worker-1", "backoff", urn=URN_A, reconnect_attempt=1)
    first = pool.workers[0]
    time.sleep(0.02)

    report(registry, "worker-1", "backoff", urn=URN_A, reconnect_attempt=2, last_error="refused")
    again = pool.workers[0]
    assert again.since == first.since
    assert (again.reconnect_attempt, again.last_error) == (2, "refused")

    time.sleep(0.02)
    report(registry, "worker-1", "connecting", urn=URN_A)
    assert pool.workers[0].since > first.since

    connecting_since = pool.workers[0].since
    time.sleep(0.02)
    report(registry, "worker-1", "connecting", urn=URN_B)  # same state, new incarnation
    assert pool.workers[0].since > connecting_since


def test_ask_worker_gone_returns_after_the_snapshot_changed(
    pool: PoolState, registry: pykka.ActorRef[Any]
) -> None:
    """ask(WorkerGone) answers only once the channel is out of the published snapshot."""
    channel = object()
    registry.tell(WorkerReport("worker-1", URN_A, "ready", channel=channel))
    registry.tell(WorkerReport("worker-2", URN_A, "connecting"))

    registry.ask(WorkerGone("worker-1", URN_A), timeout=5)

    # No waiting here: the removal is published before the answer.
    assert pool.snapshot == ()
    assert states(pool) == {"worker-2": "connecting"}


def test_gone_for_an_unknown_worker_is_ignored(
    pool: PoolState, registry: pykka.ActorRef[Any]
) -> None:
    """WorkerGone for a worker the registry never heard of changes nothing."""
    channel = object()
    report(registry, "worker-1", "ready", channel)

    registry.ask(WorkerGone("worker-9", URN_A), timeout=5)

    assert pool.snapshot == (channel,)
    assert states(pool) == {"worker-1": "ready"}
