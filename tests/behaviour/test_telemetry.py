"""Telemetry: the blinker signals both kinds of pool emit, their payloads, and receivers."""

from __future__ import annotations

import threading
from typing import Any

from grpcpool import telemetry
from tests.behaviour.backends import Backends
from tests.behaviour.harness import Driver
from tests.behaviour.signals import Signals
from tests.servers import HOLD


def test_a_start_announces_the_pool_and_each_connection(
    driver: Driver, backends: Backends, signals: Signals
) -> None:
    """pool.init carries the size and "host:port"; channel.connected fires once per worker
    with the connect's duration."""
    backend = backends.one()
    name = driver.start(backends.config(2))
    driver.await_ready(min_ready=2)
    [(sender, measurements, metadata)] = signals.of("pool.init", name)
    assert sender == name and measurements == {"pool_size": 2}
    assert metadata == {"pool_name": name, "endpoint": backend.address}
    connected = signals.wait("channel.connected", lambda found: len(found) == 2, sender=name)
    assert {m["worker_id"] for _, _, m in connected} == {"worker-1", "worker-2"}
    assert all(measurements["duration"] >= 0 for _, measurements, _ in connected)
    assert all(set(m) == {"pool_name", "worker_id"} for _, _, m in connected)


def test_pool_status_reports_sizes_and_calls_in_flight_periodically(
    driver: Driver, backends: Backends, signals: Signals
) -> None:
    """pool.status fires every telemetry_interval with expected_size, current_size,
    in_flight and queued; a held call shows as 1 in flight, none waiting."""
    backend = backends.one()
    name = driver.start(backends.config(2, pool={"telemetry_interval": 0.05}))
    driver.await_ready(min_ready=2)
    held = driver.begin(HOLD)
    reports = signals.wait(
        "pool.status", lambda found: any(m["in_flight"] == 1 for _, m, _ in found), sender=name
    )
    [measurements] = [m for _, m, _ in reports if m["in_flight"] == 1][:1]
    assert measurements == {"expected_size": 2, "current_size": 2, "in_flight": 1, "queued": 0}
    assert all(metadata == {"pool_name": name} for _, _, metadata in reports)
    backend.release_held()
    assert held.result(timeout=5) == HOLD


def test_get_channel_is_reported_as_sampled(
    driver: Driver, backends: Backends, signals: Signals
) -> None:
    """pool.get_channel fires for every get_channel at sample rate 1 (with the number of
    ready channels), one in three at rate 3, and never at rate 0."""
    backends.one()
    for name, rate in (("every", 1), ("third", 3), ("never", 0)):
        driver.start(backends.config(2, pool={"telemetry_sample_rate": rate}), name)
        driver.await_ready(min_ready=2, name=name)
        for _ in range(30):
            driver.get_channel(name)
    assert len(signals.of("pool.get_channel", "every")) == 30
    assert {m["available_channels"] for m in signals.metadata("pool.get_channel", "every")} == {2}
    assert len(signals.of("pool.get_channel", "third")) == 10
    assert signals.of("pool.get_channel", "never") == []


def test_a_receiver_that_raises_does_not_break_the_pool(
    driver: Driver, backends: Backends, signals: Signals
) -> None:
    """A channel.connected receiver that raises is logged; the other receivers still get
    every event and the pool becomes ready and answers."""

    def broken(sender: str, **event: Any) -> None:
        raise RuntimeError("a broken metrics hook")

    telemetry.channel_connected.connect(broken)
    try:
        backends.one()
        name = driver.start(backends.config(2))
        driver.await_ready(min_ready=2)
        assert driver.call() == b"x"
        signals.wait("channel.connected", lambda found: len(found) == 2, sender=name)
    finally:
        telemetry.channel_connected.disconnect(broken)


def test_a_receiver_for_one_pool_hears_that_pool_only_until_disconnected(
    driver: Driver, backends: Backends, signals: Signals
) -> None:
    """A receiver connected with sender=<pool name> gets that pool's events only; after
    disconnect it gets none."""
    backends.one()
    heard: list[str] = []
    lock = threading.Lock()

    def receiver(sender: str, **event: Any) -> None:
        with lock:
            heard.append(event["metadata"]["worker_id"])

    telemetry.channel_connected.connect(receiver, sender="watched")
    try:
        driver.start(backends.config(2), "watched")
        driver.start(backends.config(3), "ignored")
        driver.await_ready(min_ready=2, name="watched")
        driver.await_ready(min_ready=3, name="ignored")
        signals.wait("channel.connected", lambda found: len(found) == 3, sender="ignored")
        signals.wait("channel.connected", lambda found: len(found) == 2, sender="watched")
        driver.wait_until(lambda: len(heard) >= 2)  # receivers may run in any order
        with lock:
            assert sorted(heard) == ["worker-1", "worker-2"]
    finally:
        telemetry.channel_connected.disconnect(receiver, sender="watched")
    driver.scale_up(1, "watched")
    driver.await_ready(min_ready=3, name="watched")
    signals.wait("channel.connected", lambda found: len(found) == 3, sender="watched")
    with lock:
        assert len(heard) == 2


def test_reconnects_are_scheduled_within_the_backoff_bounds(
    driver: Driver, backends: Backends, signals: Signals
) -> None:
    """With backoff 0.05-0.5 s, every reconnect_scheduled after a kill has a delay_ms
    between 50 and 500 and a growing attempt count; disconnected reports how long each
    connection was up."""
    backend = backends.one()
    name = driver.start(backends.config(2))
    driver.await_ready(min_ready=2)
    backend.kill()
    scheduled = signals.wait(
        "channel.reconnect_scheduled", lambda found: len(found) >= 6, sender=name
    )
    assert all(50 <= m["delay_ms"] <= 500 for _, m, _ in scheduled)
    attempts = [m["attempt"] for _, m, md in scheduled if md["worker_id"] == "worker-1"]
    assert attempts == sorted(attempts) and attempts[0] >= 1
    down = signals.wait("channel.disconnected", lambda found: len(found) >= 2, sender=name)
    assert all(measurements["duration"] >= 0 for _, measurements, _ in down)
