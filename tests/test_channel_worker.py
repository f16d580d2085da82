"""Tests for grpcpool.actors._channel_worker: real ChannelWorker actors against
real grpcio servers on 127.0.0.1, each reporting to a real HealthRegistry.

A worker is started here without a pool supervisor: the test plays the
supervisor's part (starts the registry first, watches the worker's exit, stops
everything in reverse order).
"""

from __future__ import annotations

import collections
import itertools
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import grpc
import pykka
import pytest

from grpcpool import Config
from grpcpool._channels import open_channel_count
from grpcpool._pool_state import PoolState
from grpcpool.actors._channel_worker import ChannelWorker, ReconnectLimitError
from grpcpool.actors._health_registry import HealthRegistry, WorkerGone
from grpcpool.actors._worker_messages import _Connectivity
from grpcpool.supervisor import ExitReason, watch_exit
from grpcpool.supervisor._exit import ExitWatch
from tests.conftest import EventLog, free_port, wait_until
from tests.servers import EchoServer, EchoStub

_names = itertools.count(1)


def config(
    port: int,
    interceptors: tuple[Any, ...] = (),
    options: tuple[tuple[str, Any], ...] = (),
    **connection: Any,
) -> Config:
    """Plaintext to 127.0.0.1 with quick backoff; channels close at once when let go."""
    settings: dict[str, Any] = {
        "backoff_min": 0.05,
        "backoff_max": 0.1,
        "connect_timeout": 2.0,
        "drain_timeout": 0.0,
    }
    settings.update(connection)
    return Config.new(
        endpoint={
            "type": "local",
            "host": "127.0.0.1",
            "port": port,
            "interceptors": interceptors,
            "options": options,
        },
        connection=settings,
    )


@dataclass
class Running:
    """One worker under test, with its pool state and registry."""

    pool: PoolState
    registry: pykka.ActorRef[Any]
    worker: pykka.ActorRef[Any]
    watch: ExitWatch
    exits: list[ExitReason] = field(default_factory=list)
    ended: threading.Event = field(default_factory=threading.Event)

    def wait_ended(self, timeout: float = 10.0) -> ExitReason:
        """Waits for the worker to end and its thread to finish; returns why it ended."""
        assert self.ended.wait(timeout), "worker did not end"
        assert self.watch.join(timeout), "worker thread did not finish"
        return self.exits[0]


@contextmanager
def running_worker(
    cfg: Config,
    registry_class: type[HealthRegistry] = HealthRegistry,
    worker_class: type[ChannelWorker] = ChannelWorker,
) -> Iterator[Running]:
    """Starts a registry and one worker ("worker-1"); stops both (and the pool) afterwards."""
    pool = PoolState(f"worker-test-{next(_names)}", cfg)
    registry = registry_class.start(pool)
    pool.registry = registry  # as HealthRegistry.on_start does, before any worker starts
    worker = None
    try:
        worker = worker_class.start(pool, "worker-1")
        exits: list[ExitReason] = []
        ended = threading.Event()

        def on_exit(reason: ExitReason) -> None:
            exits.append(reason)
            ended.set()

        watch = watch_exit(worker, on_exit)
        yield Running(pool, registry, worker, watch, exits, ended)
    finally:
        if worker is not None:
            worker.stop(timeout=10)
            watch.join(10)
        pool.close()
        registry.stop(timeout=10)


class SilentListener:
    """A TCP listener on 127.0.0.1 that accepts connections and never speaks HTTP/2."""

    def __init__(self) -> None:
        self._socket = socket.create_server(("127.0.0.1", 0))
        self._socket.settimeout(0.05)
        self.port: int = self._socket.getsockname()[1]
        self.connections: list[socket.socket] = []
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._accept, name="silent-listener")
        self._thread.start()

    def _accept(self) -> None:
        while not self._stopping.is_set():
            try:
                connection, _ = self._socket.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.connections.append(connection)  # held open, never answered

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(5)
        self._socket.close()
        for connection in self.connections:
            connection.close()


@pytest.fixture
def silent_listener() -> Iterator[SilentListener]:
    listener = SilentListener()
    try:
        yield listener
    finally:
        listener.stop()


class _CallDetails(
    collections.namedtuple(
        "_CallDetails",
        ("method", "timeout", "metadata", "credentials", "wait_for_ready", "compression"),
    ),
    grpc.ClientCallDetails,
):
    pass


