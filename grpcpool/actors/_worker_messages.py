"""The messages a ChannelWorker receives, and how it reads a health check.

Every message about a channel carries the channel's generation: grpcio calls
back on its own threads, possibly after the worker has moved on to a new
channel, and the generation lets the worker drop news about an old one.
"""

from __future__ import annotations

from dataclasses import dataclass

import grpc
from grpc_health.v1 import health_pb2

__all__ = ["Resync", "check_error"]


@dataclass(frozen=True)
class _Connectivity:
    generation: int
    state: grpc.ChannelConnectivity


@dataclass(frozen=True)
class _ConnectTimeout:
    generation: int


@dataclass(frozen=True)
class _Reconnect:
    generation: int


@dataclass(frozen=True)
class _Ping:
    generation: int


@dataclass(frozen=True)
class _PingDone:
    generation: int
    started: float
    call: grpc.Future


@dataclass(frozen=True)
class Resync:
    """Asks a worker to report its state again (after a registry restart)."""


def check_error(call: grpc.Future) -> str | None:
    """``None`` if a finished health check says the server is usable, else why not."""
    error = call.exception()
    if error is None:
        status = call.result().status
        if status == health_pb2.HealthCheckResponse.SERVING:
            return None
        return f"health status {health_pb2.HealthCheckResponse.ServingStatus.Name(status)}"
    code = error.code() if isinstance(error, grpc.Call) else None
    if code is grpc.StatusCode.UNIMPLEMENTED:
        return None  # the server has no health service: reachable is healthy
    if code is None:
        return f"{type(error).__name__}: {error}"
    if code is grpc.StatusCode.NOT_FOUND:
        return "health check: the server does not know this health service name"
    details = error.details()
    return f"{code.name.lower()}: {details}" if details else code.name.lower()
