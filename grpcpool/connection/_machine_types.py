"""The values a worker's state machine works with: its state, events and effects.

All of them are frozen dataclasses, so a test can build any state, compare
effects with ``==``, and a driver cannot change what the machine decided.
See :mod:`grpcpool.connection._machine` for how they fit together.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Literal

from grpcpool._status import WorkerState
from grpcpool.backoff import Backoff
from grpcpool.config import ConnectionConfig

__all__ = [
    "CHANNEL_SHUTDOWN",
    "CONNECTION_CLOSED",
    "CONNECTION_FAILED",
    "DISCONNECT_REASONS",
    "PING_FAILED",
    "RENEWED",
    "CancelTimers",
    "CheckDone",
    "ConnectTimeout",
    "Connectivity",
    "Effect",
    "Emit",
    "Event",
    "Log",
    "MachineState",
    "OpenChannel",
    "Phase",
    "PingDue",
    "ReconnectDue",
    "ReleaseChannel",
    "Renew",
    "Repin",
    "Report",
    "Resync",
    "Schedule",
    "Start",
    "StartCheck",
    "Stop",
    "WatchChannel",
    "initial_state",
]

# "new" is a machine that has not been started; the other four are the
# states a worker reports (grpcpool._status.WorkerState).
Phase = Literal["new", "connecting", "ready", "backoff", "stopped"]

# Why a ready channel left the pool: the ``reason`` of ``connection_down`` and
# ``disconnected``, and of a ``reconnect_scheduled`` right after them (one
# after a failed connect gives the connect's error instead).
CONNECTION_CLOSED = "connection_closed"
"""The connection was closed (a GOAWAY on max connection age or too_many_pings,
an idle timeout, the server going away): grpcio saw it IDLE or reconnecting."""
CONNECTION_FAILED = "transport_failed"
"""The channel went from READY straight to TRANSIENT_FAILURE."""
CHANNEL_SHUTDOWN = "channel_shutdown"
"""The channel itself was closed under the worker."""
PING_FAILED = "ping_failed"
"""A health ping failed or timed out (``connection.ping_timeout``)."""
RENEWED = "renewed"
"""The pool asked for a fresh connection (:class:`Renew`: outlier detection
ejected this one twice in a row)."""
DISCONNECT_REASONS: tuple[str, ...] = (
    CONNECTION_CLOSED,
    CONNECTION_FAILED,
    CHANNEL_SHUTDOWN,
    PING_FAILED,
    RENEWED,
)
"""Every reason a worker gives for losing a ready channel."""


@dataclass(frozen=True)
class MachineState:
    """Everything one worker knows about its connection.

    Attributes:
        config: The pool's connection settings.
        phase: Where the worker is in its connect / ready / backoff loop.
        generation: Bumped whenever the worker opens a channel, lets one go
            or connects the same one again (:class:`WatchChannel`). Every
            event about a channel or a timer carries the number it was made
            under; any other number is news about the past.
        backoff: Reconnect backoff; ``backoff.attempt`` counts the connects
            that failed in a row (the one failure counter).
        retries: Reconnects started since the channel was last ready (or
            since the start). Only the log and ``reconnect_scheduled`` read
            it: the first trouble of an outage is loud, and the recovery says
            how many retries it took.
        attempt_started: When the current connect began (monotonic seconds).
        ready_since: When the channel last became ready.
        last_error: Why the last connect failed or the connection ended.
        check_in_flight: A health check on the current channel is running.
        check_is_extra: The running check was asked for by a failed call
            (:class:`CheckRequested`), not by the ping schedule, so its
            success must not schedule another ping: the schedule's own timer
            is still pending.
        reconnecting: The current connect is the channel that was ready
            connecting again after its connection was closed, rather than a
            fresh channel; calls may still run on it, so letting it go drains.
    """

    config: ConnectionConfig
    phase: Phase = "new"
    generation: int = 0
    backoff: Backoff = field(default_factory=Backoff)
    retries: int = 0
    attempt_started: float = 0.0
    ready_since: float = 0.0
    last_error: str | None = None
    check_in_flight: bool = False
    check_is_extra: bool = False
    reconnecting: bool = False

    @property
    def has_channel(self) -> bool:
        """True while the worker holds an open channel."""
        return self.phase in ("connecting", "ready")


def initial_state(config: ConnectionConfig, rng: random.Random | None = None) -> MachineState:
    """A machine not yet started; ``rng`` draws the backoff jitter (seed it in tests)."""
    backoff = Backoff(config.backoff_min, config.backoff_max, rng=rng or random.Random())
    return MachineState(config=config, backoff=backoff)


# --- events: what happened ------------------------------------------------------


@dataclass(frozen=True)
class Start:
    """The worker has started: open the first channel.

    Attributes:
        await_address: The worker has no address yet and must not connect to
            the endpoint's ``host:port`` (the pool's own resolver has not
            answered): it waits in ``backoff`` until a :class:`Repin` gives it one.
    """

    await_address: bool = False


@dataclass(frozen=True)
class Connectivity:
    """The channel of ``generation`` is now in ``state``.

    ``state`` is a ``grpc.ChannelConnectivity`` (or any enum with the same
    member names), or the name itself, in any case.
    """

    generation: int
    state: Enum | str


@dataclass(frozen=True)
class ConnectTimeout:
    """The connect of ``generation`` has run out of time."""

    generation: int


@dataclass(frozen=True)
class CheckDone:
    """A health check on the channel of ``generation`` has finished.

    Attributes:
        generation: The channel it ran on.
        started: When it was started (monotonic seconds).
        error: ``None`` if the server is usable, else why not.
    """

    generation: int
    started: float
    error: str | None


@dataclass(frozen=True)
class PingDue:
    """Time to check the ready channel of ``generation`` again."""

    generation: int


@dataclass(frozen=True)
class ReconnectDue:
    """The backoff delay after ``generation`` has elapsed: connect again."""

    generation: int


@dataclass(frozen=True)
class CheckRequested:
    """A call on the ready channel of ``generation`` failed with ``UNAVAILABLE``: check it now.

    Callers rate-limit these (``SUSPECT_CHECK_INTERVAL`` per connection);
    the machine starts a check unless one is already running. Only a failed
    check takes the channel out of rotation: one failed call may be the
    server's answer, not the connection's fault.
    """

    generation: int


@dataclass(frozen=True)
class Repin:
    """Connect to ``address`` from now on, at once (the pool moves a worker that serves nothing).

    Only a worker that is not ready takes it (see
    :func:`~grpcpool.connection._machine.takes_repin`): its channel, which
    serves no call, is let go, the backoff starts over, and a connect to the
    new address begins. A ready worker ignores it; the pool moves ready
    workers by replacing them, so that no capacity is lost. The driver keeps
    the address; the machine only decides whether and when it applies.
    """

    address: str


@dataclass(frozen=True)
class Renew:
    """Let the ready channel go and connect afresh on a new one, at once.

    The pool asks it of a connection it judged an outlier twice in a row
    (behind a layer-4 balancer a new connection may reach another server).
    The channel leaves the pool's view first and drains; the backoff is not
    touched (nothing failed to connect). A worker that is not ready ignores
    it: it is getting a new channel already.
    """


@dataclass(frozen=True)
class Resync:
    """Asks a worker to report its state again (after a registry restart)."""


@dataclass(frozen=True)
class Stop:
    """The worker is stopping: let go of everything, report nothing more."""


Event = (
    Start
    | Connectivity
    | ConnectTimeout
    | CheckDone
    | PingDue
    | CheckRequested
    | ReconnectDue
    | Repin
    | Renew
    | Resync
    | Stop
)

# --- effects: what the driver must do, in order -----------------------------------


@dataclass(frozen=True)
class OpenChannel:
    """Open a channel and watch its connectivity, tagging news with ``generation``."""

    generation: int


@dataclass(frozen=True)
class WatchChannel:
    """Watch the current channel afresh, tagging its news with ``generation``.

    The channel stays open: its connection was closed and it is connecting
    again. Everything tagged with the earlier generation (its watch, a ping
    under way, timers) is stale from now on; the new watch reports the
    channel's state as it is first.
    """

    generation: int


@dataclass(frozen=True)
class ReleaseChannel:
    """Let go of the current channel: retire it (``drain``) or close it now."""

    drain: bool


@dataclass(frozen=True)
class StartCheck:
    """Start a health check on the current channel, tagging its result with ``generation``.

    Attributes:
        generation: The channel's generation.
        probe: The check is made only to learn why a connect failed.
        timeout: The call's deadline in seconds: ``connection.ping_timeout``
            for a ping of a ready channel, ``connection.connect_timeout`` for
            a check that is part of connecting.
    """

    generation: int
    probe: bool
    timeout: float


@dataclass(frozen=True)
class Schedule:
    """Deliver ``event`` to the machine after ``delay`` seconds."""

    delay: float
    event: Event


@dataclass(frozen=True)
class CancelTimers:
    """Cancel every event scheduled so far and not yet delivered."""


@dataclass(frozen=True)
class Report:
    """Tell the pool's registry the worker's new state.

    Attributes:
        state: The state just entered.
        reconnect_attempt: Connects that failed in a row.
        last_error: Why the last connect failed or the connection ended.
        ready: Hand the current channel out (exactly when ``state == "ready"``).
        sync: Wait until the registry has acted: the channel that was handed
            out is released right after.
    """

    state: WorkerState
    reconnect_attempt: int
    last_error: str | None
    ready: bool
    sync: bool


@dataclass(frozen=True)
class Emit:
    """Send a telemetry signal.

    Attributes:
        signal: The signal's name (``grpcpool.telemetry.<signal>.name``).
        measurements: Its measurements.
        metadata: Metadata beyond the worker's identity (``pool_name`` and
            ``worker_id``, which the driver puts first).
    """

    signal: str
    measurements: dict[str, Any]
    metadata: dict[str, Any]


@dataclass(frozen=True)
class Log:
    """Log ``message`` (which the driver prefixes with the pool and worker) at ``level``."""

    level: int
    message: str


Effect = (
    OpenChannel
    | WatchChannel
    | ReleaseChannel
    | StartCheck
    | Schedule
    | CancelTimers
    | Report
    | Emit
    | Log
)
