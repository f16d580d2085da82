"""The demo's faults step: a pool routes around a backend gone slow and one failing every call.

Four echo servers listen on 127.0.0.2-.5, one port. A pool of eight (two
connections per backend) resolves them, picks a connection per call with
``peak_ewma`` and runs ``outlier_detection``, while eight threads call
through ``grpcpool.channel`` the whole time. Then 127.0.0.3 turns slow
(every call 50 ms late) and 127.0.0.4 fails every call at once with
``UNAVAILABLE`` while its health service still says SERVING, so no
connection drops: only the calls tell. The step prints each backend's share
of the calls, as the servers counted them, before and after, and the
ejection of the failing one.

Each claim is checked: the failing backend is ejected within a few seconds
and gets (almost) no call after it, and the slow one gets well under its even
share. The step runs only where ``peak_ewma`` is a strategy grpcpool knows;
elsewhere it says it is skipped.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import grpc
import pykka

import grpcpool
from grpcpool import telemetry
from grpcpool.cli._console import Console, format_duration, table
from grpcpool.cli.echo import EchoServer
from grpcpool.cli.echo.echo_pb2 import EchoRequest
from grpcpool.cli.echo.echo_pb2_grpc import EchoStub
from grpcpool.config import Config
from grpcpool.connection._call_errors import status_code
from grpcpool.strategy import STRATEGY_NAMES
from grpcpool.supervisor import Supervisor

__all__ = ["FAULTS_POOL", "FaultsFailed", "faults_config", "show_faults"]

FAULTS_POOL = "demo-faults"
STRATEGY = "peak_ewma"
HOSTS = ("127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5")
SLOW_HOST = HOSTS[1]
FAILING_HOST = HOSTS[2]
SIZE = 8
THREADS = 8
SERVER_THREADS = 16
SLOW_SECONDS = 0.05
PHASE_SECONDS = 1.0
CALL_TIMEOUT = 5.0
EJECTION_TIMEOUT = 5.0
# Outlier detection judging every half second, so the step is short. peak_ewma
# sends the failing backend only the few calls that make its connections look
# slow (each failure doubles a connection's estimate), mixed in one interval
# with the calls it answered before, and then only a probe now and then, when
# an estimate has drifted back toward the pool's typical latency. So each
# probe is judged (request_volume 1), and estimates forget within a second
# (EWMA_DECAY; the default is 10 s) so that probes come often enough for a
# short step.
EWMA_DECAY = 1.0
OUTLIERS: dict[str, Any] = {
    "interval": 0.5,
    "failure_percentage": {"threshold": 50, "minimum_hosts": 2, "request_volume": 1},
    "success_rate": None,
    "max_ejection_percent": 50,
}
# Shares after the faults: the slow backend's stays under this, the ejected
# one's under the other (calls already on their way when it was ejected). The
# three backends left would get a third each; peak_ewma draws its two
# connections on two backends and sends the slow one few calls, but a busy
# machine's latency spikes can make a healthy backend look slow for a while.
MAX_SLOW_SHARE = 0.15
MAX_EJECTED_SHARE = 0.01


class FaultsFailed(Exception):
    """The pool did not route around the slow or the failing backend."""


def faults_config(port: int) -> Config:
    """Eight connections over the four backends, ``peak_ewma`` and outlier detection."""
    return Config.new(
        endpoint={
            "type": "local",
            "host": "echo.demo",
            "port": port,
            "resolver": grpcpool.static_resolver([f"{host}:{port}" for host in HOSTS]),
        },
        pool={
            "size": SIZE,
            "name": FAULTS_POOL,
            "strategy": STRATEGY,
            "ewma_decay": EWMA_DECAY,
            "outlier_detection": OUTLIERS,
        },
        connection={"backoff_min": 0.05, "backoff_max": 0.5, "connect_timeout": 2.0},
    )


class _Ejections:
    """The ``pool.ejected`` events of the step's pool: (monotonic time, address, reason)."""

    def __init__(self) -> None:
        self._seen: list[tuple[float, str, str]] = []
        self._changed = threading.Condition()
        telemetry.pool_ejected.connect(self._on_ejected, sender=FAULTS_POOL, weak=False)

    def _on_ejected(self, sender: str, *, metadata: dict[str, Any], **_: Any) -> None:
        with self._changed:
            self._seen.append(
                (time.monotonic(), str(metadata.get("address")), str(metadata.get("reason")))
            )
            self._changed.notify_all()

    def wait(self, host: str, timeout: float) -> tuple[float, str, str] | None:
        """The first ejection of ``host``'s address, waiting up to ``timeout`` for it."""

        def found() -> tuple[float, str, str] | None:
            return next((e for e in self._seen if e[1].startswith(host + ":")), None)

        with self._changed:
            self._changed.wait_for(lambda: found() is not None, timeout)
            return found()

    def close(self) -> None:
        telemetry.pool_ejected.disconnect(self._on_ejected, sender=FAULTS_POOL)


