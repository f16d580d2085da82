"""Tests for grpcpool.actors._entry: the hot path, publishing views, waiting for
readiness, the stub cache and the process-wide pool table.

A PoolEntry only stores and hands out channels, so plain ``object()``
instances stand in for them wherever no real channel is needed. Entries are
claimed straight from the table (no actors) and always released again, so
the table is as clean after each test as before it.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pykka
import pytest

import grpcpool
from grpcpool import Config, telemetry
from grpcpool._process import ENDED_POOLS_KEPT, PROCESS
from grpcpool._status import WorkerStatus
from grpcpool.actors._entry import (
    FORK_ADVICE,
    ForkedPool,
    PoolEntry,
    attach,
    check_name_free,
    claim,
    names,
    release,
    release_token,
)
from grpcpool.api import lookup
from grpcpool.core._view import Lifecycle, PoolView, build_view
from grpcpool.errors import ConfigError, NotConnectedError, PoolNotFoundError
from tests.pools import ready_connections
from tests.waiting import wait_until

PREFIX = "pool-entry-test-"
_names = itertools.count(1)


def config(size: int = 2, **pool: Any) -> Config:
    """A plaintext config for a pool of ``size`` (nothing connects to it here)."""
    return Config.new(
        endpoint={"type": "local", "host": "127.0.0.1", "port": 9},
        pool={"size": size, **pool},
    )


def unique_name() -> str:
    """A pool name no other test uses, so the process-wide table never clashes."""
    return f"{PREFIX}{next(_names)}"


def ready(worker_id: str) -> WorkerStatus:
    """A worker record in state ready."""
    return WorkerStatus(worker_id, "ready", time.time(), peer="127.0.0.1:9")


def view_of(
    entry: PoolEntry,
    channels: tuple[Any, ...],
    workers: tuple[WorkerStatus, ...] | None = None,
    *,
    lifecycle: Lifecycle = "running",
    expected_size: int | None = None,
) -> PoolView:
    """The view the registry would publish next: ``channels`` ready, one record each."""
    if workers is None:
        workers = tuple(ready(f"worker-{i}") for i in range(1, len(channels) + 1))
    return build_view(
        entry.name,
        entry.strategy,
        entry.view,
        connections=ready_connections(channels),
        workers=workers,
        expected_size=entry.view.expected_size if expected_size is None else expected_size,
        lifecycle=lifecycle,
    )


def publish(entry: PoolEntry, *channels: Any) -> PoolView:
    """Publishes a running view with ``channels`` ready; returns it."""
    view = view_of(entry, channels)
    entry.publish(view)
    return view


def parked_waiters(entry: PoolEntry) -> int:
    """How many threads wait on the entry's condition (blocked, not polling)."""
    return len(entry.changed._waiters)  # type: ignore[attr-defined]


@pytest.fixture(autouse=True)
def table_left_clean() -> Iterator[None]:
    """Fails the test if it leaves one of its pools in the process table."""
    yield
    left = [name for name in [*PROCESS.pools, *PROCESS.forked_pools] if name.startswith(PREFIX)]
    assert left == [], f"pools left in the process table: {left}"


@pytest.fixture
def new_entry() -> Iterator[Callable[..., PoolEntry]]:
    """Claims entries under fresh names (``new_entry(size, **pool)``); releases them afterwards."""
    made: list[PoolEntry] = []

    def new(size: int = 2, **pool: Any) -> PoolEntry:
        entry = claim(
            unique_name(), config(size, **pool), token=object(), parent=None, child_id=None
        )
        made.append(entry)
        return entry

    try:
        yield new
    finally:
        for entry in made:
            release(entry, "test over")


@pytest.fixture
def get_channel_events() -> Iterator[list[dict[str, Any]]]:
    """Records pool.get_channel events (sender and metadata) while the test runs."""
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


