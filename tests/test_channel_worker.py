"""Tests for grpcpool.actors._channel_worker: real ChannelWorker actors against
real grpcio servers on 127.0.0.1, each reporting to a real HealthRegistry.

A worker is started here without a pool supervisor: tests/workers.py plays the
supervisor's part. What the worker decides is pinned in test_worker_machine.py;
these tests pin that the actor carries it out with real channels, calls,
timers and a real registry.
"""

from __future__ import annotations

import itertools
import logging
import threading
from collections.abc import Iterator
from typing import Any

import grpc
import pytest

from grpcpool.actors._channel_worker import ChannelWorker, Resync
from grpcpool.actors._health_registry import HealthRegistry
from grpcpool.actors._parts import PoolParts
from grpcpool.connection import open_channel_count
from grpcpool.connection._machine_types import Connectivity, ConnectTimeout, Event
from grpcpool.core._reports import WorkerGone, WorkerReport
from tests.events import EventLog
from tests.pools import free_port
from tests.servers import EchoServer, EchoStub
from tests.waiting import wait_until
from tests.workers import AddMetadata, SilentListener, running_worker, worker_config


@pytest.fixture
def silent_listener() -> Iterator[SilentListener]:
    """A peer that accepts TCP connections and never answers."""
    listener = SilentListener()
    try:
        yield listener
    finally:
        listener.stop()


class InspectableWorker(ChannelWorker):
    """A ChannelWorker that tells its channel generation through its proxy."""

    def generation(self) -> int:
        return self._state.generation


class FailingStartWorker(ChannelWorker):
    """A ChannelWorker whose start fails right after its channel is open."""

    def schedule(self, delay: float, event: Event) -> None:
        if isinstance(event, ConnectTimeout):
            raise RuntimeError("start failed on purpose")
        super().schedule(delay, event)


class RecordingRegistry(HealthRegistry):
    """A HealthRegistry that notes the reports it gets and what it saw when a WorkerGone arrived."""

    def __init__(self, parts: PoolParts) -> None:
        super().__init__(parts)
        self.gone: list[dict[str, int]] = []
        self.reports: list[WorkerReport] = []
        self._lock = threading.Lock()

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, WorkerGone):
            self.gone.append(
                {
                    "open_channels": open_channel_count(),
                    "ready_before": len(self._entry.view.channels),
                }
            )
        elif isinstance(message, WorkerReport):
            with self._lock:
                self.reports.append(message)
        return super().on_receive(message)

    def states(self) -> list[str]:
        """The states reported so far, in order."""
        with self._lock:
            return [report.state for report in self.reports]


def reported_states(registry: Any) -> list[str]:
    """The states a RecordingRegistry has heard of so far."""
    states: list[str] = registry.proxy().states().get(timeout=5)
    return states


# --- connecting ---------------------------------------------------------------------


def test_connects_reports_ready_and_fires_connected(
    echo_server: EchoServer, events: EventLog
) -> None:
    """A worker connects, its channel enters the view and channel.connected has a duration."""
    with running_worker(worker_config(echo_server.port)) as run:
        assert wait_until(lambda: events.of("channel.connected"), timeout=10)
        entry = run.entry

        (sender, measurements, metadata) = events.of("channel.connected")[0]
        assert sender == entry.name
        assert metadata == {"pool_name": entry.name, "worker_id": "worker-1"}
        assert 0 < measurements["duration"] < 2.0
        # The registry has published the channel before the event fired.
        assert len(entry.view.channels) == 1
        (record,) = entry.view.workers
        assert (record.worker_id, record.state) == ("worker-1", "ready")
        assert record.peer == f"127.0.0.1:{echo_server.port}"
        assert EchoStub(entry.get_channel()).Unary(b"hello", timeout=5) == b"hello"
        assert open_channel_count() == 1
        assert events.of("channel.connection_failed") == []


def test_server_without_health_service_is_healthy(
    plain_server: EchoServer, events: EventLog
) -> None:
    """The gate check answered UNIMPLEMENTED: reachable counts as healthy."""
    with running_worker(worker_config(plain_server.port)) as run:
        assert run.wait_ready()

        assert events.of("channel.connection_failed") == []


def test_not_serving_server_is_never_handed_out(echo_server: EchoServer, events: EventLog) -> None:
    """A server that answers NOT_SERVING fails the connect: its channel never enters the view."""
    echo_server.set_serving(False)
    with running_worker(worker_config(echo_server.port, max_reconnect_attempts=50)) as run:
        assert wait_until(lambda: len(events.of("channel.connection_failed")) >= 2, timeout=10)

        (_, _, metadata) = events.of("channel.connection_failed")[0]
        assert metadata["error"] == "health status NOT_SERVING"
        assert run.entry.view.channels == ()
        assert events.of("channel.connected") == []

        echo_server.set_serving(True)
        assert run.wait_ready()


def test_connect_timeout_fails_the_attempt_and_schedules_a_reconnect(
    silent_listener: SilentListener, events: EventLog
) -> None:
    """A peer that accepts TCP but never speaks HTTP/2 fails the attempt at connect_timeout."""
    cfg = worker_config(silent_listener.port, connect_timeout=0.3, max_reconnect_attempts=5)
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
        assert run.entry.view.channels == ()
        assert run.worker.is_alive()


