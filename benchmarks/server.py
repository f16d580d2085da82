"""An echo server in its own process, bound to one loopback address (127.0.0.1 by default).

The parent starts it with :class:`ServerProcess`; the child runs
``python -m benchmarks.server`` and prints ``READY <port> <t>`` once it
listens, ``t`` being its ``time.monotonic()`` just before it bound the port:
on Linux that clock is one for every process, so a parent timing a restart
knows when clients could first connect, not merely when it read the line.
It serves the raw-bytes echo method ``/test.Echo/Unary`` (the same one as
``tests/servers.py``), optionally sleeping in the handler, the standard health
service, and ``/bench.Stats/Peers``, which answers how many distinct client
connections (peers) called the echo method since the last ask.

``/bench.Stats/Slow`` makes one client connection slow: ``mark <ms>`` sent on
a connection delays every later echo call on that same connection (the same
``context.peer()``) by ``<ms>``, in addition to the handler's sleep, and
``count`` answers how many echo calls took the slow connection, of how many,
since the mark or the last count. A connection is chosen by the client
sending the mark on it, so no client needs to know its own address.

``/bench.Stats/Where`` answers the address the server listens on, so a
client that spreads calls over several servers (one per loopback address)
learns from each reply which one served it.

``/bench.Stats/Fault`` switches a fault on or off while the server runs,
for every later echo and ``Where`` call (the health service and the
``bench.Stats`` methods are never affected, so the health check keeps
answering SERVING): ``delay <ms>`` makes every call that much slower,
``fail`` fails every call at once with ``UNAVAILABLE`` (the details name the
server's address, so a client knows which backend failed it), ``stall <n>
<ms>`` makes every n-th call that much slower, and ``heal`` turns every
fault off. ``count`` answers, as JSON, the echo and ``Where`` calls the
server received since the last count (``calls``, of which ``failed``), and
with ``--track-peers`` how many distinct client connections made them
(``peers``); it resets them. :meth:`ServerProcess.fault` and
:meth:`ServerProcess.counts` send these.

The child ends when its stdin closes (the parent went away or stopped it) or
on SIGTERM; :meth:`ServerProcess.kill` sends SIGKILL, so the kernel resets
every connection at once, as when a server crashes.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import threading
import time
from concurrent import futures
from dataclasses import dataclass
from types import TracebackType
from typing import IO, Any

import grpc

from benchmarks.server_faults import ServerFaults

__all__ = [
    "ECHO_METHOD",
    "FAULT_METHOD",
    "PEERS_METHOD",
    "SLOW_METHOD",
    "WHERE_METHOD",
    "ServerCounts",
    "ServerProcess",
    "distinct_peers",
    "mark_slow",
    "slow_calls",
]

ECHO_METHOD = "/test.Echo/Unary"
PEERS_METHOD = "/bench.Stats/Peers"
SLOW_METHOD = "/bench.Stats/Slow"
WHERE_METHOD = "/bench.Stats/Where"
FAULT_METHOD = "/bench.Stats/Fault"
_HOST = "127.0.0.1"
# Seconds the child gets to start listening, and to stop.
_START_TIMEOUT = 30.0
_STOP_TIMEOUT = 10.0


@dataclass(frozen=True)
class ServerCounts:
    """What one server received between two counts (see ``/bench.Stats/Fault``).

    Attributes:
        calls: Echo and ``Where`` calls, failed ones included.
        failed: Of those, the calls a ``fail`` fault failed.
        peers: Distinct client connections that made them (0 unless the
            server tracks peers).
    """

    calls: int
    failed: int
    peers: int


class ServerProcess:
    """A :mod:`benchmarks.server` child process.

    Args:
        port: 0 picks a free port; a given port restarts a server where
            clients expect it.
        max_streams: ``grpc.max_concurrent_streams`` for the server (0: unset).
        sleep_ms: How long the echo handler sleeps.
        threads: The server's handler thread pool.
        track_peers: Record each echo call's peer (for :func:`distinct_peers`).
        cpus: Pin the server (all its threads) to these CPUs.
        host: The address to listen on. Other loopback addresses (127.0.0.2,
            127.0.0.3, ...) let several servers share one port, as replicas
            behind one name would.
    """

    def __init__(
        self,
        port: int = 0,
        *,
        max_streams: int = 0,
        sleep_ms: float = 0.0,
        threads: int = 16,
        track_peers: bool = False,
        cpus: frozenset[int] | None = None,
        host: str = _HOST,
    ) -> None:
        command = [
            sys.executable,
            "-m",
            "benchmarks.server",
            f"--port={port}",
            f"--max-streams={max_streams}",
            f"--sleep-ms={sleep_ms}",
            f"--threads={threads}",
            f"--host={host}",
        ]
        if track_peers:
            command.append("--track-peers")
        if cpus:
            command.append("--cpus=" + ",".join(str(cpu) for cpu in sorted(cpus)))
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        self._control: grpc.Channel | None = None  # for fault() and counts(), opened at need
        self._process = subprocess.Popen(
            command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=root,
        )
        self.port, listening_at = self._read_ready()
        self.host = host
        self.target = f"{host}:{self.port}"
        # No client can have connected before this moment (the child's clock
        # reading before it bound the port), and the parent reads READY some
        # time after clients could: timing a restart from the read would let
        # a client reconnect "before" the server was back.
        self.ready_at = min(listening_at, time.monotonic())

    def fault(self, command: str) -> None:
        """Switches a fault: ``"delay 50"``, ``"fail"``, ``"stall 20 200"`` or ``"heal"``.

        It holds for every echo and ``Where`` call the server starts after
        this returns.
        """
        self._ask(command)

    def counts(self) -> ServerCounts:
        """The calls received since the last count (or the start); resets them."""
        answer = json.loads(self._ask("count"))
        return ServerCounts(int(answer["calls"]), int(answer["failed"]), int(answer["peers"]))

    def _ask(self, command: str) -> str:
        """Sends ``command`` to the Fault method on a channel of the parent's own, kept open."""
        if self._control is None:
            self._control = grpc.insecure_channel(
                self.target, options=(("grpc.use_local_subchannel_pool", 1),)
            )
        answer: bytes = self._control.unary_unary(FAULT_METHOD)(
            command.encode(), timeout=_START_TIMEOUT, wait_for_ready=True
        )
        return answer.decode()

    def _read_ready(self) -> tuple[int, float]:
        stdout = self._process.stdout
        assert stdout is not None
        line: list[str] = []
        reader = threading.Thread(target=lambda: line.append(stdout.readline()), daemon=True)
        reader.start()
        reader.join(_START_TIMEOUT)
        if not line or not line[0].startswith("READY "):
            self.kill()
            raise RuntimeError(f"echo server did not start: {line!r}")
        _, port, listening_at = line[0].split()
        return int(port), float(listening_at)

    @property
    def pid(self) -> int:
        return self._process.pid

    def kill(self) -> None:
        """SIGKILL: connections are reset at once, as in a crash. Idempotent."""
        if self._process.poll() is None:
            self._process.kill()
        self._reap()

    def stop(self) -> None:
        """Closes the child's stdin, which makes it stop; kills it if it lingers."""
        if self._process.poll() is None:
            try:
                self._close_stdin()
                self._process.wait(_STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self._process.kill()
        self._reap()

    def _close_stdin(self) -> None:
        stdin = self._process.stdin
        if stdin is not None and not stdin.closed:
            with contextlib.suppress(BrokenPipeError):
                stdin.close()

    def _reap(self) -> None:
        if self._control is not None:
            self._control.close()
            self._control = None
        self._process.wait(_STOP_TIMEOUT)
        self._close_stdin()
        stdout: IO[str] | None = self._process.stdout
        if stdout is not None:
            stdout.close()

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


def distinct_peers(target: str, reset: bool = True) -> int:
    """How many distinct connections called the echo method (since the last reset)."""
    channel = grpc.insecure_channel(target, options=(("grpc.use_local_subchannel_pool", 1),))
    try:
        answer = channel.unary_unary(PEERS_METHOD)(b"reset" if reset else b"", timeout=5.0)
    finally:
        channel.close()
    return int(answer)


def mark_slow(channel: grpc.Channel, delay_ms: float) -> None:
    """Makes the connection this call takes on ``channel`` slow by ``delay_ms`` per echo call.

    Only one connection is slow at a time: a new mark replaces the old one,
    and resets the counts of :func:`slow_calls`.
    """
    channel.unary_unary(SLOW_METHOD)(f"mark {delay_ms}".encode(), timeout=5.0)


def slow_calls(target: str) -> tuple[int, int]:
    """(echo calls on the slow connection, all echo calls) since the mark or last ask; resets."""
    channel = grpc.insecure_channel(target, options=(("grpc.use_local_subchannel_pool", 1),))
    try:
        answer = channel.unary_unary(SLOW_METHOD)(b"count", timeout=5.0)
    finally:
        channel.close()
    slow, total = answer.split()
    return int(slow), int(total)


# --- the child process -------------------------------------------------------------


def _serve(args: argparse.Namespace) -> None:
    from grpc_health.v1 import health, health_pb2_grpc

    if args.cpus:
        # Before any thread starts: every thread of this process inherits it.
        os.sched_setaffinity(0, {int(cpu) for cpu in args.cpus.split(",")})

    sleep_s = args.sleep_ms / 1000.0
    peers: set[str] = set()
    peers_lock = threading.Lock()
    # The slow connection's peer, its extra delay (s), and the echo calls
    # counted since the mark: [on the slow connection, in all].
    slow: dict[str, Any] = {"peer": None, "delay": 0.0}
    slow_counts = [0, 0]
    faults = ServerFaults(args.host, args.track_peers)

    def echo(request: bytes, context: grpc.ServicerContext) -> bytes:
        extra = faults.enter(context)
        if args.track_peers:
            peer = context.peer()
            with peers_lock:
                peers.add(peer)
        delay = sleep_s + extra
        if slow["peer"] is not None:  # only once a client asked for a slow connection
            on_slow = context.peer() == slow["peer"]
            with peers_lock:
                slow_counts[0] += on_slow
                slow_counts[1] += 1
            if on_slow:
                delay += slow["delay"]
        if delay > 0:
            time.sleep(delay)
        return request

    def slow_connection(request: bytes, context: grpc.ServicerContext) -> bytes:
        command, _, value = request.decode().partition(" ")
        with peers_lock:
            answer = f"{slow_counts[0]} {slow_counts[1]}"
            slow_counts[:] = [0, 0]
            if command == "mark":
                slow["peer"], slow["delay"] = context.peer(), float(value) / 1000.0
        return answer.encode()

    def count_peers(request: bytes, context: grpc.ServicerContext) -> bytes:
        with peers_lock:
            count = len(peers)
            if request == b"reset":
                peers.clear()
        return str(count).encode()

    def where(request: bytes, context: grpc.ServicerContext) -> bytes:
        delay = faults.enter(context)
        if delay > 0:
            time.sleep(delay)
        return str(args.host).encode()

    def fault(request: bytes, context: grpc.ServicerContext) -> bytes:
        try:
            return faults.command(request.decode()).encode()
        except ValueError as error:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(error))


    options: list[tuple[str, Any]] = []
    if args.max_streams > 0:
        options.append(("grpc.max_concurrent_streams", args.max_streams))
    executor = futures.ThreadPoolExecutor(max_workers=args.threads, thread_name_prefix="echo")
    server = grpc.server(executor, options=options)
    server.add_generic_rpc_handlers(
        (
            grpc.method_handlers_generic_handler(
                "test.Echo", {"Unary": grpc.unary_unary_rpc_method_handler(echo)}
            ),
            grpc.method_handlers_generic_handler(
                "bench.Stats",
                {
                    "Peers": grpc.unary_unary_rpc_method_handler(count_peers),
                    "Slow": grpc.unary_unary_rpc_method_handler(slow_connection),
                    "Where": grpc.unary_unary_rpc_method_handler(where),
                    "Fault": grpc.unary_unary_rpc_method_handler(fault),
                },
            ),
        )
    )
    health_pb2_grpc.add_HealthServicer_to_server(health.HealthServicer(), server)
    listening_at = time.monotonic()  # before the bind: no client can connect earlier
    port = server.add_insecure_port(f"{args.host}:{args.port}")
    if port == 0:
        print(f"FAILED to bind {args.host}:{args.port}", flush=True)
        sys.exit(1)
    server.start()
    print(f"READY {port} {listening_at!r}", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        sys.stdin.read()  # returns when the parent closes our stdin
    server.stop(0).wait(_STOP_TIMEOUT)
    executor.shutdown(wait=False, cancel_futures=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--max-streams", type=int, default=0)
    parser.add_argument("--sleep-ms", type=float, default=0.0)
    parser.add_argument("--threads", type=int, default=16)
    parser.add_argument("--track-peers", action="store_true")
    parser.add_argument("--cpus", default="", help="pin to these CPUs, e.g. 1 or 0,1")
    parser.add_argument("--host", default=_HOST, help="loopback address to listen on")
    _serve(parser.parse_args(argv))


if __name__ == "__main__":
    main()
