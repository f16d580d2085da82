"""The state a pool shares with its callers, and the process-wide pool table.

:class:`PoolState` is what the hot path reads. Its ``snapshot`` (a tuple of
ready channels) and ``workers`` (a tuple of per-worker records) are immutable
and replaced whole, with one reference assignment each, by the pool's
HealthRegistry actor, which is their only writer. A reader therefore sees an
old or a new tuple, never a half-built one, and needs no lock.

The pool table maps names to states. It is read without a lock (a dict lookup
is atomic under the GIL) and changed under one, by pool supervisors claiming
and releasing their names.
"""

from __future__ import annotations

import functools
import itertools
import operator
import os
import threading
import time
from collections.abc import Callable
from typing import Any

import grpc
import pykka

from grpcpool import telemetry
from grpcpool._channels import close_channel
from grpcpool._status import WorkerStatus
from grpcpool.config import Config
from grpcpool.errors import ConfigError, NotConnectedError, PoolNotFoundError
from grpcpool.strategy import PowerOfTwo, Random, RoundRobin, Strategy, resolve_strategy
from grpcpool.supervisor import TimerHandle, call_later

__all__ = ["PoolState", "claim", "lookup", "release"]

GET_CHANNEL_EVENT = telemetry.pool_get_channel


class PoolState:
    """One running pool, as seen from outside its actors.

    Attributes:
        name: The pool's name, unique in the process.
        config: Its configuration.
        strategy: Picks an index into ``snapshot``.
        snapshot: The ready channels; replaced whole by the HealthRegistry.
        workers: Per-worker records; replaced whole by the HealthRegistry.
        expected_size: The number of workers the pool is meant to have.
        changed: Notified whenever ``snapshot`` changes or the pool closes.
        closed: Set once the pool has been stopped.
        owner: The PoolSupervisor actor that runs the pool.
        parent: The supervisor that started the PoolSupervisor, if known.
        child_id: The pool's id among its parent's children.
    """

    def __init__(self, name: str, config: Config) -> None:
        self.name = name
        self.config = config
        self.strategy: Strategy = resolve_strategy(config.pool.strategy)
        init = getattr(self.strategy, "init", None)
        if callable(init):
            init(name, config.pool.size)
        self.snapshot: tuple[grpc.Channel, ...] = ()
        # Picks a channel from the snapshot; rebuilt with it (see _set_snapshot).
        self.pick: Callable[[], grpc.Channel] = self._none_ready
        self.workers: tuple[WorkerStatus, ...] = ()
        self.expected_size = config.pool.size
        self.changed = threading.Condition()
        self.closed = False
        # Stopped on purpose: it will not be restarted.
        self.final = False
        self.owner: pykka.ActorRef[Any] | None = None
        self.parent: pykka.ActorRef[Any] | None = None
        self.child_id: str | None = None
        self.registry: pykka.ActorRef[Any] | None = None
        self.stubs: dict[tuple[grpc.Channel, type[Any]], Any] = {}
        # Channels out of the snapshot whose running calls may still finish,
        # each with the timer that closes it; see retire().
        self._retired: dict[grpc.Channel, TimerHandle] = {}
        self._retired_lock = threading.Lock()
        self._sample_rate = config.pool.telemetry_sample_rate
        self._calls = itertools.count()

    def get_channel(self) -> grpc.Channel:
        """The hot path: pick a ready channel from the current snapshot.

        ``grpcpool.get_channel`` inlines this body; keep the two alike.

        Raises:
            NotConnectedError: No channel is ready.
        """
        channel = self.pick()
        if GET_CHANNEL_EVENT.receivers:
            self.report_get_channel()
        return channel

    def report_get_channel(self) -> None:
        """Emits ``pool.get_channel`` if the sample rate says this call counts."""
        if self._sampled():
            telemetry.emit(
                GET_CHANNEL_EVENT,
                self.name,
                {},
                {"pool_name": self.name, "available_channels": len(self.snapshot)},
            )

    def _none_ready(self) -> grpc.Channel:
        raise NotConnectedError(self.name)

    def _set_snapshot(self, snapshot: tuple[grpc.Channel, ...]) -> None:
        # The picker is built once per snapshot so that a call costs as
        # little as possible: round robin over a fixed tuple is
        # itertools.cycle, whose __next__ is one C call and atomic under the
        # GIL; other strategies index the tuple they were built with. A
        # reader sees the old picker or the new one, each consistent.
        if not snapshot:
            pick: Callable[[], grpc.Channel] = self._none_ready
        elif len(snapshot) == 1:
            pick = functools.partial(operator.getitem, snapshot, 0)
        elif type(self.strategy) is RoundRobin:
            pick = itertools.cycle(snapshot).__next__
        elif type(self.strategy) is Random:
            uniform, count = self.strategy.uniform, len(snapshot)

            def pick() -> grpc.Channel:
                # random() < 1, so the index is always below count.
                return snapshot[int(uniform() * count)]

        elif type(self.strategy) is PowerOfTwo:
            uniform, count, uses = self.strategy.uniform, len(snapshot), [0] * len(snapshot)

            def pick() -> grpc.Channel:
                # Usage counts start afresh with each snapshot, as index i
                # may now be another channel; racing callers may lose an
                # increment, which only blurs the balance a little.
                first, second = int(uniform() * count), int(uniform() * count)
                if uses[second] < uses[first]:
                    first = second
                uses[first] += 1
                return snapshot[first]

        else:
            select, count = self.strategy.select, len(snapshot)

            def pick() -> grpc.Channel:
                return snapshot[select(count)]

        self.pick = pick
        self.snapshot = snapshot

    def _sampled(self) -> bool:
        rate = self._sample_rate
        if rate <= 1:
            return rate == 1
        return next(self._calls) % rate == 0

    def stub(self, stub_class: type[Any]) -> Any:
        """A stub of ``stub_class`` on a selected channel, built once per channel."""
        channel = self.get_channel()
        key = (channel, stub_class)
        stubs = self.stubs
        stub = stubs.get(key)
        if stub is None:
            stub = stub_class(channel)
            # Copy on write: the registry iterates the dict it replaces, so
            # a caller must never change that dict in place. Two callers
            # racing here may each build the stub; one copy wins.
            self.stubs = {**stubs, key: stub}
        return stub

    def publish(
        self, snapshot: tuple[grpc.Channel, ...], workers: tuple[WorkerStatus, ...]
    ) -> None:
        """Swaps in a new snapshot and wakes the waiters (HealthRegistry only)."""
        # Under the condition's lock, so that a close() from another thread
        # (the PoolSupervisor stopping) cannot land between the closed check
        # and the assignment. The hot path never takes this lock.
        with self.changed:
            if self.closed:
                return  # workers leaving a stopped pool must not refill it
            if snapshot != self.snapshot:
                live = set(snapshot)
                # Stubs of channels that left the snapshot would keep them alive.
                self.stubs = {key: stub for key, stub in self.stubs.items() if key[0] in live}
            self.workers = workers
            self._set_snapshot(snapshot)
            self.changed.notify_all()

    def awaiting_restart(self) -> bool:
        """True while a closed pool may still be restarted by its parent."""
        return not self.final and self.parent is not None and self.parent.is_alive()

    def close(self) -> None:
        """Marks the pool stopped: empty snapshot, waiters woken, retired channels closed."""
        with self.changed:
            self.closed = True
            self._set_snapshot(())
            self.stubs = {}
            self.changed.notify_all()
        with self._retired_lock:
            retired, self._retired = self._retired, {}
        for raw, timer in retired.items():
            timer.cancel()
            close_channel(raw)

    def retire(self, raw: grpc.Channel, drain: float) -> None:
        """Closes a channel that left the snapshot once ``drain`` seconds have passed.

        Closing a grpc channel cancels the calls running on it; retiring it
        instead gives those calls time to finish. A stopped pool closes its
        retired channels at once.
        """
        with self._retired_lock:
            if not self.closed and drain > 0:
                self._retired[raw] = call_later(drain, functools.partial(self._close_retired, raw))
                return
        close_channel(raw)

    def _close_retired(self, raw: grpc.Channel) -> None:
        with self._retired_lock:
            if self._retired.pop(raw, None) is None:
                return
        close_channel(raw)

    def wait_ready(self, min_ready: int, timeout: float | None) -> bool:
        """Blocks until ``min_ready`` channels are ready; false on timeout or close."""
        with self.changed:
            self.changed.wait_for(
                lambda: self.closed or len(self.snapshot) >= min_ready, timeout=timeout
            )
        return not self.closed and len(self.snapshot) >= min_ready


