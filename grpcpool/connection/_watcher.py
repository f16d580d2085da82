"""One thread that watches the connectivity of every channel in the process.

grpcio's own way to follow a channel's connectivity, ``Channel.subscribe``,
starts a polling thread per channel (plus a delivery thread per change). A
pool of a thousand channels would then be a thousand threads waking five
times a second, and a process that forks while they run gets children that
crash inside grpcio. Instead, one process-wide thread asks every watched
channel for its state in turn (grpcio's ``check_connectivity_state``, a
call of a microsecond or so that never blocks) and calls the watch's
callback when the answer changes.

How often it asks is decided by :class:`~grpcpool.connection._pace.Pace`:
every 10 ms or so while anything is connecting or has just changed, and
about once a second once every channel is READY and its connection would be
heard hanging up. The hearing is the kernel's
(:mod:`grpcpool.connection._sockets`): the thread sleeps in ``epoll`` on
duplicates of the connections' sockets, so a connection that a server
closes or resets, or that grpcio lets go, wakes it at once and the sweeps go
fast again until the change has been seen. An idle ready process so costs
next to nothing, and still notices a drop within milliseconds. Where the
kernel cannot tell (not Linux, a Unix socket, a target whose port is not
known), the watcher sweeps fast, as it always did.

The thread starts with the first watch and ends when nothing is watched. It
lives in :data:`grpcpool._process.PROCESS`, whose fork hook pauses it, so
that no thread is inside grpcio when the process is copied.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import weakref
from collections import Counter
from collections.abc import Callable
from typing import Any

import grpc

from grpcpool._process import PROCESS
from grpcpool.connection._pace import COST_FACTOR, MAX_PERIOD, MIN_PERIOD, Pace
from grpcpool.connection._sockets import Sleeper, SocketHints, target_port
from grpcpool.connection._watch import ConnectivityCallback, Watch, deliver, subscribe, unsubscribe

__all__ = [
    "COST_FACTOR",
    "MAX_PERIOD",
    "MIN_PERIOD",
    "STATES",
    "ConnectivityCallback",
    "Watch",
    "Watcher",
    "get_watcher",
    "watch",
]

_log = logging.getLogger(__name__)

# grpcio's core connectivity states, as check_connectivity_state returns them.
STATES: dict[int, grpc.ChannelConnectivity] = {
    state.value[0]: state for state in grpc.ChannelConnectivity
}
_READY = grpc.ChannelConnectivity.READY


class Watcher:
    """The process's connectivity watcher: a set of watches and the thread that checks them.

    The thread holds the sweep lock while it checks channels and runs
    callbacks; :meth:`cancel` and :meth:`pause` take the same lock, which is
    what guarantees that no callback runs after a cancel and that no check is
    under way while paused.

    Attributes:
        sweeps: How many sweeps of every channel the thread has made.
    """

    def __init__(self) -> None:
        # Guards the fields below; the thread waits on it between sweeps.
        self._condition = threading.Condition(threading.Lock())
        self._watches: dict[Watch, None] = {}
        self._sweep_order: tuple[Watch, ...] | None = ()
        self._fresh: list[Watch] = []
        self._thread: threading.Thread | None = None
        self._hurried = False
        # The port each channel watched with a target connects to.
        self._ports: weakref.WeakKeyDictionary[grpc.Channel, int] = weakref.WeakKeyDictionary()
        # Held for a whole sweep; reentrant, so a callback can cancel a watch.
        self._sweep_lock = threading.RLock()
        self._pace = Pace()
        self.sweeps = 0
        # CPU time spent in callbacks during the current sweep.
        self._callback_time = 0.0
        self._pid = os.getpid()
        # Used by the thread alone from here on (but for wake()).
        self._hints = SocketHints.create()
        self._sleeper: SocketHints | Sleeper = self._hints or Sleeper()

    # --- watching -----------------------------------------------------------------

    def watch(
        self,
        raw: grpc.Channel,
        callback: ConnectivityCallback,
        try_to_connect: bool,
        target: str | None = None,
    ) -> Watch:
        """Starts watching ``raw``; see :func:`watch`."""
        check = _check_method(raw)
        if check is None:
            watch = Watch(self, raw, callback, try_to_connect, None)
            subscribe(watch)
            return watch
        with self._condition:
            port = self._port(raw, target)
            watch = Watch(self, raw, callback, try_to_connect, check, port)
            self._watches[watch] = None
            self._sweep_order = None
            self._fresh.append(watch)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="grpcpool-watcher", daemon=True
                )
                self._thread.start()
                return watch
        self._sleeper.wake()
        return watch

    def _port(self, raw: grpc.Channel, target: str | None) -> int | None:
        """The port ``raw`` connects to: from ``target``, or as an earlier watch gave it."""
        try:
            if target is None:
                return self._ports.get(raw)
            port = target_port(target)
            if port is not None:
                self._ports[raw] = port
            return port
        except TypeError:  # not weakly referable: then not remembered
            return target_port(target) if target is not None else None

    def cancel(self, watch: Watch) -> None:
        """Stops ``watch``; once this returns its callback is never called again."""
        if watch._subscription is not None:
            unsubscribe(watch)
            return
        if watch._cancelled:
            return  # set under the sweep lock: no callback can follow
        if os.getpid() != self._pid:
            # A forked child's copy: its thread did not survive the fork and
            # its locks may have been copied held.
            watch._cancelled = True
            return
        with self._sweep_lock:
            watch._cancelled = True
        self._forget(watch)

    def hurry(self) -> None:
        """Sweeps now, and fast until everything settles again: news the kernel did not give.

        A failed health check is such news: a server going away gracefully
        while calls run on a connection tells grpcio (GOAWAY) long before the
        socket hangs up, and other connections to it are likely in the same
        state.
        """
        with self._condition:
            if not self._watches:
                return
            self._hurried = True
        self._sleeper.wake()

    def _forget(self, watch: Watch) -> None:
        with self._condition:
            if watch not in self._watches:
                return
            del self._watches[watch]
            self._sweep_order = None
            if self._watches:
                return
        self._sleeper.wake()  # let the thread end now

    @property
    def watching(self) -> int:
        """How many channels this watcher checks (subscriptions not counted)."""
        with self._condition:
            return len(self._watches)

    @property
    def period(self) -> float:
        """Seconds between two sweeps of every channel, as last decided."""
        return self._pace.period

    @property
    def idle(self) -> bool:
        """Whether the watcher sweeps at its idle pace (everything settled)."""
        return self._pace.idle

    @property
    def hints(self) -> SocketHints | None:
        """The kernel's hang-up news, or None where there is none (sweeping only)."""
        return self._hints

    # --- fork ---------------------------------------------------------------------

    def pause(self) -> None:
        """Waits for the sweep under way, then keeps the thread from starting another.

        Once this returns, the thread is not inside grpcio and stays out
        until :meth:`resume` (called from the same thread).
        """
        self._sweep_lock.acquire()

    def resume(self) -> None:
        """Lets the thread sweep again after :meth:`pause`."""
        self._sweep_lock.release()

    def after_fork_in_child(self) -> None:
        """Closes this (the parent's) watcher's descriptors in a forked child."""
        if self._hints is not None:
            self._hints.after_fork_in_child()

    # --- the thread -----------------------------------------------------------------

    def _run(self) -> None:
        try:
            self._loop()
        finally:
            # Normally cleared by _loop already; after an unexpected error,
            # the next watch() starts a new thread.
            with self._condition:
                if self._thread is threading.current_thread():
                    self._thread = None

    def _loop(self) -> None:
        next_sweep = 0.0
        while True:
            with self._condition:
                if not self._watches:
                    self._fresh.clear()
                    self._thread = None
                    if self._hints is not None:
                        self._hints.let_go_all()
                    return
                if self._hurried:
                    self._hurried = False
                    self._pace.hurry()
                    next_sweep = 0.0
                wait = next_sweep - time.monotonic()
                if self._fresh:
                    batch, self._fresh, full = tuple(self._fresh), [], False
                elif wait <= 0:
                    if self._sweep_order is None:
                        self._sweep_order = tuple(self._watches)
                    batch, full = self._sweep_order, True
                else:
                    batch = ()
            if batch:
                next_sweep = self._sweep(batch, full, next_sweep)
            elif self._sleeper.wait(wait) and self._hints is not None:
                # A held connection hung up; grpcio may have replaced it with
                # one made unseen between two sweeps.
                self._pace.hurry()
                next_sweep = 0.0
                self._hints.look_soon()

    def _sweep(self, batch: tuple[Watch, ...], full: bool, next_sweep: float) -> float:
        """Checks every watch of ``batch``; returns when the next full sweep is due."""
        hints = self._hints
        ready: Counter[int] = Counter()  # ready channels by port
        changed = unsettled = False
        with self._sweep_lock:
            self._callback_time = 0.0
            started = time.thread_time()
            for watch in batch:
                if watch._cancelled:
                    continue
                if self._check(watch):
                    changed = True
                    if watch._last is _READY and hints is not None:
                        hints.look_soon()  # a new connection to hold
                if watch._last is _READY and watch.port is not None:
                    ready[watch.port] += 1
                elif not watch._cancelled:
                    unsettled = True
            cost = time.thread_time() - started - self._callback_time
            now = time.monotonic()
            if hints is not None:
                hints.look_if_due(now, self._watched_ports)
        if not full:
            # New watches: their channels are connecting.
            self._pace.hurry()
            return min(next_sweep, now + MIN_PERIOD)
        settled = not unsettled and hints is not None and hints.hold_all(ready)
        # Callbacks are left out of the cost: they run on changes only, and a
        # burst of them (every channel of a lost server) must not slow the
        # sweeps that follow it.
        period = self._pace.after_sweep(cost, changed=changed, settled=settled)
        self.sweeps += 1
        if hints is not None and self._pace.idle:
            with self._sweep_lock:
                hints.audit_if_due(now)
        return now + period

    def _watched_ports(self) -> set[int]:
        """The ports the watched channels connect to (those known)."""
        with self._condition:
            return {watch.port for watch in self._watches if watch.port is not None}

    def _check(self, watch: Watch) -> bool:
        """Checks one channel; True if its state changed (the callback was told)."""
        check = watch._check
        assert check is not None
        try:
            value = check(watch.try_to_connect)
        except Exception as error:
            # Closed under the watch (grpcio raises ValueError): nothing more
            # to see on this channel.
            _log.debug("no longer watching %r: %r", watch.raw, error)
            self._drop(watch)
            return False
        state = STATES.get(value)
        if state is None:
            _log.warning("grpcio reported an unknown connectivity state %r; not watching", value)
            self._drop(watch)
            return False
        if state is watch._last:
            return False
        watch._last = state
        started = time.thread_time()
        deliver(watch, state)
        self._callback_time += time.thread_time() - started
        if state is grpc.ChannelConnectivity.SHUTDOWN:
            self._drop(watch)  # final: a channel never leaves SHUTDOWN
        return True

    def _drop(self, watch: Watch) -> None:
        watch._cancelled = True
        self._forget(watch)


