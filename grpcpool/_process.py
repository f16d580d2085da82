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
  (pykka's own registry is the supervision tree's to guard:
  ``grpcpool.supervisor`` registers its fork hooks beside these.)
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
from typing import Any

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
        # The objects below belong to the layers above this module, which type
        # them where they use them (actors._entry.PoolEntry and ForkedPool,
        # tasks.TaskPool, _timer.Scheduler, connection._watcher.Watcher): this
        # module holds them for the fork hooks and may not import their kinds.
        self.pools: dict[str, Any] = {}
        self.aio_pools: dict[str, Any] = {}
        self.forked_pools: dict[str, Any] = {}
        self.ended_pools: collections.OrderedDict[str, str] = collections.OrderedDict()
        self.default_supervisor: Any | None = None
        self.default_lock = threading.RLock()
        self.roots: list[Any] = []
        self.scheduler: Any = None
        self.watcher: Any = None
        self.open_channels: set[Any] = set()
        self.channels_lock = threading.Lock()
        self.inherited: list[Any] = []
        # Objects whose ``_lock`` a forked child replaces; see fork_safe_lock().
        self.lock_owners: weakref.WeakSet[Any] = weakref.WeakSet()

    # --- the fork hook ----------------------------------------------------------

    def before_fork(self) -> None:
        watcher = self.watcher
        if watcher is not None:
            watcher.pause()

    def after_fork_in_parent(self) -> None:
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