_pools: dict[str, PoolState] = {}
# Guards changes to the table; notified when a name is claimed, so a waiter
# can follow a pool across a restart.
_pools_changed = threading.Condition()


# Names of pools started before this process was forked from its parent,
# and those pools' states, kept alive in the child (see _forget_after_fork).
_forked: set[str] = set()
_inherited: list[PoolState] = []

FORK_ADVICE = (
    "this pool was started before os.fork(), and grpc channels do not survive a fork; "
    "start pools in each process after it forks (e.g. in gunicorn's post_fork hook) "
    "and do not use grpc in the parent before forking"
)


def lookup(name: str) -> PoolState:
    """The running pool called ``name``.

    Raises:
        PoolNotFoundError: No pool of that name is running.
        NotConnectedError: The pool belongs to the parent of this forked process.
    """
    state = _pools.get(name)
    if state is not None and state.closed and not state.awaiting_restart():
        release(state)  # crashed, and nobody is left to restart it
        state = None
    if state is None:
        if name in _forked:
            raise NotConnectedError(name, FORK_ADVICE)
        raise PoolNotFoundError(name)
    return state


def _forget_after_fork() -> None:
    # In a forked child the pools' actor threads do not exist and their
    # channels must not be used: empty the table, remember the names so
    # callers get advice instead of "not found", and renew the lock, which
    # another thread may have held at the moment of the fork.
    # The states stay alive, untouched: dropping their channels and stubs
    # would run grpcio finalizers against a C core that did not survive the
    # fork.
    global _pools_changed
    _forked.update(_pools)
    _inherited.extend(_pools.values())
    _pools.clear()
    _pools_changed = threading.Condition()


