"""The pool table: one :class:`PoolEntry` per pool name, stable across restarts.

A name's entry is made when a pool of that name first starts and stays the
same object while the pool runs, crashes and is restarted by its parent; it
leaves the table only when the pool ends for good. So a caller that holds an
entry (``await_ready`` waiting on it, a proxy) follows the pool through its
restarts without looking for a successor.

Who writes what:

* ``view`` is written only by the pool's HealthRegistry, through
  :meth:`PoolEntry.publish`, with one assignment.
* ``owner``, ``ended`` and the table itself are written only by the functions
  of this module (:func:`claim`, :func:`attach`, :func:`release`), under
  ``PROCESS.lock``. So is ``PROCESS.ended_pools``, the short memory of why
  recently ended pools ended, which :func:`lookup` quotes.

The table is read without a lock: a dict lookup is atomic under the GIL.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from typing import Any, NamedTuple

import grpc
import pykka

from grpcpool import telemetry
from grpcpool._config_capacity import start_size
from grpcpool._connectivity import state_changed
from grpcpool._names import check_free, name_in_use, remember_ended
from grpcpool._process import PROCESS
from grpcpool._resolving import with_watch
from grpcpool._status import PoolStatus
from grpcpool.actors._capacity import SyncCapacity
from grpcpool.config import Config
from grpcpool.connection._announce import announce_pool
from grpcpool.core._hedging import HedgingState
from grpcpool.core._sampling import GetChannelSampler, get_channel_signal
from grpcpool.core._view import PoolView, connectivity_of, empty_view
from grpcpool.core._waiting import wait_met, wait_over
from grpcpool.errors import ConfigError, shorten
from grpcpool.strategy import Strategy, resolve_strategy

__all__ = [
    "FORKED_POOLS",
    "GET_CHANNEL_EVENT",
    "POOLS",
    "ForkedPool",
    "PoolEntry",
    "attach",
    "check_name_free",
    "claim",
    "forget_forked",
    "names",
    "release",
    "release_token",
]

_log = logging.getLogger(__name__)

GET_CHANNEL_EVENT = telemetry.pool_get_channel

FORK_ADVICE = (
    "this pool was started before os.fork(), and grpc channels do not survive a fork; "
    "start pools in each process after it forks (e.g. in gunicorn's post_fork hook) "
    "and do not use grpc in the parent before forking"
)


class ForkedPool(NamedTuple):
    """What a forked child keeps of one of its parent's pools, to start it again.

    Attributes:
        config: The pool's configuration in the parent.
        expected_size: How many workers the parent's pool was meant to have
            when the process forked (its size after any scaling).
    """

    config: Config
    expected_size: int

    def sized_config(self) -> Config:
        """``config`` with the parent's expected size, if that size is valid for it."""
        if self.expected_size == self.config.pool.size:
            return self.config
        try:
            pool = dataclasses.replace(self.config.pool, size=self.expected_size)
        except ConfigError:  # not expected: scaling keeps within pool.max_size
            return self.config
        return dataclasses.replace(self.config, pool=pool)


