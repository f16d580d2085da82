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
from grpcpool.connection._machine import step
from grpcpool.connection._machine_types import (
    CancelTimers,
    CheckDone,
    Connectivity,
    ConnectTimeout,
    Crash,
    Effect,
    Emit,
    Event,
    Log,
    MachineState,
    OpenChannel,
    PingDue,
    ReconnectDue,
    ReleaseChannel,
    Report,
    Resync,
    Schedule,
    Start,
    StartCheck,
    Stop,
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

    assert effects == (StartCheck(1, probe=False),)
    assert (state.phase, state.check_in_flight) == ("connecting", True)


def test_passing_gate_check_makes_the_worker_ready() -> None:
    """The gate check passes: timers cancelled, one ready Report, connected with its duration, ping armed."""
    state, _ = step(connecting(), Connectivity(1, READY), 0.5)

    state, effects = step(state, CheckDone(1, 0.5, None), 1.25)

    assert effects == (
        CancelTimers(),
        Report("ready", 0, None, ready=True, sync=False),
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

    assert of_type(effects, Report) == [Report("ready", 0, None, ready=True, sync=False)]


def test_transient_failure_while_connecting_starts_a_probe() -> None:
    """TRANSIENT_FAILURE while connecting: a probe check, to learn grpcio's reason."""
    state, effects = step(connecting(), Connectivity(1, TRANSIENT_FAILURE), 0.2)

    assert effects == (StartCheck(1, probe=True),)
    assert state.check_in_flight


def test_probe_is_made_even_without_health_check() -> None:
    """The probe is a call to learn why; health_check off does not skip it."""
    _, effects = step(connecting(health_check=False), Connectivity(1, TRANSIENT_FAILURE), 0.2)

    assert effects == (StartCheck(1, probe=True),)


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

    assert of_type(effects, Report) == [Report("ready", 0, None, ready=True, sync=False)]
    assert of_type(effects, Log) == [Log(logging.INFO, "connected after 2 retries")]
    assert of_type(effects, Emit)[0].measurements == {"duration": 1.0}
    assert (state.backoff.attempt, state.retries, state.last_error) == (0, 0, None)


def test_max_reconnect_attempts_failures_in_a_row_crash() -> None:
    """The 3rd failed connect of 3 allowed: release without drain, then Crash; no Report, no Log."""
    state = connecting(max_reconnect_attempts=3)
    for _ in range(2):
        state, _ = step(state, ConnectTimeout(state.generation), 0.0)
        state, _ = step(state, ReconnectDue(state.generation), 0.0)

    state, effects = step(state, CheckDone(state.generation, 0.0, "refused"), 4.0)

    assert effects == (
        CancelTimers(),
        Emit(name("connection_failed"), {"duration": 4.0}, {"error": "refused"}),
        ReleaseChannel(drain=False),
        Crash("3 connection attempts failed in a row; last: refused"),
    )
    assert (state.phase, state.backoff.attempt, state.last_error) == ("stopped", 3, "refused")


def test_max_reconnect_attempts_one_crashes_on_the_first_failure() -> None:
    """max_reconnect_attempts=1: the first failed connect crashes."""
    _, effects = step(connecting(max_reconnect_attempts=1), ConnectTimeout(1), 10.0)

    assert isinstance(effects[-1], Crash)
    assert effects[-1].message.startswith("1 connection attempts failed in a row")


def test_drops_do_not_count_towards_max_reconnect_attempts() -> None:
    """Drops after being ready never crash, however many; only failed connects in a row do."""
    state = ready(max_reconnect_attempts=2)
    for _ in range(10):
        state, _ = step(state, Connectivity(state.generation, IDLE), 5.0)
        assert (state.phase, state.backoff.attempt) == ("backoff", 0)
        state, _ = step(state, ReconnectDue(state.generation), 6.0)
        state, _ = step(state, Connectivity(state.generation, READY), 6.5)
        state, _ = step(state, CheckDone(state.generation, 6.5, None), 7.0)
        assert state.phase == "ready"
    state, _ = step(state, Connectivity(state.generation, IDLE), 8.0)
    state, _ = step(state, ReconnectDue(state.generation), 9.0)
    state, effects = step(state, ConnectTimeout(state.generation), 19.0)
    assert state.phase == "backoff"
    state, _ = step(state, ReconnectDue(state.generation), 20.0)
    state, effects = step(state, ConnectTimeout(state.generation), 30.0)
    assert state.phase == "stopped"
    assert isinstance(effects[-1], Crash)


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
    ("change", "reason"),
    [
        (IDLE, "idle"),
        (TRANSIENT_FAILURE, "transient_failure"),
        (CONNECTING, "connecting"),
        (SHUTDOWN, "shutdown"),
    ],
)
def test_leaving_ready_is_one_synchronous_report_then_release_with_drain(
    change: grpc.ChannelConnectivity, reason: str
) -> None:
    """A drop: ONE backoff Report (sync) before the drained release; the delay is not a failure."""
    state = ready()

    state, effects = step(state, Connectivity(1, change), 31.0)
    delay = first_delay()

    assert effects == (
        CancelTimers(),
        Report("backoff", 0, reason, ready=False, sync=True),
        Emit(name("connection_down"), {}, {"reason": reason}),
        Log(logging.ERROR, f"connection down: {reason}"),
        Emit(name("disconnected"), {"duration": 30.0}, {"reason": reason}),
        ReleaseChannel(drain=True),
        Emit(
            name("reconnect_scheduled"),
            {"delay_ms": round(delay * 1000), "attempt": 1},
            {"reason": reason},
        ),
        Schedule(delay, ReconnectDue(2)),
    )
    assert (state.phase, state.generation, state.backoff.attempt) == ("backoff", 2, 0)


def test_ready_again_while_ready_changes_nothing() -> None:
    """READY while ready is no news."""
    state = ready()
    assert step(state, Connectivity(1, READY), 2.0) == (state, ())


def test_ping_due_starts_a_health_check() -> None:
    """PingDue while ready with health_check: one check, no Report."""
    state, effects = step(ready(), PingDue(1), 26.0)

    assert effects == (StartCheck(1, probe=False),)
    assert state.check_in_flight


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
    state, _ = step(state, Connectivity(1, IDLE), 26.1)

    assert step(state, CheckDone(1, 26.0, None), 26.2) == (state, ())
    assert not state.check_in_flight


# --- every (phase, event) pair --------------------------------------------------------------

_FAILED = ["CancelTimers", "Emit", "Log", "Report", "Emit", "Schedule", "ReleaseChannel"]
_DROP = ["CancelTimers", "Report", "Emit", "Log", "Emit", "ReleaseChannel", "Emit", "Schedule"]
_MATRIX: dict[str, dict[str, tuple[str, list[str]]]] = {
    "new": {"Start": ("connecting", ["OpenChannel", "Report", "Schedule"]), "Stop": ("stopped", [])},
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
        "IDLE": ("backoff", _DROP),
        "CheckDone ok": ("ready", ["Emit", "Schedule"]),
        "CheckDone error": ("backoff", ["Emit", *_DROP]),
        "PingDue": ("ready", ["StartCheck"]),
        "Resync": ("ready", ["Report"]),
        "Stop": ("stopped", ["CancelTimers", "ReleaseChannel"]),
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
        "ConnectTimeout": ConnectTimeout(gen),
        "CheckDone ok": CheckDone(gen, 40.0, None),
        "CheckDone error": CheckDone(gen, 40.0, "unavailable"),
        "PingDue": PingDue(gen),
        "ReconnectDue": ReconnectDue(gen),
        "Resync": Resync(),
        "Stop": Stop(),
    }
    return events[label]


_EVENT_LABELS = [
    "Start",
    "READY",
    "TRANSIENT_FAILURE",
    "IDLE",
    "ConnectTimeout",
    "CheckDone ok",
    "CheckDone error",
    "PingDue",
    "ReconnectDue",
    "Resync",
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
    """Stop: timers cancelled, channel retired; the driver sends WorkerGone, not the machine."""
    state, effects = step(ready(), Stop(), 2.0)

    assert effects == (CancelTimers(), ReleaseChannel(drain=True))
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
    state, effects = step(ready(), Connectivity(1, IDLE), 5.0)
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
                "resync",
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
        "reconnect": ReconnectDue(gen),
        "resync": Resync(),
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
        assert 0 <= state.backoff.attempt <= max_attempts

        # Exactly one Report per change of reported state, and it is that state.
        reports = of_type(effects, Report)
        changed = state.phase != before.phase and state.phase != "stopped"
        resync = event_kind == "resync"
        assert len(reports) == (1 if changed or resync else 0), (before.phase, effects)
        for report in reports:
            assert report.state == state.phase
            assert report.ready == (report.state == "ready")
            assert report.reconnect_attempt == state.backoff.attempt
            assert report.sync == (before.phase == "ready" and state.phase == "backoff")

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
                assert effect.drain == (before.phase == "ready" or event_kind == "stop")
            elif isinstance(effect, StartCheck):
                assert effect.generation == state.generation
                assert health_check or effect.probe
            elif isinstance(effect, Schedule):
                assert getattr(effect.event, "generation", None) == state.generation
                if isinstance(effect.event, ReconnectDue):
                    assert 0.5 <= effect.delay <= 8.0
            elif isinstance(effect, Log):
                assert not (suppress and effect.level == logging.ERROR)
            elif isinstance(effect, Emit):
                assert effect.signal in telemetry.EVENTS
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

        # A crash ends everything: last effect, after max failures in a row.
        crashes = of_type(effects, Crash)
        if crashes:
            assert effects[-1] is crashes[0]
            assert state.phase == "stopped"
            assert state.backoff.attempt == max_attempts
        if state.phase == "stopped" and not crashes:
            assert event_kind == "stop"
    # Whatever happened, a Stop leaves no channel open.
    state, effects = step(state, Stop(), now)
    assert state.phase == "stopped"
    assert not state.has_channel
    if channel_open:
        assert effects == (CancelTimers(), ReleaseChannel(drain=True))


def test_the_machine_state_is_immutable() -> None:
    """step returns a new state; the one passed in is untouched."""
    state = connecting()
    copy = replace(state)

    step(state, ConnectTimeout(1), 10.0)

    assert state == copy
    assert state.phase == "connecting"
