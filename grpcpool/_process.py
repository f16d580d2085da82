"""Everything grpcpool keeps once per process, and its one fork hook.

A process holds a few things that outlive any single pool: the table of pools
by name (sync and asyncio pools share one namespace), the default supervisor behind :func:`grpcpool.start`, the roots of
supervision trees (stopped at interpreter exit), the timer that delivers
delayed messages, the connectivity watcher, and the account of open
channels. They live here, side by side, so that :func:`os.fork` is handled in
one place:

* ``before`` the fork, the watcher is paused, so that no thread is inside
  grpcio's C core when the process is copied;
* ``after_in_parent`` it resumes;
* ``after_in_child`` every process-wide object is replaced by a fresh one.
  The parent's pools, channels and threads do not exist in a child (only the
  forking thread is copied), so the child forgets them, but keeps the objects
  alive: letting them be collected would run grpcio finalizers against a C
  core whose threads and locks did not survive the fork.

The modules that use these objects create them lazily through this module
(``PROCESS.scheduler``, ``PROCESS.watcher``), so a fresh child starts them
again on first use.
"""

from __future__ import annotations

import collections
import os
import threading
import weakref
from typing import TYPE_CHECKING, Any

import pykka

if TYPE_CHECKING:
    from grpcpool.aio._pool import Pool as AioPool
    from grpcpool.connection._watcher import Watcher
    from grpcpool.pools._entry import ForkedPool, PoolEntry
    from grpcpool.supervisor._timer import Scheduler

__all__ = ["ENDED_POOLS_KEPT", "PROCESS", "ProcessState", "fork_safe_lock"]

# How many ended pool names the process remembers (a bound, not a cache: a
# program that starts and stops pools under fresh names must not grow it).
ENDED_POOLS_KEPT = 64


class ProcessState:
    """The process-wide objects; one instance, :data:`PROCESS`.

    Attributes:
        lock: Guards creating the lazy objects below and the pool tables.
        pools_changed: A condition on ``lock``, notified when the pool table
            changes.
        pools: Running pools by name (the hot path reads it without a lock).
        aio_pools: Running asyncio pools by name. A name is in ``pools`` or
            in ``aio_pools``, never both (see ``grpcpool._names``), so
            telemetry and metrics keyed by pool name mean one pool.
        forked_pools: The pools that belonged to the parent of this forked
            process, by name, with what restarting them here needs; the
            first use of one starts it again in this process.
        ended_pools: Why each recently ended pool ended, by name, oldest
            first, at most ``ENDED_POOLS_KEPT``; asking for one says "was
            shut down: <reason>", not "not found". A name leaves it when a
            pool of that name starts again.
        default_supervisor: The supervisor behind ``grpcpool.start``.
        default_lock: Held while the default supervisor is started, used or
            stopped by a caller (never by an actor, which could deadlock).
        roots: Supervisors started outside any supervisor, in start order.
        scheduler: The timer behind ``send_after``/``call_later``.
        watcher: The thread that watches every channel's connectivity.
        open_channels: Every channel grpcpool opened and has not closed.
        inherited: A forked child's keepsake of its parent's objects.
    """

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.pools_changed = threading.Condition(self.lock)
        self.pools: dict[str, PoolEntry] = {}
        self.aio_pools: dict[str, AioPool] = {}
        self.forked_pools: dict[str, ForkedPool] = {}
        self.ended_pools: collections.OrderedDict[str, str] = collections.OrderedDict()
        self.default_supervisor: pykka.ActorRef[Any] | None = None
        self.default_lock = threading.RLock()
        self.roots: list[pykka.ActorRef[Any]] = []
        self.scheduler: Scheduler | None = None
        self.watcher: Watcher | None = None
        self.open_channels: set[Any] = set()
        self.channels_lock = threading.Lock()
        self.inherited: list[Any] = []
        # Objects whose ``_lock`` a forked child replaces; see fork_safe_lock().
        self.lock_owners: weakref.WeakSet[Any] = weakref.WeakSet()
        self._registry_held = False

    # --- the fork hook ----------------------------------------------------------

    def before_fork(self) -> None:
        watcher = self.watcher
        if watcher is not None:
            watcher.pause()
        # Held across the fork, so that the child's copy of pykka's registry
        # is not half-changed by a thread caught in the middle of it.
        self._registry_held = _registry_lock().acquire(timeout=_REGISTRY_WAIT)

    def after_fork_in_parent(self) -> None:
        if self._registry_held:
            self._registry_held = False
            _registry_lock().release()
        watcher = self.watcher
        if watcher is not None:
            watcher.resume()

    def after_fork_in_child(self) -> None:
        # Only this thread exists now; every lock may have been copied held.
        self.lock = threading.RLock()
        self.pools_changed = threading.Condition(self.lock)
        self.channels_lock = threading.Lock()
        self.default_lock = threading.RLock()
        self.inherited.extend(self.pools.values())
        # An asyncio pool belongs to its loop, whose thread is gone: the
        # child forgets it (its name is free here) and never restarts it.
        self.inherited.extend(self.aio_pools.values())
        self.inherited.extend(self.open_channels)
        self.inherited.extend(x for x in (self.scheduler, self.watcher) if x is not None)
        if self.watcher is not None:
            # Its sockets and epoll copies are the parent's business.
            self.watcher.after_fork_in_child()
        self.forked_pools.update((name, entry.forked()) for name, entry in self.pools.items())
        # Cleared in place: the hot paths hold references to these dicts.
        self.pools.clear()
        self.aio_pools.clear()
        self.ended_pools.clear()
        self.open_channels.clear()
        self.default_supervisor = None
        self.roots.clear()
        self.scheduler = None
        self.watcher = None
        for owner in list(self.lock_owners):
            owner._lock = threading.Lock()
        # pykka's registry lock was held by the forking thread (see
        # before_fork) or, if that timed out, maybe by a thread that does not
        # exist here: either way the child starts with a fresh one.
        self._registry_held = False
        pykka.ActorRegistry._actor_refs_lock = threading.RLock()
        _forget_parent_actors()


# How long a fork waits for pykka's registry lock (held only briefly, by a
# thread registering or unregistering an actor).
_REGISTRY_WAIT = 2.0


class _NoLock:
    """Stands in for pykka's registry lock should a pykka release not have one."""

    def acquire(self, timeout: float = -1) -> bool:
        return False

    def release(self) -> None:
        pass


def _registry_lock() -> Any:
    return getattr(pykka.ActorRegistry, "_actor_refs_lock", None) or _NoLock()


def _forget_parent_actors() -> None:
    # pykka's registry still lists the parent's actors, whose threads are
    # gone: asking one would wait forever.
    from grpcpool.supervisor import SupervisedActor

    for ref in pykka.ActorRegistry.get_all():
        if issubclass(ref.actor_class, SupervisedActor):
            pykka.ActorRegistry.unregister(ref)


PROCESS = ProcessState()


def fork_safe_lock(owner: Any) -> threading.Lock:
    """A new lock for ``owner._lock`` that a forked child gets back unlocked.

    ``os.fork()`` copies a lock held by another thread as held forever; every
    owner's lock is replaced in the child instead.
    """
    PROCESS.lock_owners.add(owner)
    return threading.Lock()


os.register_at_fork(
    before=PROCESS.before_fork,
    after_in_parent=PROCESS.after_fork_in_parent,
    after_in_child=PROCESS.after_fork_in_child,
)