class AddMetadata(grpc.UnaryUnaryClientInterceptor):
    """Adds ``x-grpcpool-test: yes`` to every unary call and records the methods."""

    def __init__(self) -> None:
        self.methods: list[str] = []

    def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        self.methods.append(details.method)
        metadata = [*(details.metadata or ()), ("x-grpcpool-test", "yes")]
        return continuation(
            _CallDetails(
                details.method,
                details.timeout,
                metadata,
                details.credentials,
                details.wait_for_ready,
                details.compression,
            ),
            request,
        )


class InspectableWorker(ChannelWorker):
    """A ChannelWorker that tells its channel generation through its proxy."""

    def generation(self) -> int:
        return self._generation


class RecordingRegistry(HealthRegistry):
    """A HealthRegistry that notes what it saw when a WorkerGone arrived."""

    def __init__(self, pool: PoolState) -> None:
        super().__init__(pool)
        self.gone: list[dict[str, int]] = []

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, WorkerGone):
            self.gone.append(
                {"open_channels": open_channel_count(), "ready_before": len(self._pool.snapshot)}
            )
        return super().on_receive(message)


# --- connecting ---------------------------------------------------------------------


def test_connects_reports_ready_and_fires_connected(
    echo_server: EchoServer, events: EventLog
) -> None:
    """A worker connects, its channel enters the snapshot and channel.connected has a duration."""
    with running_worker(config(echo_server.port)) as run:
        assert wait_until(lambda: events.of("channel.connected"), timeout=10)
        pool = run.pool

        (sender, measurements, metadata) = events.of("channel.connected")[0]
        assert sender == pool.name
        assert metadata == {"pool_name": pool.name, "worker_id": "worker-1"}
        assert 0 < measurements["duration"] < 2.0
        # The registry publishes on its own thread, just after the event.
        assert wait_until(lambda: len(pool.snapshot) == 1, timeout=5)
        (record,) = pool.workers
        assert (record.worker_id, record.state) == ("worker-1", "ready")
        assert record.peer == f"127.0.0.1:{echo_server.port}"
        assert EchoStub(pool.get_channel()).Unary(b"hello", timeout=5) == b"hello"
        assert open_channel_count() == 1
        assert events.of("channel.connection_failed") == []


def test_connect_timeout_fails_the_attempt_and_schedules_a_reconnect(
    silent_listener: SilentListener, events: EventLog
) -> None:
    """A peer that accepts TCP but never speaks HTTP/2 fails the attempt at connect_timeout."""
    cfg = config(
        silent_listener.port,
        connect_timeout=0.3,
        max_reconnect_attempts=5,
    )
    with running_worker(cfg) as run:
        assert wait_until(lambda: events.of("channel.reconnect_scheduled"), timeout=10)

        (_, failed, failed_meta) = events.of("channel.connection_failed")[0]
        assert "0.3" in failed_meta["error"]
        assert "within" in failed_meta["error"]
        assert 0.25 <= failed["duration"] < 3.0
        (_, scheduled, scheduled_meta) = events.of("channel.reconnect_scheduled")[0]
        assert scheduled["attempt"] == 1
        assert 50 <= scheduled["delay_ms"] <= 100
        assert scheduled_meta["reason"] == failed_meta["error"]
        assert silent_listener.connections, "the worker never reached the listener"
        assert run.pool.snapshot == ()
        assert run.worker.is_alive()


def test_max_reconnect_attempts_consecutive_failures_crash_the_worker(events: EventLog) -> None:
    """After max_reconnect_attempts failed connects in a row the worker ends with ReconnectLimitError."""
    cfg = config(free_port(), max_reconnect_attempts=3)
    with running_worker(cfg) as run:
        reason = run.wait_ended()

        assert reason.known
        assert isinstance(reason.error, ReconnectLimitError)
        assert run.pool.name in str(reason.error)
        assert "3 connection attempts failed in a row" in str(reason.error)
        assert not run.worker.is_alive()
        assert len(events.of("channel.connection_failed")) == 3
        assert [m["attempt"] for _, m, _ in events.of("channel.reconnect_scheduled")] == [1, 2]
        assert all(meta["error"] for _, _, meta in events.of("channel.connection_failed"))
        assert run.pool.workers == ()  # WorkerGone reached the registry
        assert open_channel_count() == 0


