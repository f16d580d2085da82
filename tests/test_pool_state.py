"""Tests for grpcpool._pool_state: the hot path, snapshot publishing, waiting
for readiness, and the process-wide pool table.

PoolState only stores channels, so plain ``object()`` instances stand in for
them wherever no real channel is needed.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterator
from typing import Any

import pykka
import pytest

from grpcpool import Config, telemetry
from grpcpool._channels import close_channel, open_channel, open_channel_count
from grpcpool._pool_state import PoolState, claim, lookup, names, release
from grpcpool._status import WorkerStatus
from grpcpool.errors import ConfigError, NotConnectedError, PoolNotFoundError
from tests.conftest import wait_until

_names = itertools.count(1)


def config(size: int = 2, **pool: Any) -> Config:
    """A plaintext config for a pool of ``size`` (nothing connects to it here)."""
    return Config.new(
        endpoint={"type": "local", "host": "127.0.0.1", "port": 9},
        pool={"size": size, **pool},
    )


def unique_name() -> str:
    """A pool name no other test uses, so the process-wide table never clashes."""
    return f"pool-state-test-{next(_names)}"


def worker(worker_id: str = "worker-1", state: Any = "ready") -> WorkerStatus:
    return WorkerStatus(worker_id, state, time.time())


@pytest.fixture
def get_channel_events() -> Iterator[list[dict[str, Any]]]:
    """Records pool.get_channel events (metadata) while the test runs."""
    assert not telemetry.pool_get_channel.receivers, "a receiver leaked from another test"
    seen: list[dict[str, Any]] = []

    def receive(sender: str, *, measurements: dict[str, Any], metadata: dict[str, Any]) -> None:
        seen.append({"sender": sender, **metadata})

    telemetry.pool_get_channel.connect(receive, weak=False)
    try:
        yield seen
    finally:
        telemetry.pool_get_channel.disconnect(receive)


class RecordingStrategy:
    """A custom strategy: always picks the last channel and records its calls."""

    def __init__(self) -> None:
        self.inits: list[tuple[str, int]] = []
        self.selects: list[int] = []

    def init(self, pool_name: str, size: int) -> None:
        self.inits.append((pool_name, size))

    def select(self, count: int) -> int:
        self.selects.append(count)
        return count - 1


class FakeStub:
    def __init__(self, channel: object) -> None:
        self.channel = channel


class OtherStub(FakeStub):
    pass


# --- the hot path -----------------------------------------------------------------


def test_get_channel_on_empty_snapshot_raises_not_connected_naming_the_pool() -> None:
    """get_channel with no ready channel raises NotConnectedError naming the pool."""
    pool = PoolState("empty-pool", config())

    with pytest.raises(NotConnectedError, match="empty-pool") as caught:
        pool.get_channel()
    assert caught.value.pool_name == "empty-pool"
    assert not isinstance(caught.value, PoolNotFoundError)


def test_custom_strategy_is_initialised_once_and_picks_the_channel() -> None:
    """A custom strategy gets init(pool_name, size) once and its select decides get_channel."""
    strategy = RecordingStrategy()
    pool = PoolState("custom", config(size=3, strategy=strategy))
    channels = (object(), object(), object())
    pool.publish(channels, ())

    picked = [pool.get_channel() for _ in range(4)]

    assert pool.strategy is strategy
    assert strategy.inits == [("custom", 3)]
    assert picked == [channels[2]] * 4
    assert strategy.selects == [3, 3, 3, 3]


def test_round_robin_by_default_over_the_snapshot_order() -> None:
    """The default strategy hands out the snapshot's channels in turn."""
    pool = PoolState("rr", config(size=3))
    channels = (object(), object(), object())
    pool.publish(channels, ())

    assert [pool.get_channel() for _ in range(6)] == list(channels) * 2


@pytest.mark.parametrize(("rate", "calls", "emitted"), [(0, 12, 0), (1, 12, 12), (3, 12, 4)])
def test_get_channel_event_is_sampled_by_rate(
    get_channel_events: list[dict[str, Any]], rate: int, calls: int, emitted: int
) -> None:
    """pool.get_channel fires never at rate 0, every call at rate 1, one call in N at rate N."""
    pool = PoolState("sampled", config(telemetry_sample_rate=rate))
    pool.publish((object(), object()), ())

    for _ in range(calls):
        pool.get_channel()

    assert len(get_channel_events) == emitted
    for event in get_channel_events:
        assert event == {"sender": "sampled", "pool_name": "sampled", "available_channels": 2}


