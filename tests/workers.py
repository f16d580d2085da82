"""Helpers to run one ChannelWorker on its own, without a pool supervisor.

The test plays the supervisor's part: it makes the pool's parts (entry and
channel set), starts the HealthRegistry and tells it the pool is running,
starts the worker and watches its exit, and stops everything in reverse
order afterwards.
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

from grpcpool import Config
from grpcpool.actors._channel_worker import ChannelWorker
from grpcpool.actors._entry import PoolEntry
from grpcpool.actors._health_registry import ExpectedSize, HealthRegistry, SetLifecycle
from grpcpool.actors._parts import PoolParts
from grpcpool.connection import PoolChannels
from grpcpool.supervisor import ExitReason, watch_exit
from grpcpool.supervisor._exit import ExitWatch

_names = itertools.count(1)


def worker_config(
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
        pool={"size": 1},
        connection=settings,
    )


def make_parts(config: Config) -> PoolParts:
    """The parts of a pool incarnation with a fresh entry, kept out of the pool table."""
    entry = PoolEntry(
        f"worker-test-{next(_names)}", config, token=object(), parent=None, child_id=None
    )
    return PoolParts(entry, PoolChannels(config))


@dataclass
class Running:
    """One worker under test, with its pool parts and registry."""

    parts: PoolParts
    registry: pykka.ActorRef[Any]
    worker: pykka.ActorRef[Any]
    watch: ExitWatch
    exits: list[ExitReason] = field(default_factory=list)
    ended: threading.Event = field(default_factory=threading.Event)

    @property
    def entry(self) -> PoolEntry:
        """The pool's entry: its view is what callers see."""
        return self.parts.entry

    def wait_ready(self, timeout: float = 10.0) -> bool:
        """Waits for the worker's channel to be in the view."""
        return self.entry.wait_ready(1, timeout)

    def wait_ended(self, timeout: float = 10.0) -> ExitReason:
        """Waits for the worker to end and its thread to finish; returns why it ended."""
        assert self.ended.wait(timeout), "worker did not end"
        assert self.watch.join(timeout), "worker thread did not finish"
        return self.exits[0]


@contextmanager
def running_worker(
    config: Config,
    registry_class: type[HealthRegistry] = HealthRegistry,
    worker_class: type[ChannelWorker] = ChannelWorker,
) -> Iterator[Running]:
    """Starts a registry and one worker ("worker-1"); stops both (and the channels) afterwards."""
    parts = make_parts(config)
    registry = registry_class.start(parts)
    # As the pool supervisor does, before any worker starts.
    parts.registry = registry
    registry.tell(ExpectedSize(1))
    registry.tell(SetLifecycle("running"))
    worker = None
    watch = None
    try:
        worker = worker_class.start(parts, "worker-1")
        exits: list[ExitReason] = []
        ended = threading.Event()

        def on_exit(reason: ExitReason) -> None:
            exits.append(reason)
            ended.set()

        watch = watch_exit(worker, on_exit)
        yield Running(parts, registry, worker, watch, exits, ended)
    finally:
        if worker is not None:
            worker.stop(timeout=10)
        if watch is not None:
            watch.join(10)
        parts.channels.close_all()
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


class _CallDetails(
    collections.namedtuple(
        "_CallDetails",
        ("method", "timeout", "metadata", "credentials", "wait_for_ready", "compression"),
    ),
    grpc.ClientCallDetails,  # type: ignore[misc]
):
    pass


class AddMetadata(grpc.UnaryUnaryClientInterceptor):  # type: ignore[misc]
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
