"""ChannelWorker: one gRPC channel, kept connected.

A worker's life is a loop of four states::

    connecting --READY (and healthy)--> ready --left READY / ping failed--> backoff
        |                                                                      |
        +--failed / timed out--> backoff --delay elapsed--> connecting <-------+

Nothing here blocks the actor's thread: connecting is a connectivity
subscription plus a timeout message, pings are future calls, and delays are
timer messages. grpcio runs the subscription callbacks and call callbacks on
its own threads; they only ``tell`` this actor a message tagged with the
channel's generation, so a late callback about a channel already closed is
recognised and dropped. All state is touched on the actor's thread only.

A channel is removed from the pool's snapshot (an ``ask`` to the
HealthRegistry) before it is closed, so ``get_channel`` never hands out a
channel after this worker has closed it.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any

import grpc
import pykka
from grpc_health.v1 import health_pb2, health_pb2_grpc

from grpcpool import telemetry
from grpcpool._channels import close_channel, open_channel
from grpcpool._pool_state import PoolState
from grpcpool.actors._health_registry import WorkerGone, WorkerReport, send_to_registry
from grpcpool.actors._worker_messages import (
    Resync,
    _Connectivity,
    _ConnectTimeout,
    _Ping,
    _PingDone,
    _Reconnect,
    check_error,
)
from grpcpool.backoff import Backoff
from grpcpool.errors import GrpcPoolError
from grpcpool.supervisor import SupervisedActor, TimerHandle, send_after

__all__ = ["ChannelWorker", "ReconnectLimitError", "Resync"]

_log = logging.getLogger(__name__)

# A connectivity callback as given to grpc.Channel.subscribe.
Subscription = Callable[[grpc.ChannelConnectivity], None]


class ReconnectLimitError(GrpcPoolError):
    """A worker failed to connect too many times in a row and crashes on purpose."""


class ChannelWorker(SupervisedActor):
    """Owns one channel of a pool: connects it, watches it, pings it, reconnects it.

    Args:
        pool: The shared state of the pool the worker belongs to.
        worker_id: Stable id within the pool, kept across restarts.
    """

    def __init__(self, pool: PoolState, worker_id: str) -> None:
        super().__init__()
        self._pool = pool
        self._config = pool.config
        self._connection = pool.config.connection
        self._worker_id = worker_id
        self._metadata = {"pool_name": pool.name, "worker_id": worker_id}
        self._backoff = Backoff(self._connection.backoff_min, self._connection.backoff_max)
        self._state = "connecting"
        self._generation = 0
        self._raw_channel: grpc.Channel | None = None
        self._channel: grpc.Channel | None = None
        self._attempt_started = 0.0
        self._ready_since = 0.0
        self._last_error: str | None = None
        self._timers: set[TimerHandle] = set()
        self._check_in_flight = False
        self._subscription: Subscription | None = None
        # Connects that failed in a row (a drop before them is not one).
        self._failed_connects = 0

    # --- actor hooks ----------------------------------------------------------

    def on_start(self) -> None:
        self._connect()

    def on_receive(self, message: Any) -> Any:
        if getattr(message, "generation", self._generation) != self._generation:
            return None  # about a channel this worker has already closed
        if isinstance(message, _Connectivity):
            self._on_connectivity(message.state)
        elif isinstance(message, _ConnectTimeout):
            if self._state == "connecting":
                self._connect_failed(f"not ready within {self._connection.connect_timeout}s")
        elif isinstance(message, _Reconnect):
            if self._state == "backoff":
                self._connect()
        elif isinstance(message, _Ping):
            if self._state == "ready":
                self._start_check()
        elif isinstance(message, _PingDone):
            self._on_check_done(message)
        elif isinstance(message, Resync):
            self._report(self._state)
        else:
            # Let it crash: an unknown message is a bug, and the supervisor
            # restarts this worker with a clean slate.
            raise TypeError(f"{self!r} got an unexpected message: {message!r}")
        return None

    def on_stop(self) -> None:
        self._shut_down()

    def on_failure(
        self,
        exception_type: type[BaseException] | None,
        exception_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._shut_down()

    def _handle_failure(
        self,
        exception_type: type[BaseException] | None,
        exception_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        # An exception in on_start never reaches on_failure; clean up here
        # too (idempotent) so the channel does not outlive the worker.
        super()._handle_failure(exception_type, exception_value, traceback)
        if self._raw_channel is not None and self._state == "connecting":
            self._shut_down()

    def __repr__(self) -> str:
        return f"<ChannelWorker {self._pool.name!r}/{self._worker_id} {self._state}>"

    # --- connecting -----------------------------------------------------------

    def _connect(self) -> None:
        self._generation += 1
        generation = self._generation
        self._state = "connecting"
        self._attempt_started = time.monotonic()
        raw, self._channel = open_channel(self._config)
        self._raw_channel = raw
        self._report("connecting")
        me = self.actor_ref

        def on_connectivity(state: grpc.ChannelConnectivity) -> None:
            with contextlib.suppress(pykka.ActorDeadError):
                me.tell(_Connectivity(generation, state))

        self._subscription = on_connectivity
        raw.subscribe(on_connectivity, try_to_connect=True)
        self._schedule(self._connection.connect_timeout, _ConnectTimeout(generation))

    def _on_connectivity(self, state: grpc.ChannelConnectivity) -> None:
        if self._state == "connecting":
            if state is grpc.ChannelConnectivity.READY:
                if self._connection.health_check:
                    self._start_check()  # ready only once the server says so
                else:
                    self._connected()
            elif state is grpc.ChannelConnectivity.TRANSIENT_FAILURE:
                # Connectivity says only "failed"; one call on the channel
                # fails at once with grpcio's reason (refused, TLS handshake,
                # ...), which makes connection_failed worth reading.
                self._start_check(probe=True)
        elif self._state == "ready" and state is not grpc.ChannelConnectivity.READY:
            self._connection_lost(state.name.lower())

    def _connected(self) -> None:
        now = time.monotonic()
        if self._backoff.attempt > 0:
            _log.info(
                "pool %r %s: connected after %d retries",
                self._pool.name,
                self._worker_id,
                self._backoff.attempt,
            )
        self._state = "ready"
        self._ready_since = now
        self._backoff = self._backoff.succeed()
        self._failed_connects = 0
        self._last_error = None
        self._cancel_timers()
        self._report("ready")
        telemetry.emit(
            telemetry.channel_connected,
            self._pool.name,
            {"duration": now - self._attempt_started},
            dict(self._metadata),
        )
        if self._connection.ping_interval is not None:
            self._schedule(self._connection.ping_interval, _Ping(self._generation))

    def _connect_failed(self, error: str) -> None:
        duration = time.monotonic() - self._attempt_started
        self._last_error = error
        raw, subscription = self._detach_channel()
        telemetry.emit(
            telemetry.channel_connection_failed,
            self._pool.name,
            {"duration": duration},
            {**self._metadata, "error": error},
        )
        self._failed_connects += 1
        if self._failed_connects >= self._connection.max_reconnect_attempts:
            self._release_channel(raw, subscription, drain=False)
            # Raised from a told message: the worker ends abnormally and its
            # supervisor starts a fresh one (restart intensity applies).
            raise ReconnectLimitError(
                f"pool {self._pool.name!r} {self._worker_id}: "
                f"{self._failed_connects} connection attempts failed in a row; last: {error}"
            )
        # One line per outage, not one per retry: the first failure in a row
        # is logged, later ones only at debug (every one is still an event).
        self._log_connection_problem("connect failed: %s", error, quiet=self._backoff.attempt > 0)
        # Timed before the close, which can keep this thread for grpcio's
        # 0.2 s connectivity poll: the delay runs meanwhile, not after.
        self._schedule_reconnect(error)
        self._release_channel(raw, subscription, drain=False)

    # --- connected: watching and pinging ----------------------------------------

    def _connection_lost(self, reason: str, detail: str | None = None) -> None:
        connected_for = time.monotonic() - self._ready_since
        self._last_error = reason
        self._state = "backoff"
        self._report("backoff", sync=True)
        telemetry.emit(
            telemetry.channel_connection_down,
            self._pool.name,
            {},
            {**self._metadata, "reason": reason},
        )
        self._log_connection_problem(
            "connection down: %s", reason if detail is None else f"{reason} ({detail})"
        )
        telemetry.emit(
            telemetry.channel_disconnected,
            self._pool.name,
            {"duration": connected_for},
            {**self._metadata, "reason": reason},
        )
        self._close_channel(drain=True)
        self._schedule_reconnect(reason)

    def _start_check(self, *, probe: bool = False) -> None:
        """Checks the channel with a health call (or, without health checks,
        trusts connectivity). ``probe`` makes the call anyway, to learn why a
        connect failed."""
        channel = self._channel
        assert channel is not None
        started = time.monotonic()
        generation = self._generation
        if not probe and not self._connection.health_check:
            self._finish_check(started, None)
            return
        if self._check_in_flight:
            return
        self._check_in_flight = True
        stub = health_pb2_grpc.HealthStub(channel)
        request = health_pb2.HealthCheckRequest(service=self._connection.health_service)
        call = stub.Check.future(request, timeout=self._connection.connect_timeout)
        me = self.actor_ref

        def on_done(done: grpc.Future) -> None:
            with contextlib.suppress(pykka.ActorDeadError):
                me.tell(_PingDone(generation, started, done))

        call.add_done_callback(on_done)

    def _on_check_done(self, message: _PingDone) -> None:
        self._check_in_flight = False
        self._finish_check(message.started, check_error(message.call))

    def _finish_check(self, started: float, error: str | None) -> None:
        if self._state == "connecting":
            # The check that gates a fresh connection.
            if error is None:
                self._connected()
            else:
                self._connect_failed(error)
            return
        if self._state != "ready":
            return
        telemetry.emit(
            telemetry.channel_ping,
            self._pool.name,
            {"duration": time.monotonic() - started},
            {**self._metadata, "result": "ok" if error is None else "error"},
        )
        if error is not None:
            self._connection_lost("ping_failed", error)
        elif self._connection.ping_interval is not None:
            self._schedule(self._connection.ping_interval, _Ping(self._generation))

    # --- backing off ------------------------------------------------------------

    def _schedule_reconnect(self, reason: str) -> None:
        delay, self._backoff = self._backoff.fail()
        self._state = "backoff"
        self._report("backoff")
        telemetry.emit(
            telemetry.channel_reconnect_scheduled,
            self._pool.name,
            {"delay_ms": round(delay * 1000), "attempt": self._backoff.attempt},
            {**self._metadata, "reason": reason},
        )
        self._schedule(delay, _Reconnect(self._generation))

    # --- helpers ----------------------------------------------------------------

    def _report(self, state: Any, *, sync: bool = False) -> None:
        registry = self._pool.registry
        if registry is None:
            return
        ready = state == "ready"
        report = WorkerReport(
            worker_id=self._worker_id,
            urn=self.actor_urn,
            state=state,
            reconnect_attempt=self._backoff.attempt,
            last_error=self._last_error,
            channel=self._channel if ready else None,
            peer=self._config.endpoint.target if ready else None,
        )
        send_to_registry(registry, report, sync=sync)

    def _schedule(self, delay: float, message: Any) -> None:
        self._timers = {t for t in self._timers if not t.done}
        self._timers.add(send_after(delay, self.actor_ref, message))

    def _cancel_timers(self) -> None:
        for timer in self._timers:
            timer.cancel()
        self._timers.clear()

    def _close_channel(self, *, drain: bool = False) -> None:
        """Lets go of the current channel (see :meth:`_release_channel`)."""
        raw, subscription = self._detach_channel()
        self._release_channel(raw, subscription, drain=drain)

    def _detach_channel(self) -> tuple[grpc.Channel | None, Subscription | None]:
        """Forgets the current channel: timers cancelled, late callbacks now stale."""
        self._cancel_timers()
        raw, self._raw_channel, self._channel = self._raw_channel, None, None
        subscription, self._subscription = self._subscription, None
        self._check_in_flight = False
        self._generation += 1
        return raw, subscription

    def _release_channel(
        self, raw: grpc.Channel | None, subscription: Subscription | None, *, drain: bool
    ) -> None:
        """Unsubscribes from a detached channel and closes or retires it.

        With ``drain`` the channel is retired instead of closed: it has left
        the snapshot, but calls already running on it (say, during a server's
        graceful shutdown) get ``connection.drain_timeout`` seconds to finish
        before the pool closes it, because closing cancels them.
        """
        if raw is None:
            return
        if subscription is not None:
            raw.unsubscribe(subscription)
        if drain:
            self._pool.retire(raw, self._connection.drain_timeout)
        else:
            close_channel(raw)

    def _shut_down(self) -> None:
        """Leaves the snapshot, then cancels timers and closes the channel. Idempotent."""
        if self._state == "stopped":
            return
        self._state = "stopped"
        registry = self._pool.registry
        try:
            if registry is not None:
                send_to_registry(registry, WorkerGone(self._worker_id, self.actor_urn), sync=True)
        finally:
            # Scaling down or restarting: let running calls finish. The pool
            # closes every retired channel at once when it stops.
            self._close_channel(drain=not self._pool.closed)

    def _log_connection_problem(self, text: str, detail: str, *, quiet: bool = False) -> None:
        loud = not quiet and not self._connection.suppress_connection_errors
        level = logging.ERROR if loud else logging.DEBUG
        _log.log(level, "pool %r %s: " + text, self._pool.name, self._worker_id, detail)