class PoolEntry:
    """One pool name in the process.

    Attributes:
        name: The pool's name, unique in the process.
        config: Its configuration.
        strategy: Builds the picker of each view.
        view: The current :class:`PoolView`; replaced whole by the registry.
        changed: Notified whenever ``view`` changes or the pool ends.
        owner: The PoolSupervisor actor of the current incarnation.
        parent: The supervisor that started the pool, if any.
        child_id: The pool's id among its parent's children.
        ended: Why the pool ended for good, once it has.
        hedging: The pool's hedging state (``pool.hedging``: budget, learnt
            latencies), made once for the name's entry and kept across
            restarts; None when the pool hedges nothing.
        capacity: The pool's caps and queue of calls waiting for a slot
            (``pool.max_calls_per_connection``, refused streams), kept
            across restarts; the pool channel reads ``capacity.limited``.
        raw_handed_out: ``get_channel`` has handed out a channel of this
            pool. Calls on such a channel are not counted, so a connection
            that leaves the pool then stays open for its whole drain
            (``connection.drain_timeout``) instead of closing when its last
            counted call ends. Set before the view is read, so a worker that
            reads it after its channel left the view never misses a channel
            handed out from an older view.
    """

    __slots__ = (
        "_sampler",
        "capacity",
        "changed",
        "child_id",
        "config",
        "ended",
        "hedging",
        "name",
        "owner",
        "parent",
        "raw_handed_out",
        "resolver_error",
        "resolver_watch",
        "strategy",
        "token",
        "view",
    )

    def __init__(
        self,
        name: str,
        config: Config,
        *,
        token: object,
        parent: pykka.ActorRef[Any] | None,
        child_id: str | None,
    ) -> None:
        self.name = name
        self.config = config
        self.strategy: Strategy = resolve_strategy(
            config.pool.strategy, ewma_decay=config.pool.ewma_decay
        )
        size = start_size(config.pool.size, config.pool.autoscale)
        init = getattr(self.strategy, "init", None)
        if callable(init):
            init(name, size)
        self.view: PoolView = empty_view(name, size, "starting")
        self.changed = threading.Condition()
        self.token = token
        self.parent = parent
        self.child_id = child_id
        self.owner: pykka.ActorRef[Any] | None = None
        self.ended: str | None = None
        self.raw_handed_out = False
        # Written by the pool's Balancer alone: why the last resolution failed.
        self.resolver_error: str | None = None
        # A push resolver's watch handle (the Balancer's), read for status.
        self.resolver_watch: object | None = None
        self._sampler = GetChannelSampler(config.pool.telemetry_sample_rate)
        hedging = config.pool.hedging
        self.hedging = HedgingState(hedging) if hedging is not None else None
        pool = config.pool
        self.capacity = SyncCapacity(
            name, pool.max_calls_per_connection, pool.max_queued_calls, self._current_view
        )

    def _current_view(self) -> PoolView:
        return self.view

    # --- read by callers ----------------------------------------------------------

    def get_channel(self) -> grpc.Channel:
        """The hot path: pick a ready channel from the current view.

        ``grpcpool.get_channel`` inlines this body; keep the two alike.

        Raises:
            NotConnectedError: No channel is ready.
        """
        self.raw_handed_out = True  # before the view is read: see the attribute
        channel = self.view.pick()
        if GET_CHANNEL_EVENT.receivers:
            self.report_get_channel()
        return channel

    def report_get_channel(self) -> None:
        """Emits ``pool.get_channel`` if the sample rate says this call counts."""
        if self._sampler.counts():
            announce_pool(get_channel_signal(self.view), self.name, _log)

    def status(self) -> PoolStatus:
        """The pool's health now, from one view."""
        status = self.view.status(
            self.name,
            self.resolver_error,
            self.capacity.queued,
            autoscale=self.config.pool.autoscale,
        )
        return with_watch(status, self.config, self.resolver_watch)

    def wait_ready(self, min_ready: int, timeout: float | None) -> bool:
        """Blocks until ``min_ready`` channels are ready or the pool ends.

        Returns:
            True if they are ready; false on timeout or once the pool ended.
        """
        with self.changed:
            self.changed.wait_for(
                lambda: wait_over(self.view, min_ready, self.ended), timeout=timeout
            )
            return wait_met(self.view, min_ready, self.ended)

    def forked(self) -> ForkedPool:
        """What a forked child needs to start this pool again (read in the fork hook)."""
        return ForkedPool(self.config, self.view.expected_size)

    # --- written by the registry ------------------------------------------------

    def publish(self, view: PoolView) -> None:
        """Swaps in a new view and wakes the waiters (the HealthRegistry only)."""
        with self.changed:
            self.view = view
            self.changed.notify_all()
        self.capacity.view_changed(view)
        state_changed(self.name, connectivity_of(view))

    def __repr__(self) -> str:
        view = self.view
        state = view.lifecycle if self.ended is None else "ended"
        return f"<PoolEntry {self.name!r} {state} {len(view.channels)}/{view.expected_size} ready>"


