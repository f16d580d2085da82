"""TaskPool: the asyncio pool's driver: its view, its workers' tasks and their supervision.

Everything of a pool runs on the event loop it was started on, so the pool
keeps its records itself: a worker's report runs through the same records
machine as the sync pool's (:mod:`grpcpool.core._records`), which publishes a
new immutable :class:`~grpcpool.core.PoolView` in one assignment, and
``get_channel`` reads it. There is no lock because there is one thread.

Worker tasks are supervised one-for-one with the sync PoolSupervisor's
intensity: more than ``max_restarts`` plus the number of workers crashes
within ``max_seconds`` end the pool, as a top supervisor that gives up.
An outage is not a crash.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import warnings
from types import TracebackType
from typing import Any, Self

import grpc

from grpcpool import telemetry
from grpcpool._config_capacity import start_size
from grpcpool._config_checks import aio_interceptors, check_pool_name
from grpcpool._names import claim_aio, release_aio
from grpcpool._process import PROCESS
from grpcpool._resolving import with_watch
from grpcpool._status import PoolStatus
from grpcpool.config import Config
from grpcpool.connection._announce import announce_pool
from grpcpool.core._hedging import HedgingState
from grpcpool.core._resolution import initial_addresses
from grpcpool.core._sampling import GetChannelSampler, get_channel_signal
from grpcpool.core._view import PoolView
from grpcpool.core._waiting import check_wait
from grpcpool.errors import ConfigError, GrpcPoolError, PoolNotFoundError
from grpcpool.strategy import Strategy, resolve_strategy
from grpcpool.tasks import _scaling
from grpcpool.tasks._autoscale import Autoscaler, start_autoscaling
from grpcpool.tasks._balancer import Balancer, first_addresses, resolves_inline
from grpcpool.tasks._drain import Drains
from grpcpool.tasks._parts import AutoscaleLinks, BalancerLinks, ScalingLinks, SupervisorLinks
from grpcpool.tasks._registry import Registry
from grpcpool.tasks._tasks import WorkerTasks

__all__ = ["POOLS", "TaskPool", "running_loop", "thread_id"]

#: The running loop of this thread, or None (without the exception
#: ``asyncio.get_running_loop`` raises outside a loop).
running_loop = asyncio.events._get_running_loop
#: The hot path's loop check compares thread ids: asking for the running loop
#: costs a ``getpid()`` system call, more than the pick itself. A pool's loop
#: runs on one thread, and another loop can run on that thread only after the
#: pool's has stopped, which ends the pool.
thread_id = threading.get_ident

_log = logging.getLogger(__name__)

#: The running asyncio pools, by name: ``PROCESS.aio_pools``, cleared in
#: place in a forked child. The name table is shared with the sync pools
#: (``grpcpool._names``); written only through ``claim_aio``/``release_aio``.
POOLS: dict[str, TaskPool] = PROCESS.aio_pools

# Who listens to pool.get_channel: blinker changes this dict in place, so the
# hot path reads one module global instead of a signal's attribute.
_GET_CHANNEL_RECEIVERS = telemetry.pool_get_channel.receivers


class TaskPool:
    """The tasks, records and view of one asyncio pool on its event loop.

    The public :class:`grpcpool.aio.Pool` is this class with the pool channel
    added (its docstring tells how to use it); the parts below it never need
    the public API: each sees the pool through its links (``tasks._parts``).
    """

    def __init__(self, config: Config, name: str | None = None) -> None:
        if not isinstance(config, Config):
            raise TypeError(f"Pool needs a grpcpool.Config, got {type(config).__name__}")
        if name is not None:
            check_pool_name("pool.name", name)
        if config.endpoint.interceptors and not aio_interceptors(config.endpoint.interceptors):
            raise ConfigError(
                "endpoint.interceptors",
                "holds sync grpc interceptors, which a grpc.aio channel cannot use; "
                "give grpc.aio interceptors (grpc.aio.UnaryUnaryClientInterceptor, ...)",
            )
        self.config = config
        self.name = config.pool_name(name)
        self.strategy: Strategy = resolve_strategy(
            config.pool.strategy, ewma_decay=config.pool.ewma_decay
        )
        self._sampler = GetChannelSampler(config.pool.telemetry_sample_rate)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: int | None = None
        self._registry = Registry(
            self.name,
            self.strategy,
            start_size(config.pool.size, config.pool.autoscale),
            config.endpoint.target,
            outlier_detection=config.pool.outlier_detection,
            panic_threshold=config.pool.panic_threshold,
            max_calls_per_connection=config.pool.max_calls_per_connection,
            max_queued_calls=config.pool.max_queued_calls,
        )
        self.capacity = self._registry.capacity  # read by the pool channel
        self._closing: set[asyncio.Task[None]] = set()
        self._drains = Drains(config.connection.drain_timeout, self._loop_task)
        # Channels this pool closed (or is closing): a call they cut was cut
        # by the pool, not lost with its connection.
        self.closed_by_pool = self._drains.closed_by_pool
        # pool.hedging's budget and learnt latencies, read by the pool channel.
        hedging = config.pool.hedging
        self.hedging = HedgingState(hedging) if hedging is not None else None
        changed = self._poke_balancer
        links = SupervisorLinks(
            self.name, config, self._registry, self._drains, changed, self._abandoned, self._give_up
        )
        self._workers = WorkerTasks(links)
        self._scaling = ScalingLinks(self.name, config, self._registry, self._workers, changed)
        self._reporter: asyncio.Task[None] | None = None
        self._balancer: Balancer | None = None
        self._ending = "stopped"  # why the pool ends when it does
        self._balancing: asyncio.Task[None] | None = None
        self._autoscaler: Autoscaler | None = None
        self.ended: str | None = None

    # --- life -----------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.stop()

    async def start(self) -> Self:
        """Starts the workers (they connect in the background); returns at once.

        A start that fails half-way (a strategy's ``init`` raising, the
        starting task cancelled) stops what it started and frees the name.

        Raises:
            ConfigError: A pool of this name, sync or asyncio, runs already
                (key ``pool.name``).
            GrpcPoolError: The pool was started before.
        """
        if self._loop is not None:
            raise GrpcPoolError(f"pool {self.name!r} was started already; make a new Pool")
        loop = asyncio.get_running_loop()
        claim_aio(self)
        self._loop = loop
        self._thread = thread_id()
        try:
            await self._start_parts()
        except BaseException:
            self._ending = "the pool failed to start"
            try:
                await self.stop()
            finally:
                if self.ended is None:  # the stop was cut short: free the name anyway
                    self._end(self._ending)
            raise
        return self

    async def _start_parts(self) -> None:
        assert self._loop is not None
        init = getattr(self.strategy, "init", None)
        if callable(init):
            init(self.name, self._registry.expected)
        addresses, took = await first_addresses(self.config)
        for address in initial_addresses(addresses, self._registry.expected):
            self._workers.add(address)
        self._registry.set_lifecycle("running")
        links = BalancerLinks(self.name, self.config, lambda: self._registry.view, self._workers)
        self._balancer = Balancer(links, addresses, took, inline=resolves_inline(self.config))
        self._balancing = self._loop.create_task(self._balancer.run(), name="grpcpool-balance")
        self._reporter = self._loop.create_task(
            self._registry.report_status(self.config.pool.telemetry_interval),
            name="grpcpool-status",
        )
        self._registry.start_judging(self._workers.renew)
        scaling = AutoscaleLinks(self.name, self.config.pool.autoscale, self._registry, self.resize)
        self._autoscaler = start_autoscaling(scaling, self.capacity)
        telemetry.emit(
            telemetry.pool_init,
            self.name,
            {"pool_size": self._registry.expected},
            {"pool_name": self.name, "endpoint": self.config.endpoint.target},
        )

    async def stop(self) -> None:
        """Stops every worker and closes every channel once its last call has ended.

        Calls running through ``pool.channel()`` (and raw ones that grpc.aio
        knows) get up to ``connection.drain_timeout``; the stop returns once
        every channel is closed.

        Idempotent; from the pool's own loop only.
        """
        if self._loop is None or self.ended is not None:
            return
        self._check_loop()
        if self._workers.stopping:  # a stop is under way: wait for it
            while not self._has_ended():
                await self._registry.wait_changed(0.1)
            return
        self._workers.stopping = True
        self._registry.stop_judging()
        self._registry.set_lifecycle("stopped")
        scaling = self._autoscaler.task if self._autoscaler is not None else None
        parts = (self._reporter, self._balancing, scaling)
        for task in parts:
            if task is not None:
                task.cancel()
        # A move under way stops its replacement worker on the way out; a step under way ends.
        await asyncio.gather(*(t for t in parts[1:] if t is not None), return_exceptions=True)
        await self._workers.stop()
        # The closing channels, not this very task (a give-up's stop runs as one).
        closing = [task for task in self._closing if task is not asyncio.current_task()]
        await asyncio.gather(*closing, return_exceptions=True)
        self._end(self._ending)

    def _has_ended(self) -> bool:
        return self.ended is not None

    async def aclose(self) -> None:
        """The same as :meth:`stop`."""
        await self.stop()

    def _end(self, reason: str) -> None:
        self.ended = reason
        release_aio(self, reason)
        self.capacity.pool_ended(f"the pool was shut down ({reason})")
        self._registry.wake()

    # --- callers ----------------------------------------------------------------------

    def get_channel(self) -> grpc.aio.Channel:
        """A ready ``grpc.aio.Channel`` of this pool: O(1), from the current view.

        Raises:
            NotConnectedError: No channel is ready (or the pool has stopped).
            GrpcPoolError: Called from another loop or thread than the pool's.
        """
        if thread_id() != self._thread:
            raise self._wrong_loop(running_loop())
        self._drains.raw_handed_out = True  # before the view is read, as in a sync pool
        view = self._registry.view
        channel = view.pick()
        if _GET_CHANNEL_RECEIVERS and self._sampler.counts():
            announce_pool(get_channel_signal(view), self.name, _log)
        return channel  # type: ignore[return-value]  # an aio pool's channel

    def status(self) -> PoolStatus:
        """The pool's health now, as the sync pool reports it.

        Callable from any thread (``grpcpool.status(name)`` does): it reads
        the current view, an immutable picture replaced in one assignment.
        """
        view, autoscale = self._registry.view, self.config.pool.autoscale
        queued = self.capacity.queued
        status = view.status(self.name, self.resolver_error, queued, autoscale=autoscale)
        balancer = self._balancer
        return with_watch(status, self.config, None if balancer is None else balancer.watch_handle)

    @property
    def resolver_error(self) -> str | None:
        """Why the last resolution failed, or None (kept by the balancing task)."""
        balancer = self._balancer
        return None if balancer is None else balancer.resolver_error

    @property
    def view(self) -> PoolView:
        """The current view (loop thread only)."""
        return self._registry.view

    async def await_ready(self, timeout: float | None = 10.0, min_ready: int = 1) -> None:
        """Waits until ``min_ready`` channels are ready; woken by the pool's changes.

        The arguments are checked as the sync ``await_ready`` checks them
        (:func:`grpcpool.core._waiting.check_wait`).

        Raises:
            ValueError: ``timeout`` is not None or a finite number >= 0, or
                ``min_ready`` is not an int.
            PoolTimeoutError: Not ready within ``timeout`` seconds.
            PoolNotFoundError: The pool stopped meanwhile (or never started).
            PoolSizeError: ``min_ready`` is below 1 or over the pool's size
                (at once: such a wait could only time out).
        """
        self._check_loop()
        check_wait(self.name, timeout, min_ready)
        if self._loop is None:
            raise PoolNotFoundError(self.name, self.ended)
        await self._registry.wait_ready(min_ready, timeout, lambda: self.ended)

    async def wait_changed(self, timeout: float | None) -> None:
        """Waits for the next change of the view (for the pool channel's ``wait_for_ready``)."""
        await self._registry.wait_changed(timeout)

    # --- scaling (grpcpool.tasks._scaling) ------------------------------------------------

    async def scale_up(self, count: int) -> int:
        """Adds ``count`` workers; returns the new expected size.

        Raises:
            PoolSizeError: ``count`` is below 1 or takes the pool over
                ``pool.max_size``.
        """
        self._check_running()
        return await _scaling.scale_up(self._scaling, count)

    async def scale_down(self, count: int) -> int:
        """Stops the ``count`` newest workers (never below 1); returns the new expected size.

        Raises:
            PoolSizeError: ``count`` is below 1 or would leave no worker.
        """
        self._check_running()
        return await _scaling.scale_down(self._scaling, count)

    async def resize(self, target: int) -> int:
        """Scales to ``target`` workers; the same size is a no-op.

        Raises:
            PoolSizeError: ``target`` is below 1 or over ``pool.max_size``.
        """
        return await _scaling.resize(self._scaling, target, self.scale_up, self.scale_down)

    # --- workers and their supervision --------------------------------------------------

    def _give_up(self) -> None:
        """The workers crashed past the restart intensity: the pool ends (once)."""
        if self._ending == "stopped":
            self._ending = "supervisor gave up"
            self._loop_task(self.stop())

    def _loop_task(self, coroutine: Any) -> None:
        assert self._loop is not None
        task = self._loop.create_task(coroutine)
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    def _abandoned(self) -> None:
        """The loop cancelled a worker of a pool nobody stopped (the loop is closing)."""
        if self.ended is None:
            self.ended = "its event loop closed"
            self._registry.set_lifecycle("stopped")
            warnings.warn(
                f"grpcpool.aio.Pool {self.name!r} was never stopped and its event loop is "
                "closing: use 'async with' or 'await pool.stop()'",
                ResourceWarning,
                stacklevel=1,
            )
            release_aio(self, self.ended or "stopped")

    def _poke_balancer(self) -> None:
        # After the publish: the balancer looks at the new view.
        if self._balancer is not None:
            self._balancer.poke()

    # --- loop discipline ------------------------------------------------------------------

    def _check_loop(self) -> None:
        if self._loop is not None and running_loop() is not self._loop:
            raise self._wrong_loop(running_loop())

    def _check_running(self) -> None:
        self._check_loop()
        if self._loop is None or self.ended is not None:
            raise PoolNotFoundError(self.name, self.ended)

    def _wrong_loop(self, loop: asyncio.AbstractEventLoop | None) -> GrpcPoolError:
        if self._loop is None:
            return PoolNotFoundError(self.name, self.ended)
        where = (
            "outside any event loop (another thread?)" if loop is None else "on another event loop"
        )
        return GrpcPoolError(
            f"pool {self.name!r} belongs to the event loop it was started on and was used "
            f"{where}; grpc.aio channels cannot move between loops: start a pool per loop"
        )

    def __del__(self) -> None:
        # A Pool refused by __init__ has none of these.
        started = getattr(self, "_loop", None) is not None
        workers = getattr(self, "_workers", None)
        if started and self.ended is None and workers is not None and not workers.stopping:
            warnings.warn(
                f"grpcpool.aio.Pool {self.name!r} was never stopped: use 'async with' "
                "or 'await pool.stop()'",
                ResourceWarning,
                stacklevel=2,
            )

    def __repr__(self) -> str:
        view = self._registry.view
        state = (self.ended and "ended") or view.lifecycle
        return (
            f"<grpcpool.aio.Pool {self.name!r} {state} "
            f"{len(view.channels)}/{view.expected_size} ready>"
        )
