"""One connection's life: its grpc channel, how it is watched, checked and kept.

Nothing here knows about pools as a whole. :class:`PoolChannels` opens,
retires and closes the channels of one pool incarnation; :func:`watch`
follows a channel's connectivity on the process's single watcher thread;
:func:`step` is the worker's state machine (pure: events in, effects out),
which a pykka actor drives today and any other driver can drive;
:func:`start_check` runs the health check.
"""

from grpcpool.connection._channel import (
    Connection,
    PoolChannels,
    channel_credentials,
    channel_options,
    open_channel_count,
)
from grpcpool.connection._health import check_error, start_check
from grpcpool.connection._machine import step
from grpcpool.connection._machine_types import (
    DISCONNECT_REASONS,
    CancelTimers,
    CheckDone,
    Connectivity,
    ConnectTimeout,
    Effect,
    Emit,
    Event,
    Log,
    MachineState,
    OpenChannel,
    Phase,
    PingDue,
    ReconnectDue,
    ReleaseChannel,
    Report,
    Resync,
    Schedule,
    Start,
    StartCheck,
    Stop,
    WatchChannel,
    initial_state,
)
from grpcpool.connection._watcher import ConnectivityCallback, Watch, watch

__all__ = [
    "DISCONNECT_REASONS",
    "CancelTimers",
    "CheckDone",
    "ConnectTimeout",
    "Connection",
    "Connectivity",
    "ConnectivityCallback",
    "Effect",
    "Emit",
    "Event",
    "Log",
    "MachineState",
    "OpenChannel",
    "Phase",
    "PingDue",
    "PoolChannels",
    "ReconnectDue",
    "ReleaseChannel",
    "Report",
    "Resync",
    "Schedule",
    "Start",
    "StartCheck",
    "Stop",
    "Watch",
    "WatchChannel",
    "channel_credentials",
    "channel_options",
    "check_error",
    "initial_state",
    "open_channel_count",
    "start_check",
    "step",
    "watch",
]