# --- the table ---------------------------------------------------------------------


#: The table of sync pools by name (``PROCESS.pools``, typed here), and the
#: parent's pools a forked child starts again on first use; both are cleared
#: in place after a fork, so these references stay valid.
POOLS: dict[str, PoolEntry] = PROCESS.pools
FORKED_POOLS: dict[str, ForkedPool] = PROCESS.forked_pools


def forget_forked(name: str, reason: str) -> None:
    """Drops the parent's pool ``name`` from what this forked process restarts.

    ``grpcpool.stop`` calls it, so that stopping a parent's pool the child
    never used keeps it stopped; callers of the name then hear ``reason``.
    Waits for a lazy start of ``name`` under way, which then stops normally.
    """
    with PROCESS.default_lock:
        if FORKED_POOLS.pop(name, None) is None:
            return
        with PROCESS.lock:
            remember_ended(name, shorten(reason))


def names() -> list[str]:
    """The names of the pools in the table (running or being restarted)."""
    return list(PROCESS.pools)


def claim(
    name: str,
    config: Config,
    *,
    token: object,
    parent: pykka.ActorRef[Any] | None,
    child_id: str | None,
) -> PoolEntry:
    """The entry a pool starting under ``name`` runs with.

    A restart (the same child spec, identified by ``token``, starting again
    after a crash) gets the entry it had; a new pool gets a new entry.

    Raises:
        ConfigError: Another pool, sync or asyncio, holds the name.
    """
    with PROCESS.pools_changed:
        current = POOLS.get(name)
        if current is not None:
            owner = current.owner
            if current.token is token and (owner is None or not owner.is_alive()):
                return current  # restarted by its parent after a crash
            raise name_in_use(name, "sync")
        check_free(name)  # an asyncio pool's
        entry = PoolEntry(name, config, token=token, parent=parent, child_id=child_id)
        PROCESS.pools[name] = entry
        # Only now: a reader that finds no entry still finds why it ended.
        PROCESS.ended_pools.pop(name, None)
        FORKED_POOLS.pop(name, None)
        PROCESS.pools_changed.notify_all()
        return entry


def check_name_free(name: str) -> None:
    """Raises the error :func:`claim` would if ``name`` is taken; claims nothing.

    A pool's child spec calls it before its supervisor sees the spec, so
    that starting a second pool under a name in use says so, whichever
    supervisor the first one runs under (its own supervisor would otherwise
    refuse first, about a duplicate child id). :func:`claim` still decides.

    Raises:
        ConfigError: A pool of that name, sync or asyncio, is running (or a
            sync one awaits its restart).
    """
    check_free(name)


def attach(entry: PoolEntry, owner: pykka.ActorRef[Any]) -> None:
    """Records the PoolSupervisor now running ``entry``'s pool."""
    with PROCESS.lock:
        entry.owner = owner


def release(entry: PoolEntry, reason: str) -> None:
    """Ends ``entry`` for good: out of the table, waiters woken. Idempotent.

    The first ``reason`` given is the one kept (in ``entry.ended`` and, for
    the entry that held the name, in ``PROCESS.ended_pools``), so callers of
    the name hear "was shut down: <reason>".
    """
    reason = shorten(reason)
    with PROCESS.pools_changed:
        if POOLS.get(entry.name) is entry:
            # Recorded before the entry leaves: a reader that misses the
            # entry finds the reason (dict operations are atomic).
            remember_ended(entry.name, reason)
            del PROCESS.pools[entry.name]
            PROCESS.pools_changed.notify_all()
        with entry.changed:
            if entry.ended is None:
                entry.ended = reason
            entry.changed.notify_all()
    entry.capacity.pool_ended(f"the pool was shut down ({reason})")
    if POOLS.get(entry.name) is None:
        state_changed(entry.name, connectivity_of(None))


def release_token(name: str, token: object, reason: str) -> None:
    """Releases the entry of ``name`` if the child spec behind ``token`` owns it."""
    entry = POOLS.get(name)
    if entry is not None and entry.token is token:
        release(entry, reason)
