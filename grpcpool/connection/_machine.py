"""One worker's connection, as a pure state machine.

:func:`step` takes the machine's state, an event and the time, and returns the
new state and the effects a driver must run, in order. It makes no grpc call,
starts no thread and reads no clock, so every path through a worker's life can
be tested in microseconds, and the same machine can be driven by a pykka actor
or an asyncio task. The phases::

    new --Start--> connecting --READY (and healthy)--> ready
                    |   ^   ^                           |  |
      failed /      |   |   +--- connection closed -----+  | READY -> failure /
      timed out     v   | ReconnectDue                     | shut down /
                   backoff <-------------------------------+ ping failed

    any phase --Stop--> stopped

Connecting means a channel is open and the worker waits for it to be READY;
with ``health_check`` a first health check must pass too, so a server that
answers NOT_SERVING is never handed out. A TRANSIENT_FAILURE while connecting
starts a probe check: connectivity only says "failed", while a call on the
channel fails at once with grpcio's reason (refused, TLS handshake, ...), which
is what ``connection_failed`` reports.

Servers close healthy connections all the time (a GOAWAY on max connection
age or ``too_many_pings``). A ready channel whose connection is closed (grpcio
shows it IDLE, or already CONNECTING again) is not a failure: the worker
connects again at once on the same channel, so that grpcio keeps its
per-channel state (such as the keepalive time it doubled after
``too_many_pings``), and says so at INFO. The channel is out of the pool's
view until it is READY (and healthy) again. Only a reconnect that fails
(TRANSIENT_FAILURE, or not READY within ``connect_timeout``) lets the channel
go and takes the backoff path, as a failed connect. A connection closed less
than ``backoff_min`` after it became ready takes the backoff path straight
away, so a server that closes every connection at once cannot make a loop.

Each change of the reported state (connecting, ready, backoff) makes exactly
one :class:`Report`. Those that enter or leave ``ready`` are synchronous: the
registry has put the channel into the pool's view before ``channel.connected``
fires, and has dropped it before ``connection_down`` fires and before the
channel is released.

``Backoff.attempt`` counts the connects that failed in a row, however many:
an outage never ends a worker. A ready channel lost in another way than by a
closed connection waits the current backoff delay without counting a failure.
The failure that reaches ``max_reconnect_attempts`` logs one WARNING line and
the worker carries on as before: each retry on a fresh channel, the delay
staying where the backoff has taken it.

Logging: the first trouble of an outage is one ERROR line, later failed
retries are DEBUG, reaching ``max_reconnect_attempts`` is one WARNING, the
recovery is one INFO line and so is a closed connection being reconnected;
with ``suppress_connection_errors`` all but the recovery are DEBUG. The
``reason`` of a lost channel is one of
:data:`~grpcpool.connection._machine_types.DISCONNECT_REASONS`.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from enum import Enum

from grpcpool import telemetry
from grpcpool.backoff import Backoff
from grpcpool.connection._machine_types import (
    CHANNEL_SHUTDOWN,
    CONNECTION_CLOSED,
    CONNECTION_FAILED,
    PING_FAILED,
    RENEWED,
    CancelTimers,
    CheckDone,
    CheckRequested,
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
    Renew,
    Repin,
    Report,
    Resync,
    Schedule,
    Start,
    StartCheck,
    Stop,
    WatchChannel,
)

__all__ = ["AWAITING_ADDRESS", "Step", "step", "takes_repin"]

AWAITING_ADDRESS = "waiting for the first answer of endpoint.resolver"
"""The ``last_error`` of a worker that waits for an address to connect to."""

# What step returns: the new state and the effects to run, in order.
Step = tuple[MachineState, tuple[Effect, ...]]

_CONNECTED = telemetry.channel_connected.name
_CONNECTION_FAILED = telemetry.channel_connection_failed.name
_CONNECTION_DOWN = telemetry.channel_connection_down.name
_DISCONNECTED = telemetry.channel_disconnected.name
_PING = telemetry.channel_ping.name
_RECONNECT_SCHEDULED = telemetry.channel_reconnect_scheduled.name
_RELEASED = telemetry.channel_released.name

# A ready channel's new connectivity state -> why it is no longer ready.
_LOST_REASONS = {
    "idle": CONNECTION_CLOSED,
    "connecting": CONNECTION_CLOSED,
    "transient_failure": CONNECTION_FAILED,
    "shutdown": CHANNEL_SHUTDOWN,
}


def step(state: MachineState, event: Event, now: float) -> Step:
    """Moves the machine on by one event.

    Args:
        state: The current state.
        event: What happened.
        now: The time, in monotonic seconds.

    Returns:
        The new state and the effects to run, in order.

    Raises:
        TypeError: ``event`` is not one of the machine's events.
    """
    if not isinstance(event, Event):
        raise TypeError(f"not a worker event: {event!r}")
    if state.phase == "stopped":
        return state, ()
    generation = getattr(event, "generation", state.generation)
    if generation != state.generation:
        return state, ()  # about a channel or a timer the worker has moved past
    phase = state.phase
    match event:
        case Start() if phase == "new" and event.await_address:
            state = replace(state, phase="backoff", last_error=AWAITING_ADDRESS)
            return state, (_report(state),)
        case Start():
            return _connect(state, now) if phase == "new" else (state, ())
        case Repin() if takes_repin(state):
            return _repin(state, now)
        case Renew() if phase == "ready":
            return _renew(state, now)
        case Stop():
            return _stop(state, now)
        case Resync():
            return (state, (_report(state),)) if phase != "new" else (state, ())
        case Connectivity():
            return _on_connectivity(state, _state_name(event.state), now)
        case ConnectTimeout() if phase == "connecting":
            timeout = state.config.connect_timeout
            return _connect_failed(state, f"not ready within {timeout}s", now)
        case CheckDone():
            return _on_check_done(state, event, now)
        case PingDue() if phase == "ready":
            return _ping(state)
        case CheckRequested() if phase == "ready" and state.config.health_check:
            # Without health checks connectivity is the whole check, and the
            # watcher reports it already.
            return _start_check(state, probe=False, extra=True)
        case ReconnectDue() if phase == "backoff":
            return _connect(state, now)
    return state, ()


def takes_repin(state: MachineState) -> bool:
    """Whether a worker in ``state`` moves to another address when told (:class:`Repin`).

    Only one that serves nothing: connecting, or waiting to reconnect.
    """
    return state.phase in ("connecting", "backoff")


# --- connecting ---------------------------------------------------------------------


def _repin(state: MachineState, now: float) -> Step:
    """Lets go of the channel (it serves nothing) and connects to the new address now."""
    effects: list[Effect] = [CancelTimers()]
    if state.has_channel:
        # A channel reconnecting after a closed connection may still carry calls.
        effects.append(ReleaseChannel(drain=state.reconnecting))
    state = _let_go(state, "backoff", state.last_error, state.backoff.succeed())
    state, connect = _connect(replace(state, retries=0), now, retry=False)
    return state, (*effects, *connect)


def _renew(state: MachineState, now: float) -> Step:
    """Lets the ready channel go (out of the view first, then drained) and connects afresh."""
    connected_for = now - state.ready_since
    state, connect = _connect(_let_go(state, "backoff", RENEWED), now, retry=False)
    level = logging.DEBUG if state.config.suppress_connection_errors else logging.INFO
    # One report for the change (ready -> connecting), synchronous and first:
    # the channel leaves the pool's view before it is released.
    opened = tuple(effect for effect in connect if not isinstance(effect, Report))
    return state, (
        CancelTimers(),
        _report(state, sync=True),
        Emit(_CONNECTION_DOWN, {}, {"reason": RENEWED}),
        Log(level, "the pool asked for a fresh connection; connecting again on a new channel"),
        Emit(_DISCONNECTED, {"duration": connected_for}, {"reason": RENEWED}),
        ReleaseChannel(drain=True),
        *opened,
    )


def _connect(state: MachineState, now: float, *, retry: bool = True) -> Step:
    generation = state.generation + 1
    state = replace(
        state,
        phase="connecting",
        generation=generation,
        retries=state.retries + (1 if retry and state.phase == "backoff" else 0),
        attempt_started=now,
        check_in_flight=False,
        check_is_extra=False,
        reconnecting=False,
    )
    timeout = Schedule(state.config.connect_timeout, ConnectTimeout(generation))
    return state, (OpenChannel(generation), _report(state), timeout)


def _on_connectivity(state: MachineState, name: str, now: float) -> Step:
    if state.phase == "connecting":
        if name == "ready":
            if state.config.health_check:
                return _start_check(state, probe=False)  # ready once the server says so
            return _connected(state, now)
        if name == "transient_failure":
            return _start_check(state, probe=True)
    elif state.phase == "ready" and name != "ready":
        reason = _LOST_REASONS.get(name, CONNECTION_FAILED)
        if reason == CONNECTION_CLOSED and now - state.ready_since >= state.config.backoff_min:
            return _reconnect(state, now)
        return _connection_lost(state, reason, None, now)
    return state, ()


def _reconnect(state: MachineState, now: float) -> Step:
    """The ready channel's connection was closed: connect it again, at once."""
    config = state.config
    generation = state.generation + 1
    connected_for = now - state.ready_since
    state = replace(
        state,
        phase="connecting",
        generation=generation,
        attempt_started=now,
        last_error=CONNECTION_CLOSED,
        check_in_flight=config.health_check,
        check_is_extra=False,
        reconnecting=True,
    )
    level = logging.DEBUG if config.suppress_connection_errors else logging.INFO
    effects: list[Effect] = [CancelTimers(), WatchChannel(generation)]
    if config.health_check:
        # A call on a channel that is connecting waits for the connection and
        # fails as soon as the channel fails: this check is the gate and the
        # probe in one, and it ends the moment the channel is usable, without
        # waiting for the watcher to see READY. It starts first, so that the
        # reconnect runs while the registry and the receivers hear of it.
        effects.append(StartCheck(generation, probe=False, timeout=config.connect_timeout))
    effects += [
        Schedule(config.connect_timeout, ConnectTimeout(generation)),
        _report(state, sync=True),  # out of the pool's view while it reconnects
        Emit(_CONNECTION_DOWN, {}, {"reason": CONNECTION_CLOSED}),
        Log(level, "connection closed; connecting again on the same channel"),
        Emit(_DISCONNECTED, {"duration": connected_for}, {"reason": CONNECTION_CLOSED}),
    ]
    return state, tuple(effects)


