"""A watch, what the owner of a watched channel holds; and the fallback without a watcher.

A :class:`Watch` is made by :meth:`Watcher.watch
<grpcpool.connection._watcher.Watcher.watch>` and cancelled through it. For
a channel without grpcio's private ``check_connectivity_state`` (a grpcio
that dropped it, or an object that only looks like a channel) the watch
follows grpcio's own subscription instead (:func:`subscribe`). That works,
but costs what the watcher exists to avoid: grpcio polls each subscribed
channel from a thread of its own, five times a second.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Protocol

import grpc


class Canceller(Protocol):
    """Who cancels a watch: the watcher that made it (``connection._watcher.Watcher``)."""

    def cancel(self, watch: Watch) -> None: ...

__all__ = ["ConnectivityCallback", "Watch", "deliver", "subscribe", "unsubscribe"]

_log = logging.getLogger(__name__)

ConnectivityCallback = Callable[[grpc.ChannelConnectivity], None]

_fallback_warned = False
_fallback_lock = threading.Lock()


class Watch:
    """A watched channel. :meth:`cancel` it to stop the callbacks.

    Attributes:
        raw: The channel watched.
        callback: Called with the state seen first, then with every change.
        try_to_connect: Whether a check of an idle channel asks it to connect.
        port: The port the channel connects to, if known (its connection is
            then heard hanging up).
    """

    __slots__ = (
        "_cancelled",
        "_check",
        "_last",
        "_lock",
        "_subscription",
        "_watcher",
        "callback",
        "port",
        "raw",
        "try_to_connect",
    )

    def __init__(
        self,
        watcher: Canceller,
        raw: grpc.Channel,
        callback: ConnectivityCallback,
        try_to_connect: bool,
        check: Callable[[bool], int] | None,
        port: int | None = None,
    ) -> None:
        self._watcher = watcher
        self.raw = raw
        self.callback = callback
        self.try_to_connect = try_to_connect
        self.port = port
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


def deliver(watch: Watch, state: grpc.ChannelConnectivity) -> None:
    """Calls the watch's callback with ``state``; a callback that raises is logged."""
    try:
        watch.callback(state)
    except Exception:
        _log.exception("connectivity callback %r failed", watch.callback)


def subscribe(watch: Watch) -> None:
    """Follows ``watch.raw`` through ``Channel.subscribe`` (warns once per process)."""
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
                deliver(watch, state)

    watch._subscription = on_connectivity
    watch.raw.subscribe(on_connectivity, try_to_connect=watch.try_to_connect)


def unsubscribe(watch: Watch) -> None:
    """Stops a subscribed watch; once this returns its callback is not called again."""
    assert watch._lock is not None and watch._subscription is not None
    with watch._lock:
        if watch._cancelled:
            return
        watch._cancelled = True
    watch.raw.unsubscribe(watch._subscription)
