"""The asyncio pool behind the harness: ``grpcpool.aio`` on an event loop of its own thread.

Each operation is a coroutine handed to the loop with
``asyncio.run_coroutine_threadsafe`` and waited for with a timeout, so a
scenario reads as the sync one does. Pools, calls and channels are made on
the loop's thread, where a ``grpcpool.aio`` pool insists on being used.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import math
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, TypeVar

import grpcpool.aio
import grpcpool.tasks
from grpcpool import Config, PoolStatus
from grpcpool.core import ReadyConnection
from tests.behaviour.harness import SLACK, Driver, HarnessTimeout, Pending, Stub
from tests.servers import EchoStub
from tests.test_interceptors import aio_tagging

T = TypeVar("T")

# Seconds a pool's stop may take when the driver closes (drains are short).
_STOP_TIMEOUT = 15.0


class Loop:
    """An event loop running on a thread of its own until :meth:`close`."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        # What scenarios were handed and may still hold, even after a failure.
        self._handed: list[Pending[Any]] = []
        self._thread = threading.Thread(
            target=self.loop.run_forever, name="behaviour-aio-loop", daemon=True
        )
        self._thread.start()

    def submit(self, coroutine: Awaitable[T]) -> concurrent.futures.Future[T]:
        """Schedules ``coroutine`` on the loop; returns its future."""
        return asyncio.run_coroutine_threadsafe(_awaited(coroutine), self.loop)

    def pending(self, coroutine: Awaitable[T]) -> Pending[T]:
        """Schedules ``coroutine`` for a scenario to wait on; settled when the loop closes."""
        handed = Pending(self.submit(coroutine), detach=True)
        self._handed.append(handed)
        return handed

    def run(self, coroutine: Awaitable[T], timeout: float) -> T:
        """Runs ``coroutine`` on the loop and returns its result (or raises its error).

        Raises:
            HarnessTimeout: It did not finish within ``timeout`` seconds (it is cancelled).
        """
        pending = Pending(self.submit(coroutine), detach=True)
        try:
            return pending.result(timeout)
        except HarnessTimeout:
            pending.cancel()
            raise

    def call(self, function: Callable[[], T], timeout: float = SLACK) -> T:
        """Runs the plain callable ``function`` on the loop's thread."""

        async def inline() -> T:
            return function()

        return self.run(inline(), timeout)

    def close(self) -> None:
        """Cancels what is left on the loop, shuts its executor down, ends the thread.

        Idempotent.
        """
        if self.loop.is_closed():
            return

        async def wind_down() -> None:
            current = asyncio.current_task()
            left = [task for task in asyncio.all_tasks() if task is not current]
            for task in left:
                task.cancel()
            await asyncio.gather(*left, return_exceptions=True)
            await self.loop.shutdown_asyncgens()
            await self.loop.shutdown_default_executor()

        try:
            self.run(wind_down(), _STOP_TIMEOUT)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(_STOP_TIMEOUT)
            if not self._thread.is_alive():
                self.loop.close()
            for handed in self._handed:
                handed.settle()
            self._handed.clear()


async def _awaited(awaitable: Awaitable[T]) -> T:
    return await awaitable


async def _requests(payloads: Sequence[bytes]) -> AsyncIterator[bytes]:
    for payload in payloads:
        yield payload


class AioStub(Stub):
    """:class:`tests.servers.EchoStub` on a ``grpc.aio`` channel; each call awaited on the loop."""

    def __init__(self, loop: Loop, channel: Any) -> None:
        self._loop = loop
        # EchoStub is typed for sync channels; on a grpc.aio channel its calls are awaitable.
        self._stub: Any = loop.call(lambda: EchoStub(channel))

    def unary(self, payload: bytes = b"x", *, timeout: float = 5.0, **options: Any) -> bytes:
        return self._loop.run(self._unary(payload, timeout, options), timeout + SLACK)

    async def _unary(self, payload: bytes, timeout: float, options: dict[str, Any]) -> bytes:
        answer: bytes = await self._stub.Unary(payload, timeout=timeout, **options)
        return answer

    def begin(
        self, payload: bytes = b"x", *, timeout: float = 10.0, **options: Any
    ) -> Pending[bytes]:
        return self._loop.pending(self._unary(payload, timeout, options))

    def repeat(self, payload: bytes, *, timeout: float = 5.0) -> list[bytes]:
        async def go() -> list[bytes]:
            return [answer async for answer in self._stub.Repeat(payload, timeout=timeout)]

        return self._loop.run(go(), timeout + SLACK)

    def join(self, payloads: Sequence[bytes], *, timeout: float = 5.0) -> bytes:
        async def go() -> bytes:
            answer: bytes = await self._stub.Join(_requests(payloads), timeout=timeout)
            return answer

        return self._loop.run(go(), timeout + SLACK)

    def chat(self, payloads: Sequence[bytes], *, timeout: float = 5.0) -> list[bytes]:
        async def go() -> list[bytes]:
            call = self._stub.Chat(_requests(payloads), timeout=timeout)
            return [answer async for answer in call]

        return self._loop.run(go(), timeout + SLACK)


