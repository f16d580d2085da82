"""How soon a retired connection's TCP connection closes (a one-off measure).

Run: ``python -m benchmarks.retire_close [--rounds N]``. Not part of
``make bench``: it prints its own table and asserts nothing.

For a sync pool and an asyncio pool (on a loop of its own thread), with
``drain_timeout`` 30 s, it times from the moment a connection leaves the
pool (a scale down 2 -> 1, a ``max_age`` refresh, the pool's stop) or, with
a call held on it, from the moment that call has returned to its caller,
until the server's side of the TCP connection has left ESTABLISHED (read
from ``/proc/net/tcp*`` every 0.5 ms). The SPEC's bound is 100 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import threading
import time
from collections.abc import Callable
from concurrent import futures
from typing import Any

import grpc

import grpcpool
from grpcpool import Config
from grpcpool.aio import Pool

HOLD = b"hold"
DRAIN = 30.0
WAIT = 10.0


class Server:
    """A grpcio echo server on 127.0.0.1 whose ``hold`` calls wait for ``release()``."""

    def __init__(self) -> None:
        self._held = threading.Event()
        self._server = grpc.server(futures.ThreadPoolExecutor(8))
        handler = grpc.unary_unary_rpc_method_handler(self._echo)
        generic = grpc.method_handlers_generic_handler("test.Echo", {"Unary": handler})
        self._server.add_generic_rpc_handlers((generic,))
        self.port = self._server.add_insecure_port("127.0.0.1:0")
        self._server.start()
        self.calls = 0

    def _echo(self, request: bytes, context: Any) -> bytes:
        self.calls += 1
        if request == HOLD:
            self._held.wait(WAIT)
        return request

    def hold(self) -> None:
        self._held.clear()

    def release(self) -> None:
        self._held.set()

    def peers(self) -> set[int]:
        """Client ports of the established connections on the server's side."""
        found: set[int] = set()
        for table in ("/proc/net/tcp", "/proc/net/tcp6"):
            with open(table, encoding="ascii") as lines:
                next(lines)
                for line in lines:
                    local, remote, state = line.split()[1:4]
                    if state == "01" and local.endswith(f":{self.port:04X}"):
                        found.add(int(remote.rsplit(":", 1)[1], 16))
        return found

    def stop(self) -> None:
        self._held.set()
        self._server.stop(None).wait(WAIT)


def until(predicate: Callable[[], bool], since: float) -> float:
    """Milliseconds from ``since`` until ``predicate()`` holds."""
    deadline = time.monotonic() + WAIT
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("not closed within 10 s")
        time.sleep(0.0005)
    return (time.monotonic() - since) * 1000


def config(port: int, size: int, **connection: Any) -> Config:
    return Config.new(
        endpoint={"type": "local", "host": "127.0.0.1", "port": port},
        pool={"size": size},
        connection={"drain_timeout": DRAIN, **connection},
    )


class Sync:
    """The sync pool's side of a round."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.callers = futures.ThreadPoolExecutor(2)

    def start(self, cfg: Config) -> None:
        self.pool = grpcpool.start(cfg, "retire-bench")
        grpcpool.await_ready("retire-bench", timeout=WAIT, min_ready=cfg.pool.size)
        self.unary = grpcpool.channel("retire-bench").unary_unary("/test.Echo/Unary")

    def workers(self) -> set[str]:
        return {w.worker_id for w in grpcpool.status("retire-bench").workers}

    def scale_down(self) -> None:
        grpcpool.scale_down("retire-bench", 1)

    def stop(self) -> None:
        grpcpool.stop("retire-bench")

    def call(self) -> futures.Future[Any]:
        return self.callers.submit(self.unary, HOLD, timeout=WAIT)

    def close(self) -> None:
        self.callers.shutdown()


class Aio:
    """The asyncio pool's side of a round, on a loop in its own thread."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever)
        self.thread.start()

    def run(self, coroutine: Any) -> futures.Future[Any]:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop)

    def start(self, cfg: Config) -> None:
        async def start() -> None:
            self.pool = await Pool(cfg, name="retire-bench").start()
            await self.pool.await_ready(timeout=WAIT, min_ready=cfg.pool.size)
            self.unary = self.pool.channel().unary_unary("/test.Echo/Unary")

        self.run(start()).result(WAIT)

    def workers(self) -> set[str]:
        return {w.worker_id for w in self.pool.status().workers}

    def scale_down(self) -> None:
        self.run(self.pool.scale_down(1)).result(WAIT)

    def stop(self) -> None:
        self.stopping = self.run(self.pool.stop())

    def call(self) -> futures.Future[Any]:
        async def call() -> Any:
            return await self.unary(HOLD, timeout=WAIT)

        return self.run(call())

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(WAIT)
        self.loop.close()


def one_round(driver: Sync | Aio, scenario: str, busy: bool) -> float:
    """One retirement; milliseconds until the server saw the connection close."""
    server = driver.server
    size = 2 if scenario == "scale down" else 1
    extra = {"max_age": 1.0} if scenario == "refresh" else {}
    driver.start(config(server.port, size, **extra))
    until(lambda: len(server.peers()) == size, time.monotonic())
    old = server.peers()
    server.hold()
    before = server.calls
    # Round robin: with two connections, one held call on each.
    calls = [driver.call() for _ in range(size)] if busy else []
    until(lambda: server.calls >= before + len(calls), time.monotonic())
    if scenario == "scale down":
        driver.scale_down()
    elif scenario == "stop":
        driver.stop()
    else:
        first = driver.workers()
        until(lambda: not (driver.workers() & first), time.monotonic())
    since = time.monotonic()
    if calls:
        server.release()
        for call in calls:
            call.result(WAIT)
        since = time.monotonic()
    left = len(old) - 1 if scenario == "scale down" else 0
    if scenario == "refresh":
        took = until(lambda: not (server.peers() & old), since)
    else:
        took = until(lambda: len(server.peers() & old) == left, since)
    server.release()
    if scenario != "stop":
        driver.stop()
    if isinstance(driver, Aio):
        driver.stopping.result(WAIT)
    return took


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    rounds = parser.parse_args(argv).rounds
    server = Server()
    print("| pool | retired by | calls | median ms | max ms | rounds |")
    print("|---|---|---|---|---|---|")
    try:
        for kind, make in (("sync", Sync), ("asyncio", Aio)):
            driver = make(server)
            try:
                for scenario in ("scale down", "refresh", "stop"):
                    for busy in (False, True):
                        took = [one_round(driver, scenario, busy) for _ in range(rounds)]
                        what = "after the held call returned" if busy else "none (idle)"
                        print(
                            f"| {kind} | {scenario} | {what} | {statistics.median(took):.1f} "
                            f"| {max(took):.1f} | {rounds} |"
                        )
            finally:
                driver.close()
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
