"""Tests for grpcpool.connection._machine: a worker's life as a pure state machine.

No server, thread or clock: every test feeds events with explicit times to
``step`` and compares the effects it asks for. The backoff jitter comes from
a seeded ``random.Random``, so delays are reproducible.
"""

from __future__ import annotations

import logging
import random
import re
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any

import grpc
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from grpcpool import telemetry
from grpcpool.backoff import Backoff
from grpcpool.config import ConnectionConfig
from grpcpool.connection._machine import AWAITING_ADDRESS, step, takes_repin
from grpcpool.connection._machine_types import (
    DISCONNECT_REASONS,
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
    initial_state,
)

SEED = 7
READY = grpc.ChannelConnectivity.READY
IDLE = grpc.ChannelConnectivity.IDLE
CONNECTING = grpc.ChannelConnectivity.CONNECTING
TRANSIENT_FAILURE = grpc.ChannelConnectivity.TRANSIENT_FAILURE
SHUTDOWN = grpc.ChannelConnectivity.SHUTDOWN
SPEC = Path(__file__).resolve().parent.parent / "docs" / "SPEC.md"


def settings_with(**changes: Any) -> ConnectionConfig:
    """Connection settings with round numbers, so expected values are easy to read."""
    values: dict[str, Any] = {
        "backoff_min": 1.0,
        "backoff_max": 30.0,
        "connect_timeout": 10.0,
        "ping_interval": 25.0,
        "health_check": True,
        "max_reconnect_attempts": 5,
    }
    values.update(changes)
    return ConnectionConfig(**values)


def new_machine(**changes: Any) -> MachineState:
    """A machine not yet started, with seeded jitter."""
    return initial_state(settings_with(**changes), random.Random(SEED))


def run(
    state: MachineState, events: Iterable[Event], now: float = 0.0
) -> tuple[MachineState, list[Effect]]:
    """Steps every event at ``now``; returns the last state and all effects."""
    effects: list[Effect] = []
    for event in events:
        state, more = step(state, event, now)
        effects += more
    return state, effects


def connecting(**changes: Any) -> MachineState:
    """A machine started at t=0: channel 1 open, waiting for READY."""
    state, _ = step(new_machine(**changes), Start(), 0.0)
    return state


def ready(**changes: Any) -> MachineState:
    """A machine whose channel became ready (and healthy) at t=1."""
    state = connecting(**changes)
    gen = state.generation
    state, _ = step(state, Connectivity(gen, READY), 0.5)
    if state.phase == "connecting":
        state, _ = step(state, CheckDone(gen, 0.5, None), 1.0)
    assert state.phase == "ready"
    return state


def backing_off(**changes: Any) -> MachineState:
    """A machine whose first connect timed out at t=10."""
    state = connecting(**changes)
    state, _ = step(state, ConnectTimeout(state.generation), 10.0)
    assert state.phase == "backoff"
    return state


def stopped(**changes: Any) -> MachineState:
    """A machine stopped while ready."""
    state, _ = step(ready(**changes), Stop(), 2.0)
    return state


def of_type(effects: Iterable[Effect], kind: type[Any]) -> list[Any]:
    """The effects of one kind, in order."""
    return [effect for effect in effects if isinstance(effect, kind)]


def kinds(effects: Iterable[Effect]) -> list[str]:
    """The effects' class names, in order."""
    return [type(effect).__name__ for effect in effects]


def first_delay(seed: int = SEED, attempt: int = 0) -> float:
    """The delay a fresh seeded backoff at ``attempt`` draws first."""
    delay, _ = Backoff(1.0, 30.0, attempt=attempt, rng=random.Random(seed)).fail()
    return delay


def name(short: str) -> str:
    """The full telemetry signal name of ``channel.<short>``."""
    return f"{telemetry.PREFIX}.channel.{short}"


# --- starting and connecting ------------------------------------------------------------


def test_start_opens_a_channel_reports_connecting_and_arms_the_connect_timeout() -> None:
    """Start: open channel 1, one connecting Report, ConnectTimeout after connect_timeout."""
    state, effects = step(new_machine(), Start(), 100.0)

    assert effects == (
        OpenChannel(1),
        Report("connecting", 0, None, ready=False, sync=False),
        Schedule(10.0, ConnectTimeout(1)),
    )
    assert (state.phase, state.generation, state.attempt_started) == ("connecting", 1, 100.0)


def test_a_second_start_is_ignored() -> None:
    """Start on a started machine changes nothing."""
    state = connecting()
    assert step(state, Start(), 1.0) == (state, ())


def test_ready_with_health_check_starts_the_gating_check_and_waits_for_it() -> None:
    """READY while connecting with health_check: a health check, no Report until it passes."""
    state = connecting()

    state, effects = step(state, Connectivity(1, READY), 0.5)

    assert effects == (StartCheck(1, probe=False, timeout=10.0),)
    assert (state.phase, state.check_in_flight) == ("connecting", True)


def test_passing_gate_check_makes_the_worker_ready() -> None:
    """The gate check passes: timers cancelled, one ready Report, connected with its duration, ping armed.

    The Report is synchronous: the channel is in the pool's view before
    channel.connected fires, so a receiver of it can get the channel.
    """
    state, _ = step(connecting(), Connectivity(1, READY), 0.5)

    state, effects = step(state, CheckDone(1, 0.5, None), 1.25)

    assert effects == (
        CancelTimers(),
        Report("ready", 0, None, ready=True, sync=True),
        Emit(name("connected"), {"duration": 1.25}, {}),
        Schedule(25.0, PingDue(1)),
    )
    assert (state.phase, state.ready_since, state.check_in_flight) == ("ready", 1.25, False)


def test_failing_gate_check_fails_the_connect_with_its_reason() -> None:
    """A NOT_SERVING answer to the gate check is a failed connect: never handed out."""
    state, _ = step(connecting(), Connectivity(1, READY), 0.5)

    state, effects = step(state, CheckDone(1, 0.5, "health status NOT_SERVING"), 0.75)

    assert state.phase == "backoff"
    assert of_type(effects, Emit)[0] == Emit(
        name("connection_failed"), {"duration": 0.75}, {"error": "health status NOT_SERVING"}
    )
    assert all(not report.ready for report in of_type(effects, Report))


def test_ready_without_health_check_connects_at_once() -> None:
    """With health_check off, READY is enough."""
    state, effects = step(connecting(health_check=False), Connectivity(1, READY), 2.0)

    assert state.phase == "ready"
    assert kinds(effects) == ["CancelTimers", "Report", "Emit", "Schedule"]
    assert of_type(effects, Emit) == [Emit(name("connected"), {"duration": 2.0}, {})]


def test_without_ping_interval_no_ping_is_scheduled() -> None:
    """ping_interval=None: ready without a PingDue timer."""
    state = connecting(health_check=False, ping_interval=None)

    _, effects = step(state, Connectivity(1, READY), 2.0)

    assert of_type(effects, Schedule) == []


