"""What grpcpool logs: one line per outage, at the level the config asks for."""

from __future__ import annotations

import logging
from typing import Any

import pytest

import grpcpool
from grpcpool import Config, PoolSpec, Supervisor
from tests.events import EventLog
from tests.pools import free_port, loopback_config
from tests.servers import EchoServer
from tests.waiting import wait_until


def config_for(port: int, **connection: Any) -> Config:
    settings = {"backoff_min": 0.02, "backoff_max": 0.05, "max_reconnect_attempts": 1000}
    return loopback_config(port, 1, **{**settings, **connection})


def pool_records(caplog: pytest.LogCaptureFixture, level: int) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name.startswith("grpcpool") and r.levelno == level]


def test_a_retry_storm_is_one_error_line(
    caplog: pytest.LogCaptureFixture, events: EventLog
) -> None:
    """Many failed connects in a row log one ERROR; the rest go to DEBUG."""
    caplog.set_level(logging.DEBUG, logger="grpcpool")
    sup = Supervisor.start(children=[PoolSpec(config_for(free_port()), name="storm")])
    try:
        assert wait_until(lambda: len(events.of("channel.connection_failed")) >= 8, timeout=10)
    finally:
        sup.stop()
    errors = pool_records(caplog, logging.ERROR)
    assert len(errors) == 1
    assert "connect failed" in errors[0].getMessage()
    assert "'storm'" in errors[0].getMessage()
    assert len(pool_records(caplog, logging.DEBUG)) >= 7


def test_suppressed_connection_errors_log_at_debug(
    caplog: pytest.LogCaptureFixture, events: EventLog
) -> None:
    """suppress_connection_errors=True keeps connection trouble out of ERROR."""
    caplog.set_level(logging.DEBUG, logger="grpcpool")
    config = config_for(free_port(), suppress_connection_errors=True)
    sup = Supervisor.start(children=[PoolSpec(config, name="quiet")])
    try:
        assert wait_until(lambda: len(events.of("channel.connection_failed")) >= 3, timeout=10)
    finally:
        sup.stop()
    assert pool_records(caplog, logging.ERROR) == []
    assert any("connect failed" in r.getMessage() for r in pool_records(caplog, logging.DEBUG))


def test_connection_down_is_one_error_and_recovery_one_info(
    caplog: pytest.LogCaptureFixture, events: EventLog
) -> None:
    """A server restart: INFO for the closed connection, one ERROR for the reconnect that
    failed, and one INFO for the recovery."""
    caplog.set_level(logging.DEBUG, logger="grpcpool")
    server = EchoServer()
    port = server.port
    sup = Supervisor.start(children=[PoolSpec(config_for(port, ping_interval=0.05), name="drop")])
    try:
        grpcpool.await_ready("drop", timeout=5)
        # Ready for longer than backoff_min: a close is reconnected at once.
        assert wait_until(lambda: events.of("channel.ping"), timeout=5)
        server.stop()
        # The server comes back once the pool has seen the drop and failed to
        # reconnect five times (what a 0.3 s outage gives at this backoff);
        # those failures must not log ERROR either.
        assert wait_until(
            lambda: events.of("channel.connection_down")
            and len(events.of("channel.connection_failed")) >= 5,
            timeout=5,
        )
        server = EchoServer(port=port)
        grpcpool.await_ready("drop", timeout=5)
    finally:
        sup.stop()
        server.stop()
    errors = [r.getMessage() for r in pool_records(caplog, logging.ERROR)]
    assert len(errors) == 1 and "connect failed" in errors[0], errors
    infos = [r.getMessage() for r in pool_records(caplog, logging.INFO)]
    assert any("connection closed" in message for message in infos), infos
    assert any("connected after" in message for message in infos), infos