def _connected(state: MachineState, now: float) -> Step:
    effects: list[Effect] = [CancelTimers()]
    if state.retries > 0:
        effects.append(Log(logging.INFO, f"connected after {state.retries} retries"))
    duration = now - state.attempt_started
    state = replace(
        state,
        phase="ready",
        backoff=state.backoff.succeed(),
        retries=0,
        ready_since=now,
        last_error=None,
        reconnecting=False,
    )
    # In the pool's view before anyone hears of it: a receiver of
    # channel.connected can get the channel.
    effects += [_report(state, sync=True), Emit(_CONNECTED, {"duration": duration}, {})]
    effects += _next_ping(state)
    return state, tuple(effects)


def _connect_failed(state: MachineState, error: str, now: float) -> Step:
    failed = Emit(_CONNECTION_FAILED, {"duration": now - state.attempt_started}, {"error": error})
    delay, backoff = state.backoff.fail()
    config = state.config
    quiet = config.suppress_connection_errors
    if backoff.attempt == config.max_reconnect_attempts:
        # Where the worker used to crash: one line, and it carries on.
        log = Log(
            logging.DEBUG if quiet else logging.WARNING,
            f"{backoff.attempt} connects failed in a row (connection.max_reconnect_attempts); "
            f"retrying until the endpoint is back, each time on a fresh channel, at most "
            f"{config.backoff_max}s apart; last error: {error}",
        )
    else:
        # One line per outage, not one per retry: every failure is still an event.
        log = _problem(quiet or state.retries > 0, "connect failed", error)
    # A channel that was reconnecting may still carry calls from before.
    release = ReleaseChannel(drain=state.reconnecting)
    state = _let_go(state, "backoff", error, backoff)
    scheduled = _reconnect_scheduled(state, delay, error)
    return state, (CancelTimers(), failed, log, _report(state), *scheduled, release)