@pytest.mark.parametrize("spelling", [READY, "READY", "ready"])
def test_connectivity_accepts_the_enum_or_its_name(spelling: Any) -> None:
    """A Connectivity state may be grpc's enum or its name in any case."""
    _, effects = step(connecting(health_check=False), Connectivity(1, spelling), 1.0)

    assert of_type(effects, Report) == [Report("ready", 0, None, ready=True, sync=True)]


def test_transient_failure_while_connecting_starts_a_probe() -> None:
    """TRANSIENT_FAILURE while connecting: a probe check, to learn grpcio's reason."""
    state, effects = step(connecting(), Connectivity(1, TRANSIENT_FAILURE), 0.2)

    assert effects == (StartCheck(1, probe=True, timeout=10.0),)
    assert state.check_in_flight


def test_probe_is_made_even_without_health_check() -> None:
    """The probe is a call to learn why; health_check off does not skip it."""
    _, effects = step(connecting(health_check=False), Connectivity(1, TRANSIENT_FAILURE), 0.2)

    assert effects == (StartCheck(1, probe=True, timeout=10.0),)


def test_failed_probe_fails_the_connect_with_the_probe_reason() -> None:
    """The probe's error is connection_failed's error and the Report's last_error."""
    state, _ = step(connecting(), Connectivity(1, TRANSIENT_FAILURE), 0.2)
    reason = "unavailable: failed to connect to all addresses"

    state, effects = step(state, CheckDone(1, 0.2, reason), 0.3)

    assert state.phase == "backoff"
    assert of_type(effects, Emit)[0].metadata == {"error": reason}
    (report,) = of_type(effects, Report)
    assert (report.state, report.last_error, report.reconnect_attempt) == ("backoff", reason, 1)


def test_passing_probe_connects() -> None:
    """A probe that passes (grpcio reconnected meanwhile) connects the worker."""
    state, _ = step(connecting(), Connectivity(1, TRANSIENT_FAILURE), 0.2)

    state, _ = step(state, CheckDone(1, 0.2, None), 0.3)

    assert state.phase == "ready"


def test_no_second_check_while_one_is_in_flight() -> None:
    """A check in flight decides; READY or TRANSIENT_FAILURE again starts no other."""
    state, _ = step(connecting(), Connectivity(1, READY), 0.5)

    for change in (READY, TRANSIENT_FAILURE):
        assert step(state, Connectivity(1, change), 0.6) == (state, ())


@pytest.mark.parametrize("change", [IDLE, CONNECTING, SHUTDOWN])
def test_other_states_while_connecting_change_nothing(change: grpc.ChannelConnectivity) -> None:
    """IDLE, CONNECTING and SHUTDOWN while connecting: keep waiting for READY or the timeout."""
    state = connecting()
    assert step(state, Connectivity(1, change), 0.5) == (state, ())


def test_connect_timeout_fails_the_attempt() -> None:
    """The timeout: the full failed-connect sequence, in order, with the exact payloads."""
    state, effects = step(connecting(), ConnectTimeout(1), 10.0)
    error = "not ready within 10.0s"
    delay = first_delay()

    assert effects == (
        CancelTimers(),
        Emit(name("connection_failed"), {"duration": 10.0}, {"error": error}),
        Log(logging.ERROR, f"connect failed: {error}"),
        Report("backoff", 1, error, ready=False, sync=False),
        Emit(
            name("reconnect_scheduled"),
            {"delay_ms": round(delay * 1000), "attempt": 1},
            {"reason": error},
        ),
        Schedule(delay, ReconnectDue(2)),
        ReleaseChannel(drain=False),
    )
    assert (state.phase, state.generation, state.backoff.attempt) == ("backoff", 2, 1)
    assert state.last_error == error


def test_connect_timeout_after_ready_is_ignored() -> None:
    """A ConnectTimeout of the current channel once ready changes nothing."""
    state = ready()
    assert step(state, ConnectTimeout(state.generation), 11.0) == (state, ())


# --- backoff -----------------------------------------------------------------------------


def test_reconnect_due_opens_the_next_channel() -> None:
    """ReconnectDue in backoff: channel 3 opens, one connecting Report keeping the last error."""
    state = backing_off()

    state, effects = step(state, ReconnectDue(2), 12.0)

    assert effects == (
        OpenChannel(3),
        Report("connecting", 1, "not ready within 10.0s", ready=False, sync=False),
        Schedule(10.0, ConnectTimeout(3)),
    )
    assert (state.phase, state.attempt_started, state.retries) == ("connecting", 12.0, 1)


def test_backoff_grows_with_consecutive_failures_and_counts_them() -> None:
    """Each failed connect counts once: Reports say 1, 2, 3; delays follow the seeded Backoff."""
    state = connecting(max_reconnect_attempts=10)
    expected = Backoff(1.0, 30.0, rng=random.Random(SEED))
    now = 0.0
    for attempt in (1, 2, 3, 4):
        now += 10.0
        state, effects = step(state, ConnectTimeout(state.generation), now)
        delay, expected = expected.fail()
        (report,) = of_type(effects, Report)
        scheduled = of_type(effects, Emit)[1]
        assert report.reconnect_attempt == attempt == state.backoff.attempt
        assert scheduled.measurements == {"delay_ms": round(delay * 1000), "attempt": attempt}
        assert of_type(effects, Schedule) == [Schedule(delay, ReconnectDue(state.generation))]
        assert min(30.0, 2.0**attempt) / 2 <= delay <= min(30.0, 2.0**attempt)
        state, _ = step(state, ReconnectDue(state.generation), now + delay)


def test_success_resets_the_backoff_and_the_error() -> None:
    """Ready after failures: attempt back to 0, last_error cleared, one INFO line."""
    state = backing_off()
    state, _ = step(state, ReconnectDue(2), 12.0)
    state, _ = step(state, ConnectTimeout(3), 22.0)
    state, _ = step(state, ReconnectDue(4), 25.0)
    state, _ = step(state, Connectivity(5, READY), 25.5)

    state, effects = step(state, CheckDone(5, 25.5, None), 26.0)

    assert of_type(effects, Report) == [Report("ready", 0, None, ready=True, sync=True)]
    assert of_type(effects, Log) == [Log(logging.INFO, "connected after 2 retries")]
    assert of_type(effects, Emit)[0].measurements == {"duration": 1.0}
    assert (state.backoff.attempt, state.retries, state.last_error) == (0, 0, None)


def fail_connects(state: MachineState, count: int) -> tuple[MachineState, list[list[Effect]]]:
    """Lets ``count`` connects in a row time out (each retried once due); returns each one's effects."""
    failures = []
    for _ in range(count):
        state, effects = step(state, ConnectTimeout(state.generation), 0.0)
        failures.append(list(effects))
        state, _ = step(state, ReconnectDue(state.generation), 0.0)
    return state, failures


