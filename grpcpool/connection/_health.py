"""The health check a worker makes on its channel, and how its result is read.

A check is one call of the standard gRPC health protocol
(``grpc.health.v1.Health/Check``) made as a future with a deadline, so the
caller never blocks on it: grpcio runs the done-callback on its own thread
when the call ends.
"""

from __future__ import annotations

from collections.abc import Callable

import grpc

from grpcpool.connection._call_errors import details, refused_stream, status_code
from grpcpool.connection._watcher import get_watcher
from grpcpool.connection.health import health_pb2

__all__ = [
    "CHECK_METHOD",
    "aio_health_check_method",
    "check_error",
    "health_check_method",
    "start_check",
    "status_code",
]

# The health protocol's one call a pool makes.
CHECK_METHOD = "/grpc.health.v1.Health/Check"


def start_check(
    channel: grpc.Channel,
    service: str,
    timeout: float,
    on_done: Callable[[grpc.Future[health_pb2.HealthCheckResponse]], None],
) -> grpc.Future[health_pb2.HealthCheckResponse]:
    """Starts a health check of ``service`` on ``channel``; returns the call.

    Args:
        channel: The channel to check (what the pool hands out, so the
            endpoint's interceptors see the check like any other call).
        service: The health service name (``connection.health_service``).
        timeout: The call's deadline in seconds.
        on_done: Called with the finished call, on a grpcio thread; it must
            not block. Read the call with :func:`check_error`.
    """
    request = health_pb2.HealthCheckRequest(service=service)
    call = health_check_method(channel).future(request, timeout=timeout)
    call.add_done_callback(_hurry_if_failed)
    call.add_done_callback(on_done)
    return call


# What a check fails with when its connection may be going: a transport that
# was let go (UNAVAILABLE) or a peer gone silent (DEADLINE_EXCEEDED).
_CONNECTION_TROUBLE = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)


def _hurry_if_failed(call: grpc.Future[health_pb2.HealthCheckResponse]) -> None:
    """A check that failed for its connection is news for the watcher (see Watcher.hurry).

    Not an answer from a live server (UNIMPLEMENTED, NOT_SERVING, a refused
    stream): a server without the health service would otherwise keep the
    watcher sweeping fast at every ping.
    """
    error = call.exception()
    if error is None or status_code(error) not in _CONNECTION_TROUBLE:
        return
    if not refused_stream(error):
        get_watcher().hurry()


def health_check_method(
    channel: grpc.Channel,
) -> grpc.UnaryUnaryMultiCallable[health_pb2.HealthCheckRequest, health_pb2.HealthCheckResponse]:
    """``Health/Check`` on ``channel``, typed.

    Made here rather than through the generated ``HealthStub`` (which is
    untyped, and from grpcio-tools 1.60.2 registers no method): a registered
    method is named in grpcio's own per-method metrics and skips a lookup per
    call, as it was with the stubs of grpcio-health-checking 1.62 and later.
    """
    return channel.unary_unary(  # type: ignore[call-arg]  # the stubs lack _registered_method
        CHECK_METHOD,
        request_serializer=health_pb2.HealthCheckRequest.SerializeToString,
        response_deserializer=health_pb2.HealthCheckResponse.FromString,
        _registered_method=True,
    )


def aio_health_check_method(
    channel: grpc.aio.Channel,
) -> grpc.aio.UnaryUnaryMultiCallable[
    health_pb2.HealthCheckRequest, health_pb2.HealthCheckResponse
]:
    """``Health/Check`` on an asyncio ``channel``, typed (see :func:`health_check_method`)."""
    return channel.unary_unary(  # type: ignore[call-arg]  # the stubs lack _registered_method
        CHECK_METHOD,
        request_serializer=health_pb2.HealthCheckRequest.SerializeToString,
        response_deserializer=health_pb2.HealthCheckResponse.FromString,
        _registered_method=True,
    )


def check_error(call: grpc.Future[health_pb2.HealthCheckResponse]) -> str | None:
    """``None`` if a finished health check says the server is usable, else why not."""
    error = call.exception()
    return check_verdict(error, call.result().status if error is None else None)


def check_verdict(error: BaseException | None, status: int | None) -> str | None:
    """``None`` if a health check's outcome says the server is usable, else why not.

    Shared by the sync worker (from a finished future) and the asyncio worker
    (from an awaited call): ``error`` is what the call raised, ``status`` the
    response's serving status when it answered.

    A server without the health service (UNIMPLEMENTED) is usable: it was
    reachable, and that is all a check can ask of it. So is a server that
    refused the check's stream because it was at its stream limit.
    """
    if error is None:
        if status == health_pb2.HealthCheckResponse.SERVING:
            return None
        name = health_pb2.HealthCheckResponse.ServingStatus.Name(status or 0)
        return f"health status {name}"
    code = status_code(error)
    if code is grpc.StatusCode.UNIMPLEMENTED or refused_stream(error):
        return None
    if code is None:
        return f"{type(error).__name__}: {error}"
    if code is grpc.StatusCode.NOT_FOUND:
        return "health check: the server does not know this health service name"
    said = details(error)
    return f"{code.name.lower()}: {said}" if said else code.name.lower()
