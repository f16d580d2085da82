"""Opening, watching, retiring and closing the grpc channels of a pool.

Every channel grpcpool opens goes through :meth:`PoolChannels.open` and every
close through this module, which keeps the account of open channels in
:data:`grpcpool._process.PROCESS`: :func:`open_channel_count` tells at any
time how many are open in the process (the test suite checks it is back to
zero after each test).

Closing is quick and never waits: no grpcio thread polls these channels (the
process's one watcher does, see :mod:`grpcpool.connection._watcher`), so a
close only cancels the calls still running on the channel.

When a retired channel closes is the :class:`~grpcpool.core.CallLedger`'s
rule (each :class:`Connection` has one); this module carries it out.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import grpc

from grpcpool._channel_args import channel_options
from grpcpool._process import PROCESS, fork_safe_lock
from grpcpool._timer import TimerHandle, call_later
from grpcpool.config import Config
from grpcpool.connection._calls import CallLedger, Close
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
        ledger: The calls running on the channel through the pool channel.
        on_last_call: Closes the channel once retired and its last call has
            ended (when ``ledger`` says so); for the channel's ReadyConnection.
    """

    raw: grpc.Channel
    channel: grpc.Channel
    watch: Watch
    ledger: CallLedger
    on_last_call: Callable[[], None]


class PoolChannels:
    """The channels of one incarnation of a pool: opens them and sees them closed.

    A channel that leaves the pool is retired rather than closed: closing a
    grpc channel cancels the calls running on it, so calls already under
    way (during a server's graceful shutdown, say) may finish. It closes
    when the last call counted on it ends (at once if none runs), and at the
    latest ``connection.drain_timeout`` after it left, which cuts what still
    runs. A channel handed out raw (``get_channel``) may carry calls nothing
    counts, so it is kept open for the whole drain. Once the pool stops
    (:meth:`close_all`) only counted calls are waited for.

    Args:
        config: The pool's configuration.
    """

    def __init__(self, config: Config) -> None:
        self._config = config
        self._lock = fork_safe_lock(self)
        # Retired channels not closed yet, each with its ledger and the
        # timer that closes it when its drain ends.
        self._retired: dict[grpc.Channel, tuple[CallLedger, TimerHandle]] = {}
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
            last_call = functools.partial(self._last_call_ended, raw)
            connectivity = watch(raw, on_state, try_to_connect=True, target=target)
            return Connection(raw, channel, connectivity, CallLedger(), last_call)
        except BaseException:
            _close(raw)
            raise

    def retire(self, connection: Connection, *, handed_out: bool = False) -> None:
        """Stops watching; closes the channel when its last call ends, or its drain does.

        Closed before this returns if no counted call runs on it (unless
        ``handed_out``), if the drain timeout is 0, or if it is closed
        already. Otherwise it is closed when the ledger says its last call
        ended, and at the latest ``connection.drain_timeout`` from now.
        Idempotent.

        Args:
            connection: The channel to retire.
            handed_out: ``get_channel`` handed the channel out raw: calls
                nothing counts may run on it, so it stays open until its
                drain ends (unless the pool has stopped).
        """
        connection.watch.cancel()
        raw, ledger = connection.raw, connection.ledger
        drain = self._config.connection.drain_timeout
        with self._lock:
            if raw in self._retired:
                return
            if drain > 0 and _is_open(raw):
                effect = ledger.retire(handed_out=handed_out and not self._closed)
            else:
                effect = ledger.cut()
            if effect is Close.WHEN_LAST_ENDS or effect is Close.AT_DRAIN_END:
                timer = call_later(drain, functools.partial(self._drain_ended, raw))
                self._retired[raw] = (ledger, timer)
                return
        if effect is Close.NOW:
            _close(raw)

    def close(self, connection: Connection) -> None:
        """Stops watching and closes the channel now, retired or not. Idempotent."""
        connection.watch.cancel()
        with self._lock:
            retired = self._retired.pop(connection.raw, None)
        if retired is not None:
            retired[1].cancel()
        connection.ledger.cut()
        _close(connection.raw)

    def close_all(self) -> None:
        """The pool has stopped: retired channels wait for counted calls only. Idempotent.

        Each retired channel that no counted call holds is closed now (one
        kept for the hand-outs of ``get_channel`` too); the others close
        when their last call ends, at the latest when their drain does.
        Channels retired later are treated the same way.
        """
        with self._lock:
            self._closed = True
            closing = [
                (raw, timer)
                for raw, (ledger, timer) in self._retired.items()
                if ledger.pool_stopped() is Close.NOW
            ]
            for raw, _ in closing:
                del self._retired[raw]
        for raw, timer in closing:
            timer.cancel()
            _close(raw)

    def _last_call_ended(self, raw: grpc.Channel) -> None:
        """The ledger said the last call on the retired ``raw`` ended: close it.

        On the thread that ended the call (a caller's, or grpc's callback
        thread): the close itself runs on the timer thread, so neither waits.
        """
        with self._lock:
            retired = self._retired.pop(raw, None)
        if retired is not None:
            retired[1].cancel()
        call_later(0, functools.partial(_close, raw))

    def _drain_ended(self, raw: grpc.Channel) -> None:
        # On the timer thread: must not block, and closing does not.
        with self._lock:
            retired = self._retired.pop(raw, None)
        if retired is not None and retired[0].cut() is Close.NOW:
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