def test_get_channel_does_not_emit_without_receivers(monkeypatch: pytest.MonkeyPatch) -> None:
    """With no receiver on pool.get_channel, the hot path never calls telemetry.emit."""
    assert not telemetry.pool_get_channel.receivers
    emitted: list[Any] = []
    monkeypatch.setattr(telemetry, "emit", lambda *args: emitted.append(args))
    pool = PoolState("silent", config(telemetry_sample_rate=1))
    pool.publish((object(),), ())

    for _ in range(5):
        pool.get_channel()
    assert emitted == []

    def receive(sender: str, **kwargs: Any) -> None:
        pass

    telemetry.pool_get_channel.connect(receive, weak=False)
    try:
        pool.get_channel()
    finally:
        telemetry.pool_get_channel.disconnect(receive)
    assert len(emitted) == 1  # the same pool does emit once someone listens


# --- publishing and waiting -------------------------------------------------------


def test_publish_replaces_snapshot_and_workers_whole() -> None:
    """publish swaps in the given tuples as they are; get_channel reads the new one."""
    pool = PoolState("swap", config())
    first, second = object(), object()
    workers = (worker("worker-1"), worker("worker-2"))

    pool.publish((first,), workers[:1])
    assert pool.get_channel() is first

    snapshot = (second,)
    pool.publish(snapshot, workers)
    assert pool.snapshot is snapshot
    assert pool.workers is workers
    assert [pool.get_channel() for _ in range(3)] == [second] * 3


def test_publish_wakes_a_waiter_in_another_thread_promptly() -> None:
    """wait_ready blocked in another thread returns True soon after publish, not at its timeout."""
    pool = PoolState("wake", config())
    result: dict[str, Any] = {}

    def wait() -> None:
        result["ready"] = pool.wait_ready(2, timeout=30.0)
        result["woke"] = time.monotonic()

    waiter = threading.Thread(target=wait, name="test-waiter")
    waiter.start()
    try:
        # Condition._waiters: the waiter is parked on the condition, not polling.
        assert wait_until(lambda: len(pool.changed._waiters) == 1, timeout=5)  # type: ignore[attr-defined]
        pool.publish((object(),), ())  # one of two: not enough, keeps waiting
        time.sleep(0.05)
        assert "ready" not in result
        published = time.monotonic()
        pool.publish((object(), object()), ())
        waiter.join(timeout=5)
    finally:
        pool.close()  # releases the waiter if an assertion above failed
        waiter.join(timeout=5)
    assert result["ready"] is True
    assert result["woke"] - published < 1.0


def test_close_wakes_waiters_with_false_and_empties_the_pool() -> None:
    """close releases wait_ready callers (False), empties the snapshot and drops stubs."""
    pool = PoolState("closing", config())
    pool.publish((object(),), ())
    pool.stub(FakeStub)
    result: list[bool] = []
    waiter = threading.Thread(target=lambda: result.append(pool.wait_ready(2, timeout=30.0)))
    waiter.start()
    try:
        assert wait_until(lambda: len(pool.changed._waiters) == 1, timeout=5)  # type: ignore[attr-defined]
    finally:
        pool.close()
        waiter.join(timeout=5)

    assert result == [False]
    assert pool.closed
    assert pool.snapshot == ()
    assert pool.stubs == {}
    assert pool.wait_ready(1, timeout=0) is False


def test_wait_ready_times_out_with_false() -> None:
    """wait_ready returns False once its timeout passes without enough ready channels."""
    pool = PoolState("slow", config())
    started = time.monotonic()

    assert pool.wait_ready(1, timeout=0.1) is False
    assert time.monotonic() - started >= 0.09


def test_publish_after_close_is_ignored() -> None:
    """A publish that arrives after close does not refill the stopped pool."""
    pool = PoolState("stopped", config())
    pool.close()

    pool.publish((object(),), (worker(),))

    assert pool.snapshot == ()
    assert pool.workers == ()
    with pytest.raises(NotConnectedError):
        pool.get_channel()


class _CloseDuringCompare:
    """A stand-in channel whose equality check runs ``close`` on another thread.

    publish compares the new snapshot with the old one; this makes a close
    from another thread (the PoolSupervisor stopping) land exactly inside a
    publish (the HealthRegistry reporting a change) at that point.
    """

    def __init__(self, pool: PoolState) -> None:
        self.pool = pool
        self.closer: threading.Thread | None = None

    def __eq__(self, other: object) -> bool:
        if self.closer is None:
            self.closer = threading.Thread(target=self.pool.close, name="test-closer")
            self.closer.start()
            self.closer.join(timeout=0.3)
        return self is other

    __hash__ = object.__hash__


def test_publish_racing_close_never_refills_the_pool() -> None:
    """A close that runs while a publish is under way still leaves the pool empty and closed."""
    pool = PoolState("race", config())
    pool.publish((object(),), ())
    racing = _CloseDuringCompare(pool)

    pool.publish((racing,), (worker(),))
    assert racing.closer is not None
    racing.closer.join(timeout=5)

    assert pool.closed
    assert pool.snapshot == ()
    with pytest.raises(NotConnectedError):
        pool.get_channel()


