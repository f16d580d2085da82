"""The demo's autoscale step: a burst of callers grows a capped pool, which shrinks after it.

A pool of two connections, each capped at ``MAX_CALLS`` calls at once
(``pool.max_calls_per_connection``) and autoscaled between ``MIN_SIZE`` and
``MAX_SIZE`` connections every ``INTERVAL`` seconds (``pool.autoscale``),
runs against the demo's echo server, which answers every call
``DELAY`` seconds late. ``CALLERS`` threads then call through
``grpcpool.channel`` at once: the two connections fill, the other calls wait
in the pool's queue, and the waiting grows the pool at once. When the burst
ends the pool is idle, and each interval takes it down by at most
``max_step`` connections until it is back at ``MIN_SIZE``; the connections
removed drain (their calls finish) before they close.

The step prints each ``pool.autoscaled`` event as it fires, with the time
since the burst began, the calls that waited for a slot and how many
connections the server saw the burst's calls on. Each claim is checked: the
pool grew past ``MIN_SIZE``, the burst's calls all succeeded, and the pool
was back at ``MIN_SIZE`` within a few intervals of the burst's end.

The intervals and the delay are short so that the step takes a couple of
seconds; the library's default ``interval`` is 1 s.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc
import pykka

import grpcpool
from grpcpool import telemetry
from grpcpool.cli._console import Console, format_duration
from grpcpool.cli.echo import EchoServer
from grpcpool.cli.echo.echo_pb2 import EchoRequest
from grpcpool.cli.echo.echo_pb2_grpc import EchoStub
from grpcpool.config import Config
from grpcpool.connection._call_errors import status_code
from grpcpool.supervisor import Supervisor

__all__ = ["AUTOSCALE_POOL", "AutoscaleFailed", "autoscale_config", "show_autoscale"]

AUTOSCALE_POOL = "demo-autoscale"
MAX_CALLS = 2
MIN_SIZE = 2
MAX_SIZE = 8
INTERVAL = 0.2
MAX_STEP = 2
# The server answers each call this late, so that a burst of callers fills
# the connections; the burst is CALLERS threads making CALLS_EACH calls each.
DELAY = 0.05
CALLERS = 16
CALLS_EACH = 10
CALL_TIMEOUT = 10.0
# Generous bounds for a busy machine: the pool is back at MIN_SIZE this long
# after the burst (three steps of MAX_STEP take three intervals, 0.6 s).
SHRINK_TIMEOUT = 5.0
READY_TIMEOUT = 5.0


class AutoscaleFailed(Exception):
    """The pool did not grow under the burst, a call failed, or it did not shrink after."""


def autoscale_config(port: int) -> Config:
    """Two connections capped at ``MAX_CALLS`` calls each, autoscaled up to ``MAX_SIZE``."""
    return Config.new(
        endpoint={"type": "local", "host": "127.0.0.1", "port": port},
        pool={
            "size": MIN_SIZE,
            "name": AUTOSCALE_POOL,
            "max_calls_per_connection": MAX_CALLS,
            "autoscale": {
                "min_size": MIN_SIZE,
                "max_size": MAX_SIZE,
                "interval": INTERVAL,
                "max_step": MAX_STEP,
            },
        },
        connection={"connect_timeout": 2.0},
    )


class _Steps:
    """The step pool's ``pool.autoscaled`` and ``call.queued`` events, printed as they come."""

    def __init__(self, console: Console) -> None:
        self._console = console
        self._changed = threading.Condition()
        self.sizes: list[int] = []
        self.waits: list[float] = []
        self.outcomes: Counter[str] = Counter()
        self.started_at = time.monotonic()
        telemetry.pool_autoscaled.connect(self._on_autoscaled, sender=AUTOSCALE_POOL, weak=False)
        telemetry.call_queued.connect(self._on_queued, sender=AUTOSCALE_POOL, weak=False)

    def _on_autoscaled(
        self, sender: str, *, measurements: dict[str, Any], **_: Any
    ) -> None:
        at = time.monotonic() - self.started_at
        queued, peak = measurements["queued"], measurements["peak_in_flight"]
        # A step taken because calls wait says how many; an interval's step, its peak.
        why = f"{_calls(queued)} waiting" if queued else f"peak {_calls(peak)} in an interval"
        self._console.line(
            f"    {format_duration(at):>9}  pool.autoscaled {measurements['from_size']} -> "
            f"{measurements['to_size']} connections ({why})"
        )
        with self._changed:
            self.sizes.append(int(measurements["to_size"]))
            self._changed.notify_all()

    def _on_queued(
        self, sender: str, *, measurements: dict[str, Any], metadata: dict[str, Any]
    ) -> None:
        with self._changed:
            self.waits.append(float(measurements["duration"]))
            self.outcomes[str(metadata.get("outcome"))] += 1

    def wait_size(self, size: int, since: int, timeout: float) -> bool:
        """Waits until a step after the ``since``-th one reaches ``size``."""
        with self._changed:
            return self._changed.wait_for(lambda: size in self.sizes[since:], timeout)

    def close(self) -> None:
        telemetry.pool_autoscaled.disconnect(self._on_autoscaled, sender=AUTOSCALE_POOL)
        telemetry.call_queued.disconnect(self._on_queued, sender=AUTOSCALE_POOL)


