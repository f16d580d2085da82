"""Shared fixtures. Every test runs under the leak check below."""

from __future__ import annotations

import socket
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

import blinker
import pykka
import pytest

from grpcpool import telemetry
from tests.servers import EchoServer

# How long a test's threads and actors get to wind down after it returns.
LEAK_GRACE_SECONDS = 5.0


def _describe(threads: list[threading.Thread]) -> str:
    return ", ".join(sorted(thread.name for thread in threads))


@pytest.fixture(autouse=True)
def no_leaks() -> Iterator[None]:
    """Fails the test if it leaves threads alive or pykka actors registered."""
    before = set(threading.enumerate())
    yield
    deadline = time.monotonic() + LEAK_GRACE_SECONDS
    while True:
        threads = [t for t in threading.enumerate() if t not in before and t.is_alive()]
        actors = pykka.ActorRegistry.get_all()
        if not threads and not actors:
            return
        if time.monotonic() >= deadline:
            break
        time.sleep(0.02)
    # Clean up so one leak does not cascade into every later test.
    pykka.ActorRegistry.stop_all(block=True, timeout=5)
    problems = []
    if actors:
        problems.append(f"actors still registered: {actors}")
    if threads:
        problems.append(f"threads still alive: {_describe(threads)}")
    pytest.fail("; ".join(problems), pytrace=False)


# --- pool fixtures -------------------------------------------------------------


@pytest.fixture
def echo_server() -> Iterator[EchoServer]:
    """An echo server with the gRPC health service, on 127.0.0.1."""
    server = EchoServer(with_health=True)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def plain_server() -> Iterator[EchoServer]:
    """An echo server without the health service, on 127.0.0.1."""
    server = EchoServer(with_health=False)
    try:
        yield server
    finally:
        server.stop()


def free_port() -> int:
    """A port on 127.0.0.1 with nothing listening (just released by the OS)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class EventLog:
    """Records every telemetry event: name -> list of (sender, measurements, metadata)."""

    def __init__(self) -> None:
        self.events: dict[str, list[tuple[str, dict[str, Any], dict[str, Any]]]] = defaultdict(list)
        self._lock = threading.Lock()
        self._receivers: list[tuple[blinker.NamedSignal, Any]] = []
        for name in telemetry.EVENTS:
            signal = blinker.signal(name)

            def receive(
                sender: str,
                *,
                measurements: dict[str, Any],
                metadata: dict[str, Any],
                _name: str = name,
            ) -> None:
                with self._lock:
                    self.events[_name].append((sender, measurements, metadata))

            signal.connect(receive, weak=False)
            self._receivers.append((signal, receive))

    def of(self, short_name: str) -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
        """Events named ``grpc_connection_pool.<short_name>`` so far."""
        with self._lock:
            return list(self.events[f"grpc_connection_pool.{short_name}"])

    def close(self) -> None:
        for signal, receiver in self._receivers:
            signal.disconnect(receiver)


@pytest.fixture
def events() -> Iterator[EventLog]:
    """Every telemetry event emitted during the test."""
    log = EventLog()
    try:
        yield log
    finally:
        log.close()


def wait_until(predicate: Any, timeout: float = 5.0, interval: float = 0.01) -> bool:
    """Polls ``predicate`` until it is true or ``timeout`` passes; returns its last value."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return bool(predicate())
        time.sleep(interval)
