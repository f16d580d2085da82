"""Tests for grpcpool.telemetry: the blinker signals and the isolating emit()."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from typing import Any

import blinker
import pykka
import pytest

import grpcpool
from grpcpool import telemetry
from tests.pools import loopback_config, start_pool
from tests.servers import EchoServer, EchoStub
from tests.waiting import wait_until

ELIXIR_EVENTS = (
    "grpc_connection_pool.pool.init",
    "grpc_connection_pool.pool.get_channel",
    "grpc_connection_pool.pool.scale_up",
    "grpc_connection_pool.pool.scale_down",
    "grpc_connection_pool.pool.status",
    "grpc_connection_pool.channel.connected",
    "grpc_connection_pool.channel.connection_failed",
    "grpc_connection_pool.channel.disconnected",
    "grpc_connection_pool.channel.ping",
    "grpc_connection_pool.channel.connection_down",
    "grpc_connection_pool.channel.reconnect_scheduled",
    "grpc_connection_pool.supervisor.child_restarted",
    "grpc_connection_pool.supervisor.shutdown",
)
# Beyond the Elixir library: the many-backends events, with the same prefix.
OUR_EVENTS = (
    "grpc_connection_pool.pool.resolved",
    "grpc_connection_pool.pool.ejected",
    "grpc_connection_pool.pool.unejected",
    "grpc_connection_pool.pool.panic",
    "grpc_connection_pool.call.hedged",
    "grpc_connection_pool.call.queued",
    "grpc_connection_pool.channel.refreshed",
    "grpc_connection_pool.pool.autoscaled",
    "grpc_connection_pool.channel.released",
)

Connect = Callable[..., Callable[..., Any]]


def attribute_for(event: str) -> str:
    """The module attribute of an event: 'pool.init' -> 'pool_init'."""
    return event.removeprefix("grpc_connection_pool.").replace(".", "_")


@pytest.fixture
def connect() -> Iterator[Connect]:
    """Connects receivers strongly and disconnects every one of them after the test."""
    connected: list[tuple[blinker.NamedSignal, Callable[..., Any]]] = []

    def _connect(
        signal: blinker.NamedSignal, receiver: Callable[..., Any], sender: Any = blinker.ANY
    ) -> Callable[..., Any]:
        signal.connect(receiver, sender=sender, weak=False)
        connected.append((signal, receiver))
        return receiver

    yield _connect
    for signal, receiver in connected:
        signal.disconnect(receiver)
    leftover = [r for s, r in connected if any(v is r for v in s.receivers.values())]
    assert not leftover, f"receivers still connected: {leftover}"


class Recorder:
    """A receiver that records each call; optionally raises after recording."""

    def __init__(self, error: Exception | None = None) -> None:
        self.calls: list[tuple[Any, dict[str, Any]]] = []
        self.error = error

    def __call__(self, sender: Any, **kwargs: Any) -> None:
        self.calls.append((sender, kwargs))
        if self.error is not None:
            raise self.error


def test_events_are_the_thirteen_elixir_names_and_ours() -> None:
    """EVENTS lists the 13 Elixir signal names of SPEC section 4 and our 9, each once."""
    assert set(telemetry.EVENTS) == set(ELIXIR_EVENTS + OUR_EVENTS)
    assert len(telemetry.EVENTS) == len(set(telemetry.EVENTS)) == 22


@pytest.mark.parametrize("event", ELIXIR_EVENTS + OUR_EVENTS)
def test_module_attribute_is_the_blinker_signal(event: str) -> None:
    """blinker.signal(name) is the same object as the module attribute for each event."""
    signal = getattr(telemetry, attribute_for(event))
    assert signal is blinker.signal(event)
    assert signal.name == event
    assert attribute_for(event) in telemetry.__all__


def test_telemetry_is_reexported() -> None:
    """grpcpool.telemetry is this module."""
    assert grpcpool.telemetry is telemetry


def test_emit_passes_sender_measurements_metadata(connect: Connect) -> None:
    """emit() calls receivers with the sender and keyword measurements and metadata."""
    seen: list[tuple[Any, dict[str, Any], dict[str, Any]]] = []

    def receiver(sender: str, *, measurements: dict[str, Any], metadata: dict[str, Any]) -> None:
        seen.append((sender, measurements, metadata))

    connect(telemetry.channel_connected, receiver)
    measurements = {"duration": 0.25}
    metadata = {"pool_name": "orders", "worker_id": 3}
    assert telemetry.emit(telemetry.channel_connected, "orders", measurements, metadata) is None
    assert seen == [("orders", measurements, metadata)]
    assert seen[0][1] is measurements
    assert seen[0][2] is metadata


def test_emit_reaches_every_receiver(connect: Connect) -> None:
    """Each connected receiver is called once per emit."""
    first, second = Recorder(), Recorder()
    connect(telemetry.pool_status, first)
    connect(telemetry.pool_status, second)
    telemetry.emit(telemetry.pool_status, "p", {"expected_size": 2, "current_size": 1}, {})
    assert len(first.calls) == len(second.calls) == 1
    assert first.calls[0] == (
        "p",
        {"measurements": {"expected_size": 2, "current_size": 1}, "metadata": {}},
    )


def test_emit_only_reaches_its_signal(connect: Connect) -> None:
    """A receiver of one signal is not called when another signal is emitted."""
    recorder = Recorder()
    connect(telemetry.pool_init, recorder)
    telemetry.emit(telemetry.pool_status, "p", {}, {})
    assert recorder.calls == []
    telemetry.emit(telemetry.pool_init, "p", {"pool_size": 1}, {})
    assert len(recorder.calls) == 1


def test_raising_receiver_is_logged_and_others_still_run(
    connect: Connect, caplog: pytest.LogCaptureFixture
) -> None:
    """A receiver that raises is logged; the other receivers run and emit() does not raise."""
    # Two raisers among three receivers: whatever order blinker uses, a raiser
    # is always followed by at least one more receiver.
    first_bad = Recorder(RuntimeError("boom-1"))
    good = Recorder()
    second_bad = Recorder(KeyError("boom-2"))
    for receiver in (first_bad, good, second_bad):
        connect(telemetry.channel_ping, receiver)
    with caplog.at_level(logging.ERROR, logger="grpcpool.telemetry"):
        telemetry.emit(telemetry.channel_ping, "p", {"duration": 0.1}, {"result": "ok"})
    assert len(first_bad.calls) == len(good.calls) == len(second_bad.calls) == 1
    records = [r for r in caplog.records if r.name == "grpcpool.telemetry"]
    assert len(records) == 2
    assert all(r.levelno == logging.ERROR for r in records)
    assert all(telemetry.channel_ping.name in r.getMessage() for r in records)
    raised = {type(r.exc_info[1]) for r in records if r.exc_info}
    assert raised == {RuntimeError, KeyError}


def test_raising_receiver_does_not_break_later_emits(connect: Connect) -> None:
    """After a receiver raised, the next emit still reaches every receiver."""
    bad, good = Recorder(ValueError("x")), Recorder()
    connect(telemetry.pool_scale_up, bad)
    connect(telemetry.pool_scale_up, good)
    for _ in range(3):
        telemetry.emit(telemetry.pool_scale_up, "p", {}, {})
    assert len(bad.calls) == len(good.calls) == 3


def test_emit_with_no_receivers_is_a_noop(caplog: pytest.LogCaptureFixture) -> None:
    """emit() on a signal without receivers returns None, logs nothing, touches nothing."""
    signal = blinker.Namespace().signal("grpcpool-test.no-receivers")
    measurements: dict[str, Any] = {"n": 1}
    metadata: dict[str, Any] = {"pool_name": "p"}
    with caplog.at_level(logging.DEBUG):
        assert telemetry.emit(signal, "p", measurements, metadata) is None
    assert caplog.records == []
    assert measurements == {"n": 1}
    assert metadata == {"pool_name": "p"}


def test_disconnected_receiver_is_not_called(connect: Connect) -> None:
    """A receiver that was disconnected no longer gets events."""
    recorder = Recorder()
    connect(telemetry.channel_disconnected, recorder)
    telemetry.channel_disconnected.disconnect(recorder)
    telemetry.emit(telemetry.channel_disconnected, "p", {"duration": 1.0}, {})
    assert recorder.calls == []


def test_sender_specific_receiver_gets_only_its_sender(connect: Connect) -> None:
    """A receiver connected for one pool name only sees that pool's events."""
    only_a, everyone = Recorder(), Recorder()
    connect(telemetry.channel_connection_down, only_a, sender="pool-a")
    connect(telemetry.channel_connection_down, everyone)
    for sender in ("pool-a", "pool-b", "pool-a"):
        telemetry.emit(telemetry.channel_connection_down, sender, {}, {"reason": "x"})
    assert [sender for sender, _ in only_a.calls] == ["pool-a", "pool-a"]
    assert [sender for sender, _ in everyone.calls] == ["pool-a", "pool-b", "pool-a"]