def _calls(n: int) -> str:
    return f"{n} call" if n == 1 else f"{n} calls"


def _burst(stub: EchoStub) -> Counter[str]:
    """``CALLERS`` threads make ``CALLS_EACH`` calls each, at once; the failures by code."""

    def caller(n: int) -> Counter[str]:
        failures: Counter[str] = Counter()
        for i in range(CALLS_EACH):
            try:
                stub.Say(EchoRequest(text=f"caller {n} call {i}"), timeout=CALL_TIMEOUT)
            except grpc.RpcError as error:
                code = status_code(error)
                failures[code.name if code is not None else "UNKNOWN"] += 1
        return failures

    with ThreadPoolExecutor(CALLERS, thread_name_prefix="demo-autoscale") as callers:
        results = list(callers.map(caller, range(CALLERS)))
    return sum(results, Counter())


def show_autoscale(console: Console, server: EchoServer) -> None:
    """Runs the autoscale step against ``server``; stops its pool and undoes the delay after.

    Raises:
        AutoscaleFailed: The pool did not grow, a call failed, or it did not
            shrink back to ``MIN_SIZE``.
        GrpcPoolError: The pool could not be started.
    """
    supervisor: pykka.ActorRef[Supervisor] | None = None
    steps = _Steps(console)
    try:
        supervisor = Supervisor.start(children=[grpcpool.PoolSpec(autoscale_config(server.port))])
        grpcpool.await_ready(AUTOSCALE_POOL, timeout=READY_TIMEOUT, min_ready=MIN_SIZE)
        stub = EchoStub(grpcpool.channel(AUTOSCALE_POOL))
        console.line(
            f"    a pool of {MIN_SIZE}, max_calls_per_connection {MAX_CALLS}, autoscale "
            f"{MIN_SIZE} to {MAX_SIZE} every {INTERVAL:g} s (max_step {MAX_STEP});\n"
            f"    the server answers {format_duration(DELAY)} late; {CALLERS} callers make "
            f"{CALLS_EACH} calls each at once\n    (times from the burst's start):"
        )
        server.delay = DELAY
        before = server.peer_counts()
        steps.started_at = time.monotonic()
        failures = _burst(stub)
        burst = time.monotonic() - steps.started_at
        peers = server.peer_counts() - before
        grown = max(steps.sizes, default=MIN_SIZE)
        calls = CALLERS * CALLS_EACH
        failed = sum(failures.values())
        waited = len(steps.waits)
        console.line(
            f"    {format_duration(burst):>9}  burst over: {calls} calls, {failed} failed, on "
            f"{len(peers)} connections; {waited} waited for a slot "
            f"(longest {format_duration(max(steps.waits, default=0.0))})"
        )
        if failed:
            raise AutoscaleFailed(f"{failed} of {calls} calls failed: {dict(failures)}")
        if grown <= MIN_SIZE:
            raise AutoscaleFailed(f"the burst did not grow the pool past {MIN_SIZE}")
        since = len(steps.sizes)  # before the status read: a step after it is seen
        if grpcpool.status(AUTOSCALE_POOL).expected_size != MIN_SIZE and not steps.wait_size(
            MIN_SIZE, since, SHRINK_TIMEOUT
        ):
            raise AutoscaleFailed(
                f"the pool was not back at {MIN_SIZE} connections {SHRINK_TIMEOUT:g} s after "
                f"the burst: {grpcpool.status(AUTOSCALE_POOL).expected_size}"
            )
        after = grpcpool.status(AUTOSCALE_POOL)
        console.line(
            f"    idle again: back to {after.expected_size} connections "
            f"({after.current_size} ready), grown to {grown} for the burst"
        )
    finally:
        server.delay = 0.0
        if supervisor is not None:
            supervisor.stop()
        steps.close()