def _check_method(raw: grpc.Channel) -> Callable[[bool], int] | None:
    """grpcio's ``check_connectivity_state`` of ``raw``, or None if this grpcio has none."""
    check: Any = getattr(getattr(raw, "_channel", None), "check_connectivity_state", None)
    return check if callable(check) else None


# --- the process's watcher ----------------------------------------------------------


def get_watcher() -> Watcher:
    """The process's watcher, created on first use (and afresh in a forked child)."""
    watcher: Watcher | None = PROCESS.watcher
    if watcher is None:
        with PROCESS.lock:
            watcher = PROCESS.watcher
            if watcher is None:
                watcher = PROCESS.watcher = Watcher()
    return watcher


def watch(
    raw: grpc.Channel,
    callback: ConnectivityCallback,
    *,
    try_to_connect: bool = True,
    target: str | None = None,
) -> Watch:
    """Calls ``callback`` with the connectivity of ``raw``: first as seen, then on every change.

    The callback runs on the watcher thread and must not block (it tells an
    actor, say): every other channel waits for it. While the channel is idle
    and ``try_to_connect`` is set, each check asks grpcio to connect it.
    Closing the channel ends the watch without a last call.

    Args:
        raw: The channel.
        callback: Told each state.
        try_to_connect: Ask an idle channel to connect.
        target: What the channel was opened with (``host:port``). With it
            the watcher hears the channel's connection hang up and can sweep
            rarely while all is quiet; a later watch of the same channel
            remembers it. Without it (and no earlier watch gave it) the
            watcher sweeps fast while the channel is watched.

    Returns:
        The watch, to :meth:`~Watch.cancel` before the channel is closed.
    """
    return get_watcher().watch(raw, callback, try_to_connect, target)
