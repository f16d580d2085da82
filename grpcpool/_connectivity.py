"""A pool's readiness as a grpc channel's connectivity, for ``PoolChannel.subscribe``.

``grpc.channel_ready_future(channel)`` and other code written for a plain
channel subscribe to its connectivity. A pool channel reports the pool's:
``READY`` while at least one connection is ready, ``TRANSIENT_FAILURE`` while
none is and some worker is backing off after a failure, ``CONNECTING`` while
none is and the workers are connecting (or the pool is starting or
restarting), and ``IDLE`` when no pool of that name runs (one may start
later: the pool channel follows the name).

Both drivers tell :func:`state_changed` the connectivity of each view they
publish (:func:`grpcpool.core.connectivity_of`); the sync pool's
HealthRegistry does it through :meth:`~grpcpool.actors.PoolEntry.publish`;
callbacks never run on the registry's thread (a slow callback must not hold
up the pool), but in order on one delivery thread, which starts when there
is something to deliver and ends when there is nothing left.
"""

from __future__ import annotations

import logging
import os
import threading
from collections import deque
from collections.abc import Callable

import grpc

__all__ = ["Callback", "state_changed", "subscribe", "unsubscribe"]

_log = logging.getLogger(__name__)

Callback = Callable[[grpc.ChannelConnectivity], None]


class _Subscriptions:
    """Every subscribed callback, by pool name, with the state last queued for it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_name: dict[str, dict[Callback, grpc.ChannelConnectivity]] = {}
        self._pending: deque[tuple[str, Callback, grpc.ChannelConnectivity]] = deque()
        self._delivering = False
        self._pid = os.getpid()

    def add(
        self, name: str, callback: Callback, state: Callable[[], grpc.ChannelConnectivity]
    ) -> None:
        # The state is read under the lock, after the callback is registered:
        # a change published meanwhile either queues for it or is what it reads.
        with self._lock:
            now = state()
            self._by_name.setdefault(name, {})[callback] = now
            self._queue(name, callback, now)

    def remove(self, name: str, callback: Callback) -> None:
        with self._lock:
            callbacks = self._by_name.get(name)
            if callbacks is not None:
                callbacks.pop(callback, None)
                if not callbacks:
                    del self._by_name[name]

    def changed(self, name: str, state: grpc.ChannelConnectivity) -> None:
        if name not in self._by_name:  # the common case: nobody listens
            return
        with self._lock:
            callbacks = self._by_name.get(name, {})
            for callback, told in list(callbacks.items()):
                if told is not state:
                    callbacks[callback] = state
                    self._queue(name, callback, state)

    def _queue(self, name: str, callback: Callback, state: grpc.ChannelConnectivity) -> None:
        # Under the lock. A forked child inherits a "delivering" flag whose
        # thread did not survive the fork.
        if self._pid != os.getpid():
            self._pid, self._delivering = os.getpid(), False
            self._pending.clear()
        self._pending.append((name, callback, state))
        if not self._delivering:
            self._delivering = True
            threading.Thread(
                target=self._deliver, name="grpcpool-connectivity", daemon=True
            ).start()

    def _deliver(self) -> None:
        while True:
            with self._lock:
                if not self._pending:
                    self._delivering = False
                    return
                name, callback, state = self._pending.popleft()
                if callback not in self._by_name.get(name, {}):
                    continue  # unsubscribed meanwhile
            try:
                callback(state)
            except Exception:
                _log.exception("connectivity callback %r of pool %r failed", callback, name)


_SUBSCRIPTIONS = _Subscriptions()


def subscribe(
    name: str, callback: Callback, current: Callable[[], grpc.ChannelConnectivity]
) -> None:
    """Calls ``callback`` with the pool's connectivity now (``current()``) and after each change."""
    _SUBSCRIPTIONS.add(name, callback, current)


def unsubscribe(name: str, callback: Callback) -> None:
    """Stops calling ``callback``; a callback not subscribed is ignored."""
    _SUBSCRIPTIONS.remove(name, callback)


def state_changed(name: str, state: grpc.ChannelConnectivity) -> None:
    """The pool ``name``'s connectivity is ``state`` now; tells subscribers if that is news."""
    _SUBSCRIPTIONS.changed(name, state)