def test_reaching_max_reconnect_attempts_logs_one_warning_and_carries_on() -> None:
    """The 3rd failed connect of 3: one WARNING instead of its usual line; no crash, ever.

    The worker keeps retrying, each retry on a fresh channel, and the delay
    stays where the backoff has taken it (no storm at backoff_min): the same
    delays a Backoff that never restarted would draw.
    """
    state = connecting(max_reconnect_attempts=3)
    expected = Backoff(1.0, 30.0, rng=random.Random(SEED))

    state, failures = fail_connects(state, 8)

    levels = [[log.level for log in of_type(effects, Log)] for effects in failures]
    assert levels == [[logging.ERROR], [logging.DEBUG], [logging.WARNING]] + [[logging.DEBUG]] * 5
    (warning,) = of_type(failures[2], Log)
    assert warning.message.startswith(
        "3 connects failed in a row (connection.max_reconnect_attempts)"
    )
    assert warning.message.endswith("last error: not ready within 10.0s")
    for attempt, effects in enumerate(failures, start=1):
        delay, expected = expected.fail()
        (report,) = of_type(effects, Report)
        assert report == Report(
            "backoff", attempt, "not ready within 10.0s", ready=False, sync=False
        )
        assert of_type(effects, Schedule)[0].delay == delay
        assert kinds(effects) == _FAILED
    assert (state.phase, state.backoff.attempt, state.retries) == ("connecting", 8, 8)


def test_max_reconnect_attempts_one_warns_on_the_first_failure() -> None:
    """max_reconnect_attempts=1: the first failed connect is the WARNING line; then it retries."""
    state, effects = step(connecting(max_reconnect_attempts=1), ConnectTimeout(1), 10.0)

    assert state.phase == "backoff"
    assert [log.level for log in of_type(effects, Log)] == [logging.WARNING]
    assert of_type(effects, Schedule) == [Schedule(first_delay(), ReconnectDue(2))]


def test_reaching_max_reconnect_attempts_is_debug_when_connection_errors_are_suppressed() -> None:
    """suppress_connection_errors: the limit's line is DEBUG like the rest."""
    state = connecting(max_reconnect_attempts=2, suppress_connection_errors=True)

    _, failures = fail_connects(state, 3)

    assert [log.level for effects in failures for log in of_type(effects, Log)] == [
        logging.DEBUG
    ] * 3


def test_drops_do_not_count_as_failed_connects() -> None:
    """A ready channel that is lost (not closed) waits a backoff delay but counts no failure."""
    state = ready(max_reconnect_attempts=2)
    now = 1.0
    for _ in range(10):
        now += 5.0
        state, _ = step(state, Connectivity(state.generation, TRANSIENT_FAILURE), now)
        assert (state.phase, state.backoff.attempt) == ("backoff", 0)
        state, _ = step(state, ReconnectDue(state.generation), now + 1.0)
        state, _ = step(state, Connectivity(state.generation, READY), now + 1.5)
        state, _ = step(state, CheckDone(state.generation, now + 1.5, None), now + 2.0)
        assert state.phase == "ready"


def test_events_of_the_current_generation_that_do_not_fit_backoff_are_ignored() -> None:
    """In backoff only ReconnectDue, Resync and Stop do anything."""
    state = backing_off()
    gen = state.generation
    for event in (
        Start(),
        Connectivity(gen, READY),
        Connectivity(gen, IDLE),
        ConnectTimeout(gen),
        CheckDone(gen, 10.0, None),
        PingDue(gen),
    ):
        assert step(state, event, 11.0) == (state, ())


# --- ready: drops and pings --------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "reason", "ready_for"),
    [
        (TRANSIENT_FAILURE, "transport_failed", 30.0),
        (SHUTDOWN, "channel_shutdown", 30.0),
        # Closed sooner than backoff_min after it was ready: no reconnect loop.
        (IDLE, "connection_closed", 0.5),
        (CONNECTING, "connection_closed", 0.5),
    ],
)
def test_leaving_ready_is_one_synchronous_report_then_release_with_drain(
    change: grpc.ChannelConnectivity, reason: str, ready_for: float
) -> None:
    """A drop: ONE backoff Report (sync) before the drained release; the delay is not a failure."""
    state = ready()

    state, effects = step(state, Connectivity(1, change), 1.0 + ready_for)
    delay = first_delay()

    assert effects == (
        CancelTimers(),
        Report("backoff", 0, reason, ready=False, sync=True),
        Emit(name("connection_down"), {}, {"reason": reason}),
        Log(logging.ERROR, f"connection down: {reason}"),
        Emit(name("disconnected"), {"duration": ready_for}, {"reason": reason}),
        ReleaseChannel(drain=True),
        Emit(
            name("reconnect_scheduled"),
            {"delay_ms": round(delay * 1000), "attempt": 1},
            {"reason": reason},
        ),
        Schedule(delay, ReconnectDue(2)),
    )
    assert (state.phase, state.generation, state.backoff.attempt) == ("backoff", 2, 0)


def test_disconnect_reasons_are_listed_in_one_place() -> None:
    """The reasons a ready channel is lost for, as documented."""
    assert DISCONNECT_REASONS == (
        "connection_closed",
        "transport_failed",
        "channel_shutdown",
        "ping_failed",
        "renewed",
    )


# --- ready: a closed connection is connected again on the same channel ---------------------


def closed(change: Any = IDLE, **changes: Any) -> MachineState:
    """A machine whose ready channel's connection was closed at t=31: reconnecting on it."""
    state, _ = step(ready(**changes), Connectivity(1, change), 31.0)
    assert (state.phase, state.reconnecting) == ("connecting", True)
    return state


@pytest.mark.parametrize("change", [IDLE, CONNECTING])
def test_a_closed_connection_is_connected_again_at_once_on_the_same_channel(
    change: grpc.ChannelConnectivity,
) -> None:
    """IDLE (or already CONNECTING) while ready: out of the view (sync), INFO, no backoff.

    The same channel is watched afresh under a new generation and checked at
    once: a call on a connecting channel waits for it, so the check ends as
    soon as the channel is usable, or fails as soon as the reconnect does.
    """
    state, effects = step(ready(), Connectivity(1, change), 31.0)

    assert effects == (
        CancelTimers(),
        WatchChannel(2),
        StartCheck(2, probe=False, timeout=10.0),
        Schedule(10.0, ConnectTimeout(2)),
        Report("connecting", 0, "connection_closed", ready=False, sync=True),
        Emit(name("connection_down"), {}, {"reason": "connection_closed"}),
        Log(logging.INFO, "connection closed; connecting again on the same channel"),
        Emit(name("disconnected"), {"duration": 30.0}, {"reason": "connection_closed"}),
    )
    assert (state.phase, state.generation, state.attempt_started) == ("connecting", 2, 31.0)
    assert (state.backoff.attempt, state.retries, state.check_in_flight) == (0, 0, True)
    assert not of_type(effects, OpenChannel) and not of_type(effects, ReleaseChannel)