# --- the handed-out channel ---------------------------------------------------------


def test_endpoint_interceptors_apply_to_calls_on_the_handed_out_channel(
    echo_server: EchoServer,
) -> None:
    """endpoint.interceptors wrap the channel in the snapshot: calls carry their metadata."""
    interceptor = AddMetadata()
    with running_worker(config(echo_server.port, interceptors=(interceptor,))) as run:
        assert run.pool.wait_ready(1, timeout=10)

        assert EchoStub(run.pool.get_channel()).Unary(b"x", timeout=5) == b"x"

        assert ("x-grpcpool-test", "yes") in echo_server.metadata[-1]
        assert interceptor.methods[-1] == "/test.Echo/Unary"


# --- stopping and crashing ----------------------------------------------------------


def test_stop_leaves_the_registry_before_closing_the_channel(echo_server: EchoServer) -> None:
    """On stop, WorkerGone reaches the registry while the channel is still open; then it closes."""
    with running_worker(config(echo_server.port), registry_class=RecordingRegistry) as run:
        assert run.pool.wait_ready(1, timeout=10)
        assert open_channel_count() == 1

        assert run.worker.stop(timeout=10) is True

        assert open_channel_count() == 0  # closed by the time stop returns
        assert run.pool.snapshot == ()
        assert run.pool.workers == ()
        gone = run.registry.proxy().gone.get(timeout=5)
        assert gone == [{"open_channels": 1, "ready_before": 1}]
        assert run.wait_ended().normal


def test_stopped_worker_channel_drains_until_the_pool_closes(echo_server: EchoServer) -> None:
    """With a drain period, a stopped worker's channel stays open until its pool closes."""
    with running_worker(config(echo_server.port, drain_timeout=30.0)) as run:
        assert run.pool.wait_ready(1, timeout=10)

        run.worker.stop(timeout=10)
        assert run.pool.snapshot == ()
        assert open_channel_count() == 1

        run.pool.close()
        assert open_channel_count() == 0


def test_unknown_message_crashes_the_worker_with_type_error(echo_server: EchoServer) -> None:
    """A message the worker does not know ends it with TypeError, and it leaves the pool."""
    with running_worker(config(echo_server.port)) as run:
        assert run.pool.wait_ready(1, timeout=10)

        run.worker.tell("not a worker message")
        reason = run.wait_ended()

        assert isinstance(reason.error, TypeError)
        assert "not a worker message" in str(reason.error)
        assert run.pool.snapshot == ()
        assert run.pool.workers == ()
        assert open_channel_count() == 0


def test_message_about_an_old_channel_generation_is_ignored(
    echo_server: EchoServer, events: EventLog
) -> None:
    """A connectivity change tagged with an old generation does not touch the current channel."""
    with running_worker(config(echo_server.port), worker_class=InspectableWorker) as run:
        assert run.pool.wait_ready(1, timeout=10)
        channel = run.pool.snapshot[0]
        current = run.worker.proxy().generation().get(timeout=5)

        run.worker.tell(_Connectivity(current - 1, grpc.ChannelConnectivity.IDLE))
        run.worker.ask(_Connectivity(current - 1, grpc.ChannelConnectivity.SHUTDOWN), timeout=5)

        assert run.pool.snapshot == (channel,)
        assert events.of("channel.connection_down") == []

        # The same change with the current generation is acted on.
        run.worker.tell(_Connectivity(current, grpc.ChannelConnectivity.IDLE))
        assert wait_until(lambda: events.of("channel.connection_down"), timeout=5)
        assert events.of("channel.connection_down")[0][2]["reason"] == "idle"
        assert channel not in run.pool.snapshot


def test_connect_timeout_bounds_a_slow_handshake_not_backoff_min(
    silent_listener: SilentListener, events: EventLog
) -> None:
    """A handshake slower than backoff_min but within connect_timeout is not cut short."""
    cfg = config(silent_listener.port, connect_timeout=1.0, max_reconnect_attempts=5)
    with running_worker(cfg):
        assert wait_until(lambda: events.of("channel.connection_failed"), timeout=10)

        (_, failed, failed_meta) = events.of("channel.connection_failed")[0]
        assert failed["duration"] >= 0.9, failed_meta["error"]
