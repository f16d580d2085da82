"""One thread that watches the connectivity of every channel in the process.

grpcio's own way to follow a channel's connectivity, ``Channel.subscribe``,
starts a polling thread per channel (plus a delivery thread per change). A
pool of a thousand channels would then be a thousand threads waking five
times a second, and a process that forks while they run gets children that
crash inside grpcio. Instead, one process-wide thread asks every watched
channel for its state in turn (grpcio's ``check_connectivity_state``, a
call of a microsecond or so that never blocks) and calls the watch's callback when
the answer changes.

How often it asks adapts to how many channels there are: every
:data:`MIN_PERIOD` seconds while a sweep is cheap, so a dropped connection is
noticed within milliseconds, and never so often that the checks take more
than about ``1 / COST_FACTOR`` of one CPU.

The thread starts with the first watch and ends when nothing is watched. It
lives in :data:`grpcpool._process.PROCESS`, whose fork hook pauses it, so
that no thread is inside grpcio when the process is copied.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any

import grpc

from grpcpool._process import PROCESS

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

ConnectivityCallback = Callable[[grpc.ChannelConnectivity], None]

# The shortest time between two sweeps of every channel, in seconds.
MIN_PERIOD = 0.01
# The longest: even a very large process notices a drop within a second.
MAX_PERIOD = 1.0
# A sweep is followed by a pause COST_FACTOR times as long as the sweep took,
# so checking uses at most about 1/COST_FACTOR of one CPU.
COST_FACTOR = 50

# grpcio's core connectivity states, as check_connectivity_state returns them.
STATES: dict[int, grpc.ChannelConnectivity] = {
    state.value[0]: state for state in grpc.ChannelConnectivity
}

_fallback_warned = False
_fallback_lock = threading.Lock()


class Watch:
    """A watched channel. :meth:`cancel` it to stop the callbacks.

    Attributes:
        raw: The channel watched.
        callback: Called with the state seen first, then with every change.
        try_to_connect: Whether a check of an idle channel asks it to connect.
    """

    __slots__ = (
        "_cancelled",
        "_check",
        "_last",
        "_lock",
        "_subscription",
        "_watcher",
        "callback",
        "raw",
        "try_to_connect",
    )

    def __init__(
        self,
        watcher: Watcher,
        raw: grpc.Channel,
        callback: ConnectivityCallback,
        try_to_connect: bool,
        check: Callable[[bool], int] | None,
    ) -> None:
        self._watcher = watcher
        self.raw = raw
        self.callback = callback
        self.try_to_connect = try_to_connect
        # grpcio's check_connectivity_state, bound; None when subscribed instead.
        self._check = check
        self._last: grpc.ChannelConnectivity | None = None
        self._cancelled = False
        # Only for the subscription fallback, whose callbacks run on grpcio's threads.
        self._lock: threading.RLock | None = None
        self._subscription: ConnectivityCallback | None = None

    @property
    def cancelled(self) -> bool:
        """True once cancelled, or dropped because its channel was closed."""
        return self._cancelled

    def cancel(self) -> None:
        """Stops watching. Idempotent.

        Once this returns the callback is not called again; a callback may
        cancel its own watch.
        """
        self._watcher.cancel(self)

    def __repr__(self) -> str:
        state = "cancelled" if self._cancelled else (self._last.name if self._last else "new")
        return f"<Watch {state} {self.callback!r}>"


class Watcher:
    """The process's connectivity watcher: a set of watches and the thread that checks them.

    The thread holds the sweep lock while it checks channels and runs
    callbacks; :meth:`cancel` and :meth:`pause` take the same lock, which is
    what guarantees that no callback runs after a cancel and that no check is
    under way while paused.

    Attributes:
        period: Seconds between two sweeps of every channel, as last adapted.
        sweeps: How many sweeps of every channel the thread has made.
    """

    def __init__(self) -> None:
        # Guards the fields below; the thread waits on it between sweeps.
        self._condition = threading.Condition(threading.Lock())
        self._watches: dict[Watch, None] = {}
        self._sweep_order: tuple[Watch, ...] | None = ()
        self._fresh: list[Watch] = []
        self._thread: threading.Thread | None = None
        # Held for a whole sweep; reentrant, so a callback can cancel a watch.
        self._sweep_lock = threading.RLock()
        self.period = MIN_PERIOD
        self.sweeps = 0
        # CPU time spent in callbacks during the current sweep.
        self._callback_time = 0.0
        self._pid = os.getpid()

    # --- watching -----------------------------------------------------------------

    def watch(
        self, raw: grpc.Channel, callback: ConnectivityCallback, try_to_connect: bool
    ) -> Watch:
        """Starts watching ``raw``; see :func:`watch`."""
        check = _check_method(raw)
        watch = Watch(self, raw, callback, try_to_connect, check)
        if check is None:
            _subscribe(watch)
            return watch
        with self._condition:
            self._watches[watch] = None
            self._sweep_order = None
            self._fresh.append(watch)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="grpcpool-watcher", daemon=True
                )
                self._thread.start()
            else:
                self._condition.notify()
        return watch

    def cancel(self, watch: Watch) -> None:
        """Stops ``watch``; once this returns its callback is never called again."""
        if watch._subscription is not None:
            _unsubscribe(watch)
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

    def _forget(self, watch: Watch) -> None:
        with self._condition:
            if watch in self._watches:
                del self._watches[watch]
                self._sweep_order = None
                if not self._watches:
                    self._condition.notify()  # let the thread end now

    @property
    def watching(self) -> int:
        """How many channels this watcher checks (subscriptions not counted)."""
        with self._condition:
            return len(self._watches)

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
                while True:
                    if not self._watches:
                        self._fresh.clear()
                        self._thread = None
                        return
                    if self._fresh:
                        batch, self._fresh, full = tuple(self._fresh), [], False
                        break
                    wait = next_sweep - time.monotonic()
                    if wait <= 0:
                        if self._sweep_order is None:
                            self._sweep_order = tuple(self._watches)
                        batch, full = self._sweep_order, True
                        break
                    self._condition.wait(wait)
            with self._sweep_lock:
                self._callback_time = 0.0
                started = time.thread_time()
                for watch in batch:
                    if not watch._cancelled:
                        self._check(watch)
                cost = time.thread_time() - started - self._callback_time
            if full:
                # The pause between sweeps grows with what checking costs (in
                # CPU time, so waiting for the GIL does not count), so that
                # watching many channels stays cheap; a process with a few
                # notices a drop within MIN_PERIOD. Callbacks are left out:
                # they run on changes only, and a burst of them (every
                # channel of a lost server) must not slow the sweeps that
                # follow it.
                self.period = min(MAX_PERIOD, max(MIN_PERIOD, COST_FACTOR * cost))
                self.sweeps += 1
                next_sweep = time.monotonic() + self.period

    def _check(self, watch: Watch) -> None:
        check = watch._check
        assert check is not None
        try:
            value = check(watch.try_to_connect)
        except Exception as error:
            # Closed under the watch (grpcio raises ValueError): nothing more
            # to see on this channel.
            _log.debug("no longer watching %r: %r", watch.raw, error)
            self._drop(watch)
            return
        state = STATES.get(value)
        if state is None:
            _log.warning("grpcio reported an unknown connectivity state %r; not watching", value)
            self._drop(watch)
            return
        if state is watch._last:
            return
        watch._last = state
        started = time.thread_time()
        _deliver(watch, state)
        self._callback_time += time.thread_time() - started
        if state is grpc.ChannelConnectivity.SHUTDOWN:
            self._drop(watch)  # final: a channel never leaves SHUTDOWN

    def _drop(self, watch: Watch) -> None:
        watch._cancelled = True
        self._forget(watch)


def _deliver(watch: Watch, state: grpc.ChannelConnectivity) -> None:
    try:
        watch.callback(state)
    except Exception:
        _log.exception("connectivity callback %r failed", watch.callback)


def _check_method(raw: grpc.Channel) -> Callable[[bool], int] | None:
    """grpcio's ``check_connectivity_state`` of ``raw``, or None if this grpcio has none."""
    check: Any = getattr(getattr(raw, "_channel", None), "check_connectivity_state", None)
    return check if callable(check) else None


