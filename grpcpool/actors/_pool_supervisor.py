"""PoolSupervisor and PoolSpec: one pool as a supervision subtree.

A :class:`PoolSpec` is a child spec for any supervisor. Starting it claims
the pool's entry in the process table, then starts a :class:`PoolSupervisor`
whose children are, in order, the HealthRegistry, one ChannelWorker per
connection (each pinned to one of the host's addresses, spread evenly), the
TelemetryReporter and the Balancer, which keeps the spread as the addresses
change and refreshes connections by age; and, for ``pool.autoscale``, the
Autoscaler, whose steps it carries out.

The PoolSupervisor is a :class:`~grpcpool.supervisor.DynamicSupervisor`: its
workers are dynamic children, started and terminated through the public
child API, so a worker terminated by hand (``terminate_child("worker-2")``)
is accounted for exactly like one removed by ``scale_down``. The pool's
expected size is not stored here: after every change of its workers the
PoolSupervisor tells the registry, which publishes it in the pool's view.

Scaling goes through the PoolSupervisor's proxy, so concurrent scale calls
are serialized by its inbox: no lock, no race between two resizes.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import logging
import time
from types import TracebackType
from typing import Any, Self, TypeVar, cast

import pykka
from pykka.typing import proxy_method

from grpcpool import telemetry
from grpcpool._resolving import resolve_within
from grpcpool.actors._autoscaler import Autoscaler
from grpcpool.actors._balancer import Balancer, Rebalance
from grpcpool.actors._channel_worker import ChannelWorker, Resync
from grpcpool.actors._entry import (
    PoolEntry,
    attach,
    claim,
    release,
)
from grpcpool.actors._health_registry import ExpectedSize, HealthRegistry, SetLifecycle
from grpcpool.actors._parts import MoveOwner, PoolParts, send_to_registry
from grpcpool.actors._telemetry_reporter import TelemetryReporter
from grpcpool.config import Config
from grpcpool.connection import PoolChannels
from grpcpool.connection._announce import announce_pool
from grpcpool.core._autoscale import Step, autoscaled
from grpcpool.core._balancing_types import ReplacedGone
from grpcpool.core._intensity import describe_pool_limit, pool_restart_limit
from grpcpool.core._resolution import START_RESOLVE_WAIT, initial_addresses
from grpcpool.core._scaling import (
    is_worker,
    resize_by,
    scale_up_by,
    scaled_down,
    scaled_up,
    thinnest_address,
    workers_to_stop,
)
from grpcpool.core._scaling import worker_id as worker_id_of
from grpcpool.core._view import Lifecycle
from grpcpool.supervisor import ChildSpec, ChildStartError, DynamicSupervisor, current_supervisor
from grpcpool.supervisor._proxy import SupervisorProxy

__all__ = [
    "PoolSupervisor",
    "PoolSupervisorProxy",
    "pool_child_id",
    "pool_supervisor_proxy",
]

# Seconds a whole pool gets to stop.
POOL_SHUTDOWN_SECONDS = 30.0
WORKER_SHUTDOWN_SECONDS = 5.0
_REGISTRY = "registry"
_REPORTER = "telemetry"
_BALANCER = "balancer"
_AUTOSCALER = "autoscaler"

_log = logging.getLogger(__name__)


def pool_child_id(pool_name: str) -> str:
    """The id of a pool among its parent's children, and its supervisor's name."""
    return f"pool:{pool_name}"


class PoolSupervisor(DynamicSupervisor):
    """Supervises one pool's registry, workers and reporter; scales the workers.

    Its restart intensity is ``max_restarts`` plus the current number of
    workers, so that one bug hitting every worker at once (each crashing
    once) does not take the whole pool down. An outage is not a crash: a
    worker never ends because its endpoint is unreachable.
    """

    def __init__(self, entry: PoolEntry, **options: Any) -> None:
        super().__init__(**options)
        self._entry = entry
        self._parts = PoolParts(entry, PoolChannels(entry.config))
        self._worker_numbers = itertools.count(1)
        # Workers started by the Balancer to replace another, until that one
        # has been retired: not part of the pool's size, never scaled down.
        self._replacements: set[str] = set()
        self._autoscale = entry.config.pool.autoscale

    @classmethod
    def start_pool(cls, config: Config, name: str, token: object) -> pykka.ActorRef[Self]:
        """Claims ``name`` and starts the pool; returns when all its workers started.

        Raises:
            ConfigError: A pool of that name is already running.
        """
        entry = claim(
            name, config, token=token, parent=current_supervisor(), child_id=pool_child_id(name)
        )
        # A pool restarted after a crash comes back at the size it had (the
        # user may have scaled it), which its last view still says.
        size = entry.view.expected_size
        ref: pykka.ActorRef[Self] | None = None
        try:
            # The supervisor's name, in its telemetry, is its child id too.
            ref = cls.start(name=pool_child_id(name), entry=entry)
            attach(entry, ref)
            pool_supervisor_proxy(ref).start_pool_children(size).get()
        except BaseException:
            if ref is not None:
                ref.stop()
            release(entry, "the pool failed to start")
            raise
        telemetry.emit(
            telemetry.pool_init,
            name,
            {"pool_size": size},
            {"pool_name": name, "endpoint": config.endpoint.target},
        )
        return ref

    # --- proxy API ------------------------------------------------------------

    def start_pool_children(self, size: int) -> None:
        """Starts the registry, ``size`` workers, the reporter and the balancer (pool start only).

        The workers are spread over the host's addresses if the resolver
        answers within ``START_RESOLVE_WAIT``; otherwise they start on
        ``host:port`` and the balancer moves them once it has an answer.
        """
        parts = self._parts
        parts.registry = self.start_child(
            ChildSpec(_REGISTRY, functools.partial(HealthRegistry.start, parts))
        )
        addresses, took = resolve_within(self._entry.config, START_RESOLVE_WAIT)
        for address in initial_addresses(addresses, size):
            self._add_worker(address)
        self._tell_registry(ExpectedSize(size))
        self.start_child(
            ChildSpec(_REPORTER, functools.partial(TelemetryReporter.start, self._entry))
        )
        owner: MoveOwner = pool_supervisor_proxy(self.actor_ref)
        self.start_child(
            ChildSpec(
                _BALANCER,
                functools.partial(Balancer.start, self._entry, owner, parts, addresses, took),
            )
        )
        if self._autoscale is not None:
            scaler = functools.partial(
                Autoscaler.start,
                self._entry,
                pool_supervisor_proxy(self.actor_ref),
                self._entry.capacity,  # the load: calls in flight plus queued, and waits
            )
            self.start_child(ChildSpec(_AUTOSCALER, scaler))
        self._tell_registry(SetLifecycle("running"))

    def add_pinned_worker(self, address: str) -> str:
        """Starts a replacement worker on ``address``; returns its id (the Balancer's moves).

        The expected size does not change, and scaling leaves the worker
        alone, until the move ends (:meth:`retire_worker`).
        """
        worker_id = self._add_worker(address)
        self._replacements.add(worker_id)
        return worker_id

    def retire_worker(self, worker_id: str, replacement: str | None = None) -> None:
        """Ends a move: stops ``worker_id`` for good (its channel drains).

        ``replacement``, the worker that took its place, counts as one of the
        pool's from now on. It can take the place only of one of the pool's
        workers: if ``worker_id`` is not one (scaled down since the Balancer
        looked), it is left as it is and the Balancer hears so
        (:class:`~grpcpool.core._balancing_types.ReplacedGone`); what becomes
        of it is the Balancer's rule.
        """
        member = worker_id in self._workers()
        self._replacements.discard(worker_id)
        if replacement is not None:
            if member:
                self._replacements.discard(replacement)
            else:
                self._tell_balancer(ReplacedGone(replacement))
        self._stop_worker(worker_id)

    def drop_replacements(self) -> None:
        """Stops every replacement whose move has not ended (the Balancer asks)."""
        for worker_id in list(self._replacements):
            self._replacements.discard(worker_id)
            self._stop_worker(worker_id)

    def _stop_worker(self, worker_id: str) -> None:
        with contextlib.suppress(LookupError):
            self.terminate_child(worker_id)

    def autoscale(self, step: Step) -> None:
        """Carries out the Autoscaler's ``step``, unless the size changed since it was decided."""
        if len(self._workers()) == step.from_size:
            new_size = self.resize(step.to_size)
            announce_pool(autoscaled(step, new_size), self._entry.name, _log)

    def scale_up(self, count: int) -> int:
        """Adds ``count`` workers (autoscaled: up to its ``max_size``); returns the new size.

        Raises:
            PoolSizeError: ``count`` is below 1 or takes the pool over
                ``pool.max_size``.
        """
        size, limit = len(self._workers()), self._entry.config.pool.max_size
        count = scale_up_by(self._entry.name, size, count, limit, self._autoscale)
        if not count:
            return size
        started = time.monotonic()
        succeeded = 0
        for _ in range(count):
            try:
                self._add_worker()
            except ChildStartError:
                continue
            succeeded += 1
        new_size = self._announce_size()
        took = time.monotonic() - started
        announce_pool(scaled_up(count, succeeded, took, new_size), self._entry.name, _log)
        return new_size

    def scale_down(self, count: int) -> int:
        """Stops the ``count`` newest workers (autoscaled: to ``min_size`` at most); the new size.

        Raises:
            PoolSizeError: ``count`` is below 1 or would leave no worker.
        """
        workers = self._workers()
        stopping = workers_to_stop(self._entry.name, len(workers), workers, count, self._autoscale)
        if not stopping:
            return len(workers)
        started = time.monotonic()
        self.terminate_children(stopping)
        new_size = len(self._workers())
        took = time.monotonic() - started
        announce_pool(scaled_down(len(stopping), took, new_size), self._entry.name, _log)
        return new_size

    def resize(self, target: int) -> int:
        """Scales to ``target`` workers (autoscaled: clamped into its range); same size: no-op.

        Raises:
            PoolSizeError: ``target`` is below 1 or over ``pool.max_size``.
        """
        size, limit = len(self._workers()), self._entry.config.pool.max_size
        change = resize_by(self._entry.name, size, target, limit, self._autoscale)
        if change > 0:
            return self.scale_up(change)
        if change < 0:
            return self.scale_down(-change)
        return size

    # --- supervisor hooks -----------------------------------------------------

    def restart_limit(self) -> int:
        return pool_restart_limit(self.max_restarts, len(self._workers()))

    def describe_restart_limit(self, limit: int) -> str:
        # The limit applied, as restart_limit made it: "5 = 3 + 2 workers".
        return describe_pool_limit(limit, self.max_restarts)

    def child_restarted(self, child_id: str, ref: pykka.ActorRef[Any]) -> None:
        if is_worker(child_id):
            self._parts.workers[child_id] = ref
        if child_id != _REGISTRY:
            return
        # A fresh registry knows nothing: have every worker report again.
        self._parts.registry = ref
        for worker_id, worker, _ in self.which_children():
            if worker is not None and is_worker(worker_id):
                # A worker that died meanwhile is reported (and restarted)
                # by its own exit message; it needs no resync.
                with contextlib.suppress(pykka.ActorDeadError):
                    worker.tell(Resync())

    def child_terminated(self, child_id: str) -> None:
        if is_worker(child_id):
            self._parts.workers.pop(child_id, None)
            self._announce_size()

    def shutdown_order(self, child_ids: list[str]) -> list[list[str]]:
        # Balancer and reporter, then every worker at once, then the registry
        # they report to.
        workers = [c for c in child_ids if is_worker(c)]
        others = [c for c in reversed(child_ids) if not is_worker(c)]
        first = [c for c in others if c in (_BALANCER, _REPORTER, _AUTOSCALER)]
        rest = [[c] for c in others if c not in (_BALANCER, _REPORTER, _AUTOSCALER)]
        return [group for group in (first, workers) if group] + rest

    def on_stop(self) -> None:
        self._wind_down("stopped")
        super().on_stop()

    def on_failure(
        self,
        exception_type: type[BaseException] | None,
        exception_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        # Crashed (gave up): the parent restarts the pool with this entry,
        # or forgets it, which ends the entry.
        self._wind_down("restarting")
        super().on_failure(exception_type, exception_value, traceback)

    def __repr__(self) -> str:
        view = self._entry.view
        return (
            f"<PoolSupervisor {self._entry.name!r} {view.lifecycle} "
            f"[{len(view.channels)}/{view.expected_size} ready]>"
        )

    # --- helpers --------------------------------------------------------------

    def _workers(self) -> list[str]:
        """The pool's workers, in start order, without a move's replacement."""
        return [
            c for c, _, _ in self.which_children() if is_worker(c) and c not in self._replacements
        ]

    def _add_worker(self, address: str | None = None) -> str:
        worker_id = worker_id_of(next(self._worker_numbers))
        if address is None:
            # Scaling up: where the spread is thinnest (the balancer corrects
            # it if the answer changed since).
            address = thinnest_address(w.address for w in self._entry.view.workers)
        self._parts.workers[worker_id] = self.start_child(
            ChildSpec(
                worker_id,
                functools.partial(ChannelWorker.start, self._parts, worker_id, address),
                shutdown=WORKER_SHUTDOWN_SECONDS,
            )
        )
        return worker_id

    def _announce_size(self) -> int:
        size = len(self._workers())
        self._tell_registry(ExpectedSize(size))
        self._tell_balancer(Rebalance())
        return size

    def _tell_balancer(self, message: Any) -> None:
        for child_id, ref, _ in self.which_children():
            if child_id == _BALANCER and ref is not None:
                with contextlib.suppress(pykka.ActorDeadError):
                    ref.tell(message)

    def _tell_registry(self, message: Any) -> None:
        # Asked, so that the view is current when the caller hears back.
        send_to_registry(self._parts.registry, message, sync=True)

    def _wind_down(self, lifecycle: Lifecycle) -> None:
        # Callers stop getting channels first; then every channel a worker
        # retires on its way out is closed at once.
        self._tell_registry(SetLifecycle(lifecycle))
        self._parts.channels.close_all()


P = TypeVar("P", bound=PoolSupervisor)


class PoolSupervisorProxy(SupervisorProxy):
    """The proxy API of a :class:`PoolSupervisor`, typed as ``pykka.typing`` types proxies."""

    start_pool_children = proxy_method(PoolSupervisor.start_pool_children)
    scale_up = proxy_method(PoolSupervisor.scale_up)
    scale_down = proxy_method(PoolSupervisor.scale_down)
    resize = proxy_method(PoolSupervisor.resize)
    autoscale = proxy_method(PoolSupervisor.autoscale)
    add_pinned_worker = proxy_method(PoolSupervisor.add_pinned_worker)
    retire_worker = proxy_method(PoolSupervisor.retire_worker)
    drop_replacements = proxy_method(PoolSupervisor.drop_replacements)


def pool_supervisor_proxy(ref: pykka.ActorRef[P]) -> PoolSupervisorProxy:
    """``ref.proxy()``, typed with the pool supervisor's proxy API (see ``supervisor._proxy``).

    Raises:
        pykka.ActorDeadError: The pool supervisor is not running.
    """
    return cast(PoolSupervisorProxy, ref.proxy())
