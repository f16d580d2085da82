"""The bridge's part for gRFC A94: each pool's connections, counted as gRPC counts subchannels.

:class:`~grpcpool.metrics._instruments.Bridge` hands these receivers the
connection events of every pool and the same sink, so both exporters publish
``grpc.subchannel.*`` beside grpcpool's own instruments:

- ``channel.connected``: a successful connection attempt, and one more open
  connection;
- ``channel.connection_failed``: a failed connection attempt;
- ``channel.disconnected``: a disconnection, its ``grpc.disconnect_error``
  from the worker's reason (:data:`~grpcpool.metrics._grpc_catalog.DISCONNECT_ERRORS`),
  and one open connection fewer;
- ``channel.released``: the pool let a ready connection go (a scale down, a
  refresh, its stop): a disconnection with ``subchannel shutdown``, and one
  open connection fewer.

The open connections are counted per worker, so a worker that crashed while
ready and connects again under its id is one connection, not two, and
connections opened before the exporter was registered are not counted (nor
taken off when they end). :class:`Targets` knows each pool's ``grpc.target``,
which the per-call measures use too.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import blinker

from grpcpool import telemetry
from grpcpool._process import PROCESS, fork_safe_lock
from grpcpool.metrics._grpc_catalog import (
    BACKEND_SERVICE,
    CONNECTION_ATTEMPTS_FAILED,
    CONNECTION_ATTEMPTS_SUCCEEDED,
    DISCONNECT_ERROR,
    DISCONNECT_ERRORS,
    DISCONNECTIONS,
    OPEN_CONNECTIONS,
    SHUTDOWN,
    TARGET,
    target_attribute,
)

if TYPE_CHECKING:
    from grpcpool.metrics._instruments import Sink

__all__ = ["SubchannelMeasures", "Targets"]

Receiver = Callable[..., None]


class Targets:
    """Each pool's ``grpc.target`` (``dns:///host:port``), by pool name.

    Learnt from ``pool.init``; a pool that started before the exporter was
    registered is looked up among the running pools. A name no pool runs
    under is ``other``. Whoever caches something derived from a pool's target
    asks to hear when it changes (:meth:`on_change`).
    """

    def __init__(self) -> None:
        self._targets: dict[str, str] = {}
        self._listeners: list[Callable[[str], None]] = []

    def of(self, pool: str) -> str:
        target = self._targets.get(pool)
        if target is None:
            entry: Any = PROCESS.pools.get(pool) or PROCESS.aio_pools.get(pool)
            config = getattr(entry, "config", None)
            endpoint = getattr(getattr(config, "endpoint", None), "target", None)
            target = target_attribute(endpoint) if isinstance(endpoint, str) else "other"
            self._targets[pool] = target
        return target

    def started(self, pool: str, endpoint: Any) -> None:
        """Pool ``pool`` (re)started, connecting to ``endpoint`` (``host:port``)."""
        target = target_attribute(endpoint) if isinstance(endpoint, str) else None
        if target is None:
            self._targets.pop(pool, None)
        else:
            self._targets[pool] = target
        for listener in self._listeners:
            listener(pool)

    def on_change(self, listener: Callable[[str], None]) -> None:
        """Calls ``listener(pool)`` whenever a pool (re)starts, its target possibly changed."""
        self._listeners.append(listener)


class SubchannelMeasures:
    """Turns connection events into A94's measurements in a sink.

    Args:
        sink: Where the measurements go (the bridge's).
        closed: Whether the bridge was closed: later events are ignored.
        targets: The pools' targets.
    """

    def __init__(self, sink: Sink, closed: Callable[[], bool], targets: Targets) -> None:
        self._sink = sink
        self._closed = closed
        self._targets = targets
        self._lock = fork_safe_lock(self)
        # Per pool: the labels its open connections were counted under, and the
        # workers whose connection is open.
        self._open: dict[str, tuple[dict[str, str], set[str]]] = {}

    def receivers(self) -> list[tuple[blinker.NamedSignal, Receiver]]:
        """The signals this part listens to, with its receiver for each."""
        return [
            (telemetry.channel_connected, self._on_connected),
            (telemetry.channel_connection_failed, self._on_connection_failed),
            (telemetry.channel_disconnected, self._on_disconnected),
            (telemetry.channel_released, self._on_released),
        ]

    def pool_started(self, pool: str, endpoint: Any) -> None:
        """Pool ``pool`` (re)started, connecting to ``endpoint``.

        Its workers start before it says so, and may have connected already:
        the open connections stay as counted (those of an earlier run of the
        name were released when its workers stopped).
        """
        with self._lock:
            if not self._closed():
                self._targets.started(pool, endpoint)

    def _labels(self, pool: str) -> dict[str, str]:
        return {TARGET: self._targets.of(pool), BACKEND_SERVICE: pool}

    def _on_connected(self, sender: str, *, metadata: dict[str, Any], **_: Any) -> None:
        pool = str(sender)
        with self._lock:
            if self._closed():
                return
            labels, workers = self._open.setdefault(pool, (self._labels(pool), set()))
            worker = str(metadata.get("worker_id"))
            if worker not in workers:
                workers.add(worker)
                # Open first: a reader that sees the attempt counted sees the connection.
                self._sink.add(OPEN_CONNECTIONS, 1, labels)
            self._sink.add(CONNECTION_ATTEMPTS_SUCCEEDED, 1, labels)

    def _on_connection_failed(self, sender: str, **_: Any) -> None:
        pool = str(sender)
        if not self._closed():
            self._sink.add(CONNECTION_ATTEMPTS_FAILED, 1, self._labels(pool))

    def _on_disconnected(self, sender: str, *, metadata: dict[str, Any], **_: Any) -> None:
        reason = metadata.get("reason")
        error = DISCONNECT_ERRORS.get(reason, "unknown") if isinstance(reason, str) else "unknown"
        self._ended(str(sender), metadata, error)

    def _on_released(self, sender: str, *, metadata: dict[str, Any], **_: Any) -> None:
        self._ended(str(sender), metadata, SHUTDOWN)

    def _ended(self, pool: str, metadata: dict[str, Any], error: str) -> None:
        with self._lock:
            if self._closed():
                return
            opened = self._open.get(pool)
            worker = str(metadata.get("worker_id"))
            if opened is not None and worker in opened[1]:
                opened[1].discard(worker)
                self._sink.add(OPEN_CONNECTIONS, -1, opened[0])
            labels = {**self._labels(pool), DISCONNECT_ERROR: error}
            self._sink.add(DISCONNECTIONS, 1, labels)
