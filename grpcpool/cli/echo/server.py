"""An embedded echo server on a loopback address and a typed client call for it."""

from __future__ import annotations

import collections
import threading
from concurrent import futures
from typing import cast

import grpc

from grpcpool.cli.echo import echo_pb2, echo_pb2_grpc
from grpcpool.cli.echo.health import HealthService
from grpcpool.connection.health import health_pb2, health_pb2_grpc

__all__ = ["EchoServer", "say"]

_STOP_WAIT_SECONDS = 10.0


class _Echo(echo_pb2_grpc.EchoServicer):
    """Answers with the request's text and the caller's address, and records the address.

    A server told to fail (:attr:`EchoServer.failing`) fails the call at once
    with that code, after recording it. A caller made slow with
    :meth:`EchoServer.slow_down`, or any caller of a server with a
    :attr:`EchoServer.delay`, waits first; stopping the server cuts the wait
    short so ``stop`` never lingers.
    """

    def __init__(self, server: EchoServer) -> None:
        self._server = server

    def Say(
        self, request: echo_pb2.EchoRequest, context: grpc.ServicerContext
    ) -> echo_pb2.EchoReply:
        peer: str = context.peer()
        self._server._record(peer)
        failing = self._server.failing
        if failing is not None:
            context.abort(failing, f"{self._server.address} fails every call")
        delay = self._server.delay + self._server.delay_for(peer)
        if delay > 0:
            self._server._stopping.wait(delay)
        return echo_pb2.EchoReply(text=request.text, peer=peer)


class EchoServer:
    """A running echo server, with the gRPC health service, on 127.0.0.1 by default.

    It starts in the constructor and serves until :meth:`stop`. Stopping drops
    every connection at once, as a crashed server would; to "restart" it, make
    a new one on the same port.

    Args:
        port: 0 picks a free port; a fixed port lets a restarted server come
            back where the clients expect it.
        credentials: ``grpc.ssl_server_credentials(...)`` for TLS; plaintext
            when ``None``.
        max_workers: Threads that run calls.
        host: The address to listen on. 127.0.0.2, 127.0.0.3, ... are
            loopback too on Linux, so several servers can share one port, as
            replicas behind one name do.

    Attributes:
        host: The address it listens on.
        port: The port it listens on.
        peers: The caller address of every call so far, in order (failed
            calls too).
        delay: Seconds every call waits before it is answered (0: none), to
            show a backend gone slow; set it at any time.
        failing: A status code every call fails with at once (None: off),
            to show a backend that fails calls while its health service
            still says SERVING; set it at any time.

    One caller (one client connection, as ``EchoReply.peer`` names it) can be
    made slow with :meth:`slow_down`, to show what a client does about a
    connection whose calls take long while the others answer at once.

    Raises:
        RuntimeError: The port could not be bound.
    """

    def __init__(
        self,
        port: int = 0,
        *,
        credentials: grpc.ServerCredentials | None = None,
        max_workers: int = 8,
        host: str = "127.0.0.1",
    ) -> None:
        self.host = host
        self.delay = 0.0
        self.failing: grpc.StatusCode | None = None
        self.peers: list[str] = []
        self._delays: dict[str, float] = {}
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._executor = futures.ThreadPoolExecutor(max_workers, thread_name_prefix="echo-server")
        self._server = grpc.server(self._executor)
        echo_pb2_grpc.add_EchoServicer_to_server(_Echo(self), self._server)
        self.health = HealthService()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self._server)
        address = f"{self.host}:{port}"
        try:
            if credentials is None:
                bound: int = self._server.add_insecure_port(address)
            else:
                bound = self._server.add_secure_port(address, credentials)
        except RuntimeError:
            bound = 0  # grpcio raises on some bind failures and returns 0 on others
        if bound == 0:
            self._executor.shutdown(wait=True)
            raise RuntimeError(f"echo server: cannot listen on {address}")
        self.port = bound
        self._server.start()
        self._stopped = False

    @property
    def address(self) -> str:
        """``host:port``, the target a client connects to."""
        return f"{self.host}:{self.port}"

    def _record(self, peer: str) -> None:
        with self._lock:
            self.peers.append(peer)

    def slow_down(self, peer: str, seconds: float) -> None:
        """Makes every later call from ``peer`` take ``seconds`` (0 makes it fast again).

        Args:
            peer: A caller address as the server sees it, e.g. the ``peer``
                of an ``EchoReply`` (``"ipv4:127.0.0.1:53412"``).
            seconds: How long each of its calls waits before answering.
        """
        with self._lock:
            if seconds > 0:
                self._delays[peer] = seconds
            else:
                self._delays.pop(peer, None)

    def delay_for(self, peer: str) -> float:
        """Seconds a call from ``peer`` waits before it is answered (0 unless slowed down)."""
        with self._lock:
            return self._delays.get(peer, 0.0)

    def peer_counts(self) -> collections.Counter[str]:
        """Calls per caller address so far."""
        with self._lock:
            return collections.Counter(self.peers)

    def set_serving(self, serving: bool, service: str = "") -> None:
        """What the health service answers for ``service`` ("" is the whole server)."""
        status = (
            health_pb2.HealthCheckResponse.SERVING
            if serving
            else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        self.health.set(service, status)

    def stop(self, grace: float | None = None) -> None:
        """Stops serving, closes every connection and joins the threads. Idempotent."""
        if self._stopped:
            return
        self._stopped = True
        self._stopping.set()
        self.health.close()
        self._server.stop(grace).wait(_STOP_WAIT_SECONDS)
        self._executor.shutdown(wait=True)

    def __enter__(self) -> EchoServer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def say(channel: grpc.Channel, text: str, timeout: float = 5.0) -> echo_pb2.EchoReply:
    """One ``Echo/Say`` call on ``channel``.

    Raises:
        grpc.RpcError: The call failed.
    """
    stub = echo_pb2_grpc.EchoStub(channel)
    return cast(echo_pb2.EchoReply, stub.Say(echo_pb2.EchoRequest(text=text), timeout=timeout))