def test_a_reconnect_that_passes_its_check_is_ready_again_without_a_line() -> None:
    """The check passes: ready on the same channel, connected with the reconnect's duration."""
    state = closed()

    state, effects = step(state, CheckDone(2, 31.0, None), 31.004)

    assert effects == (
        CancelTimers(),
        Report("ready", 0, None, ready=True, sync=True),
        Emit(name("connected"), {"duration": pytest.approx(0.004)}, {}),
        Schedule(25.0, PingDue(2)),
    )
    assert (state.phase, state.reconnecting, state.ready_since) == ("ready", False, 31.004)


def test_ready_while_reconnecting_waits_for_the_check() -> None:
    """READY seen while the reconnect's check runs: the check decides, no second one."""
    state = closed()
    assert step(state, Connectivity(2, READY), 31.002) == (state, ())
    assert step(state, Connectivity(2, TRANSIENT_FAILURE), 31.002) == (state, ())


def test_a_reconnect_without_health_check_is_ready_on_ready() -> None:
    """health_check off: no check; READY makes the channel ready again, a failure probes."""
    state = closed(health_check=False)
    (_, effects) = step(ready(health_check=False), Connectivity(1, IDLE), 31.0)
    assert of_type(effects, StartCheck) == []

    after, effects = step(state, Connectivity(2, READY), 31.01)
    assert after.phase == "ready"
    assert of_type(effects, Report) == [Report("ready", 0, None, ready=True, sync=True)]

    _, effects = step(state, Connectivity(2, TRANSIENT_FAILURE), 31.01)
    assert effects == (StartCheck(2, probe=True, timeout=10.0),)


@pytest.mark.parametrize("how", ["check failed", "timed out"])
def test_a_failed_reconnect_takes_the_failure_path(how: str) -> None:
    """The reconnect fails: a failed connect (counted, ERROR), the channel drained, backoff."""
    state = closed()
    if how == "check failed":
        error, duration = "unavailable: failed to connect to all addresses", 0.25
        state, effects = step(state, CheckDone(2, 31.0, error), 31.25)
    else:
        error, duration = "not ready within 10.0s", 10.0
        state, effects = step(state, ConnectTimeout(2), 41.0)
    delay = first_delay()

    assert effects == (
        CancelTimers(),
        Emit(name("connection_failed"), {"duration": duration}, {"error": error}),
        Log(logging.ERROR, f"connect failed: {error}"),
        Report("backoff", 1, error, ready=False, sync=False),
        Emit(
            name("reconnect_scheduled"),
            {"delay_ms": round(delay * 1000), "attempt": 1},
            {"reason": error},
        ),
        Schedule(delay, ReconnectDue(3)),
        # Calls made before the close may still run on it.
        ReleaseChannel(drain=True),
    )
    assert (state.phase, state.generation, state.reconnecting) == ("backoff", 3, False)


def test_a_ping_from_before_the_reconnect_is_stale() -> None:
    """A ping under way when the connection closed: its result is not the reconnect's check."""
    state, _ = step(ready(), PingDue(1), 26.0)
    state, _ = step(state, Connectivity(1, IDLE), 26.1)

    for error in (None, "unavailable"):
        assert step(state, CheckDone(1, 26.0, error), 26.2) == (state, ())
    assert step(state, PingDue(1), 26.2) == (state, ())


def test_the_retries_after_a_failed_reconnect_count_from_one() -> None:
    """Closed, reconnect failed, retry failed, retry worked: attempts 1, 2; 'after 2 retries'."""
    state = closed()
    state, first = step(state, CheckDone(2, 31.0, "refused"), 31.01)
    state, _ = step(state, ReconnectDue(state.generation), 32.0)
    state, second = step(state, ConnectTimeout(state.generation), 42.0)
    state, _ = step(state, ReconnectDue(state.generation), 43.0)
    state, _ = step(state, Connectivity(state.generation, READY), 43.5)

    state, effects = step(state, CheckDone(state.generation, 43.5, None), 44.0)

    assert [of_type(e, Report)[0].reconnect_attempt for e in (first, second)] == [1, 2]
    assert [log.level for e in (first, second) for log in of_type(e, Log)] == [
        logging.ERROR,
        logging.DEBUG,
    ]
    assert of_type(effects, Log) == [Log(logging.INFO, "connected after 2 retries")]
    assert state.phase == "ready"


def test_ready_again_while_ready_changes_nothing() -> None:
    """READY while ready is no news."""
    state = ready()
    assert step(state, Connectivity(1, READY), 2.0) == (state, ())


def test_ping_due_starts_a_health_check() -> None:
    """PingDue while ready with health_check: one check, no Report."""
    state, effects = step(ready(), PingDue(1), 26.0)

    assert effects == (StartCheck(1, probe=False, timeout=2.0),)
    assert state.check_in_flight


def test_a_ping_has_ping_timeout_as_its_deadline_and_a_gate_check_connect_timeout() -> None:
    """connection.ping_timeout bounds a ping, so a silent peer is noticed soon after it is due."""
    state = connecting(ping_timeout=0.75, connect_timeout=7.0)
    state, gate = step(state, Connectivity(1, READY), 0.5)
    state, _ = step(state, CheckDone(1, 0.5, None), 1.0)

    _, ping = step(state, PingDue(1), 26.0)

    assert gate == (StartCheck(1, probe=False, timeout=7.0),)
    assert ping == (StartCheck(1, probe=False, timeout=0.75),)


def test_healthy_ping_fires_ping_ok_and_arms_the_next() -> None:
    """A passing ping: channel.ping ok with its duration, next PingDue; state unchanged."""
    state, _ = step(ready(), PingDue(1), 26.0)

    state, effects = step(state, CheckDone(1, 26.0, None), 26.5)

    assert effects == (
        Emit(name("ping"), {"duration": 0.5}, {"result": "ok"}),
        Schedule(25.0, PingDue(1)),
    )
    assert (state.phase, state.check_in_flight) == ("ready", False)


def test_failed_ping_takes_the_disconnect_path_with_reason_ping_failed() -> None:
    """A failing ping: ping error, then the drop sequence with reason ping_failed."""
    state, _ = step(ready(), PingDue(1), 26.0)

    state, effects = step(state, CheckDone(1, 26.0, "deadline_exceeded"), 36.0)

    assert kinds(effects) == [
        "Emit",
        "CancelTimers",
        "Report",
        "Emit",
        "Log",
        "Emit",
        "ReleaseChannel",
        "Emit",
        "Schedule",
    ]
    assert effects[0] == Emit(name("ping"), {"duration": 10.0}, {"result": "error"})
    assert effects[2] == Report("backoff", 0, "ping_failed", ready=False, sync=True)
    assert effects[3] == Emit(name("connection_down"), {}, {"reason": "ping_failed"})
    assert effects[4] == Log(logging.ERROR, "connection down: ping_failed (deadline_exceeded)")
    assert effects[5] == Emit(name("disconnected"), {"duration": 35.0}, {"reason": "ping_failed"})
    assert effects[6] == ReleaseChannel(drain=True)
    assert state.phase == "backoff"


