"""PoolSupervisor and PoolSpec: one pool as a supervision subtree.

A :class:`PoolSpec` is a child spec for any :class:`~grpcpool.Supervisor`.
Starting it claims the pool's name in the process, then starts a
:class:`PoolSupervisor` whose children are, in order, the HealthRegistry, one
ChannelWorker per channel and the TelemetryReporter.

Scaling goes through the PoolSupervisor's proxy, so concurrent scale calls
are serialized by its inbox: no lock, no race between two resizes.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import time
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import pykka

from grpcpool import telemetry
from grpcpool._pool_state import PoolState, claim, release
from grpcpool.actors._channel_worker import ChannelWorker, Resync
from grpcpool.actors._health_registry import HealthRegistry
from grpcpool.actors._telemetry_reporter import TelemetryReporter
from grpcpool.config import Config
from grpcpool.supervisor import ChildSpec, ChildStartError, Supervisor, current_supervisor

__all__ = ["PoolSpec", "PoolSupervisor"]

# Seconds a whole pool gets to stop: every worker closes its channel in turn.
POOL_SHUTDOWN_SECONDS = 30.0
WORKER_SHUTDOWN_SECONDS = 5.0


@dataclass(frozen=True)
class PoolSpec:
    """A pool as a child of a supervisor.

    Args:
        config: The pool's configuration.
        name: The pool's name; falls back to ``config.pool.name``, then
            ``"default"``.
    """

    config: Config
    name: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.config, Config):
            raise TypeError(f"PoolSpec needs a grpcpool.Config, got {type(self.config).__name__}")
        if self.name is not None and (not isinstance(self.name, str) or not self.name):
            raise ValueError(f"pool name must be a non-empty string, got {self.name!r}")

    @property
    def pool_name(self) -> str:
        return self.config.pool_name(self.name)

    def child_spec(self) -> ChildSpec:
        # transient: a pool that crashes is restarted; one stopped on purpose
        # (grpcpool.stop) is not.
        return ChildSpec(
            id=pool_child_id(self.pool_name),
            start=functools.partial(PoolSupervisor.start_pool, self.config, self.pool_name),
            restart="transient",
            shutdown=POOL_SHUTDOWN_SECONDS,
            type="supervisor",
        )


def pool_child_id(pool_name: str) -> str:
    """The id of a pool among its parent's children, and its supervisor's name."""
    return f"pool:{pool_name}"


def check_count(name: str, value: Any) -> int:
    """A positive int, not a bool; raises ``TypeError``/``ValueError`` otherwise."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value}")
    return value


