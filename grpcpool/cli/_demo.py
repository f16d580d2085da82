"""``python -m grpcpool demo``: a pool at work against a server that dies and comes back.

The demo is the documentation's claims, run: it starts an echo server on 127.0.0.1
and a pool under a :class:`~grpcpool.Supervisor`, and narrates its steps
while printing the pool's telemetry events as they fire:

1. calls spread over N distinct connections, as the server sees its peers,
   and a stub built once on ``grpcpool.channel``;
2. the server killed: every worker reports ``connection_down``,
   ``disconnected`` and ``reconnect_scheduled``, ``get_channel`` raises
   :class:`~grpcpool.NotConnectedError` and the stub's call fails with
   ``UNAVAILABLE``;
3. the server restarted on the same port: the same stub, called with
   ``wait_for_ready=True``, answers as soon as a connection is back (a stub
   on a channel from ``get_channel`` would fail: that channel is closed);
   workers reconnect on their jittered backoff timers and the pool is
   healthy again, with the recovery time;
4. ``least_in_flight`` sending calls around a slow connection
   (:mod:`grpcpool.cli._demo_routing`);
5. a pool spread over three backends, then four, then three again, as its
   resolver's answer changes (:mod:`grpcpool.cli._demo_backends`), and a
   pool following a registry that pushes (:mod:`grpcpool.cli._demo_push`);
6. a pool routing around a backend gone slow and one failing every call,
   with ``peak_ewma`` and outlier detection (:mod:`grpcpool.cli._demo_faults`;
   skipped where grpcpool has no ``peak_ewma``);
7. a scale up and a scale down;
8. a burst of callers growing an autoscaled pool whose connections are
   capped, and the pool shrinking back after it
   (:mod:`grpcpool.cli._demo_autoscale`);
9. the final status table.

Each claim is checked as it is shown: if the library misbehaves the demo says
so and exits 1, so it doubles as an end-to-end smoke test. Backoff is set
small (0.2 s to 2 s instead of the library's 1 s to 30 s) so the recovery
fits in a few seconds.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

import blinker
import grpc
import pykka

import grpcpool
from grpcpool import telemetry
from grpcpool.cli._console import Console, format_duration, format_event, status_table, table
from grpcpool.cli._demo_autoscale import AutoscaleFailed, show_autoscale
from grpcpool.cli._demo_backends import BackendsFailed, show_backends
from grpcpool.cli._demo_faults import FaultsFailed, show_faults
from grpcpool.cli._demo_push import PushFailed, show_push
from grpcpool.cli._demo_routing import RoutingFailed, show_least_in_flight
from grpcpool.cli.echo import EchoServer, say
from grpcpool.cli.echo.echo_pb2 import EchoReply, EchoRequest
from grpcpool.cli.echo.echo_pb2_grpc import EchoStub
from grpcpool.config import Config
from grpcpool.connection._call_errors import status_code
from grpcpool.errors import GrpcPoolError, NotConnectedError
from grpcpool.supervisor import Supervisor

__all__ = ["DemoFailed", "DemoOptions", "demo_config", "run"]

POOL_NAME = "demo"
BACKOFF_MIN = 0.2
BACKOFF_MAX = 2.0
CONNECT_TIMEOUT = 2.0
SCALE_BY = 2
# Server threads: enough for the routing step's callers and its slow calls.
SERVER_THREADS = 16

# Events worth a line each. channel.ping, pool.get_channel and pool.status
# would drown the story: one per call, or one per interval.
SHOWN_EVENTS = tuple(
    name for name in telemetry.EVENTS if not name.endswith((".ping", ".get_channel", ".status"))
)


class DemoFailed(Exception):
    """The library did not do what the demo just claimed."""


@dataclass(frozen=True)
class DemoOptions:
    """What the command line chose.

    Attributes:
        size: Workers (channels) in the pool.
        seconds: How long the server stays down.
        quiet: Narrate without printing each telemetry event.
    """

    size: int = 4
    seconds: float = 2.0
    quiet: bool = False


def demo_config(port: int, size: int) -> Config:
    """The demo pool: plaintext to 127.0.0.1, fast backoff so recovery is quick.

    ``max_reconnect_attempts`` is raised so that a long ``--seconds`` shows
    backoff at work without the warning that a long outage logs.
    """
    return Config.new(
        endpoint={"type": "local", "host": "127.0.0.1", "port": port},
        pool={"size": size, "name": POOL_NAME},
        connection={
            "backoff_min": BACKOFF_MIN,
            "backoff_max": BACKOFF_MAX,
            "connect_timeout": CONNECT_TIMEOUT,
            "max_reconnect_attempts": 50,
        },
    )


class _EventTap:
    """Receives the demo pool's events: prints them and lets the narrator wait for them."""

    def __init__(self, console: Console, quiet: bool) -> None:
        self._console = console
        self._quiet = quiet
        self._seen: list[tuple[str, str]] = []  # (short event name, worker id)
        self._changed = threading.Condition()
        self._receivers: list[tuple[blinker.NamedSignal, Any]] = []
        for name in SHOWN_EVENTS:
            signal = blinker.signal(name)
            receiver = self._receiver_for(name)
            signal.connect(receiver, sender=POOL_NAME, weak=False)
            self._receivers.append((signal, receiver))

    def _receiver_for(self, name: str) -> Any:
        short = name.removeprefix("grpc_connection_pool.")

        def receive(sender: str, *, measurements: dict[str, Any], metadata: dict[str, Any]) -> None:
            if not self._quiet:
                self._console.line("  " + format_event(name, measurements, metadata))
            with self._changed:
                self._seen.append((short, str(metadata.get("worker_id", ""))))
                self._changed.notify_all()

        return receive

    def mark(self) -> int:
        """A position in the event stream to wait from."""
        with self._changed:
            return len(self._seen)

    def wait_workers(self, short: str, count: int, since: int, timeout: float) -> bool:
        """Waits until ``count`` distinct workers have sent ``short`` after ``since``."""

        def enough() -> bool:
            workers = {w for event, w in self._seen[since:] if event == short}
            return len(workers) >= count

        with self._changed:
            return self._changed.wait_for(enough, timeout)

    def close(self) -> None:
        for signal, receiver in self._receivers:
            signal.disconnect(receiver, sender=POOL_NAME)