class FirstPicker:
    """A custom strategy of the picker form: always the first item; counts its builds."""

    def __init__(self) -> None:
        self.inits: list[tuple[str, int]] = []
        self.built: list[tuple[Any, ...]] = []

    def init(self, pool_name: str, size: int) -> None:
        self.inits.append((pool_name, size))

    def picker(self, items: tuple[Any, ...]) -> Callable[[], Any]:
        self.built.append(items)
        return lambda: items[0]


class FakeStub:
    """Stands in for a generated stub: remembers its channel."""

    def __init__(self, channel: object) -> None:
        self.channel = channel


class OtherStub(FakeStub):
    """A second stub class, cached apart from FakeStub."""


class Owner(pykka.ThreadingActor):
    """Stands in for a PoolSupervisor as a pool's owner."""


# --- the hot path -----------------------------------------------------------------


def test_get_channel_on_an_empty_view_raises_not_connected_naming_the_pool(
    new_entry: Callable[..., PoolEntry],
) -> None:
    """get_channel with no ready channel raises NotConnectedError naming the pool."""
    entry = new_entry()
    publish(entry)  # running, but nothing ready

    for _ in range(2):  # the fresh entry's view, then the published one
        with pytest.raises(NotConnectedError, match=entry.name) as caught:
            entry.get_channel()
        assert caught.value.pool_name == entry.name
        assert not isinstance(caught.value, PoolNotFoundError)


def test_a_fresh_entry_is_starting_with_the_configured_size(
    new_entry: Callable[..., PoolEntry],
) -> None:
    """A new entry's view is empty, starting, and expects config.pool.size workers."""
    entry = new_entry(size=4)

    assert entry.view.channels == ()
    assert entry.view.workers == ()
    assert entry.view.lifecycle == "starting"
    assert entry.view.expected_size == 4
    assert entry.ended is None
    assert entry.owner is None
    status = entry.status()
    assert (status.pool_name, status.current_size, status.status) == (entry.name, 0, "down")


def test_custom_strategy_is_initialised_once_and_picks_the_channel(
    new_entry: Callable[..., PoolEntry],
) -> None:
    """A select() strategy gets init(pool_name, size) once and its select decides get_channel."""
    strategy = RecordingStrategy()
    entry = new_entry(size=3, strategy=strategy)
    channels = (object(), object(), object())
    publish(entry, *channels)

    picked = [entry.get_channel() for _ in range(4)]

    assert strategy.inits == [(entry.name, 3)]
    assert picked == [channels[2]] * 4
    assert strategy.selects == [3, 3, 3, 3]


def test_custom_picker_strategy_is_used_as_it_is(new_entry: Callable[..., PoolEntry]) -> None:
    """A picker() strategy is the entry's strategy itself, initialised once, and picks."""
    strategy = FirstPicker()
    entry = new_entry(size=2, strategy=strategy)
    channels = (object(), object())
    publish(entry, *channels)

    assert entry.strategy is strategy
    assert strategy.inits == [(entry.name, 2)]
    assert [entry.get_channel() for _ in range(3)] == [channels[0]] * 3
    assert strategy.built == [channels]


def test_round_robin_by_default_over_the_views_order(
    new_entry: Callable[..., PoolEntry],
) -> None:
    """The default strategy hands out the view's channels in turn, in the view's order."""
    entry = new_entry(size=3)
    channels = (object(), object(), object())
    publish(entry, *channels)

    assert [entry.get_channel() for _ in range(6)] == list(channels) * 2


@pytest.mark.parametrize(("rate", "calls", "emitted"), [(0, 12, 0), (1, 12, 12), (3, 12, 4)])
def test_get_channel_event_is_sampled_by_rate(
    new_entry: Callable[..., PoolEntry],
    get_channel_events: list[dict[str, Any]],
    rate: int,
    calls: int,
    emitted: int,
) -> None:
    """pool.get_channel fires never at rate 0, every call at rate 1, one call in N at rate N."""
    entry = new_entry(telemetry_sample_rate=rate)
    publish(entry, object(), object())

    for _ in range(calls):
        entry.get_channel()

    assert len(get_channel_events) == emitted
    for event in get_channel_events:
        assert event == {"sender": entry.name, "pool_name": entry.name, "available_channels": 2}