def test_sender_specific_receiver_only_runs_for_its_sender(connect: Connect) -> None:
    """With only sender-specific receivers, another sender's emit reaches none of them."""
    only_a = Recorder()
    connect(telemetry.supervisor_shutdown, only_a, sender="sup-a")
    telemetry.emit(telemetry.supervisor_shutdown, "sup-b", {"restarts": 4}, {})
    assert only_a.calls == []
    telemetry.emit(telemetry.supervisor_shutdown, "sup-a", {"restarts": 4}, {})
    assert only_a.calls == [("sup-a", {"measurements": {"restarts": 4}, "metadata": {}})]


def test_emit_matches_blinker_send_for_well_behaved_receivers(connect: Connect) -> None:
    """For receivers that do not raise, emit() delivers what Signal.send would."""
    via_emit, via_send = Recorder(), Recorder()
    connect(telemetry.channel_reconnect_scheduled, via_emit)
    measurements, metadata = {"delay_ms": 1500, "attempt": 2}, {"reason": "ping_failed"}
    telemetry.emit(telemetry.channel_reconnect_scheduled, "p", measurements, metadata)
    telemetry.channel_reconnect_scheduled.disconnect(via_emit)
    connect(telemetry.channel_reconnect_scheduled, via_send)
    telemetry.channel_reconnect_scheduled.send("p", measurements=measurements, metadata=metadata)
    assert via_emit.calls == via_send.calls
    assert len(via_emit.calls) == 1