@contextmanager
def _calling(stub: EchoStub) -> Iterator[Counter[str]]:
    """``THREADS`` threads calling ``stub`` until the block ends; their failures by code."""
    failures: Counter[str] = Counter()
    lock = threading.Lock()
    stop = threading.Event()

    def work() -> None:
        while not stop.is_set():
            try:
                stub.Say(EchoRequest(text="hello"), timeout=CALL_TIMEOUT)
            except grpc.RpcError as error:
                code = status_code(error)
                with lock:
                    failures[code.name if code is not None else "UNKNOWN"] += 1

    workers = [threading.Thread(target=work, name=f"demo-faults-{i}") for i in range(THREADS)]
    for worker in workers:
        worker.start()
    try:
        yield failures
    finally:
        stop.set()
        for worker in workers:
            worker.join(CALL_TIMEOUT + 5)


def _calls_in(servers: dict[str, EchoServer], seconds: float) -> dict[str, int]:
    """The calls each server received (failed ones too) over the next ``seconds``."""
    before = {host: len(server.peers) for host, server in servers.items()}
    time.sleep(seconds)
    return {host: len(server.peers) - before[host] for host, server in servers.items()}


def _show(console: Console, calls: dict[str, int], notes: dict[str, str]) -> None:
    total = sum(calls.values()) or 1
    rows = [
        (host, str(n), f"{n / total:.0%}", notes.get(host, "")) for host, n in calls.items()
    ]
    lines = table(("backend", "calls", "share", "note"), rows).split("\n")
    console.line("\n".join("    " + line for line in lines))


def show_faults(console: Console) -> None:
    """Runs the faults step, or says it is skipped; stops everything it started.

    Raises:
        FaultsFailed: The failing backend was not ejected, or kept getting
            calls, or the slow one kept its share.
        RuntimeError: An echo server could not bind its address.
        GrpcPoolError: The pool could not be started.
    """
    if STRATEGY not in STRATEGY_NAMES:
        console.line(f"    skipped: this grpcpool has no {STRATEGY!r} strategy")
        return
    servers: dict[str, EchoServer] = {}
    supervisor: pykka.ActorRef[Supervisor] | None = None
    ejections = _Ejections()
    try:
        first = EchoServer(host=HOSTS[0], max_workers=SERVER_THREADS)
        servers[HOSTS[0]] = first
        for host in HOSTS[1:]:
            servers[host] = EchoServer(first.port, host=host, max_workers=SERVER_THREADS)
        supervisor = Supervisor.start(children=[grpcpool.PoolSpec(faults_config(first.port))])
        grpcpool.await_ready(FAULTS_POOL, timeout=5, min_ready=SIZE)
        console.line(
            f"    echo servers on {', '.join(HOSTS)}; a pool of {SIZE} with strategy {STRATEGY} "
            f"and outlier_detection\n    (every {OUTLIERS['interval']:g} s, eject above 50% "
            f"failed); {THREADS} threads calling through grpcpool.channel({FAULTS_POOL!r});\n"
            f"    calls per backend over {PHASE_SECONDS:g} s:"
        )
        stub = EchoStub(grpcpool.channel(FAULTS_POOL))
        with _calling(stub) as failures:
            _show(console, _calls_in(servers, PHASE_SECONDS), {})
            servers[SLOW_HOST].delay = SLOW_SECONDS
            servers[FAILING_HOST].failing = grpc.StatusCode.UNAVAILABLE
            faulted = time.monotonic()
            console.line(
                f"    {SLOW_HOST} turns slow ({format_duration(SLOW_SECONDS)} a call); "
                f"{FAILING_HOST} fails every call with UNAVAILABLE, its health still SERVING"
            )
            ejected = ejections.wait(FAILING_HOST, EJECTION_TIMEOUT)
            if ejected is None:
                raise FaultsFailed(
                    f"{FAILING_HOST} failed every call for {EJECTION_TIMEOUT:g} s "
                    "and was not ejected"
                )
            at, address, reason = ejected
            failed_before = sum(failures.values())
            console.line(
                f"    pool.ejected {address} ({reason}) {format_duration(at - faulted)} after it "
                f"began failing; {failed_before} calls had failed"
            )
            after = _calls_in(servers, PHASE_SECONDS)
        console.line(f"    calls per backend over the next {PHASE_SECONDS:g} s:")
        _show(console, after, {SLOW_HOST: "slow", FAILING_HOST: "failing, ejected"})
        total = sum(after.values())
        if after[FAILING_HOST] > MAX_EJECTED_SHARE * total:
            raise FaultsFailed(
                f"the ejected backend still got {after[FAILING_HOST]} of {total} calls"
            )
        if after[SLOW_HOST] >= MAX_SLOW_SHARE * total:
            raise FaultsFailed(
                f"{STRATEGY} sent {after[SLOW_HOST]} of {total} calls to the slow backend"
            )
    finally:
        if supervisor is not None:
            supervisor.stop()
        for server in servers.values():
            server.stop()
        ejections.close()
