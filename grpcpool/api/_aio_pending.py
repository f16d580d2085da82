"""The pool channel's asyncio calls that have not started: admitted, failed, or waiting.

:func:`admit` is how a call through an :class:`~grpcpool.AioPoolChannel` gets
a connection when it is made; :class:`FailedCall` is the call object of a
call that found none, and :class:`WaitingCall` that of a call that waits for
one (``wait_for_ready``) or for a slot in a limited pool's queue, and starts
when it has it; :func:`not_running` says why a call found no pool.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Generator
from typing import TYPE_CHECKING, Any, Protocol

import grpc

from grpcpool._call_metrics import CallTrace
from grpcpool._config_timings import REFUSED_CALL_PAUSE
from grpcpool._names import held_by
from grpcpool._process import PROCESS
from grpcpool.core._ready import ReadyConnection
from grpcpool.core._view import ALL_RETIRED
from grpcpool.errors import NotConnectedError, PoolCallError, PoolNotFoundError

if TYPE_CHECKING:
    from grpcpool.tasks._pool import TaskPool as Pool

__all__ = ["FailedCall", "WaitingCall", "admit", "not_running"]


class _Starts(Protocol):
    """The pool channel's multi-callable, which starts the call once it may."""

    def start(
        self,
        connection: ReadyConnection,
        ticket: int,
        pool: Pool,
        request: Any,
        kwargs: dict[str, Any],
        trace: CallTrace | None = None,
    ) -> Any: ...


def not_running(name: str) -> PoolNotFoundError:
    """Why a call to ``name`` found no asyncio pool of that name."""
    if held_by(name) == "sync":
        return PoolNotFoundError(name, running="sync")
    return PoolNotFoundError(name, PROCESS.ended_pools.get(name))


def admit(pool: Pool) -> tuple[ReadyConnection, int] | None:
    """A ready connection of ``pool`` with a call counted on it, and the call's ticket.

    Returns:
        None if the pool is limited and no connection has room (or calls
        wait already): the call waits for a slot
        (:meth:`AioCapacity.acquire <grpcpool.tasks._capacity.AioCapacity.acquire>`).

    Raises:
        NotConnectedError: None is ready (or each left the pool just now).
    """
    capacity = pool.capacity
    if capacity.limited:
        return capacity.admit_now()
    admitted = pool.view.admit()
    if admitted is None:
        raise NotConnectedError(pool.name, ALL_RETIRED)
    return admitted


class FailedCall:
    """The call object of a call that failed before it started: raises when awaited or iterated."""

    def __init__(self, error: PoolCallError) -> None:
        self._error = error

    def __await__(self) -> Generator[Any, None, Any]:
        return self._raise().__await__()

    async def _raise(self) -> Any:
        # A caller that retries at once must not keep the loop, and the
        # thread's GIL, from what brings connections back (the pool's tasks,
        # grpc's threads): a refused call takes a moment.
        await asyncio.sleep(REFUSED_CALL_PAUSE)
        raise self._error

    def __aiter__(self) -> AsyncIterator[Any]:
        return self

    async def __anext__(self) -> Any:
        return await self._raise()

    async def read(self) -> Any:
        return await self._raise()

    async def write(self, request: Any) -> None:
        raise self._error

    async def done_writing(self) -> None:
        raise self._error

    async def code(self) -> grpc.StatusCode:
        return self._error.code()

    async def details(self) -> str:
        return self._error.details()

    async def initial_metadata(self) -> tuple[()]:
        return ()

    async def trailing_metadata(self) -> tuple[()]:
        return ()

    def done(self) -> bool:
        return True

    def cancelled(self) -> bool:
        return False

    def cancel(self) -> bool:
        return False

    def add_done_callback(self, callback: Callable[[Any], None]) -> None:
        callback(self)


class WaitingCall:
    """A call that waits, then starts: for a ready connection (a ``wait_for_ready`` call made
    while none was), or for a slot in a limited pool's queue (when it is awaited).

    ``trace``: the call's per-call metrics, if a recorder listens (the wait is
    part of its first attempt, as picking a connection is).
    """

    def __init__(
        self,
        routed: _Starts,
        pool: Pool,
        request: Any,
        kwargs: dict[str, Any],
        trace: CallTrace | None = None,
    ) -> None:
        self._routed = routed
        self._pool = pool
        self._request = request
        self._kwargs = kwargs
        self._trace = trace
        self._call: Any = None

    async def _started(self) -> Any:
        if self._call is not None:
            return self._call
        timeout = self._kwargs.get("timeout")
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            connection, ticket = await self._slot(deadline)
        except asyncio.CancelledError:  # its caller gave up while it waited
            if self._trace is not None:
                self._trace.failed(grpc.StatusCode.CANCELLED)
            raise
        kwargs = dict(self._kwargs)
        if deadline is not None:
            kwargs["timeout"] = max(0.0, deadline - time.monotonic())
        self._call = self._routed.start(
            connection, ticket, self._pool, self._request, kwargs, self._trace
        )
        return self._call

    async def _slot(self, deadline: float | None) -> tuple[ReadyConnection, int]:
        """A connection with the call counted on it, and its ticket, once the call may start."""
        pool = self._pool
        while True:
            try:
                capacity = pool.capacity
                if capacity.limited:
                    return await capacity.acquire(deadline)
                return admit(pool)  # type: ignore[return-value]  # not limited: never None
            except PoolCallError as verdict:  # the queue's: full, too late, or the pool stopped
                self._failed(verdict)
                raise
            except NotConnectedError as error:
                left = None if deadline is None else deadline - time.monotonic()
                if pool.ended is not None or not self._kwargs.get("wait_for_ready"):
                    raise self._failed(PoolCallError.of(error)) from None
                if left is not None and left <= 0:
                    code = grpc.StatusCode.DEADLINE_EXCEEDED
                    raise self._failed(PoolCallError.of(error, code)) from None
                await pool.wait_changed(left)

    def _failed(self, error: PoolCallError) -> PoolCallError:
        """``error`` ended the call before it started: told to its trace, if traced."""
        if self._trace is not None:
            self._trace.failed(error.code())
        return error

    def __await__(self) -> Generator[Any, None, Any]:
        return self._wait_and_await().__await__()

    async def _wait_and_await(self) -> Any:
        return await (await self._started())

    def __aiter__(self) -> AsyncIterator[Any]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[Any]:
        call = await self._started()
        async for item in call:
            yield item

    async def read(self) -> Any:
        return await (await self._started()).read()

    async def write(self, request: Any) -> None:
        await (await self._started()).write(request)

    async def done_writing(self) -> None:
        await (await self._started()).done_writing()

    async def code(self) -> grpc.StatusCode:
        try:
            call = await self._started()
        except PoolCallError as error:
            return error.code()
        code: grpc.StatusCode = await call.code()
        return code

    async def details(self) -> str:
        try:
            call = await self._started()
        except PoolCallError as error:
            return error.details()
        details: str = await call.details()
        return details

    async def initial_metadata(self) -> Any:
        return await (await self._started()).initial_metadata()

    async def trailing_metadata(self) -> Any:
        return await (await self._started()).trailing_metadata()

    def cancel(self) -> bool:
        return self._call.cancel() if self._call is not None else False