def test_connect_timeout_bounds_a_slow_handshake_not_backoff_min(
    silent_listener: SilentListener, events: EventLog
) -> None:
    """A handshake slower than backoff_min but within connect_timeout is not cut short."""
    cfg = worker_config(silent_listener.port, connect_timeout=1.0, max_reconnect_attempts=5)
    with running_worker(cfg):
        assert wait_until(lambda: events.of("channel.connection_failed"), timeout=10)

        (_, failed, failed_meta) = events.of("channel.connection_failed")[0]
        assert failed["duration"] >= 0.9, failed_meta["error"]


def test_reaching_max_reconnect_attempts_does_not_end_the_worker(
    events: EventLog, caplog: pytest.LogCaptureFixture
) -> None:
    """Past max_reconnect_attempts the worker keeps retrying at its backed-off pace; one WARNING."""
    caplog.set_level(logging.DEBUG, logger="grpcpool")
    cfg = worker_config(free_port(), max_reconnect_attempts=3)
    with running_worker(cfg) as run:
        assert wait_until(lambda: len(events.of("channel.connection_failed")) >= 8, timeout=10)

        assert run.worker.is_alive()
        assert not run.ended.is_set()
        (record,) = run.entry.view.workers
        assert record.state in ("connecting", "backoff")
        assert record.reconnect_attempt >= 7
        scheduled = events.of("channel.reconnect_scheduled")
        assert [m["attempt"] for _, m, _ in scheduled] == list(range(1, len(scheduled) + 1))
        # Past the first two attempts the delay stays at backoff_max's level.
        assert all(50 <= m["delay_ms"] <= 100 for _, m, _ in scheduled[2:])
    limits = [r for r in caplog.records if "max_reconnect_attempts" in r.getMessage()]
    assert [r.levelno for r in limits] == [logging.WARNING]
    assert "3 connects failed in a row" in limits[0].getMessage()
    assert [r for r in caplog.records if r.exc_info] == []


# --- the handed-out channel ---------------------------------------------------------


def test_endpoint_interceptors_apply_to_calls_on_the_handed_out_channel(
    echo_server: EchoServer,
) -> None:
    """endpoint.interceptors wrap the channel in the view: calls carry their metadata."""
    interceptor = AddMetadata()
    with running_worker(worker_config(echo_server.port, interceptors=(interceptor,))) as run:
        assert run.wait_ready()

        assert EchoStub(run.entry.get_channel()).Unary(b"x", timeout=5) == b"x"

        assert ("x-grpcpool-test", "yes") in echo_server.metadata[-1]
        assert interceptor.methods[-1] == "/test.Echo/Unary"


# --- losing the connection ------------------------------------------------------------


def test_a_drop_is_one_report_and_the_channel_leaves_the_view(events: EventLog) -> None:
    """A server that goes away: one report per change, the channel out of the view, then back."""
    server = EchoServer()
    port = server.port
    cfg = worker_config(port, max_reconnect_attempts=1000, ping_interval=0.1)
    try:
        with running_worker(cfg, registry_class=RecordingRegistry) as run:
            assert run.wait_ready()
            # Ready for longer than backoff_min, so the close is reconnected at once.
            assert wait_until(lambda: events.of("channel.ping"), timeout=5)
            server.stop()

            assert wait_until(lambda: run.entry.view.channels == (), timeout=5)
            assert wait_until(lambda: events.of("channel.disconnected"), timeout=5)
            server = EchoServer(port=port)
            assert wait_until(lambda: len(events.of("channel.connected")) == 2, timeout=10)

            states = reported_states(run.registry)
            # Closed: connecting again on the same channel, which fails.
            assert states[:4] == ["connecting", "ready", "connecting", "backoff"], states
            # One report per change of state: never the same state twice in a row.
            assert all(a != b for a, b in itertools.pairwise(states)), states
            (_, _, down) = events.of("channel.connection_down")[0]
            assert down["reason"] in {"connection_closed", "transport_failed"}
            assert run.wait_ready()
    finally:
        server.stop()


def test_failed_ping_takes_the_connection_down(echo_server: EchoServer, events: EventLog) -> None:
    """A ready worker whose health check starts failing drops its channel with reason ping_failed."""
    cfg = worker_config(echo_server.port, ping_interval=0.05, max_reconnect_attempts=1000)
    with running_worker(cfg) as run:
        assert run.wait_ready()
        assert wait_until(lambda: events.of("channel.ping"), timeout=5)
        assert events.of("channel.ping")[0][2]["result"] == "ok"

        echo_server.set_serving(False)

        assert wait_until(lambda: events.of("channel.connection_down"), timeout=5)
        (_, _, down) = events.of("channel.connection_down")[0]
        assert down["reason"] == "ping_failed"
        assert any(meta["result"] == "error" for _, _, meta in events.of("channel.ping"))
        assert run.entry.view.channels == ()