os.register_at_fork(after_in_child=_forget_after_fork)


def claim(state: PoolState) -> None:
    """Registers ``state`` under its name.

    A name whose previous owner has ended (a pool supervisor being restarted)
    may be taken over; a name held by a live or still-starting pool may not.

    Raises:
        ConfigError: The name is in use.
    """
    with _pools_changed:
        current = _pools.get(state.name)
        if current is not None and (current.owner is None or current.owner.is_alive()):
            raise ConfigError("pool.name", f"a pool named {state.name!r} is already running")
        _pools[state.name] = state
        _forked.discard(state.name)
        _pools_changed.notify_all()


def release(state: PoolState) -> None:
    """Removes ``state`` from the table if it is still the one registered."""
    with _pools_changed:
        if _pools.get(state.name) is state:
            del _pools[state.name]
            _pools_changed.notify_all()


# How often a waiter on a crashed pool looks again whether its parent, which
# would restart it, is still alive (a parent's end notifies nobody).
_ORPHAN_CHECK_SECONDS = 1.0


def wait_for_successor(state: PoolState, timeout: float | None) -> PoolState | None:
    """Waits for a restarted pool to take ``state``'s name.

    Returns:
        The successor, or ``None`` on timeout or once no restart can come
        (the pool was stopped for good, or its parent has ended).
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    with _pools_changed:
        while True:
            current = _pools.get(state.name)
            if current is not state:
                return current
            if not state.awaiting_restart():
                return None
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return None
            slice_ = (
                _ORPHAN_CHECK_SECONDS
                if remaining is None
                else min(remaining, _ORPHAN_CHECK_SECONDS)
            )
            _pools_changed.wait(slice_)


def names() -> list[str]:
    """The names of the running pools (and of crashed ones about to restart)."""
    found = []
    for name in list(_pools):
        try:
            lookup(name)
        except NotConnectedError:
            continue
        found.append(name)
    return found
