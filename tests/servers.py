"""Real grpcio servers on 127.0.0.1 for the pool tests.

The echo service uses raw bytes (no generated code): ``/test.Echo/Unary``
returns the request unchanged; ``Repeat`` (unary-stream) sends it back three
times; ``Join`` (stream-unary) answers with the requests joined; ``Chat``
(stream-stream) echoes each request. Two requests do more: ``b"hold"`` makes
a call wait until the test releases it (:meth:`EchoServer.release_held`),
and ``b"unavailable"`` fails the call with ``UNAVAILABLE``.
:class:`EchoStub` is the client side, shaped like a generated stub so tests
read like user code. :class:`EchoProcess` runs an :class:`EchoServer` in a
process of its own, so that a test can kill it with ``SIGKILL``.
"""

from __future__ import annotations

import argparse
import contextlib
import select
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

ECHO_METHOD = "/test.Echo/Unary"
HOLD = b"hold"
UNAVAILABLE = b"unavailable"
# How long a held call waits at most for release_held (a test that forgets
# to release must not hang the server's shutdown).
HOLD_LIMIT = 30.0
# How long an EchoProcess child gets to start listening.
_START_TIMEOUT = 30.0


class EchoStub:
    """Client for the echo service, built like a generated stub."""

    def __init__(self, channel: grpc.Channel) -> None:
        self.Unary = channel.unary_unary(ECHO_METHOD, _registered_method=True)
        self.Repeat = channel.unary_stream("/test.Echo/Repeat")
        self.Join = channel.stream_unary("/test.Echo/Join")
        self.Chat = channel.stream_stream("/test.Echo/Chat")