def test_message_about_an_old_channel_generation_is_ignored(
    echo_server: EchoServer, events: EventLog
) -> None:
    """A connectivity change tagged with an old generation does not touch the current channel."""
    cfg = worker_config(echo_server.port, ping_interval=0.1)
    with running_worker(cfg, worker_class=InspectableWorker) as run:
        assert run.wait_ready()
        # Ready for longer than backoff_min, so a close is reconnected at once.
        assert wait_until(lambda: events.of("channel.ping"), timeout=5)
        channel = run.entry.view.channels[0]
        current = run.worker.proxy().generation().get(timeout=5)

        run.worker.tell(Connectivity(current - 1, grpc.ChannelConnectivity.IDLE))
        run.worker.ask(Connectivity(current - 1, grpc.ChannelConnectivity.SHUTDOWN), timeout=5)

        assert run.entry.view.channels == (channel,)
        assert events.of("channel.connection_down") == []

        # The same change with the current generation is acted on: the
        # connection counts as closed and the same channel comes back.
        run.worker.tell(Connectivity(current, grpc.ChannelConnectivity.IDLE))
        assert wait_until(lambda: len(events.of("channel.connected")) == 2, timeout=5)
        assert events.of("channel.connection_down")[0][2]["reason"] == "connection_closed"
        assert run.wait_ready()
        assert run.entry.view.channels == (channel,)
        assert run.worker.proxy().generation().get(timeout=5) > current


def test_resync_reports_the_current_state_again(echo_server: EchoServer) -> None:
    """Resync (sent after a registry restart) makes a ready worker report ready once more."""
    with running_worker(worker_config(echo_server.port), registry_class=RecordingRegistry) as run:
        assert run.wait_ready()
        before = reported_states(run.registry)

        run.worker.ask(Resync(), timeout=5)

        assert wait_until(lambda: len(reported_states(run.registry)) == len(before) + 1)
        assert reported_states(run.registry)[-1] == "ready"
        assert len(run.entry.view.channels) == 1


# --- stopping and crashing ----------------------------------------------------------


def test_stop_leaves_the_registry_before_closing_the_channel(echo_server: EchoServer) -> None:
    """On stop, WorkerGone reaches the registry while the channel is still open; then it closes."""
    with running_worker(worker_config(echo_server.port), registry_class=RecordingRegistry) as run:
        assert run.wait_ready()
        assert open_channel_count() == 1

        assert run.worker.stop(timeout=10) is True

        assert open_channel_count() == 0  # closed by the time stop returns
        assert run.entry.view.channels == ()
        assert run.entry.view.workers == ()
        gone = run.registry.proxy().gone.get(timeout=5)
        assert gone == [{"open_channels": 1, "ready_before": 1}]
        assert run.wait_ended().normal


def test_stopped_worker_channel_handed_out_raw_drains_until_the_pool_closes(
    echo_server: EchoServer,
) -> None:
    """With a drain period, a stopped worker's channel that get_channel handed out stays
    open until its pool closes (calls on it are not counted)."""
    with running_worker(worker_config(echo_server.port, drain_timeout=30.0)) as run:
        assert run.wait_ready()
        run.entry.get_channel()

        run.worker.stop(timeout=10)
        assert run.entry.view.channels == ()
        assert open_channel_count() == 1

        run.parts.channels.close_all()
        assert open_channel_count() == 0


def test_stopped_worker_channel_never_handed_out_closes_at_once(echo_server: EchoServer) -> None:
    """With a drain period, a stopped worker's channel that only the pool channel used,
    with no call running, is closed by the time the worker has stopped."""
    with running_worker(worker_config(echo_server.port, drain_timeout=30.0)) as run:
        assert run.wait_ready()
        connection = run.entry.view.connections[0]
        ticket = connection.start()
        assert ticket is not None
        connection.end(ticket)

        run.worker.stop(timeout=10)
        assert run.entry.view.channels == ()
        assert open_channel_count() == 0
        assert connection.ledger.closed


def test_unknown_message_crashes_the_worker_with_type_error(echo_server: EchoServer) -> None:
    """A message the worker does not know ends it with TypeError, and it leaves the pool."""
    with running_worker(worker_config(echo_server.port)) as run:
        assert run.wait_ready()

        run.worker.tell("not a worker message")
        reason = run.wait_ended()

        assert isinstance(reason.error, TypeError)
        assert "not a worker message" in str(reason.error)
        assert run.entry.view.channels == ()
        assert run.entry.view.workers == ()
        assert open_channel_count() == 0


def test_failed_start_leaves_the_registry_and_closes_the_channel(echo_server: EchoServer) -> None:
    """An exception in on_start (never seen by on_failure) still sends WorkerGone and lets go."""
    cfg = worker_config(echo_server.port)
    with running_worker(
        cfg, registry_class=RecordingRegistry, worker_class=FailingStartWorker
    ) as run:
        reason = run.wait_ended()

        assert isinstance(reason.error, RuntimeError)
        assert reported_states(run.registry) == ["connecting"]
        gone = run.registry.proxy().gone.get(timeout=5)
        assert gone == [{"open_channels": 1, "ready_before": 0}]  # before the close
        assert run.entry.view.workers == ()
        assert open_channel_count() == 0