class PoolSupervisor(Supervisor):
    """Supervises one pool's registry, workers and reporter; scales the workers.

    Its restart intensity is ``max_restarts`` plus the current number of
    workers: when the endpoint goes away every worker reaches
    ``max_reconnect_attempts`` at about the same time, and one crash per
    worker must not take the whole pool down.
    """

    def __init__(self, pool: PoolState, **options: Any) -> None:
        super().__init__(**options)
        self._pool = pool
        self._worker_numbers = itertools.count(1)
        self._worker_ids: list[str] = []

    @classmethod
    def start_pool(cls, config: Config, name: str) -> pykka.ActorRef[Any]:
        """Claims ``name`` and starts the pool; returns when all its workers started.

        Raises:
            ConfigError: A pool of that name is already running.
        """
        pool = PoolState(name, config)
        pool.parent = current_supervisor()
        pool.child_id = pool_child_id(name)
        claim(pool)
        try:
            # The supervisor's name, in its telemetry, is its child id too.
            ref = cls.start(children=(), name=pool.child_id, pool=pool)
            pool.owner = ref
            ref.proxy().start_workers(config.pool.size).get()
        except BaseException:
            pool.final = True
            pool.close()
            release(pool)
            if pool.owner is not None:
                pool.owner.stop()
            raise
        telemetry.emit(
            telemetry.pool_init,
            name,
            {"pool_size": config.pool.size},
            {"pool_name": name, "endpoint": config.endpoint.target},
        )
        return ref

    # --- proxy API ------------------------------------------------------------

    def start_workers(self, size: int) -> None:
        """Starts the registry, ``size`` workers and the reporter (pool start only)."""
        pool = self._pool
        self.start_child(ChildSpec("registry", functools.partial(HealthRegistry.start, pool)))
        for _ in range(size):
            self._add_worker()
        self.start_child(ChildSpec("telemetry", functools.partial(TelemetryReporter.start, pool)))

    def scale_up(self, count: int) -> int:
        """Adds ``count`` workers; returns the new expected size."""
        check_count("count", count)
        pool = self._pool
        if pool.expected_size + count > pool.config.pool.max_size:
            raise ValueError(
                f"pool {pool.name!r}: scaling {pool.expected_size} up by {count} "
                f"is over pool.max_size ({pool.config.pool.max_size})"
            )
        started = time.monotonic()
        succeeded = 0
        for _ in range(count):
            try:
                self._add_worker()
            except ChildStartError:
                continue
            succeeded += 1
        pool.expected_size += succeeded
        telemetry.emit(
            telemetry.pool_scale_up,
            pool.name,
            {
                "duration": time.monotonic() - started,
                "requested": count,
                "succeeded": succeeded,
                "failed": count - succeeded,
                "new_size": pool.expected_size,
            },
            {"pool_name": pool.name},
        )
        return pool.expected_size

    def scale_down(self, count: int) -> int:
        """Stops the ``count`` newest workers; returns the new expected size."""
        check_count("count", count)
        pool = self._pool
        if pool.expected_size - count < 1:
            raise ValueError(
                f"pool {pool.name!r}: scaling {pool.expected_size} down by {count} "
                "would leave no worker (a pool keeps at least 1)"
            )
        started = time.monotonic()
        victims = self._worker_ids[-count:]
        del self._worker_ids[-count:]
        self._stop_together([self._children.pop(worker_id) for worker_id in reversed(victims)])
        pool.expected_size -= count
        telemetry.emit(
            telemetry.pool_scale_down,
            pool.name,
            {
                "duration": time.monotonic() - started,
                "requested": count,
                "terminated": count,
                "new_size": pool.expected_size,
            },
            {"pool_name": pool.name},
        )
        return pool.expected_size

    def resize(self, target: int) -> int:
        """Scales to ``target`` workers; the same size is a no-op."""
        check_count("target", target)
        pool = self._pool
        if target > pool.config.pool.max_size:
            raise ValueError(
                f"pool {pool.name!r}: {target} is over pool.max_size ({pool.config.pool.max_size})"
            )
        if target > pool.expected_size:
            return self.scale_up(target - pool.expected_size)
        if target < pool.expected_size:
            return self.scale_down(pool.expected_size - target)
        return pool.expected_size

    # --- supervisor hooks -----------------------------------------------------

    def restart_limit(self) -> int:
        return self.max_restarts + len(self._worker_ids)

    def _child_restarted(self, child_id: str) -> None:
        if child_id != "registry":
            return
        # A fresh registry knows nothing: have every worker report again.
        for worker_id, ref, _ in self.which_children():
            if ref is not None and worker_id in self._worker_ids:
                # A worker that died meanwhile is reported (and restarted)
                # by its own exit message; it needs no resync.
                with contextlib.suppress(pykka.ActorDeadError):
                    ref.tell(Resync())

    def on_stop(self) -> None:
        self._close(final=True)
        super().on_stop()

    def _stop_children(self) -> None:
        # Reporter, then every worker at once (each closes a channel, which
        # takes grpcio up to 0.2 s), then the registry they report to.
        self._stopping = True
        children = list(self._children.values())
        workers = set(self._worker_ids)
        self._stop_together([c for c in reversed(children) if c.spec.id == "telemetry"])
        self._stop_together([c for c in reversed(children) if c.spec.id in workers])
        self._stop_together([c for c in reversed(children) if c.spec.id not in workers])

    def on_failure(
        self,
        exception_type: type[BaseException] | None,
        exception_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._close(final=False)
        super().on_failure(exception_type, exception_value, traceback)

    def __repr__(self) -> str:
        pool = self._pool
        return f"<PoolSupervisor {pool.name!r} [{len(pool.snapshot)}/{pool.expected_size} ready]>"

    # --- helpers --------------------------------------------------------------

    def _add_worker(self) -> None:
        worker_id = f"worker-{next(self._worker_numbers)}"
        self.start_child(
            ChildSpec(
                worker_id,
                functools.partial(ChannelWorker.start, self._pool, worker_id),
                shutdown=WORKER_SHUTDOWN_SECONDS,
            )
        )
        self._worker_ids.append(worker_id)

    def _close(self, *, final: bool) -> None:
        pool = self._pool
        pool.final = final
        if final:
            # Out of the table first: from here on callers get
            # PoolNotFoundError instead of a channel about to be closed.
            release(pool)
        # A crashed pool stays in the table, closed, until its parent
        # restarts it: so grpcpool.stop(name) still finds whom to ask, and
        # await_ready can follow the restart.
        pool.close()