def test_ping_without_health_check_is_ok_at_once() -> None:
    """Without health_check connectivity is the check: ping ok (duration 0) and the next one."""
    state = ready(health_check=False)

    assert step(state, PingDue(1), 26.0) == (
        state,
        (Emit(name("ping"), {"duration": 0.0}, {"result": "ok"}), Schedule(25.0, PingDue(1))),
    )


def test_ping_due_while_a_check_runs_waits_for_it() -> None:
    """No second check while one runs."""
    state, _ = step(ready(), PingDue(1), 26.0)
    assert step(state, PingDue(1), 27.0) == (state, ())


# --- checks asked for by failed calls (passive health) -----------------------------------


def test_a_requested_check_starts_at_once_with_the_ping_deadline() -> None:
    """CheckRequested while ready: one check with ping_timeout, marked as extra."""
    state, effects = step(ready(), CheckRequested(1), 5.0)

    assert effects == (StartCheck(1, probe=False, timeout=2.0),)
    assert (state.check_in_flight, state.check_is_extra) == (True, True)


def test_a_healthy_requested_check_keeps_the_channel_and_schedules_no_ping() -> None:
    """The extra check's success emits ping ok only: the ping schedule's own timer is
    still pending, and a second one would double the pings."""
    state, _ = step(ready(), CheckRequested(1), 5.0)

    state, effects = step(state, CheckDone(1, 5.0, None), 5.25)

    assert effects == (Emit(name("ping"), {"duration": 0.25}, {"result": "ok"}),)
    assert (state.phase, state.check_in_flight, state.check_is_extra) == ("ready", False, False)


def test_a_failed_requested_check_takes_the_channel_out_with_ping_failed() -> None:
    """Only a failed check (not the failed call) takes the channel out of rotation."""
    state, _ = step(ready(), CheckRequested(1), 5.0)

    state, effects = step(state, CheckDone(1, 5.0, "health status NOT_SERVING"), 5.1)

    assert state.phase == "backoff"
    assert Emit(name("connection_down"), {}, {"reason": "ping_failed"}) in effects


def test_a_ping_due_during_a_requested_check_is_answered_by_it() -> None:
    """PingDue while the extra check runs starts nothing; that check then arms the next ping."""
    state, _ = step(ready(), CheckRequested(1), 24.0)

    state, effects = step(state, PingDue(1), 26.0)
    assert effects == () and not state.check_is_extra
    state, effects = step(state, CheckDone(1, 24.0, None), 26.5)

    assert effects[-1] == Schedule(25.0, PingDue(1))


@pytest.mark.parametrize(
    "make",
    [
        lambda: step(ready(), PingDue(1), 26.0)[0],  # a check already runs
        lambda: ready(health_check=False),  # connectivity is the check
        connecting,
        backing_off,
        stopped,
    ],
)
def test_a_requested_check_does_nothing_when_it_cannot_tell_more(make: Any) -> None:
    """No extra check while one runs, without health checks, or outside ready."""
    state = make()
    assert step(state, CheckRequested(state.generation), 30.0) == (state, ())


def test_a_requested_check_about_an_earlier_channel_is_stale() -> None:
    """CheckRequested of a generation the worker moved past is dropped."""
    state = ready()
    assert step(state, CheckRequested(state.generation - 1), 3.0) == (state, ())


@pytest.mark.parametrize("make", [connecting, backing_off])
def test_ping_due_outside_ready_is_ignored(make: Any) -> None:
    """PingDue of the current generation while connecting or backing off: nothing."""
    state = make()
    assert step(state, PingDue(state.generation), 30.0) == (state, ())


def test_reconnect_due_outside_backoff_is_ignored() -> None:
    """ReconnectDue while connecting or ready: nothing."""
    for state in (connecting(), ready()):
        assert step(state, ReconnectDue(state.generation), 30.0) == (state, ())


# --- stale generations --------------------------------------------------------------------


def _generation_events(gen: int) -> list[Event]:
    return [
        Connectivity(gen, READY),
        Connectivity(gen, IDLE),
        Connectivity(gen, TRANSIENT_FAILURE),
        ConnectTimeout(gen),
        CheckDone(gen, 0.0, None),
        CheckDone(gen, 0.0, "unavailable"),
        PingDue(gen),
        ReconnectDue(gen),
    ]


@pytest.mark.parametrize("make", [new_machine, connecting, ready, backing_off, stopped])
@pytest.mark.parametrize("offset", [-2, -1, 1, 5])
def test_events_of_another_generation_are_dropped(make: Any, offset: int) -> None:
    """News about a channel or timer the machine has moved past (or not reached) changes nothing."""
    state = make()
    for event in _generation_events(state.generation + offset):
        assert step(state, event, 40.0) == (state, ())


def test_a_check_of_a_released_channel_is_stale() -> None:
    """A ping result arriving after its channel dropped is dropped too."""
    state, _ = step(ready(), PingDue(1), 26.0)
    state, _ = step(state, Connectivity(1, TRANSIENT_FAILURE), 26.1)

    assert step(state, CheckDone(1, 26.0, None), 26.2) == (state, ())
    assert not state.check_in_flight


# --- every (phase, event) pair --------------------------------------------------------------

_FAILED = ["CancelTimers", "Emit", "Log", "Report", "Emit", "Schedule", "ReleaseChannel"]
_DROP = ["CancelTimers", "Report", "Emit", "Log", "Emit", "ReleaseChannel", "Emit", "Schedule"]
_CLOSED = [
    "CancelTimers",
    "WatchChannel",
    "StartCheck",
    "Schedule",
    "Report",
    "Emit",
    "Log",
    "Emit",
]
_RENEWED = [
    "CancelTimers",
    "Report",
    "Emit",
    "Log",
    "Emit",
    "ReleaseChannel",
    "OpenChannel",
    "Schedule",
]
_MATRIX: dict[str, dict[str, tuple[str, list[str]]]] = {
    "new": {
        "Start": ("connecting", ["OpenChannel", "Report", "Schedule"]),
        "Stop": ("stopped", []),
    },
    "connecting": {
        "READY": ("connecting", ["StartCheck"]),
        "TRANSIENT_FAILURE": ("connecting", ["StartCheck"]),
        "ConnectTimeout": ("backoff", _FAILED),
        "CheckDone ok": ("ready", ["CancelTimers", "Report", "Emit", "Schedule"]),
        "CheckDone error": ("backoff", _FAILED),
        "Resync": ("connecting", ["Report"]),
        "Stop": ("stopped", ["CancelTimers", "ReleaseChannel"]),
    },
    "ready": {
        "TRANSIENT_FAILURE": ("backoff", _DROP),
        "IDLE": ("connecting", _CLOSED),
        "CONNECTING": ("connecting", _CLOSED),
        "CheckDone ok": ("ready", ["Emit", "Schedule"]),
        "CheckDone error": ("backoff", ["Emit", *_DROP]),
        "PingDue": ("ready", ["StartCheck"]),
        "Resync": ("ready", ["Report"]),
        "Renew": ("connecting", _RENEWED),
        "Stop": ("stopped", ["CancelTimers", "Emit", "ReleaseChannel"]),
    },
    "backoff": {
        "ReconnectDue": ("connecting", ["OpenChannel", "Report", "Schedule"]),
        "Resync": ("backoff", ["Report"]),
        "Stop": ("stopped", ["CancelTimers"]),
    },
    "stopped": {},
}
_MAKERS = {
    "new": new_machine,
    "connecting": connecting,
    "ready": ready,
    "backoff": backing_off,
    "stopped": stopped,
}


