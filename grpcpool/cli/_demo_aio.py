"""``python -m grpcpool demo --aio``: the asyncio pool against a server that dies and comes back.

The short story of :mod:`grpcpool.aio`, run on one event loop and checked as
it is told (the demo exits 1 if the pool misbehaves):

1. ``async with grpcpool.aio.Pool(...)``: a pool of N ``grpc.aio`` channels,
   one task per connection and no thread per connection; a stub built once on
   ``pool.channel()`` sends concurrent calls, which the server sees arrive
   over N distinct connections;
2. the server killed: every connection leaves the pool's view (with the
   time), ``get_channel()`` raises :class:`~grpcpool.NotConnectedError` and
   the stub's call fails at once with ``UNAVAILABLE``;
3. the server restarted on the same port: the same stub, called with
   ``wait_for_ready=True``, answers as soon as a connection is back, and the
   pool is whole again (with the recovery time), its calls spread over N new
   connections;
4. the final status.

Backoff is set small (0.1 s to 0.5 s) so the recovery fits in a moment.
"""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass
from typing import Any

import blinker
import grpc

import grpcpool.aio
from grpcpool.cli._console import Console, format_duration, format_event, status_table, table
from grpcpool.cli._demo import SHOWN_EVENTS, DemoFailed
from grpcpool.cli.echo import EchoServer
from grpcpool.cli.echo.echo_pb2 import EchoReply, EchoRequest
from grpcpool.cli.echo.echo_pb2_grpc import EchoStub
from grpcpool.config import Config
from grpcpool.errors import NotConnectedError, PoolNotFoundError

__all__ = ["AioDemoOptions", "run"]

POOL_NAME = "demo-aio"
BACKOFF_MIN = 0.1
BACKOFF_MAX = 0.5
CONNECT_TIMEOUT = 2.0
CALLS_PER_CONNECTION = 10
SERVER_THREADS = 8
# Seconds for the pool to notice the kill, and to be whole again after the restart.
DOWN_TIMEOUT = 3.0
BACK_TIMEOUT = BACKOFF_MAX + CONNECT_TIMEOUT + 2


@dataclass(frozen=True)
class AioDemoOptions:
    """What the command line chose.

    Attributes:
        size: Connections in the pool.
        seconds: How long the server stays down.
        quiet: Narrate without printing each telemetry event.
    """

    size: int = 4
    seconds: float = 1.0
    quiet: bool = False


def demo_config(port: int, size: int) -> Config:
    """The demo pool: plaintext to 127.0.0.1, fast backoff so recovery is quick."""
    return Config.new(
        endpoint={"type": "local", "host": "127.0.0.1", "port": port},
        pool={"size": size},
        connection={
            "backoff_min": BACKOFF_MIN,
            "backoff_max": BACKOFF_MAX,
            "connect_timeout": CONNECT_TIMEOUT,
            "max_reconnect_attempts": 100,
        },
    )


def run(options: AioDemoOptions, console: Console | None = None) -> None:
    """Runs the demo on a new event loop, then stops everything it started.

    Raises:
        DemoFailed: The pool did not behave as narrated.
        GrpcPoolError: The pool could not be started or used.
        RuntimeError: The echo server could not bind its port.
    """
    console = console if console is not None else Console(clock=True)
    receivers = [] if options.quiet else _print_events(console)
    try:
        asyncio.run(_story(options, console))
    finally:
        for signal, receiver in receivers:
            signal.disconnect(receiver, sender=POOL_NAME)
    console.line(f"done in {console.elapsed():.1f} s: the pool stopped, every channel closed")


def _print_events(console: Console) -> list[tuple[blinker.NamedSignal, Any]]:
    """Prints the demo pool's telemetry events as they fire (on the loop's thread)."""
    receivers: list[tuple[blinker.NamedSignal, Any]] = []
    for name in SHOWN_EVENTS:

        def receive(sender: str, *, name: str = name, **event: Any) -> None:
            console.line("  " + format_event(name, event["measurements"], event["metadata"]))

        signal = blinker.signal(name)
        signal.connect(receive, sender=POOL_NAME, weak=False)
        receivers.append((signal, receive))
    return receivers


