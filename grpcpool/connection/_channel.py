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
from typing import Any

import grpc

from grpcpool._process import PROCESS, fork_safe_lock
from grpcpool.config import Config
from grpcpool.connection._watcher import ConnectivityCallback, Watch, watch
from grpcpool.supervisor import TimerHandle, call_later

__all__ = [
    "Connection",
    "PoolChannels",
    "channel_credentials",
    "channel_options",
    "open_channel_count",
]

# grpcio moves a channel with no RPCs for 30 minutes to IDLE, which would look
# exactly like a dropped connection; a pool keeps its channels connected.
_NEVER_IDLE_MS = 2**31 - 1


def channel_options(config: Config, address: str | None = None) -> tuple[tuple[str, Any], ...]:
    """The grpc channel arguments for one channel of a pool with ``config``.

    A channel pinned to one resolved ``address`` still speaks as the
    configured endpoint: its calls carry ``host:port`` as their
    ``:authority`` and TLS checks the server's certificate against ``host``,
    as one channel to ``host:port`` would. A name given for TLS to check
    (``ssl.server_hostname``, or ``grpc.ssl_target_name_override`` in
    ``endpoint.options``) is the ``:authority`` too, pinned or not, as on a
    plain grpcio channel with that override: grpcio refuses a call whose
    authority the certificate does not name, so ``host:port`` would fail
    ("call host does not match SSL server name") for a host the certificate
    does not hold, such as an IP. ``grpc.default_authority`` in
    ``endpoint.options`` still wins.

    ``grpc.use_local_subchannel_pool`` makes every channel its own TCP
    connection; without it grpcio shares one connection between channels
    with identical arguments, and a pool of N would be one connection.
    Keepalive pings go out only while calls run, unless
    ``connection.keepalive_without_calls`` says otherwise (see
    :mod:`grpcpool.config` for why). User ``endpoint.options`` come last and win.
    """
    connection = config.connection
    options: dict[str, Any] = {
        "grpc.use_local_subchannel_pool": 1,
        "grpc.client_idle_timeout_ms": _NEVER_IDLE_MS,
        "grpc.initial_reconnect_backoff_ms": _ms(connection.backoff_min),
        # grpcio also takes this as the deadline of one connection
        # attempt; the worker's connect_timeout is that bound.
        "grpc.min_reconnect_backoff_ms": _ms(connection.connect_timeout),
        "grpc.max_reconnect_backoff_ms": _ms(connection.backoff_max),
    }
    if connection.keepalive is not None:
        timeout_ms = _ms(connection.keepalive_timeout)
        # grpcio pings after this long without a byte from the server, and
        # also sets TCP_USER_TIMEOUT = keepalive_timeout on the socket.
        options["grpc.keepalive_time_ms"] = _ms(connection.keepalive)
        options["grpc.keepalive_timeout_ms"] = timeout_ms
        # Without this grpcio takes about a minute to notice a silent peer.
        options["grpc.http2.ping_timeout_ms"] = timeout_ms
        # Pings on a connection with no call running are off unless asked
        # for: a server with default settings (grpc-go, etcd, grpcio) takes
        # each one for a strike and the third for a too_many_pings GOAWAY,
        # and grpcio 1.85 keeps sending one a minute after the first two.
        # Idle channels are checked by the health ping, which is a call.
        if connection.keepalive_without_calls:
            options["grpc.keepalive_permit_without_calls"] = 1
            # The user asked for a ping every `keepalive` on idle channels;
            # grpcio would send two and then at most one a minute.
            options["grpc.http2.max_pings_without_data"] = 0
        else:
            options["grpc.keepalive_permit_without_calls"] = 0
    endpoint = config.endpoint
    if address is not None:
        options[_AUTHORITY] = endpoint.target
        if endpoint.uses_tls:
            options[_NAME_OVERRIDE] = endpoint.host.strip("[]")
    user = dict(endpoint.options)
    name = _configured_name(config, user)
    if name is not None:
        # grpcio checks each call's authority against the server's
        # certificate, and a plain channel with a name override takes the
        # name as its authority; host:port (an IP, say) would be refused.
        options[_NAME_OVERRIDE] = name
        options[_AUTHORITY] = f"[{name}]" if ":" in name else name
    options.update(user)
    return tuple(options.items())


_AUTHORITY = "grpc.default_authority"
_NAME_OVERRIDE = "grpc.ssl_target_name_override"


def _configured_name(config: Config, user: dict[str, Any]) -> str | None:
    """The name TLS checks when the config gives one: ``ssl.server_hostname``,
    or ``grpc.ssl_target_name_override`` in ``endpoint.options``, which wins."""
    endpoint = config.endpoint
    if not endpoint.uses_tls:
        return None
    name = user.get(_NAME_OVERRIDE)
    if name is None and endpoint.ssl is not None:
        name = endpoint.ssl.server_hostname
    if isinstance(name, bytes):
        name = name.decode(errors="replace")
    return name.strip("[]") if isinstance(name, str) else None


def channel_credentials(config: Config) -> grpc.ChannelCredentials | None:
    """The credentials for a secure channel, or ``None`` for plaintext."""
    endpoint = config.endpoint
    if endpoint.credentials is not None:
        return endpoint.credentials
    if endpoint.ssl is None:
        return None
    return endpoint.ssl.channel_credentials()


def _ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))


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
            watched = watch(raw, on_state, try_to_connect=True, target=target)
            return Connection(raw, channel, watched)
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