def _event(label: str, gen: int) -> Event:
    events: dict[str, Event] = {
        "Start": Start(),
        "READY": Connectivity(gen, READY),
        "TRANSIENT_FAILURE": Connectivity(gen, TRANSIENT_FAILURE),
        "IDLE": Connectivity(gen, IDLE),
        "CONNECTING": Connectivity(gen, CONNECTING),
        "ConnectTimeout": ConnectTimeout(gen),
        "CheckDone ok": CheckDone(gen, 40.0, None),
        "CheckDone error": CheckDone(gen, 40.0, "unavailable"),
        "PingDue": PingDue(gen),
        "ReconnectDue": ReconnectDue(gen),
        "Resync": Resync(),
        "Renew": Renew(),
        "Stop": Stop(),
    }
    return events[label]


_EVENT_LABELS = [
    "Start",
    "READY",
    "TRANSIENT_FAILURE",
    "IDLE",
    "CONNECTING",
    "ConnectTimeout",
    "CheckDone ok",
    "CheckDone error",
    "PingDue",
    "ReconnectDue",
    "Resync",
    "Renew",
    "Stop",
]


@pytest.mark.parametrize("phase", list(_MATRIX))
@pytest.mark.parametrize("label", _EVENT_LABELS)
def test_every_phase_and_event_pair(phase: str, label: str) -> None:
    """Each (phase, event) pair of the current generation: the next phase and the effect kinds."""
    state = _MAKERS[phase]()
    assert state.phase == phase

    after, effects = step(state, _event(label, state.generation), 41.0)

    expected_phase, expected_kinds = _MATRIX[phase].get(label, (phase, []))
    assert (after.phase, kinds(effects)) == (expected_phase, expected_kinds)
    if not effects and expected_phase == phase:
        assert after == state


def test_unknown_event_raises_type_error() -> None:
    """Anything but a machine event is a bug in the driver."""
    with pytest.raises(TypeError, match="not a worker event"):
        step(connecting(), "not an event", 0.0)  # type: ignore[arg-type]


# --- resync and stop --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (connecting, Report("connecting", 0, None, ready=False, sync=False)),
        (ready, Report("ready", 0, None, ready=True, sync=False)),
        (backing_off, Report("backoff", 1, "not ready within 10.0s", ready=False, sync=False)),
    ],
)
def test_resync_reports_the_current_state_once(make: Any, expected: Report) -> None:
    """Resync (a restarted registry asks): exactly one Report of where the worker is."""
    state = make()
    assert step(state, Resync(), 50.0) == (state, (expected,))


@pytest.mark.parametrize("make", [new_machine, stopped])
def test_resync_before_start_or_after_stop_reports_nothing(make: Any) -> None:
    """Nothing to report before Start or after Stop."""
    state = make()
    assert step(state, Resync(), 50.0) == (state, ())


def test_stop_while_ready_releases_with_drain_and_reports_nothing() -> None:
    """Stop: timers cancelled, channel.released says how long the connection was ready,
    channel retired; the driver sends WorkerGone, not the machine."""
    state, effects = step(ready(), Stop(), 2.5)

    assert effects == (
        CancelTimers(),
        Emit(name("released"), {"duration": 1.5}, {}),
        ReleaseChannel(drain=True),
    )
    assert (state.phase, state.generation) == ("stopped", 2)


def test_stop_in_backoff_has_no_channel_to_release() -> None:
    """Stop in backoff: only the reconnect timer to cancel."""
    assert step(backing_off(), Stop(), 11.0)[1] == (CancelTimers(),)


def test_stop_before_start_does_nothing_but_stop() -> None:
    """Stop on a new machine: stopped, no effects."""
    state, effects = step(new_machine(), Stop(), 0.0)
    assert (state.phase, effects) == ("stopped", ())


def test_nothing_happens_after_stop() -> None:
    """Once stopped, no event of any generation has any effect."""
    state = stopped()
    for event in [Start(), Resync(), Stop(), *_generation_events(state.generation)]:
        assert step(state, event, 60.0) == (state, ())


# --- logging policy ----------------------------------------------------------------------


def test_an_outage_of_failed_connects_is_one_error_then_debug() -> None:
    """The first failed connect logs ERROR, the retries DEBUG."""
    state = connecting(max_reconnect_attempts=10)
    levels = []
    for _ in range(4):
        state, effects = step(state, ConnectTimeout(state.generation), 0.0)
        levels += [log.level for log in of_type(effects, Log)]
        state, _ = step(state, ReconnectDue(state.generation), 0.0)
    assert levels == [logging.ERROR, logging.DEBUG, logging.DEBUG, logging.DEBUG]


def test_a_drop_is_the_error_and_the_retries_after_it_are_debug() -> None:
    """Drop: ERROR; failed reconnects after it: DEBUG; recovery: INFO with the retry count."""
    state, effects = step(ready(), Connectivity(1, TRANSIENT_FAILURE), 5.0)
    assert [log.level for log in of_type(effects, Log)] == [logging.ERROR]
    state, _ = step(state, ReconnectDue(state.generation), 6.0)
    state, effects = step(state, ConnectTimeout(state.generation), 16.0)
    assert of_type(effects, Log) == [Log(logging.DEBUG, "connect failed: not ready within 10.0s")]
    (report,) = of_type(effects, Report)
    scheduled = of_type(effects, Emit)[1]
    assert report.reconnect_attempt == 1  # one failed connect; the drop is not one
    assert scheduled.measurements["attempt"] == 2  # the second retry of this outage
    state, _ = step(state, ReconnectDue(state.generation), 17.0)
    state, _ = step(state, Connectivity(state.generation, READY), 17.5)

    _, effects = step(state, CheckDone(state.generation, 17.5, None), 18.0)

    assert of_type(effects, Log) == [Log(logging.INFO, "connected after 2 retries")]


def test_a_closed_connection_is_info_and_a_failed_reconnect_the_one_error() -> None:
    """A server that went away: INFO for the close, ERROR for the reconnect that failed, then DEBUG."""
    state, closing = step(ready(), Connectivity(1, IDLE), 5.0)
    state, failed = step(state, CheckDone(state.generation, 5.0, "refused"), 5.01)
    state, _ = step(state, ReconnectDue(state.generation), 6.0)
    _, retried = step(state, CheckDone(state.generation, 6.0, "refused"), 6.01)

    levels = [log.level for effects in (closing, failed, retried) for log in of_type(effects, Log)]
    assert levels == [logging.INFO, logging.ERROR, logging.DEBUG]


