"""A ``grpc.aio`` echo server on 127.0.0.1 for the asyncio pool tests.

The asyncio twin of :class:`tests.servers.EchoServer`: ``/test.Echo/Unary``
(raw bytes, no generated code) returns the request unchanged and records the
caller's peer; ``Repeat`` (unary-stream) sends it back three times, ``Join``
(stream-unary) answers with the requests joined and ``Chat``
(stream-stream) echoes each request. ``b"hold"`` makes a call wait until the
test calls :meth:`AioEchoServer.release_held`. The server runs on the test's own event
loop (``grpc.aio.server()``, no thread of its own), serves
``grpc.health.v1.Health`` if asked, and can be killed and started again on the
same port, so a pool sees its server die and come back where it expects it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from types import TracebackType
from typing import Any, Self

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.servers import ECHO_METHOD, HOLD, HOLD_LIMIT

try:  # grpcio-health-checking ships an asyncio servicer (grpc_health.v1.health.aio)
    from grpc_health.v1.health import aio as _health_aio

    _AioHealth: Any = _health_aio.HealthServicer
except (ImportError, AttributeError):  # pragma: no cover - older grpcio-health-checking
    _AioHealth = None

__all__ = ["ECHO_METHOD", "HOLD", "AioEchoServer"]


class _CheckOnlyHealth(health_pb2_grpc.HealthServicer):
    """``Health.Check`` alone, for a grpcio-health-checking without the asyncio servicer."""

    def __init__(self) -> None:
        self._status: dict[str, int] = {"": health_pb2.HealthCheckResponse.SERVING}

    async def Check(self, request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        status = self._status.get(request.service)
        if status is None:
            await context.abort(grpc.StatusCode.NOT_FOUND)
        return health_pb2.HealthCheckResponse(status=status)

    async def set(self, service: str, status: int) -> None:
        self._status[service] = status


class AioEchoServer:
    """An asyncio echo server (optionally with the health service) that records peers.

    Use it as ``async with AioEchoServer() as server:`` inside the test's loop.

    Args:
        port: 0 picks a free port; a given port lets a test restart the server
            where clients expect it (also what :meth:`restart` does).
        with_health: Also serve ``grpc.health.v1.Health`` (SERVING at first).
        host: The loopback address to listen on (127.0.0.2, ... are loopback too).
        credentials: Serve TLS with these credentials instead of plaintext.
    """

    def __init__(
        self,
        port: int = 0,
        *,
        with_health: bool = True,
        host: str = "127.0.0.1",
        credentials: grpc.ServerCredentials | None = None,
    ) -> None:
        self.port = port
        self.host = host
        self.with_health = with_health
        self.credentials = credentials
        self.peers: list[str] = []
        self.metadata: list[tuple[tuple[str, Any], ...]] = []
        self.calls = 0
        self.serving = True
        self._server: grpc.aio.Server | None = None
        self._held = asyncio.Event()
        # Set (and replaced) at each call, so a test can wait for the next one.
        self._called = asyncio.Event()

    async def start(self) -> Self:
        """Starts serving on ``self.port`` (a free one the first time if 0)."""
        server = grpc.aio.server()
        handlers: dict[str, grpc.RpcMethodHandler[Any, Any]] = {
            "Unary": grpc.unary_unary_rpc_method_handler(self._echo),
            "Repeat": grpc.unary_stream_rpc_method_handler(self._repeat),
            "Join": grpc.stream_unary_rpc_method_handler(self._join),
            "Chat": grpc.stream_stream_rpc_method_handler(self._chat),
        }
        server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler("test.Echo", handlers),)
        )
        if self.with_health:
            health = _AioHealth() if _AioHealth is not None else _CheckOnlyHealth()
            status = (
                health_pb2.HealthCheckResponse.SERVING
                if self.serving
                else health_pb2.HealthCheckResponse.NOT_SERVING
            )
            await health.set("", status)
            health_pb2_grpc.add_HealthServicer_to_server(health, server)
            self._health: Any = health
        address = f"{self.host}:{self.port}"
        if self.credentials is None:
            port = server.add_insecure_port(address)
        else:
            port = server.add_secure_port(address, self.credentials)
        if port == 0:
            raise RuntimeError(f"could not bind {self.host}:{self.port}")
        self.port = port
        await server.start()
        self._server = server
        return self

    async def _echo(self, request: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
        self.peers.append(context.peer())
        self.metadata.append(tuple((m[0], m[1]) for m in context.invocation_metadata() or ()))
        self.calls += 1
        called, self._called = self._called, asyncio.Event()
        called.set()
        if request == HOLD:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._held.wait(), HOLD_LIMIT)
        return request

    async def _repeat(
        self, request: bytes, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[bytes]:
        for _ in range(3):
            yield await self._echo(request, context)

    async def _join(
        self, requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext[Any, Any]
    ) -> bytes:
        return b"".join([await self._echo(request, context) async for request in requests])

    async def _chat(
        self, requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[bytes]:
        async for request in requests:
            yield await self._echo(request, context)

    async def wait_for_calls(self, count: int, timeout: float = 5.0) -> None:
        """Waits until the server has seen ``count`` calls in all (woken by each call)."""

        async def seen() -> None:
            while self.calls < count:
                await self._called.wait()

        await asyncio.wait_for(seen(), timeout)

    def release_held(self) -> None:
        """Lets every held call (and any later one) answer."""
        self._held.set()

    async def set_serving(self, serving: bool) -> None:
        """Sets the overall health status (service ``""``) to SERVING or NOT_SERVING."""
        assert self.with_health and self._server is not None
        self.serving = serving
        status = (
            health_pb2.HealthCheckResponse.SERVING
            if serving
            else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        await self._health.set("", status)

    async def kill(self) -> None:
        """Aborts every connection and call now (no grace); :meth:`restart` serves again."""
        server, self._server = self._server, None
        if server is not None:
            await server.stop(None)

    async def restart(self) -> None:
        """A new server on the same port (after :meth:`kill`)."""
        assert self._server is None, "kill() the server first"
        await self.start()

    async def stop(self) -> None:
        """Releases held calls and stops the server at once. Idempotent."""
        self._held.set()
        await self.kill()

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.stop()
