"""The demo server's health service: ``grpc.health.v1.Health`` Check and Watch.

The demo runs with grpcpool's runtime dependencies only, so its server cannot
use grpcio-health-checking's servicer; this one answers the protocol's two
calls with the messages grpcpool ships (:mod:`grpcpool.connection.health`).
Any gRPC health client reads its answers, the pool's checks among them.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import grpc

from grpcpool.connection.health import health_pb2, health_pb2_grpc

__all__ = ["HealthService"]

ServingStatus = health_pb2.HealthCheckResponse.ServingStatus
SERVING = health_pb2.HealthCheckResponse.SERVING
SERVICE_UNKNOWN = health_pb2.HealthCheckResponse.SERVICE_UNKNOWN


class HealthService(health_pb2_grpc.HealthServicer):
    """Serving statuses by service name, answered by Check and followed by Watch.

    The whole server (service ``""``) starts SERVING; :meth:`set` changes any
    service's status. ``Check`` of a service never set fails with NOT_FOUND,
    as the protocol says; ``Watch`` sends the status at once (SERVICE_UNKNOWN
    for such a service), then each change, until the call ends or
    :meth:`close`. A watch holds one of the server's threads while it lasts,
    which a demo server with a handful of watchers can afford.
    """

    def __init__(self) -> None:
        self._statuses: dict[str, ServingStatus] = {"": SERVING}
        self._changed = threading.Condition()
        self._closed = False

    def set(self, service: str, status: ServingStatus) -> None:
        """Sets ``service``'s status ("" is the whole server) and tells its watchers."""
        with self._changed:
            self._statuses[service] = status
            self._changed.notify_all()

    def close(self) -> None:
        """Ends every watch, so a stopping server has no call left waiting on a status."""
        with self._changed:
            self._closed = True
            self._changed.notify_all()

    def Check(
        self, request: health_pb2.HealthCheckRequest, context: grpc.ServicerContext
    ) -> health_pb2.HealthCheckResponse:
        with self._changed:
            status = self._statuses.get(request.service)
        if status is None:
            context.abort(grpc.StatusCode.NOT_FOUND, f"unknown service {request.service!r}")
        return health_pb2.HealthCheckResponse(status=status)

    def Watch(
        self, request: health_pb2.HealthCheckRequest, context: grpc.ServicerContext
    ) -> Iterator[health_pb2.HealthCheckResponse]:
        # A cancelled or timed-out call wakes the wait below at once, not at
        # the next change of a status that may never change.
        if not context.add_callback(self._wake):
            return
        sent: ServingStatus | None = None
        while True:
            with self._changed:
                while self._status_of(request.service) == sent and self._watching(context):
                    self._changed.wait()
                if not self._watching(context):
                    return
                sent = self._status_of(request.service)
            yield health_pb2.HealthCheckResponse(status=sent)

    def _watching(self, context: grpc.ServicerContext) -> bool:
        return not self._closed and context.is_active()

    def _status_of(self, service: str) -> ServingStatus:
        return self._statuses.get(service, SERVICE_UNKNOWN)

    def _wake(self) -> None:
        with self._changed:
            self._changed.notify_all()
