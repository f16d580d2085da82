"""ChannelWorker: one gRPC channel of a pool, kept connected.

What a worker decides lives in :mod:`grpcpool.connection._machine`, a pure
state machine; this actor only feeds it events and runs the effects it asks
for. Nothing here blocks the actor's thread for long: connectivity comes from
the process's watcher thread, health checks are future calls, and delays are
timer messages. Those callbacks run on other threads and only ``tell`` this
actor an event tagged with the channel's generation, so news about a channel
the machine has moved past is recognised and dropped. The machine's state is
touched on the actor's thread only.

A channel that was handed out leaves the pool's view (a synchronous report to
the HealthRegistry) before it is released or reconnects, so ``get_channel``
never hands out a channel after this worker has let go of it; and it enters
the view (synchronously too) before ``channel.connected`` fires.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import time
from collections.abc import Callable
from types import TracebackType
from typing import TYPE_CHECKING, Any

import grpc
import pykka

from grpcpool.actors._parts import send_to_registry
from grpcpool.connection._announce import announce
from grpcpool.connection._driving import carry_out
from grpcpool.connection._health import check_error, start_check
from grpcpool.connection._machine import step, takes_repin
from grpcpool.connection._machine_types import (
    CheckDone,
    CheckRequested,
    Connectivity,
    Emit,
    Event,
    Log,
    Repin,
    Report,
    Resync,
    Start,
    Stop,
    initial_state,
)
from grpcpool.connection._watcher import ConnectivityCallback, watch
from grpcpool.core._reports import WorkerGone, WorkerReport
from grpcpool.errors import GrpcPoolError
from grpcpool.supervisor import SupervisedActor, TimerHandle, send_after

if TYPE_CHECKING:
    from grpcpool.actors._parts import PoolParts
    from grpcpool.connection import Connection
    from grpcpool.connection.health.health_pb2 import HealthCheckResponse

__all__ = ["ChannelWorker", "ReconnectLimitError", "Resync"]

_log = logging.getLogger(__name__)


class ReconnectLimitError(GrpcPoolError):
    """Formerly raised by a worker that failed to connect too many times in a row.

    Nothing raises it any more: an outage never ends a worker, which logs one
    line on reaching ``connection.max_reconnect_attempts`` and keeps
    retrying. It stays importable so that code catching it still runs.
    """


class ChannelWorker(SupervisedActor):
    """Owns one channel of a pool: connects it, watches it, pings it, reconnects it.

    Args:
        parts: The pieces of the pool incarnation the worker belongs to.
        worker_id: Stable id within the pool, kept across restarts.
        address: The resolved address (``"ip:port"``) its channels connect
            to, or None for ``host:port`` through grpcio's own resolution.
    """

    def __init__(self, parts: PoolParts, worker_id: str, address: str | None = None) -> None:
        super().__init__()
        self._parts = parts
        self._worker_id = worker_id
        self._address = address
        self._connection_config = parts.config.connection
        self._state = initial_state(self._connection_config)
        self._connection: Connection | None = None
        self._timers: set[TimerHandle] = set()
        self._gone = False

    # --- actor hooks ------------------------------------------------------------------

    def on_start(self) -> None:
        # With a resolver of its own the pool never connects to host:port:
        # a worker started before its first answer waits for an address.
        waits = self._address is None and self._parts.config.endpoint.resolver is not None
        self._step(Start(await_address=waits))

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, Repin) and takes_repin(self._state):
            self._address = message.address
        if not isinstance(message, Event):
            # Let it crash: an unknown message is a bug, and the supervisor
            # restarts this worker with a clean slate.
            raise TypeError(f"{self!r} got an unexpected message: {message!r}")
        self._step(message)
        return None

    def on_stop(self) -> None:
        self._shut_down()

    def _handle_failure(
        self,
        exception_type: type[BaseException] | None,
        exception_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        # pykka calls this for an exception in on_start as well as in a
        # message (on_failure only sees the latter). Leaving the registry and
        # letting go of the channel first means the supervisor hears of the
        # end only once both are done.
        try:
            self._shut_down()
        except Exception:
            _log.exception("%r did not shut down cleanly", self)
        super()._handle_failure(exception_type, exception_value, traceback)

    def __repr__(self) -> str:
        return f"<ChannelWorker {self._parts.name!r}/{self._worker_id} {self._state.phase}>"

    # --- running the machine ----------------------------------------------------------

    def _step(self, event: Event) -> None:
        self._state, effects = step(self._state, event, time.monotonic())
        carry_out(self, effects)

    # --- the WorkerDriver methods (connection._driving) ---------------------------------

    def schedule(self, delay: float, event: Event) -> None:
        self._timers = {timer for timer in self._timers if not timer.done}
        self._timers.add(send_after(delay, self.actor_ref, event))

    def announce(self, effect: Emit | Log) -> None:
        announce(effect, self._parts.name, self._worker_id, _log)

    def open_channel(self, generation: int) -> None:
        self._connection = self._parts.channels.open(self._on_state(generation), self._address)

    def watch_channel(self, generation: int) -> None:
        """Watches the same channel under a new generation; the old watch's news is stale."""
        connection = self._connection
        assert connection is not None, "a reconnect needs a channel"
        connection.watch.cancel()
        # The new watch reports the channel's state as it is first, so no
        # change between the two watches is missed.
        renewed = watch(connection.raw, self._on_state(generation), try_to_connect=True)
        self._connection = dataclasses.replace(connection, watch=renewed)

    def _on_state(self, generation: int) -> ConnectivityCallback:
        """The connectivity callback for the channel of ``generation`` (runs on the watcher)."""
        me = self.actor_ref

        def on_state(state: grpc.ChannelConnectivity) -> None:
            with contextlib.suppress(pykka.ActorDeadError):
                me.tell(Connectivity(generation, state))

        return on_state

    def release_channel(self, *, drain: bool) -> None:
        """Retires the channel (it closes when its last call ends) or closes it now."""
        connection, self._connection = self._connection, None
        if connection is None:
            return
        if drain:
            # Read after the channel left the view: a get_channel that could
            # still hand it out has set the flag by now.
            handed_out = self._parts.entry.raw_handed_out
            self._parts.channels.retire(connection, handed_out=handed_out)
        else:
            self._parts.channels.close(connection)

    def start_check(self, generation: int, timeout: float) -> None:
        connection = self._connection
        assert connection is not None, "a check needs a channel"
        me = self.actor_ref
        started = time.monotonic()

        def on_done(call: grpc.Future[HealthCheckResponse]) -> None:
            try:
                error = check_error(call)
            except Exception as exc:  # a surprise must still end the check
                error = f"{type(exc).__name__}: {exc}"
            with contextlib.suppress(pykka.ActorDeadError):
                me.tell(CheckDone(generation, started, error))

        start_check(connection.channel, self._connection_config.health_service, timeout, on_done)

    def report(self, effect: Report) -> None:
        connection = self._connection if effect.ready else None
        channel = connection.channel if connection is not None else None
        report = WorkerReport(
            worker_id=self._worker_id,
            urn=self.actor_urn,
            state=effect.state,
            reconnect_attempt=effect.reconnect_attempt,
            last_error=effect.last_error,
            channel=channel,
            peer=(self._address or self._parts.config.endpoint.target) if channel else None,
            address=self._address,
            suspect=self._on_unavailable(self._state.generation) if channel is not None else None,
            ledger=connection.ledger if connection is not None else None,
            on_last_call=connection.on_last_call if connection is not None else None,
        )
        send_to_registry(self._parts.registry, report, sync=effect.sync)

    def _on_unavailable(self, generation: int) -> Callable[[], None]:
        """Asks this worker to check the channel of ``generation`` (runs on a caller's thread)."""
        me = self.actor_ref

        def suspect() -> None:
            with contextlib.suppress(pykka.ActorDeadError):
                me.tell(CheckRequested(generation))

        return suspect

    def cancel_timers(self) -> None:
        for timer in self._timers:
            timer.cancel()
        self._timers.clear()

    def _shut_down(self) -> None:
        """Leaves the registry, then cancels timers and lets go of the channel. Idempotent.

        The channel is retired, not closed: a worker stopped by scaling down,
        a move or the pool's stop lets the calls running on it finish.
        """
        if self._gone:
            return
        self._gone = True
        try:
            gone = WorkerGone(self._worker_id, self.actor_urn)
            send_to_registry(self._parts.registry, gone, sync=True)
        finally:
            try:
                self._step(Stop())
            finally:
                self.cancel_timers()
                self.release_channel(drain=True)