class EchoServer:
    """An echo server (optionally with the health service) that records peers.

    Args:
        port: 0 picks a free port; a given port lets a test restart the
            server where clients expect it.
        host: The loopback address to listen on (127.0.0.2, 127.0.0.3, ...
            are loopback too on Linux, so several servers can share a port).
        with_health: Also serve ``grpc.health.v1.Health``.
        options: Extra server channel arguments.
        credentials: Serve TLS with these credentials instead of plaintext.
        delay: Seconds each echo call takes (to have calls in flight).

    ``running`` counts the echo calls (streams included) each peer has in a
    handler now, and ``peak_running`` the most it ever had at once.

    Faults a test may switch on and off while the server runs (plain
    attributes, read by each call): ``delay`` (seconds every echo call takes),
    ``failing`` (a status code every echo call fails with at once, None: off;
    the health service keeps saying SERVING) and ``stall_every`` /
    ``stall_seconds`` (every n-th echo call takes that much longer; 0: off).
    """

    def __init__(
        self,
        port: int = 0,
        *,
        host: str = "127.0.0.1",
        with_health: bool = True,
        options: tuple[tuple[str, Any], ...] = (),
        credentials: grpc.ServerCredentials | None = None,
        delay: float = 0.0,
    ) -> None:
        self.delay = delay
        self.failing: grpc.StatusCode | None = None
        self.stall_every = 0
        self.stall_seconds = 0.0
        self.peers: list[str] = []
        self.metadata: list[tuple[tuple[str, str], ...]] = []
        self.calls = 0
        # Delayed or stalled echo calls the client had cancelled (or whose
        # deadline passed) by the time they would have answered.
        self.cancelled = 0
        self.running: dict[str, int] = {}
        self.peak_running: dict[str, int] = {}
        self._lock = threading.Lock()
        self._executor = futures.ThreadPoolExecutor(max_workers=8, thread_name_prefix="echo")
        self._server = grpc.server(self._executor, options=options)
        self._held = threading.Event()
        handlers = {
            "Unary": grpc.unary_unary_rpc_method_handler(self._counted(self._echo)),
            "Repeat": grpc.unary_stream_rpc_method_handler(self._counted_stream(self._repeat)),
            "Join": grpc.stream_unary_rpc_method_handler(self._counted(self._join)),
            "Chat": grpc.stream_stream_rpc_method_handler(self._counted_stream(self._chat)),
        }
        self._server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler("test.Echo", handlers),)
        )
        self.health: health.HealthServicer | None = None
        if with_health:
            self.health = health.HealthServicer()
            health_pb2_grpc.add_HealthServicer_to_server(self.health, self._server)
        self.host = host
        address = f"{host}:{port}"
        if credentials is None:
            self.port = self._server.add_insecure_port(address)
        else:
            self.port = self._server.add_secure_port(address, credentials)
        if self.port == 0:
            raise RuntimeError(f"could not bind {host}:{port}")
        self._server.start()

    def _enter(self, peer: str) -> None:
        with self._lock:
            now = self.running[peer] = self.running.get(peer, 0) + 1
            self.peak_running[peer] = max(now, self.peak_running.get(peer, 0))

    def _leave(self, peer: str) -> None:
        with self._lock:
            self.running[peer] -= 1

    def _counted(self, handler: Any) -> Any:
        """``handler`` (one response) counted in ``running`` while it runs."""

        def run(request: Any, context: grpc.ServicerContext) -> Any:
            peer = context.peer()
            self._enter(peer)
            try:
                return handler(request, context)
            finally:
                self._leave(peer)

        return run

    def _counted_stream(self, handler: Any) -> Any:
        """``handler`` (a stream of responses) counted in ``running`` until its stream ends."""

        def run(request: Any, context: grpc.ServicerContext) -> Iterator[bytes]:
            peer = context.peer()
            self._enter(peer)
            try:
                yield from handler(request, context)
            finally:
                self._leave(peer)

        return run

    def _echo(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        with self._lock:
            self.peers.append(context.peer())
            self.metadata.append(tuple((m.key, m.value) for m in context.invocation_metadata()))
            self.calls += 1
            stalled = self.stall_every > 0 and self.calls % self.stall_every == 0
        failing = self.failing
        if failing is not None:
            context.abort(failing, f"the test server fails every call with {failing.name}")
        if self.delay:
            time.sleep(self.delay)
        if stalled:
            time.sleep(self.stall_seconds)
        if (self.delay or stalled) and not context.is_active():
            with self._lock:
                self.cancelled += 1
        if request == HOLD:
            self._held.wait(HOLD_LIMIT)
        elif request == UNAVAILABLE:
            context.abort(grpc.StatusCode.UNAVAILABLE, "asked to answer UNAVAILABLE")
        return request

    def _repeat(self, request: bytes, context: grpc.ServicerContext) -> Iterator[bytes]:
        for _ in range(3):
            yield self._echo(request, context)

    def _join(self, requests: Iterator[bytes], context: grpc.ServicerContext) -> bytes:
        return b"".join(self._echo(request, context) for request in requests)

    def _chat(self, requests: Iterator[bytes], context: grpc.ServicerContext) -> Iterator[bytes]:
        for request in requests:
            yield self._echo(request, context)

    def release_held(self) -> None:
        """Lets every held call (and any later one) answer."""
        self._held.set()

    def set_serving(self, serving: bool, service: str = "") -> None:
        assert self.health is not None
        status = (
            health_pb2.HealthCheckResponse.SERVING
            if serving
            else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        self.health.set(service, status)

    def kill(self) -> None:
        """Aborts every connection and call now, without waiting; ``stop()`` cleans up."""
        self._server.stop(None)

    def stop(self, grace: float | None = None) -> None:
        """Stops the server and joins its threads. Idempotent."""
        self._held.set()
        self._server.stop(grace).wait(10)
        self._executor.shutdown(wait=True)

    def __enter__(self) -> EchoServer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


class EchoProcess:
    """An :class:`EchoServer` (with health) in a child process (``python -m tests.servers``).

    :meth:`kill` sends ``SIGKILL``: the kernel resets the server's
    connections at once, as when a server crashes. The child also ends when
    its stdin closes (:meth:`stop`, or the test process dying).

    Args:
        port: 0 picks a free port; a given port restarts a server where
            clients expect it.
        host: The loopback address to listen on.
    """

    def __init__(self, port: int = 0, *, host: str = "127.0.0.1") -> None:
        root = Path(__file__).resolve().parent.parent
        command = [sys.executable, "-m", "tests.servers", f"--host={host}", f"--port={port}"]
        self._process = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=root
        )
        assert self._process.stdout is not None
        # The child prints READY once it listens, or exits.
        started, _, _ = select.select([self._process.stdout], [], [], _START_TIMEOUT)
        line = self._process.stdout.readline() if started else ""
        if not line.startswith("READY "):
            self.kill()
            raise RuntimeError(f"echo server on {host}:{port} did not start: {line!r}")
        self.host = host
        self.port = int(line.split()[1])

    def kill(self) -> None:
        """SIGKILL, and reaped: once this returns the server's connections are reset."""
        if self._process.poll() is None:
            self._process.kill()
        self._reap()

    def stop(self) -> None:
        """Closes the child's stdin, which ends it. Idempotent."""
        if self._process.stdin is not None and not self._process.stdin.closed:
            with contextlib.suppress(BrokenPipeError):
                self._process.stdin.close()
        try:
            self._process.wait(10)
        except subprocess.TimeoutExpired:
            self._process.kill()
        self._reap()

    def _reap(self) -> None:
        self._process.wait(10)
        for stream in (self._process.stdin, self._process.stdout):
            if stream is not None and not stream.closed:
                with contextlib.suppress(BrokenPipeError):
                    stream.close()


def _serve_in_this_process() -> None:
    """The child of :class:`EchoProcess`: serves until stdin closes."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    with EchoServer(args.port, host=args.host) as server:
        print(f"READY {server.port}", flush=True)
        sys.stdin.read()


if __name__ == "__main__":
    _serve_in_this_process()
