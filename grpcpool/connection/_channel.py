"""Opening, watching, retiring and closing the grpc channels of a pool.

Every channel grpcpool opens goes through :meth:`PoolChannels.open` and every
close through this module, which keeps the account of open channels in
:data:`grpcpool._process.PROCESS`: :func:`open_channel_count` tells at any
time how many are open in the process (the test suite checks it is back to
zero after each test).

Closing is quick and never waits: no grpcio thread polls these channels (the
process's one watcher does, see :mod:`grpcpool.connection._watcher`), so a
close only cancels the calls still running on the channel.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import grpc

from grpcpool._channel_args import channel_options
from grpcpool._process import PROCESS, fork_safe_lock
from grpcpool._timer import TimerHandle, call_later
from grpcpool.config import Config
from grpcpool.connection._watcher import ConnectivityCallback, Watch, watch

__all__ = [
    "Connection",
    "PoolChannels",
    "channel_credentials",
    "channel_options",
    "open_channel_count",
]

def channel_credentials(config: Config) -> grpc.ChannelCredentials | None:
    """The credentials for a secure channel, or ``None`` for plaintext."""
    return config.channel_credentials()


@dataclass(frozen=True, eq=False)
class Connection:
    """One open channel of a pool, watched.

    Attributes:
        raw: The grpc channel itself (watched, and closed by PoolChannels).
        channel: What callers get: ``raw`` wrapped by ``endpoint.interceptors``, if any.
        watch: The connectivity watch that tells the channel's owner of changes.
    """

    raw: grpc.Channel
    channel: grpc.Channel
    watch: Watch


class PoolChannels:
    """The channels of one incarnation of a pool: opens them and sees them closed.

    A channel that leaves the pool is retired rather than closed: closing a
    grpc channel cancels the calls running on it, so calls already under
    way (during a server's graceful shutdown, say) get
    ``connection.drain_timeout`` seconds to finish. Once the pool stops
    (:meth:`close_all`) nothing waits any more.

    Args:
        config: The pool's configuration.
    """

    def __init__(self, config: Config) -> None:
        self._config = config
        self._lock = fork_safe_lock(self)
        # Retired channels, each with the timer that will close it.
        self._retired: dict[grpc.Channel, TimerHandle] = {}
        self._closed = False

    def open(self, on_state: ConnectivityCallback, address: str | None = None) -> Connection:
        """Opens a channel (not yet connected) and starts watching it.

        ``on_state`` runs on the watcher thread with each connectivity state
        (see :func:`~grpcpool.connection.watch`); the watch asks grpcio to
        connect the channel. ``address`` (``"ip:port"``) pins the channel to
        one resolved address; without it the channel connects to
        ``host:port`` through grpcio's own name resolution.
        """
        config = self._config
        options = channel_options(config, address)
        credentials = channel_credentials(config)
        target = address or config.endpoint.target
        if credentials is None:
            raw = grpc.insecure_channel(target, options=options)
        else:
            raw = grpc.secure_channel(target, credentials, options=options)
        with PROCESS.channels_lock:
            PROCESS.open_channels.add(raw)
        try:
            interceptors = config.endpoint.interceptors
            channel = grpc.intercept_channel(raw, *interceptors) if interceptors else raw
            return Connection(raw, channel, watch(raw, on_state, try_to_connect=True))
        except BaseException:
            _close(raw)
            raise

    def retire(self, connection: Connection) -> None:
        """Stops watching and closes the channel once ``connection.drain_timeout`` has passed.

        At once if the drain timeout is 0 or the pool has stopped. Idempotent.
        """
        connection.watch.cancel()
        raw = connection.raw
        drain = self._config.connection.drain_timeout
        with self._lock:
            if raw in self._retired:
                return
            if not self._closed and drain > 0 and _is_open(raw):
                close_later = functools.partial(self._close_retired, raw)
                self._retired[raw] = call_later(drain, close_later)
                return
        _close(raw)

    def close(self, connection: Connection) -> None:
        """Stops watching and closes the channel now, retired or not. Idempotent."""
        connection.watch.cancel()
        with self._lock:
            timer = self._retired.pop(connection.raw, None)
        if timer is not None:
            timer.cancel()
        _close(connection.raw)

    def close_all(self) -> None:
        """The pool has stopped: closes every retired channel now. Idempotent.

        Channels retired later are closed at once.
        """
        with self._lock:
            self._closed = True
            retired, self._retired = self._retired, {}
        for raw, timer in retired.items():
            timer.cancel()
            _close(raw)

    def _close_retired(self, raw: grpc.Channel) -> None:
        # On the timer thread: must not block, and closing does not.
        with self._lock:
            if self._retired.pop(raw, None) is None:
                return
        _close(raw)

    def __repr__(self) -> str:
        return f"<PoolChannels {self._config.endpoint.target} retired={len(self._retired)}>"


def _is_open(raw: grpc.Channel) -> bool:
    with PROCESS.channels_lock:
        return raw in PROCESS.open_channels


def _close(raw: grpc.Channel) -> None:
    """Closes a channel opened here, once; later calls do nothing."""
    with PROCESS.channels_lock:
        if raw not in PROCESS.open_channels:
            return
        PROCESS.open_channels.discard(raw)
    raw.close()


def open_channel_count() -> int:
    """How many channels grpcpool opened in this process and has not closed yet."""
    with PROCESS.channels_lock:
        return len(PROCESS.open_channels)