def test_a_first_connect_logs_nothing() -> None:
    """No line for a connect that worked first time."""
    state = connecting()
    state, effects = run(state, [Connectivity(1, READY), CheckDone(1, 0.0, None)], 1.0)
    assert of_type(effects, Log) == []


def test_suppressed_connection_errors_are_debug() -> None:
    """suppress_connection_errors: failed connects and drops log at DEBUG only."""
    state = connecting(suppress_connection_errors=True)
    state, failed = step(state, ConnectTimeout(1), 10.0)
    state, _ = step(state, ReconnectDue(state.generation), 12.0)
    state, _ = step(state, Connectivity(state.generation, READY), 12.5)
    state, recovered = step(state, CheckDone(state.generation, 12.5, None), 13.0)
    _, dropped = step(state, Connectivity(state.generation, IDLE), 14.0)

    assert [log.level for log in of_type(failed + dropped, Log)] == [logging.DEBUG] * 2
    # The recovery is good news, not a connection error: INFO as before.
    assert of_type(recovered, Log) == [Log(logging.INFO, "connected after 1 retries")]


# --- telemetry payloads against the specification -----------------------------------------


def _spec_table() -> dict[str, tuple[set[str], set[str]]]:
    """Signal name -> (measurement keys, metadata keys), from docs/SPEC.md section 4."""
    table = {}
    for line in SPEC.read_text().splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) != 3 or not cells[0].startswith(telemetry.PREFIX):
            continue

        def keys(cell: str) -> set[str]:
            words = (re.match(r"[a-z_]+", part.strip()) for part in cell.split(","))
            return {word.group(0) for word in words if word}

        table[cells[0]] = (keys(cells[1]), keys(cells[2]))
    return table


def test_every_emit_matches_the_spec_table() -> None:
    """Each signal the machine emits is a telemetry signal with the SPEC's keys.

    The driver adds pool_name and worker_id to the metadata; the machine
    adds the rest.
    """
    table = _spec_table()
    seen: set[str] = set()
    state = connecting(max_reconnect_attempts=3)
    script: list[tuple[Any, float]] = [
        (lambda s: ConnectTimeout(s.generation), 10.0),
        (lambda s: ReconnectDue(s.generation), 12.0),
        (lambda s: Connectivity(s.generation, READY), 12.5),
        (lambda s: CheckDone(s.generation, 12.5, None), 13.0),
        (lambda s: PingDue(s.generation), 38.0),
        (lambda s: CheckDone(s.generation, 38.0, None), 38.1),
        (lambda s: PingDue(s.generation), 63.0),
        (lambda s: CheckDone(s.generation, 63.0, "unavailable"), 63.2),
    ]
    for make_event, now in script:
        state, effects = step(state, make_event(state), now)
        for emit in of_type(effects, Emit):
            assert emit.signal in telemetry.EVENTS
            measurements, metadata = table[emit.signal]
            assert set(emit.measurements) == measurements, emit
            assert {"pool_name", "worker_id", *emit.metadata} == metadata, emit
            seen.add(emit.signal)
    assert seen == {name(short) for short in _CHANNEL_SIGNALS}


_CHANNEL_SIGNALS = (
    "connected",
    "connection_failed",
    "disconnected",
    "ping",
    "connection_down",
    "reconnect_scheduled",
)


# --- properties over random event sequences --------------------------------------------------

_STATES = [READY, IDLE, CONNECTING, TRANSIENT_FAILURE, SHUTDOWN]
_actions = st.lists(
    st.tuples(
        # Stop is rare (the test ends with one), so sequences get far.
        st.sampled_from(
            [
                *["connectivity"] * 3,
                *["check"] * 3,
                *["reconnect"] * 3,
                *["timeout"] * 2,
                *["ping"] * 2,
                *["suspect"] * 2,
                "resync",
                "renew",
                "start",
                "stop",
            ]
        ),
        st.sampled_from([0, 0, 0, 0, -1, 1]),  # mostly the current generation
        st.sampled_from(_STATES),
        st.sampled_from([None, None, "unavailable", "health status NOT_SERVING"]),
        st.floats(min_value=0.0, max_value=60.0, allow_nan=False),
    ),
    max_size=60,
)


def _random_event(state: MachineState, action: tuple[str, int, Any, Any, float]) -> Event:
    kind, offset, change, error, _ = action
    gen = state.generation + offset
    events: dict[str, Event] = {
        "connectivity": Connectivity(gen, change),
        "timeout": ConnectTimeout(gen),
        "check": CheckDone(gen, state.attempt_started, error),
        "ping": PingDue(gen),
        "suspect": CheckRequested(gen),
        "reconnect": ReconnectDue(gen),
        "resync": Resync(),
        "renew": Renew(),
        "start": Start(),
        "stop": Stop(),
    }
    return events[kind]