def run(options: DemoOptions, console: Console | None = None) -> None:
    """Runs the demo, then stops everything it started.

    Raises:
        DemoFailed: The pool did not behave as narrated.
        GrpcPoolError: The pool could not be started or used.
        RuntimeError: The echo server could not bind its port.
    """
    console = console if console is not None else Console(clock=True)
    size = options.size
    tap = _EventTap(console, options.quiet)
    server: EchoServer | None = None
    supervisor: pykka.ActorRef[Supervisor] | None = None
    try:
        server = EchoServer(max_workers=SERVER_THREADS)
        port = server.port
        console.line(
            f"grpcpool demo: a pool of {size} channels to an echo server on {server.address}\n"
            f"(reconnect backoff {BACKOFF_MIN} s to {BACKOFF_MAX} s here, "
            "so it recovers fast; the library default is 1 s to 30 s)"
        )
        console.line(f"[1] start a Supervisor with PoolSpec(config, name={POOL_NAME!r})")
        since = tap.mark()
        supervisor = Supervisor.start(children=[grpcpool.PoolSpec(demo_config(port, size))])
        grpcpool.await_ready(POOL_NAME, timeout=CONNECT_TIMEOUT + 3, min_ready=size)
        tap.wait_workers("channel.connected", size, since, timeout=2.0)
        _spread_calls(console, server, size, "the server saw")
        stub = EchoStub(grpcpool.channel(POOL_NAME))
        reply = _stub_call(stub, "hello", timeout=5.0)
        console.line(
            f"    stub = EchoStub(grpcpool.channel({POOL_NAME!r})), built once and kept; "
            f"its call went to {reply.peer}"
        )

        console.line("[2] kill the server")
        since = tap.mark()
        killed = time.monotonic()
        server.stop()
        _wait_empty()
        console.line(
            f"    every channel left the pool {format_duration(time.monotonic() - killed)} "
            "after the kill"
        )
        tap.wait_workers("channel.reconnect_scheduled", size, since, timeout=2.0)
        try:
            grpcpool.get_channel(POOL_NAME)
        except NotConnectedError as error:
            console.line(
                f"    grpcpool.get_channel({POOL_NAME!r}) raised NotConnectedError: {error}"
            )
        else:
            raise DemoFailed("get_channel handed out a channel while the server was down")
        try:
            stub.Say(EchoRequest(text="anyone?"), timeout=1.0)
        except grpc.RpcError as error:
            console.line(f"    the stub's call failed at once: {_code(error)}")
        else:
            raise DemoFailed("the stub's call succeeded while the server was down")
        console.line(f"    the server stays down for {options.seconds:g} s; workers keep retrying")
        time.sleep(options.seconds)

        console.line(f"[3] restart the server on port {port}")
        since = tap.mark()
        server = EchoServer(port=port, max_workers=SERVER_THREADS)
        restarted = time.monotonic()
        wait = BACKOFF_MAX + CONNECT_TIMEOUT + 2
        reply = _stub_call(stub, "back?", timeout=wait, wait_for_ready=True)
        console.line(
            f"    the same stub, called with wait_for_ready=True, timeout={wait:g}: answered "
            f"{format_duration(time.monotonic() - restarted)} after the restart, by {reply.peer}"
        )
        grpcpool.await_ready(POOL_NAME, timeout=BACKOFF_MAX + CONNECT_TIMEOUT + 2, min_ready=size)
        recovery = time.monotonic() - restarted
        tap.wait_workers("channel.connected", size, since, timeout=2.0)
        console.line(
            f"    {grpcpool.status(POOL_NAME).status} again {format_duration(recovery)} after "
            f"the restart (each worker waits out its own jittered backoff, at most {BACKOFF_MAX} s)"
        )
        _spread_calls(console, server, size, "over new connections, the server saw")

        console.line("[4] least_in_flight: calls go around a slow connection")
        show_least_in_flight(console, server)

        console.line("[5] many backends: connections follow the resolver's answer")
        show_backends(console)
        show_push(console)

        console.line("[6] slow and failing backends: calls go around both")
        show_faults(console)

        console.line(f"[7] scale up by {SCALE_BY}, then down by {SCALE_BY}")
        bigger = grpcpool.scale_up(POOL_NAME, SCALE_BY)
        grpcpool.await_ready(POOL_NAME, timeout=CONNECT_TIMEOUT + 3, min_ready=bigger)
        console.line(
            f"    scale_up -> {bigger} workers, {grpcpool.status(POOL_NAME).current_size} ready"
        )
        smaller = grpcpool.scale_down(POOL_NAME, SCALE_BY)
        after = grpcpool.status(POOL_NAME)
        console.line(f"    scale_down -> {smaller} workers, {after.current_size} ready")
        if (bigger, smaller, len(after.workers)) != (size + SCALE_BY, size, size):
            raise DemoFailed(f"scaling went {size} -> {bigger} -> {smaller}, {after.workers!r}")

        console.line("[8] autoscale: a burst of callers grows the pool, which shrinks after")
        show_autoscale(console, server)

        console.line("[9] final status")
        console.line(status_table(grpcpool.status(POOL_NAME)))
    finally:
        if supervisor is not None:
            supervisor.stop()
        if server is not None:
            server.stop()
        tap.close()
    console.line(f"done in {console.elapsed():.1f} s: everything stopped, every channel closed")