# --- the fallback: grpcio's subscription, one poll thread per channel -------------------


def _subscribe(watch: Watch) -> None:
    global _fallback_warned
    with _fallback_lock:
        if not _fallback_warned:
            _fallback_warned = True
            _log.warning(
                "this grpcio's channels have no _channel.check_connectivity_state; "
                "falling back to Channel.subscribe (one grpcio thread per channel)"
            )
    lock = watch._lock = threading.RLock()

    def on_connectivity(state: grpc.ChannelConnectivity) -> None:
        with lock:
            if not watch._cancelled:
                watch._last = state
                _deliver(watch, state)

    watch._subscription = on_connectivity
    watch.raw.subscribe(on_connectivity, try_to_connect=watch.try_to_connect)


def _unsubscribe(watch: Watch) -> None:
    assert watch._lock is not None and watch._subscription is not None
    with watch._lock:
        if watch._cancelled:
            return
        watch._cancelled = True
    watch.raw.unsubscribe(watch._subscription)


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
    raw: grpc.Channel, callback: ConnectivityCallback, *, try_to_connect: bool = True
) -> Watch:
    """Calls ``callback`` with the connectivity of ``raw``: first as seen, then on every change.

    The callback runs on the watcher thread and must not block (it tells an
    actor, say): every other channel waits for it. While the channel is idle
    and ``try_to_connect`` is set, each check asks grpcio to connect it.
    Closing the channel ends the watch without a last call.

    Returns:
        The watch, to :meth:`~Watch.cancel` before the channel is closed.
    """
    return get_watcher().watch(raw, callback, try_to_connect)