def test_get_channel_does_not_emit_without_receivers(
    new_entry: Callable[..., PoolEntry], monkeypatch: pytest.MonkeyPatch
) -> None:
    """With no receiver on pool.get_channel, the hot path never calls telemetry.emit."""
    assert not telemetry.pool_get_channel.receivers
    emitted: list[Any] = []
    monkeypatch.setattr(telemetry, "emit", lambda *args: emitted.append(args))
    entry = new_entry(telemetry_sample_rate=1)
    publish(entry, object())

    for _ in range(5):
        entry.get_channel()
    assert emitted == []

    def receive(sender: str, **kwargs: Any) -> None:
        pass

    telemetry.pool_get_channel.connect(receive, weak=False)
    try:
        entry.get_channel()
    finally:
        telemetry.pool_get_channel.disconnect(receive)
    assert len(emitted) == 1  # the same pool does emit once someone listens


# --- publishing and waiting -------------------------------------------------------


def test_publish_replaces_the_view_whole(new_entry: Callable[..., PoolEntry]) -> None:
    """publish installs the given view object as it is; every read goes through it."""
    entry = new_entry()
    first, second = object(), object()

    before = publish(entry, first)
    assert entry.view is before
    assert entry.get_channel() is first

    after = view_of(entry, (second,), (ready("worker-1"), ready("worker-2")))
    entry.publish(after)

    assert entry.view is after
    assert before.channels == (first,)  # the old view is untouched
    assert [entry.get_channel() for _ in range(3)] == [second] * 3
    status = entry.status()
    assert status.workers is after.workers
    assert (status.current_size, status.expected_size, status.status) == (1, 2, "degraded")