def test_pool_status_reports_calls_in_flight(
    connect: Connect, supervisors: list[pykka.ActorRef[Any]]
) -> None:
    """pool.status carries in_flight: the pool channel's calls running at the report, then 0."""
    reports: list[dict[str, Any]] = []
    lock = threading.Lock()

    def record(sender: Any, *, measurements: dict[str, Any], **_: Any) -> None:
        with lock:
            reports.append(dict(measurements))

    def reported(in_flight: int) -> bool:
        with lock:
            return any(r["in_flight"] == in_flight for r in reports)

    connect(telemetry.pool_status, record, sender="status")
    # Each call takes 1.5 s; the reports come every 0.05 s.
    with EchoServer(delay=1.5) as server:
        config = loopback_config(server.port, 2, pool={"telemetry_interval": 0.05})
        start_pool(supervisors, config, "status")
        grpcpool.await_ready("status", timeout=5, min_ready=2)
        stub = EchoStub(grpcpool.channel("status"))
        calls = [stub.Unary.future(b"held", timeout=10) for _ in range(2)]
        try:
            assert wait_until(lambda: reported(2), 1.2), reports[-1:]
        finally:
            for call in calls:
                call.result(timeout=10)
        with lock:
            del reports[:]
        assert wait_until(lambda: reported(0), 2), reports[-1:]
    with lock:
        assert set(reports[-1]) == {"expected_size", "current_size", "in_flight", "queued"}
        assert reports[-1]["expected_size"] == 2