# --- the stub cache ---------------------------------------------------------------


def test_stub_is_cached_per_channel_and_stub_class() -> None:
    """stub builds one stub per (channel, class) and returns that one again."""
    pool = PoolState("stubs", config())
    first, second = object(), object()
    pool.publish((first, second), ())

    a1, b1, a2, b2 = (pool.stub(FakeStub) for _ in range(4))
    other = pool.stub(OtherStub)

    assert (a1.channel, b1.channel) == (first, second)
    assert a2 is a1
    assert b2 is b1
    assert isinstance(other, OtherStub)
    assert other is not a1
    assert other is not b1
    assert set(pool.stubs) == {(first, FakeStub), (second, FakeStub), (other.channel, OtherStub)}


def test_adding_a_stub_replaces_the_cache_instead_of_changing_it() -> None:
    """stub() never mutates the dict the registry may be iterating: it swaps in a copy."""
    pool = PoolState("stubs-cow", config())
    pool.publish((object(),), ())
    before = pool.stubs
    pool.stub(FakeStub)
    assert before == {}
    assert len(pool.stubs) == 1 and pool.stubs is not before


def test_stubs_of_channels_leaving_the_snapshot_are_pruned() -> None:
    """When a channel leaves the snapshot its cached stubs go; the others stay."""
    pool = PoolState("prune", config())
    leaving, staying = object(), object()
    pool.publish((leaving, staying), ())
    kept = [pool.stub(FakeStub) for _ in range(2)]
    kept_for_staying = next(stub for stub in kept if stub.channel is staying)

    pool.publish((staying,), ())

    assert set(pool.stubs) == {(staying, FakeStub)}
    assert pool.stub(FakeStub) is kept_for_staying


# --- the process-wide pool table --------------------------------------------------


class Owner(pykka.ThreadingActor):
    """Stands in for a PoolSupervisor as a pool's owner."""


def test_claim_lookup_release_round_trip() -> None:
    """claim makes a pool findable by name; release removes it again."""
    state = PoolState(unique_name(), config())
    claim(state)
    try:
        assert lookup(state.name) is state
        assert state.name in names()
    finally:
        release(state)

    assert state.name not in names()
    with pytest.raises(PoolNotFoundError, match=state.name):
        lookup(state.name)


def test_claiming_a_name_held_by_a_live_or_starting_pool_raises() -> None:
    """A second claim of a name whose owner is alive or not yet set raises ConfigError naming it."""
    name = unique_name()
    holder = PoolState(name, config())
    claim(holder)  # no owner yet: a pool still starting
    owner = Owner.start()
    try:
        with pytest.raises(ConfigError, match=name) as caught:
            claim(PoolState(name, config()))
        assert caught.value.key == "pool.name"

        holder.owner = owner
        with pytest.raises(ConfigError, match=name):
            claim(PoolState(name, config()))
        assert lookup(name) is holder
    finally:
        owner.stop()
        release(holder)


def test_claim_over_a_dead_owner_is_allowed_and_release_only_removes_its_own_state() -> None:
    """A name whose owner actor has ended can be claimed; the old state's release is then a no-op."""
    name = unique_name()
    old = PoolState(name, config())
    old.owner = Owner.start()
    claim(old)
    new = PoolState(name, config())
    try:
        old.owner.stop()

        claim(new)
        assert lookup(name) is new

        release(old)
        assert lookup(name) is new
    finally:
        release(new)
        release(old)
    with pytest.raises(PoolNotFoundError):
        lookup(name)


# --- retiring channels ------------------------------------------------------------


def test_retired_channel_stays_open_for_its_drain_time_then_closes() -> None:
    """retire keeps a real channel open during the drain period and closes it afterwards."""
    pool = PoolState("drain", config())
    raw, _ = open_channel(pool.config)
    try:
        pool.retire(raw, 0.3)
        assert open_channel_count() == 1
        assert wait_until(lambda: open_channel_count() == 0, timeout=5)
    finally:
        pool.close()
        close_channel(raw)


def test_close_closes_retired_channels_at_once_and_later_retires_are_immediate() -> None:
    """close ends the drain of retired channels; retiring into a closed pool closes at once."""
    pool = PoolState("drain-stop", config())
    draining, _ = open_channel(pool.config)
    late, _ = open_channel(pool.config)
    try:
        pool.retire(draining, 30.0)
        assert open_channel_count() == 2

        pool.close()
        assert open_channel_count() == 1

        pool.retire(late, 30.0)
        assert open_channel_count() == 0
    finally:
        close_channel(draining)
        close_channel(late)