@settings(max_examples=300, deadline=None)
@given(
    actions=_actions,
    seed=st.integers(0, 2**16),
    health_check=st.booleans(),
    suppress=st.booleans(),
    max_attempts=st.integers(1, 6),
)
def test_invariants_hold_over_random_event_sequences(
    actions: list[tuple[str, int, Any, Any, float]],
    seed: int,
    health_check: bool,
    suppress: bool,
    max_attempts: int,
) -> None:
    """Reports mirror phases one-for-one, channels open and close in pairs, nothing after Stop."""
    config = settings_with(
        health_check=health_check,
        suppress_connection_errors=suppress,
        max_reconnect_attempts=max_attempts,
        backoff_min=0.5,
        backoff_max=8.0,
    )
    state = initial_state(config, random.Random(seed))
    state, _ = step(state, Start(), 0.0)
    channel_open = True
    now = 0.0
    for action in actions:
        now += action[4]
        before = state
        state, effects = step(before, _random_event(before, action), now)
        event_kind = action[0]

        if before.phase == "stopped":
            assert (state, effects) == (before, ())
            continue
        assert state.generation >= before.generation
        # Failed connects in a row: one more, the same, or back to 0; never a limit.
        assert state.backoff.attempt in (0, before.backoff.attempt, before.backoff.attempt + 1)

        # Exactly one Report per change of reported state, and it is that state.
        reports = of_type(effects, Report)
        changed = state.phase != before.phase and state.phase != "stopped"
        resync = event_kind == "resync"
        assert len(reports) == (1 if changed or resync else 0), (before.phase, effects)
        for report in reports:
            assert report.state == state.phase
            assert report.ready == (report.state == "ready")
            assert report.reconnect_attempt == state.backoff.attempt
            # Entering or leaving ready waits for the registry; nothing else does.
            entering_or_leaving = (before.phase == "ready") != (state.phase == "ready")
            assert report.sync == (entering_or_leaving and not resync)

        # Channels: opened only when none is open, released only when one is,
        # and a handed-out channel leaves the view before it is released.
        for index, effect in enumerate(effects):
            if isinstance(effect, OpenChannel):
                assert not channel_open
                assert effect.generation == state.generation
                channel_open = True
            elif isinstance(effect, ReleaseChannel):
                assert channel_open
                channel_open = False
                if before.phase == "ready" and event_kind != "stop":
                    assert any(isinstance(e, Report) and e.sync for e in effects[:index])
                handed_out = before.phase == "ready" or before.reconnecting
                assert effect.drain == (handed_out or event_kind == "stop")
            elif isinstance(effect, WatchChannel):
                # A closed connection: the same channel, watched afresh.
                assert channel_open and before.phase == "ready"
                assert effect.generation == state.generation
            elif isinstance(effect, StartCheck):
                assert effect.generation == state.generation
                assert health_check or effect.probe
                pinging = before.phase == state.phase == "ready"
                assert effect.timeout == (config.ping_timeout if pinging else 10.0)
            elif isinstance(effect, Schedule):
                assert getattr(effect.event, "generation", None) == state.generation
                if isinstance(effect.event, ReconnectDue):
                    assert 0.5 <= effect.delay <= 8.0
            elif isinstance(effect, Log):
                assert not (suppress and effect.level > logging.INFO)
                if effect.level == logging.WARNING:
                    assert state.backoff.attempt == max_attempts
            elif isinstance(effect, Emit):
                assert effect.signal in telemetry.EVENTS
                if effect.signal in (name("connection_down"), name("disconnected")):
                    assert effect.metadata["reason"] in DISCONNECT_REASONS
        assert channel_open == state.has_channel

        # connected exactly when entering ready; connection_failed exactly
        # when a connect ends without being ready (and not by Stop).
        signals = [emit.signal for emit in of_type(effects, Emit)]
        entered_ready = state.phase == "ready" and before.phase != "ready"
        connect_failed = before.phase == "connecting" and state.phase in ("backoff", "stopped")
        assert signals.count(name("connected")) == int(entered_ready)
        assert signals.count(name("connection_failed")) == int(
            connect_failed and event_kind != "stop"
        )

        # Only a Stop ends the machine: never an outage, however long.
        if state.phase == "stopped":
            assert event_kind == "stop"
    # Whatever happened, a Stop leaves no channel open; a ready one is said released.
    was_ready = state.phase == "ready"
    state, effects = step(state, Stop(), now)
    assert state.phase == "stopped"
    assert not state.has_channel
    if channel_open:
        assert effects[0] == CancelTimers() and effects[-1] == ReleaseChannel(drain=True)
        released = [e for e in of_type(effects, Emit) if e.signal == name("released")]
        assert len(released) == int(was_ready)


def test_the_machine_state_is_immutable() -> None:
    """step returns a new state; the one passed in is untouched."""
    state = connecting()
    copy = replace(state)

    step(state, ConnectTimeout(1), 10.0)

    assert state == copy
    assert state.phase == "connecting"


# --- repinning: a worker that serves nothing moves to another address ---------------------


def _failed_once() -> MachineState:
    """A machine that failed its first connect and waits to retry."""
    state, _ = step(new_machine(), Start(), 0.0)
    state, _ = step(state, ConnectTimeout(state.generation), 10.0)
    assert state.phase == "backoff" and state.backoff.attempt == 1
    return state


def test_a_repin_while_backing_off_connects_at_once_with_the_backoff_reset() -> None:
    """Repin in backoff: the reconnect timer is cancelled and a new channel opens now; the
    failures so far were about the old address, so the count starts over."""
    state = _failed_once()
    state, effects = step(state, Repin("10.0.0.2:80"), 11.0)
    assert state.phase == "connecting" and state.backoff.attempt == 0 and state.retries == 0
    assert isinstance(effects[0], CancelTimers)
    assert OpenChannel(state.generation) in effects
    assert Report("connecting", 0, state.last_error, False, False) in effects
    assert not any(isinstance(e, ReleaseChannel) for e in effects)  # it held no channel


def test_a_repin_while_connecting_lets_the_unused_channel_go_and_opens_a_new_one() -> None:
    """Repin while connecting: the channel (no call ran on it) is closed, not drained, and
    news about it is stale from now on."""
    state, _ = step(new_machine(), Start(), 0.0)
    old = state.generation
    state, effects = step(state, Repin("10.0.0.2:80"), 1.0)
    assert ReleaseChannel(drain=False) in effects
    assert state.phase == "connecting" and state.generation > old
    assert step(state, Connectivity(old, READY), 1.1) == (state, ())


def test_a_ready_worker_ignores_a_repin() -> None:
    """A worker that became ready before the repin arrived keeps its connection."""
    state, _ = step(new_machine(health_check=False), Start(), 0.0)
    state, _ = step(state, Connectivity(state.generation, READY), 0.1)
    assert state.phase == "ready" and not takes_repin(state)
    assert step(state, Repin("10.0.0.2:80"), 1.0) == (state, ())


def test_a_worker_without_an_address_waits_for_a_repin_before_connecting() -> None:
    """Started with await_address: it reports backoff with the reason and opens nothing until
    a Repin gives it an address."""
    state, effects = step(new_machine(), Start(await_address=True), 0.0)
    assert state.phase == "backoff" and state.last_error == AWAITING_ADDRESS
    assert effects == (Report("backoff", 0, AWAITING_ADDRESS, False, False),)
    state, effects = step(state, Repin("10.0.0.2:80"), 5.0)
    assert state.phase == "connecting" and OpenChannel(state.generation) in effects


# --- renewing: a fresh connection at the pool's request ------------------------------------


def test_a_renew_lets_the_ready_channel_go_first_and_connects_afresh_at_once() -> None:
    """Renew of a ready worker (outlier detection ejected it twice in a row): the channel
    leaves the view (a synchronous report), connection_down and disconnected say "renewed",
    the channel drains, and a new one opens at once with no backoff wait or count."""
    state, _ = step(new_machine(health_check=False), Start(), 0.0)
    state, _ = step(state, Connectivity(state.generation, READY), 0.5)
    old = state.generation

    state, effects = step(state, Renew(), 30.5)

    assert state.phase == "connecting" and state.generation > old
    assert (state.backoff.attempt, state.retries) == (0, 0)
    assert effects == (
        CancelTimers(),
        Report("connecting", 0, "renewed", ready=False, sync=True),
        Emit(name("connection_down"), {}, {"reason": "renewed"}),
        Log(
            logging.INFO,
            "the pool asked for a fresh connection; connecting again on a new channel",
        ),
        Emit(name("disconnected"), {"duration": 30.0}, {"reason": "renewed"}),
        ReleaseChannel(drain=True),
        OpenChannel(state.generation),
        Schedule(10.0, ConnectTimeout(state.generation)),
    )
    assert step(state, Connectivity(old, READY), 30.6) == (state, ())  # the old channel's news


@pytest.mark.parametrize("make", [new_machine, connecting, backing_off, stopped])
def test_a_worker_that_is_not_ready_ignores_a_renew(make: Any) -> None:
    """Only a ready channel is renewed: one connecting or backing off gets a new one anyway."""
    state = make()
    assert step(state, Renew(), 50.0) == (state, ())