class AioDriver(Driver):
    """``grpcpool.aio`` pools on the driver's own event loop."""

    kind = "asyncio"

    def __init__(self) -> None:
        super().__init__()
        self._loop = Loop()
        self._pools: list[grpcpool.aio.Pool] = []
        self._stubs: dict[str, tuple[grpcpool.aio.Pool, AioStub]] = {}

    def start(self, config: Config, name: str | None = "behaviour") -> str:
        async def go() -> grpcpool.aio.Pool:
            pool = grpcpool.aio.Pool(config, name=name)
            await pool.start()
            return pool

        pool = self._loop.run(go(), SLACK)
        self._pools.append(pool)
        self.name = pool.name
        return self.name

    def stop(self, name: str | None = None) -> None:
        self._loop.run(grpcpool.aio.stop(name or self.name), _STOP_TIMEOUT)

    def _close(self) -> None:
        try:
            for pool in reversed(self._pools):
                with contextlib.suppress(Exception):
                    self._loop.run(pool.stop(), _STOP_TIMEOUT)
        finally:
            self._pools.clear()
            self._stubs.clear()
            self._loop.close()

    # --- calls --------------------------------------------------------------------------

    def stub(self, name: str | None = None) -> AioStub:
        name = name or self.name
        pool = self._loop.call(lambda: grpcpool.aio.pool(name))
        kept = self._stubs.get(name)
        if kept is None or kept[0] is not pool:
            kept = self._stubs[name] = (pool, self.new_stub(name))
        return kept[1]

    def new_stub(self, name: str | None = None) -> AioStub:
        name = name or self.name
        return AioStub(self._loop, self._loop.call(lambda: grpcpool.aio.channel(name)))

    def raw_stub(self, name: str | None = None) -> AioStub:
        return AioStub(self._loop, self.get_channel(name))

    def channel_ready(self, timeout: float, name: str | None = None) -> bool:
        name = name or self.name

        async def ready() -> bool:
            try:
                await asyncio.wait_for(grpcpool.aio.channel(name).channel_ready(), timeout)
            except TimeoutError:
                return False
            return True

        return self._loop.run(ready(), timeout + SLACK)

    def get_channel(self, name: str | None = None) -> Any:
        name = name or self.name
        return self._loop.call(lambda: grpcpool.aio.get_channel(name))

    # --- state and control ----------------------------------------------------------------

    def connections(self, name: str | None = None) -> tuple[ReadyConnection, ...]:
        return grpcpool.tasks.POOLS[name or self.name].view.connections

    def status(self, name: str | None = None) -> PoolStatus:
        return grpcpool.aio.status(name or self.name)

    def await_ready(
        self, timeout: float | None = 5.0, min_ready: int = 1, name: str | None = None
    ) -> None:
        waiting = grpcpool.aio.await_ready(name or self.name, timeout, min_ready)
        sane = isinstance(timeout, int | float) and math.isfinite(timeout) and timeout >= 0
        self._loop.run(waiting, (timeout if sane else 0.0) + SLACK)  # type: ignore[operator]

    def begin_await_ready(
        self, timeout: float = 5.0, min_ready: int = 1, name: str | None = None
    ) -> Pending[None]:
        waiting = grpcpool.aio.await_ready(name or self.name, timeout, min_ready)
        return self._loop.pending(waiting)

    def scale_up(self, count: Any, name: str | None = None) -> int:
        return self._loop.run(grpcpool.aio.scale_up(name or self.name, count), _STOP_TIMEOUT)

    def scale_down(self, count: Any, name: str | None = None) -> int:
        return self._loop.run(grpcpool.aio.scale_down(name or self.name, count), _STOP_TIMEOUT)

    def resize(self, target: Any, name: str | None = None) -> int:
        return self._loop.run(grpcpool.aio.resize(name or self.name, target), _STOP_TIMEOUT)

    def crash_worker(self, worker_id: str, name: str | None = None) -> None:
        name = name or self.name

        def crash() -> None:
            worker = grpcpool.aio.pool(name)._workers.workers.get(worker_id)
            if worker is None:
                raise LookupError(f"no live worker {worker_id!r} in pool {name!r}")
            worker.tell("crash")  # type: ignore[arg-type]  # not an event: it crashes

        self._loop.call(crash)

    def _wait_change(self, name: str, timeout: float) -> None:
        pool = grpcpool.tasks.POOLS.get(name)
        if pool is None:  # nothing to be woken by: look again after the interval
            time.sleep(timeout)
            return
        self._loop.run(pool.wait_changed(timeout), timeout + SLACK)

    # --- interceptors -------------------------------------------------------------------------

    def interceptors(self, seen: collections.Counter[str]) -> list[Any]:
        return aio_tagging(seen)
