"""One connection of an asyncio pool: a task driving the worker state machine.

The decisions are the sync pool's: :func:`grpcpool.connection.step` is the
same pure machine the sync ``ChannelWorker`` actor drives. Only the effects
are run differently, on the event loop and without a thread: connectivity
comes from ``grpc.aio.Channel.wait_for_state_change`` (grpcio's completion
queue, no poll thread), health checks are awaited calls, delays are
``loop.call_later`` callbacks, and a report updates the pool's view at once
(the pool and its workers share one thread, the loop's, so a report is
acted on before the next line runs).

Events reach the machine through one queue per worker; each is tagged with
the generation of the channel or timer it is about, so news about a channel
the machine has moved past is dropped, as in the sync worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

import grpc

from grpcpool.connection import _machine_types as machine
from grpcpool.connection import channel_credentials, channel_options
from grpcpool.connection._announce import announce
from grpcpool.connection._calls import CallLedger
from grpcpool.connection._driving import carry_out
from grpcpool.connection._health import aio_health_check_method, check_verdict
from grpcpool.connection._machine import step, takes_repin
from grpcpool.connection._machine_types import Emit, Event, Log, Report
from grpcpool.connection.health import health_pb2
from grpcpool.tasks._parts import WorkerLinks

__all__ = ["Worker"]

_log = logging.getLogger(__name__)


class Worker:
    """Keeps one channel of an asyncio pool connected, checked and reconnected.

    Args:
        pool: What it may use of the pool it belongs to (same loop).
        worker_id: Stable id within the pool.
        address: The resolved address it connects to, or None for host:port.
    """

    def __init__(self, pool: WorkerLinks, worker_id: str, address: str | None) -> None:
        self.pool = pool
        self.worker_id = worker_id
        self.address = address
        self._config = pool.config.connection
        self._state = machine.initial_state(self._config)
        self._events: asyncio.Queue[Event] = asyncio.Queue()
        self._channel: grpc.aio.Channel | None = None
        # The calls in flight on _channel through the pool channel.
        self._ledger = CallLedger()
        self._watch: asyncio.Task[None] | None = None
        self._timers: set[asyncio.TimerHandle] = set()
        self._checks: set[asyncio.Task[None]] = set()

    @property
    def phase(self) -> str:
        return self._state.phase

    async def run(self) -> None:
        """Runs the machine until it stops (a ``Stop`` event), then lets go of everything.

        Cancelled (the loop is closing under a pool nobody stopped), it closes
        its channel before it ends: a task created now might never run.
        """
        try:
            # With a resolver of its own the pool never connects to
            # host:port: a worker started before the first answer waits.
            waits = self.address is None and self.pool.config.endpoint.resolver is not None
            self._step(machine.Start(await_address=waits))
            while self._state.phase != "stopped":
                self._step(await self._events.get())
        except asyncio.CancelledError:
            channel, self._channel = self._channel, None
            if channel is not None:
                self.pool.channels.forget(channel)
                with contextlib.suppress(Exception):
                    await channel.close()
            # The traceback the cancellation carries holds this frame: drop
            # the channel from it, or it stays alive until the cycle collector.
            channel = None
            raise
        finally:
            self._let_go_now()

    def tell(self, event: Event) -> None:
        """Queues ``event`` for the machine (loop thread only)."""
        self._events.put_nowait(event)

    # --- running the machine ------------------------------------------------------

    def _step(self, event: Event) -> None:
        if isinstance(event, machine.Repin) and takes_repin(self._state):
            self.address = event.address
        self._state, effects = step(self._state, event, time.monotonic())
        carry_out(self, effects)

    # --- the WorkerDriver methods (connection._driving) ---------------------------------

    def schedule(self, delay: float, event: Event) -> None:
        loop = asyncio.get_running_loop()
        self._timers = {t for t in self._timers if not t.cancelled()}
        self._timers.add(loop.call_later(delay, self.tell, event))

    def cancel_timers(self) -> None:
        for timer in self._timers:
            timer.cancel()
        self._timers.clear()

    def report(self, effect: Report) -> None:
        ready = effect.ready and self._channel is not None
        self.pool.records.report(
            self,
            effect,
            channel=self._channel if ready else None,
            suspect=self._suspect(self._state.generation) if ready else None,
            ledger=self._ledger if ready else None,
        )

    def announce(self, effect: Emit | Log) -> None:
        announce(effect, self.pool.name, self.worker_id, _log)

    def _suspect(self, generation: int) -> Callable[[], None]:
        return lambda: self.tell(machine.CheckRequested(generation))

    # --- channels -----------------------------------------------------------------

    def open_channel(self, generation: int) -> None:
        config = self.pool.config
        options = channel_options(config, self.address)
        credentials = channel_credentials(config)
        target = self.address or config.endpoint.target
        # The pool refused sync interceptors: these are grpc.aio's, or none.
        interceptors = config.endpoint.interceptors or None
        if credentials is None:
            self._channel = grpc.aio.insecure_channel(
                target, options=options, interceptors=interceptors
            )
        else:
            self._channel = grpc.aio.secure_channel(
                target, credentials, options=options, interceptors=interceptors
            )
        self._ledger = CallLedger()
        self.pool.channels.opened(self._channel)
        self.watch_channel(generation)

    def watch_channel(self, generation: int) -> None:
        if self._watch is not None:
            self._watch.cancel()
        channel = self._channel
        assert channel is not None, "a watch needs a channel"
        self._watch = asyncio.get_running_loop().create_task(
            self._follow(channel, generation), name=f"grpcpool-watch-{self.worker_id}"
        )

    async def _follow(self, channel: grpc.aio.Channel, generation: int) -> None:
        """Tells the machine each connectivity state of ``channel`` (the state as it is first)."""
        state = channel.get_state(try_to_connect=True)
        while True:
            self.tell(machine.Connectivity(generation, state))
            if state is grpc.ChannelConnectivity.SHUTDOWN:
                return
            await channel.wait_for_state_change(state)
            state = channel.get_state(try_to_connect=False)

    def release_channel(self, *, drain: bool) -> None:
        if self._watch is not None:
            self._watch.cancel()
            self._watch = None
        channel, self._channel = self._channel, None
        if channel is not None:
            self.pool.channels.retire(channel, self._ledger, drain=drain)

    def _let_go_now(self) -> None:
        """The task ends (stopped, crashed or cancelled): nothing of this worker stays."""
        for timer in self._timers:
            timer.cancel()
        self._timers.clear()
        for check in self._checks:
            check.cancel()
        self.release_channel(drain=True)
        self.pool.records.gone(self)

    # --- health checks ----------------------------------------------------------------

    def start_check(self, generation: int, timeout: float) -> None:
        channel = self._channel
        assert channel is not None, "a check needs a channel"
        check = asyncio.get_running_loop().create_task(self._check(channel, generation, timeout))
        self._checks.add(check)
        check.add_done_callback(self._checks.discard)

    async def _check(self, channel: grpc.aio.Channel, generation: int, timeout: float) -> None:
        started = time.monotonic()
        check = aio_health_check_method(channel)
        request = health_pb2.HealthCheckRequest(service=self._config.health_service)
        # Only the verdict's text is kept: holding the exception would tie this
        # frame (and the channel) into a cycle that outlives the pool's stop.
        try:
            response = await check(request, timeout=timeout)
            verdict = check_verdict(None, response.status)
        except asyncio.CancelledError:
            raise
        except Exception as error:  # any failure is the check's answer
            verdict = check_verdict(error, None)
        self.tell(machine.CheckDone(generation, started, verdict))

    def __repr__(self) -> str:
        return f"<aio Worker {self.pool.name!r}/{self.worker_id} {self._state.phase}>"