async def _story(options: AioDemoOptions, console: Console) -> None:
    size = options.size
    server = EchoServer(max_workers=SERVER_THREADS)
    port = server.port
    try:
        console.line(
            f"grpcpool demo --aio: an asyncio pool of {size} grpc.aio channels to an echo "
            f"server on {server.address}\n(reconnect backoff {BACKOFF_MIN} s to {BACKOFF_MAX} s "
            "here; the library default is 1 s to 30 s)"
        )
        console.line(f"[1] async with grpcpool.aio.Pool(config, name={POOL_NAME!r}) as pool")
        before = set(threading.enumerate())
        async with grpcpool.aio.Pool(demo_config(port, size), name=POOL_NAME) as pool:
            await pool.await_ready(timeout=CONNECT_TIMEOUT + 3, min_ready=size)
            added = [t.name for t in set(threading.enumerate()) - before if _pools(t)]
            console.line(
                f"    {size} of {size} ready; threads started for the pool: {len(added)} "
                "(grpc.aio's one poller thread per process and the server's aside)"
            )
            if added:
                raise DemoFailed(f"the asyncio pool started threads: {', '.join(added)}")
            stub = EchoStub(pool.channel())
            await _spread_calls(console, server, stub, size, "the server saw")

            console.line("[2] kill the server")
            killed = time.monotonic()
            server.stop()
            await _wait(pool, lambda: not pool.view.channels, DOWN_TIMEOUT, "left the pool")
            console.line(
                f"    every connection left the pool {format_duration(time.monotonic() - killed)} "
                "after the kill"
            )
            try:
                pool.get_channel()
            except NotConnectedError as error:
                console.line(f"    pool.get_channel() raised NotConnectedError: {error}")
            else:
                raise DemoFailed("get_channel handed out a channel while the server was down")
            try:
                await stub.Say(EchoRequest(text="anyone?"), timeout=1.0)
            except grpc.RpcError as error:
                console.line(f"    the stub's call failed at once: {_code(error)}")
            else:
                raise DemoFailed("the stub's call succeeded while the server was down")
            console.line(f"    the server stays down for {options.seconds:g} s")
            await asyncio.sleep(options.seconds)

            console.line(f"[3] restart the server on port {port}")
            server = EchoServer(port=port, max_workers=SERVER_THREADS)
            restarted = time.monotonic()
            reply = await _say(stub, "back?", timeout=BACK_TIMEOUT, wait_for_ready=True)
            console.line(
                f"    the same stub, called with wait_for_ready=True: answered "
                f"{format_duration(time.monotonic() - restarted)} after the restart, "
                f"by {reply.peer}"
            )
            await pool.await_ready(timeout=BACK_TIMEOUT, min_ready=size)
            console.line(
                f"    {pool.status().status} again, {size} of {size} ready "
                f"{format_duration(time.monotonic() - restarted)} after the restart"
            )
            await _spread_calls(console, server, stub, size, "over new connections, the server saw")

            console.line("[4] final status")
            console.line(status_table(pool.status()))
        try:
            grpcpool.aio.pool(POOL_NAME)
        except PoolNotFoundError:
            pass
        else:
            raise DemoFailed("the pool was still running after 'async with'")
    finally:
        server.stop()


async def _spread_calls(
    console: Console, server: EchoServer, stub: EchoStub, size: int, saw: str
) -> None:
    """Sends concurrent calls through the stub and shows the server's view of them."""
    before = server.peer_counts()
    calls = CALLS_PER_CONNECTION * size
    await asyncio.gather(*(_say(stub, f"call {n}", timeout=5.0) for n in range(calls)))
    counts = server.peer_counts() - before
    console.line(f"    {calls} concurrent calls on EchoStub(pool.channel()); {saw}:")
    rows = [(peer, str(n)) for peer, n in sorted(counts.items())]
    console.line(_indent(table(("peer (server's view)", "calls"), rows)))
    if len(counts) != size:
        raise DemoFailed(f"{calls} calls reached {len(counts)} connections, not {size}")


async def _say(stub: EchoStub, text: str, **options: Any) -> EchoReply:
    """One ``Say`` on ``stub``; a failure is the demo's, with the call's status code."""
    try:
        reply: EchoReply = await stub.Say(EchoRequest(text=text), **options)
    except grpc.RpcError as error:
        raise DemoFailed(f"the stub's call failed: {_code(error)}") from error
    return reply


async def _wait(pool: grpcpool.aio.Pool, done: Any, timeout: float, what: str) -> None:
    """Waits on the pool's changes until ``done()``; the demo fails after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while not done():
        left = deadline - time.monotonic()
        if left <= 0:
            raise DemoFailed(f"not every connection {what} within {timeout} s")
        await pool.wait_changed(left)


def _code(error: grpc.RpcError) -> str:
    """The status code's name of a failed call (``UNAVAILABLE``), or its text.

    A ``grpc.aio`` error is a ``grpc.RpcError`` with ``code()`` but no ``grpc.Call``.
    """
    code = getattr(error, "code", None)
    found = code() if callable(code) else None
    return found.name if isinstance(found, grpc.StatusCode) else str(error)


def _pools(thread: threading.Thread) -> bool:
    """Whether ``thread`` could be the pool's: neither grpc.aio's poller nor the echo server's."""
    return not thread.name.startswith("echo-server") and "_poll_wrapper" not in thread.name


def _indent(text: str) -> str:
    return "\n".join("    " + line for line in text.split("\n"))