def test_status_read_in_another_thread_always_matches_its_own_worker_records(
    new_entry: Callable[..., PoolEntry],
) -> None:
    """While one thread publishes views back to back, status() read in another thread is
    always one view's: current_size equals the number of ready workers it lists."""
    entry = new_entry(size=3)
    channels = (object(), object(), object())
    views = []
    for ready_count in (0, 1, 2, 3, 2, 1):
        workers = tuple(
            ready(f"worker-{i}")
            if i <= ready_count
            else WorkerStatus(f"worker-{i}", "backoff", time.time(), reconnect_attempt=i)
            for i in (1, 2, 3)
        )
        views.append(view_of(entry, channels[:ready_count], workers))

    done = threading.Event()
    bad: list[Any] = []
    reads = itertools.count()

    def publisher() -> None:
        try:
            for view in itertools.islice(itertools.cycle(views), 30_000):
                entry.publish(view)
        finally:
            done.set()

    def reader() -> None:
        while not done.is_set() and len(bad) < 5:
            next(reads)
            status = entry.status()
            ready_workers = sum(w.state == "ready" for w in status.workers)
            expected = {0: "down", 3: "healthy"}.get(status.current_size, "degraded")
            if status.current_size != ready_workers or status.status != expected:
                bad.append(status)

    threads = [
        threading.Thread(target=publisher, name="test-publisher"),
        threading.Thread(target=reader, name="test-reader"),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not any(thread.is_alive() for thread in threads)
    assert bad == []
    assert next(reads) > 1  # the reader did overlap the publisher


def test_publish_wakes_a_waiter_in_another_thread_promptly(
    new_entry: Callable[..., PoolEntry],
) -> None:
    """wait_ready blocked in another thread returns True soon after publish, not at its timeout."""
    entry = new_entry()
    result: dict[str, Any] = {}

    def wait() -> None:
        result["ready"] = entry.wait_ready(2, timeout=30.0)
        result["woke"] = time.monotonic()

    waiter = threading.Thread(target=wait, name="test-waiter")
    waiter.start()
    try:
        # The waiter is parked on the condition, not polling.
        assert wait_until(lambda: parked_waiters(entry) == 1, timeout=5)
        publish(entry, object())  # one of two: not enough
        # Woken by the notify (which took it off the condition), it looked and parked again.
        assert wait_until(lambda: parked_waiters(entry) == 1, timeout=5)
        assert "ready" not in result
        published = time.monotonic()
        publish(entry, object(), object())
        waiter.join(timeout=5)
    finally:
        release(entry, "test over")  # frees the waiter if an assertion above failed
        waiter.join(timeout=5)
    assert result["ready"] is True
    assert result["woke"] - published < 1.0


def test_release_wakes_waiters_with_false_and_ends_the_entry(
    new_entry: Callable[..., PoolEntry],
) -> None:
    """release frees wait_ready callers (False), takes the name out of the table and
    records why; a second release changes nothing."""
    entry = new_entry()
    publish(entry, object())
    result: list[bool] = []
    waiter = threading.Thread(
        target=lambda: result.append(entry.wait_ready(2, timeout=30.0)), name="test-waiter"
    )
    waiter.start()
    try:
        assert wait_until(lambda: parked_waiters(entry) == 1, timeout=5)
    finally:
        release(entry, "stopped")
        waiter.join(timeout=5)

    assert result == [False]
    assert entry.ended == "stopped"
    assert entry.name not in names()
    with pytest.raises(PoolNotFoundError):
        lookup(entry.name)
    # Even with enough channels in its last view, an ended entry is never ready.
    assert entry.wait_ready(1, timeout=0) is False

    release(entry, "again")
    assert entry.ended == "stopped"
    assert entry.name not in names()


def test_wait_ready_times_out_with_false(new_entry: Callable[..., PoolEntry]) -> None:
    """wait_ready returns False once its timeout passes without enough ready channels."""
    entry = new_entry()
    started = time.monotonic()

    assert entry.wait_ready(1, timeout=0.1) is False
    assert time.monotonic() - started >= 0.09


def test_wait_ready_is_true_at_once_when_enough_channels_are_ready(
    new_entry: Callable[..., PoolEntry],
) -> None:
    """wait_ready returns True without waiting when the view already has min_ready channels."""
    entry = new_entry()
    publish(entry, object(), object())

    assert entry.wait_ready(2, timeout=0) is True
    assert entry.wait_ready(3, timeout=0) is False


# --- the process-wide pool table --------------------------------------------------


def test_claim_lookup_release_round_trip() -> None:
    """claim makes a pool findable by name; release removes it again."""
    name = unique_name()
    entry = claim(name, config(), token=object(), parent=None, child_id="pool:x")
    try:
        assert entry.name == name
        assert entry.child_id == "pool:x"
        assert entry.parent is None
        assert lookup(name) is entry
        assert name in names()
    finally:
        release(entry, "test over")

    assert name not in names()
    with pytest.raises(PoolNotFoundError, match=name):
        lookup(name)


def test_attach_records_the_owner(new_entry: Callable[..., PoolEntry]) -> None:
    """attach sets the actor now running the entry's pool."""
    entry = new_entry()
    owner = Owner.start()
    try:
        attach(entry, owner)
        assert entry.owner is owner
    finally:
        owner.stop()


def test_claiming_a_name_held_by_a_live_or_starting_pool_raises() -> None:
    """A claim of a name whose owner is alive or not yet set raises ConfigError naming it,
    with another token or the same one; the holder keeps the name."""
    name = unique_name()
    token = object()
    holder = claim(name, config(), token=token, parent=None, child_id=None)
    owner = Owner.start()
    try:
        # No owner yet: a pool still starting.
        with pytest.raises(ConfigError, match=name) as caught:
            claim(name, config(), token=object(), parent=None, child_id=None)
        assert caught.value.key == "pool.name"

        attach(holder, owner)
        for claimant in (object(), token):
            with pytest.raises(ConfigError, match=name):
                claim(name, config(), token=claimant, parent=None, child_id=None)
        assert lookup(name) is holder
        assert holder.ended is None
    finally:
        owner.stop()
        release(holder, "test over")


def test_claim_with_the_same_token_over_a_dead_owner_is_a_restart() -> None:
    """After the owner died, a claim with the entry's token gets the same entry back
    (its view and strategy carry on, init is not called again); another token raises."""
    name = unique_name()
    token = object()
    strategy = RecordingStrategy()
    entry = claim(name, config(strategy=strategy), token=token, parent=None, child_id=None)
    owner = Owner.start()
    try:
        attach(entry, owner)
        view = publish(entry, object())
        owner.stop()

        with pytest.raises(ConfigError, match=name):
            claim(name, config(), token=object(), parent=None, child_id=None)
        again = claim(name, config(), token=token, parent=None, child_id=None)

        assert again is entry
        assert entry.view is view
        assert strategy.inits == [(name, 2)]
        assert lookup(name) is entry
    finally:
        owner.stop()
        release(entry, "test over")


def test_release_of_an_ended_entry_leaves_its_successor_alone() -> None:
    """Releasing an entry again after a new pool took its name keeps the new one."""
    name = unique_name()
    old = claim(name, config(), token=object(), parent=None, child_id=None)
    release(old, "stopped")
    new = claim(name, config(), token=object(), parent=None, child_id=None)
    try:
        assert new is not old
        release(old, "stopped")
        assert lookup(name) is new
        assert new.ended is None
    finally:
        release(new, "test over")
    with pytest.raises(PoolNotFoundError):
        lookup(name)


def test_release_token_only_releases_the_entry_of_its_own_token() -> None:
    """release_token with another token, or for an unknown name, changes nothing;
    with the entry's token it ends the entry with the given reason."""
    name = unique_name()
    token = object()
    entry = claim(name, config(), token=token, parent=None, child_id=None)
    try:
        release_token(name, object(), "forgotten")
        release_token(unique_name(), token, "forgotten")
        assert lookup(name) is entry
        assert entry.ended is None

        release_token(name, token, "forgotten")
        assert entry.ended == "forgotten"
        assert name not in names()
    finally:
        release(entry, "test over")


def test_lookup_of_a_parents_pool_starts_it_once_with_the_parents_size() -> None:
    """In a forked child, the first lookups of a parent's pool (from several threads at
    once) start one pool of that name under the default supervisor, with the parent's
    expected size; once the child stops it, it stays stopped."""
    name = unique_name()
    PROCESS.forked_pools[name] = ForkedPool(config(2, max_size=8), expected_size=3)
    found: list[PoolEntry] = []
    barrier = threading.Barrier(6)

    def use() -> None:
        barrier.wait(timeout=10)
        found.append(lookup(name))

    threads = [threading.Thread(target=use) for _ in range(6)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(10)
        assert len(found) == 6
        assert all(entry is found[0] for entry in found)
        assert found[0].view.expected_size == 3
        assert name not in PROCESS.forked_pools
        assert grpcpool.pool(name) == grpcpool.PoolProxy(name)
    finally:
        grpcpool.stop(name)
        PROCESS.forked_pools.pop(name, None)
    with pytest.raises(PoolNotFoundError, match=r"stopped by grpcpool\.stop\(\)"):
        lookup(name)


def test_a_parents_pool_stopped_before_its_first_use_is_not_started() -> None:
    """grpcpool.stop of a parent's pool the child never used forgets it: lookups then
    say it was stopped, and nothing starts."""
    name = unique_name()
    PROCESS.forked_pools[name] = ForkedPool(config(), expected_size=2)
    try:
        grpcpool.stop(name)
        assert name not in PROCESS.forked_pools
        with pytest.raises(PoolNotFoundError, match=r"stopped by grpcpool\.stop\(\)"):
            grpcpool.get_channel(name)
        assert name not in PROCESS.pools
    finally:
        PROCESS.forked_pools.pop(name, None)


class _FailingStrategy:
    """A strategy whose init raises, so that a pool using it cannot start."""

    def init(self, name: str, size: int) -> None:
        raise RuntimeError("no")

    def picker(self, items: Any) -> Any:
        return lambda: items[0]


def test_a_parents_pool_that_cannot_start_again_says_so_once() -> None:
    """If starting a parent's pool in the child fails, the lookup raises NotConnectedError
    naming the fork and the failure's type; the name is then forgotten, not retried."""
    name = unique_name()
    PROCESS.forked_pools[name] = ForkedPool(
        config(strategy=_FailingStrategy()), expected_size=2
    )
    try:
        with pytest.raises(NotConnectedError) as caught:
            lookup(name)
        assert not isinstance(caught.value, PoolNotFoundError)
        assert "could not start again after os.fork()" in str(caught.value)
        assert FORK_ADVICE in str(caught.value)
        assert name not in PROCESS.forked_pools
        with pytest.raises(PoolNotFoundError, match="could not start again"):
            lookup(name)
    finally:
        PROCESS.forked_pools.pop(name, None)


# --- a pool that ended says so --------------------------------------------------------


def test_lookup_of_a_released_name_says_it_was_shut_down_and_why() -> None:
    """After release, lookup raises PoolNotFoundError saying the pool was shut down, with
    the first reason given; a new claim of the name clears that."""
    name = unique_name()
    entry = claim(name, config(), token=object(), parent=None, child_id=None)
    release(entry, "supervisor gave up")
    release(entry, "stopped")  # idempotent: the first reason stays

    with pytest.raises(PoolNotFoundError) as caught:
        lookup(name)
    assert str(caught.value) == f"pool {name!r} was shut down: supervisor gave up"
    assert caught.value.reason == "supervisor gave up" == entry.ended

    again = claim(name, config(), token=object(), parent=None, child_id=None)
    try:
        assert name not in PROCESS.ended_pools
        assert lookup(name) is again
    finally:
        release(again, "test over")


def test_releasing_a_predecessor_does_not_mark_its_successor_shut_down() -> None:
    """A late release of an old entry, after a new pool took the name, records nothing:
    the name is running."""
    name = unique_name()
    old = claim(name, config(), token=object(), parent=None, child_id=None)
    release(old, "stopped")
    new = claim(name, config(), token=object(), parent=None, child_id=None)
    try:
        release(old, "late")
        assert name not in PROCESS.ended_pools
        assert lookup(name) is new
    finally:
        release(new, "test over")
    with pytest.raises(PoolNotFoundError, match="was shut down: test over"):
        lookup(name)


def test_the_ended_record_is_bounded_oldest_first() -> None:
    """Past ENDED_POOLS_KEPT ended names the oldest is forgotten: asking for it gives
    "no pool of this name is running" again."""
    first = unique_name()
    release(claim(first, config(), token=object(), parent=None, child_id=None), "stopped")
    for _ in range(ENDED_POOLS_KEPT):
        release(claim(unique_name(), config(), token=object(), parent=None, child_id=None), "x")

    assert len(PROCESS.ended_pools) == ENDED_POOLS_KEPT
    with pytest.raises(PoolNotFoundError) as caught:
        lookup(first)
    assert str(caught.value) == f"pool {first!r}: no pool of this name is running"


def test_check_name_free_raises_the_claim_error_without_claiming(
    new_entry: Callable[..., PoolEntry],
) -> None:
    """check_name_free passes for a free name and raises claim's ConfigError for a taken
    one; it changes nothing in the table."""
    entry = new_entry()
    free = unique_name()
    check_name_free(free)
    assert free not in names()
    with pytest.raises(ConfigError, match=f"a pool named {entry.name!r} is already running") as e:
        check_name_free(entry.name)
    assert e.value.key == "pool.name"
    assert lookup(entry.name) is entry