# --- ready: watching and pinging ---------------------------------------------------------


def _ping(state: MachineState) -> Step:
    if state.config.health_check:
        return _start_check(state, probe=False)
    # Without health checks connectivity is the whole check, and it says READY.
    return state, (Emit(_PING, {"duration": 0.0}, {"result": "ok"}), *_next_ping(state))


def _start_check(state: MachineState, *, probe: bool, extra: bool = False) -> Step:
    if state.check_in_flight:
        if not extra and state.check_is_extra:
            # The ping is due while an extra check runs: that check's result
            # now stands for the ping and schedules the next one.
            return replace(state, check_is_extra=False), ()
        return state, ()  # its result comes soon and decides
    config = state.config
    # A ping has its own deadline, so that a silent peer is noticed soon; a
    # check that is part of connecting may take as long as connecting may.
    timeout = config.ping_timeout if state.phase == "ready" else config.connect_timeout
    check = StartCheck(state.generation, probe, timeout)
    return replace(state, check_in_flight=True, check_is_extra=extra), (check,)


def _on_check_done(state: MachineState, event: CheckDone, now: float) -> Step:
    extra = state.check_is_extra
    state = replace(state, check_in_flight=False, check_is_extra=False)
    if state.phase == "connecting":
        # The check that gates a connection, or a probe after a failure.
        if event.error is None:
            return _connected(state, now)
        return _connect_failed(state, event.error, now)
    if state.phase != "ready":
        return state, ()
    result = "ok" if event.error is None else "error"
    ping = Emit(_PING, {"duration": now - event.started}, {"result": result})
    if event.error is not None:
        state, effects = _connection_lost(state, PING_FAILED, event.error, now)
        return state, (ping, *effects)
    if extra:
        return state, (ping,)  # the ping schedule's timer is still pending
    return state, (ping, *_next_ping(state))


