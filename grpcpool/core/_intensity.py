"""Restart intensity: when a supervisor that restarts crashed children gives up (pure).

A supervisor restarts a crashed child, but a child that crashes again and
again must not be restarted forever: more than a limit of restarts within
``max_seconds`` (a sliding window) make the supervisor give up. The generic
:class:`~grpcpool.supervisor.DynamicSupervisor` (and with it the sync
PoolSupervisor) and the asyncio pool's worker tasks keep that account here.

A pool's limit grows with its workers (:func:`pool_restart_limit`): one bug
hitting every worker at once, each crashing once, must not end the pool.
"""

from __future__ import annotations

from dataclasses import dataclass

from grpcpool import telemetry
from grpcpool.connection._machine_types import Emit

__all__ = [
    "RestartWindow",
    "Verdict",
    "describe_pool_limit",
    "gave_up",
    "pool_restart_limit",
    "record_restart",
    "restarted",
]

_RESTARTED = telemetry.supervisor_child_restarted.name
_SHUTDOWN = telemetry.supervisor_shutdown.name


@dataclass(frozen=True, slots=True)
class RestartWindow:
    """The restarts made within the last ``max_seconds``, oldest first.

    Attributes:
        max_seconds: The length of the sliding window.
        times: When each restart in the window was made (monotonic seconds).
    """

    max_seconds: float
    times: tuple[float, ...] = ()


@dataclass(frozen=True, slots=True)
class Verdict:
    """What a restart made of the window.

    Attributes:
        restarts: The restarts within the window, this one included.
        give_up: More than the limit: the supervisor gives up instead.
    """

    restarts: int
    give_up: bool


def record_restart(window: RestartWindow, now: float, limit: int) -> tuple[RestartWindow, Verdict]:
    """A restart at ``now``, with at most ``limit`` allowed within the window.

    The restarts older than ``now - max_seconds`` leave the window; the
    supervisor gives up when more than ``limit`` are left (this one included).
    A give-up is recorded like any restart.

    Args:
        window: The window before this restart.
        now: The time of this restart, in monotonic seconds (never before
            the last one's).
        limit: The restarts allowed within the window.
    """
    times = (*window.times, now)
    oldest = 0
    while oldest < len(times) and times[oldest] < now - window.max_seconds:
        oldest += 1
    times = times[oldest:]
    return RestartWindow(window.max_seconds, times), Verdict(len(times), len(times) > limit)


def pool_restart_limit(max_restarts: int, workers: int) -> int:
    """A pool's restart limit: ``max_restarts`` plus one restart per worker."""
    return max_restarts + workers


def describe_pool_limit(limit: int, max_restarts: int) -> str:
    """A pool's ``limit`` as a give-up message states it: ``"5 = 3 + 2 workers"``."""
    workers = limit - max_restarts
    return f"{limit} = {max_restarts} + {workers} worker{'s' if workers != 1 else ''}"


def restarted(supervisor: str, child_id: str, reason: str, restarts: int) -> Emit:
    """``supervisor.child_restarted``: ``child_id`` restarted after ``reason``."""
    metadata = {"supervisor": supervisor, "child_id": child_id, "reason": reason}
    return Emit(_RESTARTED, {"restarts": restarts}, metadata)


def gave_up(supervisor: str, reason: str, restarts: int) -> Emit:
    """``supervisor.shutdown``: the supervisor gave up, ``reason`` saying why."""
    return Emit(_SHUTDOWN, {"restarts": restarts}, {"supervisor": supervisor, "reason": reason})
