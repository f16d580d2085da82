"""What each part of an asyncio pool may use of it: one narrow interface a part.

The sync pool's actors see their pool through ``PoolParts`` and the
``MoveOwner`` protocol (:mod:`grpcpool.actors._parts`); the asyncio pool's
parts see theirs through these. :class:`~grpcpool.tasks.TaskPool` builds them
and hands them down, so a part knows the names, values and calls listed here
and nothing else of the pool: not its class (the public ``grpcpool.aio.Pool``
is a subclass, whose attributes are the user's), not its private state.

Who gets what:

- :class:`~grpcpool.tasks._tasks.WorkerTasks` (the workers' supervisor):
  :class:`SupervisorLinks`; it hands each worker task it starts a
  :class:`WorkerLinks`, and answers their :class:`WorkerRecords` itself.
- :class:`~grpcpool.tasks._balancer.Balancer`: :class:`BalancerLinks`.
- :mod:`grpcpool.tasks._scaling`: :class:`ScalingLinks`.
- :class:`~grpcpool.tasks._autoscale.Autoscaler`: :class:`AutoscaleLinks`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

import grpc

from grpcpool._config_capacity import Autoscale
from grpcpool.config import Config
from grpcpool.connection._calls import CallLedger
from grpcpool.connection._machine_types import Report
from grpcpool.core._view import PoolView
from grpcpool.tasks._drain import Drains
from grpcpool.tasks._registry import Registry

__all__ = [
    "AutoscaleLinks",
    "BalancerLinks",
    "Incarnation",
    "ScalingLinks",
    "SupervisorLinks",
    "WorkerLinks",
    "WorkerRecords",
    "WorkerSet",
]


class Incarnation(Protocol):
    """One run of a worker task, as the pool's records know it."""

    @property
    def worker_id(self) -> str:
        """Stable id within the pool; a restarted worker keeps it."""
        ...

    @property
    def address(self) -> str | None:
        """The resolved address it connects to, or None for host:port."""
        ...


class WorkerRecords(Protocol):
    """Where a worker task's news goes: the pool's records, if it is still current.

    :class:`~grpcpool.tasks._tasks.WorkerTasks` is one: it knows which
    incarnation of each worker is current, and drops the news of one that a
    restart has replaced.
    """

    def report(
        self,
        worker: Incarnation,
        effect: Report,
        *,
        channel: grpc.aio.Channel | None,
        suspect: Callable[[], None] | None,
        ledger: CallLedger | None,
    ) -> None:
        """``worker``'s machine entered a state (``channel`` and the rest only when ready)."""
        ...

    def gone(self, worker: Incarnation) -> None:
        """``worker``'s task has ended: its record leaves the view."""
        ...


@dataclass(frozen=True)
class WorkerLinks:
    """What a worker task may use of its pool.

    Attributes:
        name: The pool's name (its signals and log lines carry it).
        config: The pool's configuration.
        records: Where its reports go.
        channels: Counts the channels it opens and closes those it lets go.
    """

    name: str
    config: Config
    records: WorkerRecords
    channels: Drains


@dataclass(frozen=True)
class SupervisorLinks:
    """What the workers' supervisor (``WorkerTasks``) may use of its pool.

    Attributes:
        name: The pool's name.
        config: The pool's configuration.
        registry: The pool's records, which workers' reports update.
        channels: The pool's channels, open and retired.
        changed: A worker's record changed (the balancer looks again).
        abandoned: The loop cancelled a worker of a pool nobody stopped.
        give_up: The workers crashed past the restart intensity: the pool ends.
    """

    name: str
    config: Config
    registry: Registry
    channels: Drains
    changed: Callable[[], None]
    abandoned: Callable[[], None]
    give_up: Callable[[], None]


class WorkerSet(Protocol):
    """The pool's workers, as the balancer and scaling start, move and stop them.

    :class:`~grpcpool.tasks._tasks.WorkerTasks` is one.
    """

    @property
    def workers(self) -> Mapping[str, Incarnation]:
        """The current worker of each id, in start order."""
        ...

    @property
    def replacements(self) -> set[str]:
        """Workers started to replace another, until the move ends."""
        ...

    def add(
        self, address: str | None, worker_id: str | None = None, *, replacement: bool = False
    ) -> str:
        """Starts a worker; returns its id."""
        ...

    def repin(self, worker_id: str, address: str) -> None:
        """Tells a worker that serves nothing to connect to ``address``."""
        ...

    async def stop(self, worker_ids: list[str] | None = None) -> None:
        """Stops the given workers and waits until their tasks end."""
        ...

    def own(self) -> list[str]:
        """The ids of the pool's own workers, in start order."""
        ...

    def thinnest_address(self) -> str | None:
        """The address with the fewest workers, if any."""
        ...


@dataclass(frozen=True)
class BalancerLinks:
    """What the balancing task may use of its pool.

    Attributes:
        name: The pool's name.
        config: The pool's configuration.
        view: The pool's current view.
        workers: The pool's workers, which it repins and moves.
    """

    name: str
    config: Config
    view: Callable[[], PoolView]
    workers: WorkerSet


@dataclass(frozen=True)
class ScalingLinks:
    """What scaling may use of its pool.

    Attributes:
        name: The pool's name.
        config: The pool's configuration (``pool.max_size``).
        registry: The pool's records, which publish the new size.
        workers: The pool's workers, which it starts and stops.
        changed: The workers changed (the balancer looks again).
    """

    name: str
    config: Config
    registry: Registry
    workers: WorkerSet
    changed: Callable[[], None]


@dataclass(frozen=True)
class AutoscaleLinks:
    """What the autoscaling task (``pool.autoscale``) may use of its pool.

    Attributes:
        name: The pool's name.
        settings: The pool's ``pool.autoscale`` (None: the pool's size is fixed).
        registry: The pool's records (its current view).
        resize: The pool's ``resize``, which checks that the pool runs.
    """

    name: str
    settings: Autoscale | None
    registry: Registry
    resize: Callable[[int], Awaitable[int]]