def _next_ping(state: MachineState) -> tuple[Effect, ...]:
    interval = state.config.ping_interval
    if interval is None:
        return ()
    return (Schedule(interval, PingDue(state.generation)),)


def _connection_lost(state: MachineState, reason: str, detail: str | None, now: float) -> Step:
    connected_for = now - state.ready_since
    # Waits as long as the backoff says, but a drop is no failed connect.
    delay, _ = state.backoff.fail()
    state = _let_go(state, "backoff", reason)
    text = reason if detail is None else f"{reason} ({detail})"
    return state, (
        CancelTimers(),
        _report(state, sync=True),  # out of the pool's view before it is released
        Emit(_CONNECTION_DOWN, {}, {"reason": reason}),
        _problem(state.config.suppress_connection_errors, "connection down", text),
        Emit(_DISCONNECTED, {"duration": connected_for}, {"reason": reason}),
        # Calls already running on it get connection.drain_timeout to finish.
        ReleaseChannel(drain=True),
        *_reconnect_scheduled(state, delay, reason),
    )


# --- helpers ----------------------------------------------------------------------------


def _stop(state: MachineState, now: float) -> Step:
    if state.phase == "new":
        return replace(state, phase="stopped"), ()
    effects: tuple[Effect, ...] = (CancelTimers(),)
    if state.phase == "ready":
        # The pool lets a ready connection go: said once, as a drop is.
        effects += (Emit(_RELEASED, {"duration": now - state.ready_since}, {}),)
    if state.has_channel:
        effects += (ReleaseChannel(drain=True),)
    return _let_go(state, "stopped", state.last_error), effects


def _let_go(
    state: MachineState, phase: Phase, last_error: str | None, backoff: Backoff | None = None
) -> MachineState:
    """The state after letting go of the channel: news about it is stale from now on."""
    return replace(
        state,
        phase=phase,
        generation=state.generation + 1,
        backoff=state.backoff if backoff is None else backoff,
        last_error=last_error,
        check_in_flight=False,
        check_is_extra=False,
        reconnecting=False,
    )


def _reconnect_scheduled(state: MachineState, delay: float, reason: str) -> tuple[Effect, ...]:
    # "attempt" numbers the retry this delay leads to, within the outage.
    measurements = {"delay_ms": round(delay * 1000), "attempt": state.retries + 1}
    return (
        Emit(_RECONNECT_SCHEDULED, measurements, {"reason": reason}),
        Schedule(delay, ReconnectDue(state.generation)),
    )


def _report(state: MachineState, *, sync: bool = False) -> Report:
    phase = state.phase
    assert phase in ("connecting", "ready", "backoff"), phase
    return Report(
        state=phase,
        reconnect_attempt=state.backoff.attempt,
        last_error=state.last_error,
        ready=phase == "ready",
        sync=sync,
    )


def _problem(quiet: bool, what: str, detail: str) -> Log:
    return Log(logging.DEBUG if quiet else logging.ERROR, f"{what}: {detail}")


def _state_name(state: Enum | str) -> str:
    return (state.name if isinstance(state, Enum) else state).lower()
