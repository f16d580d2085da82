"""The demo's routing step: ``least_in_flight`` sends calls around a slow connection.

A second pool of four connections, with the ``least_in_flight`` strategy,
runs against the demo's echo server, which is told to answer one of those
connections late. Threads then make many calls at once through
``grpcpool.channel``. Each call goes to the less busy of two random
connections, and the slow connection keeps its calls longer, so it is busy
and loses most draws: it ends up with a small share of the calls while
staying in the pool. The step prints the share each connection got, as the
server saw it.

The slow share is checked (well under an even split), so a strategy that
stopped steering fails the demo.
"""

from __future__ import annotations

from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pykka

import grpcpool
from grpcpool.cli._console import Console, format_duration, table
from grpcpool.cli.echo import EchoServer
from grpcpool.cli.echo.echo_pb2 import EchoRequest
from grpcpool.cli.echo.echo_pb2_grpc import EchoStub
from grpcpool.config import Config
from grpcpool.supervisor import Supervisor

__all__ = ["ROUTING_POOL", "ROUTING_SIZE", "RoutingFailed", "show_least_in_flight"]

ROUTING_POOL = "demo-routing"
ROUTING_SIZE = 4
SLOW_SECONDS = 0.2
CALLS = 200
THREADS = 8
CALL_TIMEOUT = 5.0
# The slow connection must get less than this share of the calls: half of
# an even split. With the delay above it gets about 1 in 50.
MAX_SLOW_SHARE = 0.5 / ROUTING_SIZE


class RoutingFailed(Exception):
    """The slow connection got about as many calls as the others."""


def routing_config(port: int) -> Config:
    """Four plaintext connections to 127.0.0.1, picked by ``least_in_flight``."""
    return Config.new(
        endpoint={"type": "local", "host": "127.0.0.1", "port": port},
        pool={"size": ROUTING_SIZE, "name": ROUTING_POOL, "strategy": "least_in_flight"},
        connection={"connect_timeout": 2.0},
    )


def show_least_in_flight(console: Console, server: EchoServer) -> None:
    """Runs the routing step against ``server`` and stops its pool after.

    Raises:
        RoutingFailed: The slow connection got ``MAX_SLOW_SHARE`` of the
            calls or more.
        grpc.RpcError: A call failed.
        GrpcPoolError: The pool could not be started.
    """
    supervisor: pykka.ActorRef[Supervisor] = Supervisor.start(
        children=[grpcpool.PoolSpec(routing_config(server.port))]
    )
    slow = ""
    try:
        grpcpool.await_ready(ROUTING_POOL, timeout=5, min_ready=ROUTING_SIZE)
        stub = EchoStub(grpcpool.channel(ROUTING_POOL))
        slow = stub.Say(EchoRequest(text="which connection?"), timeout=CALL_TIMEOUT).peer
        server.slow_down(slow, SLOW_SECONDS)
        console.line(
            f"    a pool of {ROUTING_SIZE} with strategy least_in_flight; "
            f"the server answers one of its connections {format_duration(SLOW_SECONDS)} late"
        )
        counts = _call_at_once(stub)
    finally:
        supervisor.stop()
        if slow:
            server.slow_down(slow, 0)
    counts.setdefault(slow, 0)
    console.line(
        f"    {CALLS} calls from {THREADS} threads at once through "
        f"grpcpool.channel({ROUTING_POOL!r}); the server saw:"
    )
    rows = [
        (peer, str(n), f"{n / CALLS:.0%}", "slow" if peer == slow else "")
        for peer, n in sorted(counts.items())
    ]
    lines = table(("peer (server's view)", "calls", "share", "note"), rows).split("\n")
    console.line("\n".join("    " + line for line in lines))
    console.line(
        f"    the slow connection got {counts[slow]} of {CALLS} calls; "
        f"an even split would give it {CALLS // ROUTING_SIZE}"
    )
    if counts[slow] >= MAX_SLOW_SHARE * CALLS:
        raise RoutingFailed(
            f"least_in_flight sent {counts[slow]} of {CALLS} calls to the slow connection"
        )


def _call_at_once(stub: EchoStub) -> Counter[str]:
    """Makes ``CALLS`` calls on ``stub`` from ``THREADS`` threads; counts them by peer."""

    def call(n: int) -> str:
        reply = stub.Say(EchoRequest(text=f"call {n}"), timeout=CALL_TIMEOUT)
        return str(reply.peer)

    with ThreadPoolExecutor(THREADS, thread_name_prefix="demo-caller") as callers:
        return Counter(callers.map(call, range(CALLS)))
