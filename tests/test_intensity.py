"""Tests for grpcpool.core._intensity: when a supervisor gives up restarting.

Pure logic: the window and a restart's time in, the new window and the
verdict out. The DynamicSupervisor (tests/test_dynamic_supervisor.py,
tests/test_supervisor.py, tests/test_pool_supervisor.py) and the asyncio
pool's worker tasks (tests/test_aio.py) keep their account with it.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from grpcpool import telemetry
from grpcpool.connection._machine_types import Emit
from grpcpool.core._intensity import (
    RestartWindow,
    Verdict,
    describe_pool_limit,
    gave_up,
    pool_restart_limit,
    record_restart,
    restarted,
)


def restarts_at(times: list[float], limit: int, max_seconds: float = 5.0) -> list[Verdict]:
    """The verdict of each restart at ``times``, in order."""
    window = RestartWindow(max_seconds)
    verdicts = []
    for now in times:
        window, verdict = record_restart(window, now, limit)
        verdicts.append(verdict)
    return verdicts


def test_more_than_the_limit_within_the_window_gives_up() -> None:
    """Three restarts allowed within 5 s: the fourth within 5 s of the first gives up."""
    verdicts = restarts_at([0.0, 1.0, 2.0, 3.0], limit=3)

    assert verdicts == [
        Verdict(1, False),
        Verdict(2, False),
        Verdict(3, False),
        Verdict(4, True),
    ]


def test_restarts_older_than_the_window_leave_it() -> None:
    """A restart max_seconds after another still counts it; one later no longer does."""
    assert [v.restarts for v in restarts_at([0.0, 5.0, 10.0, 10.5], limit=3)] == [1, 2, 2, 2]
    assert not any(v.give_up for v in restarts_at([0.0, 3.0, 6.0, 9.0, 12.0], limit=2))


def test_a_window_is_never_changed_in_place() -> None:
    """record_restart returns a new window; the one it was given stays as it was."""
    window = RestartWindow(5.0, (1.0,))

    after, _ = record_restart(window, 2.0, 3)

    assert (window.times, after.times) == ((1.0,), (1.0, 2.0))


def test_a_pools_limit_grows_with_its_workers() -> None:
    """max_restarts plus one per worker, and stated so in a give-up message."""
    assert pool_restart_limit(3, 2) == 5
    assert describe_pool_limit(5, 3) == "5 = 3 + 2 workers"
    assert describe_pool_limit(4, 3) == "4 = 3 + 1 worker"


def test_the_signals_name_the_supervisor_the_child_and_the_reason() -> None:
    """supervisor.child_restarted and supervisor.shutdown carry the count of restarts."""
    assert restarted("pool:a", "worker-1", "ValueError: x", 2) == Emit(
        telemetry.supervisor_child_restarted.name,
        {"restarts": 2},
        {"supervisor": "pool:a", "child_id": "worker-1", "reason": "ValueError: x"},
    )
    assert gave_up("pool:a", "too many", 6) == Emit(
        telemetry.supervisor_shutdown.name,
        {"restarts": 6},
        {"supervisor": "pool:a", "reason": "too many"},
    )


@settings(max_examples=300, deadline=None)
@given(
    gaps=st.lists(st.floats(0.0, 4.0, allow_nan=False), max_size=40),
    limit=st.integers(0, 6),
    max_seconds=st.floats(0.5, 10.0, allow_nan=False),
)
def test_give_up_exactly_when_more_than_the_limit_fall_in_one_window(
    gaps: list[float], limit: int, max_seconds: float
) -> None:
    """Any restart times: a restart gives up exactly when more than ``limit`` restarts (it
    included) fall within ``max_seconds`` before it, counted the obvious way."""
    times: list[float] = []
    now = 0.0
    for gap in gaps:
        now += gap
        times.append(now)

    verdicts = restarts_at(times, limit, max_seconds)

    for index, (now, verdict) in enumerate(zip(times, verdicts, strict=True)):
        within = sum(1 for t in times[: index + 1] if t >= now - max_seconds)
        assert verdict == Verdict(within, within > limit)