def _spread_calls(console: Console, server: EchoServer, size: int, saw: str) -> None:
    """Makes 10 calls per worker through ``get_channel`` and shows the server's view of them."""
    before = server.peer_counts()
    calls = 10 * size
    for n in range(calls):
        say(grpcpool.get_channel(POOL_NAME), f"call {n}")
    counts = server.peer_counts() - before
    console.line(f"    {calls} calls through grpcpool.get_channel({POOL_NAME!r}); {saw}:")
    console.line(_indent(table(("peer (server's view)", "calls"), _rows(counts))))
    if len(counts) != size:
        raise DemoFailed(f"{calls} calls reached {len(counts)} peers, not {size}")


def _stub_call(stub: EchoStub, text: str, **options: Any) -> EchoReply:
    """One ``Say`` on ``stub``; a failure is the demo's, with the call's status code."""
    try:
        reply: EchoReply = stub.Say(EchoRequest(text=text), **options)
    except grpc.RpcError as error:
        raise DemoFailed(f"the stub's call failed: {_code(error)}") from error
    return reply


def _code(error: grpc.RpcError) -> str:
    """The status code's name of a failed call (``UNAVAILABLE``), or its text."""
    code = status_code(error)
    return code.name if code is not None else str(error)


def _rows(counts: Counter[str]) -> list[tuple[str, str]]:
    return [(peer, str(n)) for peer, n in sorted(counts.items())]


def _indent(text: str) -> str:
    return "\n".join("    " + line for line in text.split("\n"))


def _wait_empty(timeout: float = 3.0) -> None:
    """Waits until no channel of the demo pool is ready (the view emptied)."""
    deadline = time.monotonic() + timeout
    while grpcpool.status(POOL_NAME).current_size > 0:
        if time.monotonic() >= deadline:
            raise DemoFailed(f"the pool still had ready channels {timeout} s after the kill")
        time.sleep(0.005)


def describe_error(error: BaseException) -> str:
    """A one-line reason for a failed demo."""
    known = (DemoFailed, RoutingFailed, BackendsFailed, FaultsFailed, AutoscaleFailed, PushFailed)
    if isinstance(error, (*known, GrpcPoolError)):
        return str(error)
    return f"{type(error).__name__}: {error}"
