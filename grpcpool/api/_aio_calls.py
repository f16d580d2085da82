"""The call objects an AioPoolChannel hands out.

A call through the pool channel runs as a ``grpc.aio`` call on the connection
it was routed to, and the caller holds a :class:`PoolCall` around it, which
passes everything through and changes two outcomes:

* **Cut by a drain.** A connection that leaves the pool drains for
  ``connection.drain_timeout`` and is then closed, and ``grpc.aio`` cancels
  the calls still running on a closed channel: awaiting them raises
  ``asyncio.CancelledError``, which ``except grpc.RpcError`` does not catch
  and which makes the awaiting task look cancelled itself. A call that
  neither its caller (``cancel()``) nor its task's cancellation ended raises
  ``grpc.aio.AioRpcError`` ``CANCELLED`` instead, saying the drain ended.
* **Never sent.** A unary-request call that failed before it reached a
  server (see :mod:`grpcpool.core._reroute`) is sent again on another ready
  connection when it is awaited (or, for a response stream, before its first
  response), each connection at most once, within the call's deadline.
  A stream of requests is not sent again: grpc.aio has begun to consume it.
* **Refused.** A unary-request call its server refused at its stream limit
  (HTTP/2 ``REFUSED_STREAM``; no handler saw it) is routed again as a new
  call is, through the pool's capacity, once its connection has lowered its
  limit (:mod:`grpcpool.core._capacity`); it may wait there for a slot, within
  the call's deadline, and is routed again at most ``MAX_REFUSED_REROUTES``
  times.

Either way an ``UNAVAILABLE`` failure the caller sees asks the connection's
worker for a health check (passive health), as in the sync pool channel.
Nothing of this runs while a call succeeds, beyond handing out the wrapper.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Generator
from typing import TYPE_CHECKING, Any, Protocol

import grpc

from grpcpool._config_capacity import MAX_REFUSED_REROUTES
from grpcpool.connection._call_errors import refused_stream
from grpcpool.core._ready import ReadyConnection
from grpcpool.core._reroute import never_sent, untried
from grpcpool.errors import NotConnectedError, PoolCallError

if TYPE_CHECKING:
    from grpcpool.tasks._pool import TaskPool as Pool


class _Routed(Protocol):
    """What a call needs of the pool channel's multi-callable: to run it again elsewhere."""

    def run(
        self, connection: ReadyConnection, ticket: int, request: Any, kwargs: dict[str, Any]
    ) -> Any: ...

__all__ = ["PoolCall", "call_class"]

_AioRpcError = grpc.aio.AioRpcError
_Cancelled = asyncio.CancelledError
_current_task = asyncio.current_task


class PoolCall:
    """What all four kinds share: the running ``grpc.aio`` call, passed through.

    Args:
        call: The ``grpc.aio`` call (the one attempt running now).
        connection: The connection it runs on.
        routed: The pool channel's multi-callable that started it.
        request: The request, kept to send it again (unary requests only).
        kwargs: The call's keyword arguments, for the same reason.
    """

    __slots__ = (
        "_answered",
        "_by_caller",
        "_call",
        "_connection",
        "_kwargs",
        "_pool",
        "_refusals",
        "_request",
        "_routed",
        "_tried",
    )

    # Whether a call that failed before reaching a server is sent again.
    _resends = False

    # Set only when they happen, read (with a default) only on a failure:
    # _by_caller (the caller cancelled the call), _answered (a response has
    # come: never sent again from there), _tried (connections tried so far),
    # _refusals (times its servers refused it).
    _by_caller: bool
    _answered: bool
    _tried: list[ReadyConnection]
    _refusals: int

    def __init__(
        self,
        call: Any,
        connection: ReadyConnection,
        routed: _Routed,
        pool: Pool,
        request: Any,
        kwargs: dict[str, Any],
    ) -> None:
        self._call = call
        self._connection = connection
        self._routed = routed
        self._pool = pool
        self._request = request
        self._kwargs = kwargs

    # --- grpc.aio.Call ------------------------------------------------------------------

    def cancel(self) -> bool:
        self._by_caller = True
        return bool(self._call.cancel())

    def cancelled(self) -> bool:
        return bool(self._call.cancelled())

    def done(self) -> bool:
        return bool(self._call.done())

    def add_done_callback(self, callback: Callable[[Any], None]) -> None:
        self._call.add_done_callback(lambda _: callback(self))

    def time_remaining(self) -> float | None:
        remaining: float | None = self._call.time_remaining()
        return remaining

    async def initial_metadata(self) -> Any:
        return await self._call.initial_metadata()

    async def trailing_metadata(self) -> Any:
        return await self._call.trailing_metadata()

    async def code(self) -> grpc.StatusCode:
        code: grpc.StatusCode = await self._call.code()
        return code

    async def details(self) -> str:
        details: str = await self._call.details()
        return details

    async def debug_error_string(self) -> str:
        text: str = await self._call.debug_error_string()
        return text

    async def wait_for_connection(self) -> None:
        try:
            await self._call.wait_for_connection()
        except _Cancelled as cancelled:
            raise self._cut(cancelled)  # noqa: B904

    def __repr__(self) -> str:
        return f"<pool call on {self._connection.worker_id}: {self._call!r}>"

    # --- outcomes ---------------------------------------------------------------------------

    def _cut(self, cancelled: BaseException) -> BaseException:
        """What to raise for ``cancelled``: itself, or CANCELLED if a drain cut the call.

        The caller's ``cancel()`` and the awaiting task's own cancellation
        (``Task.cancel``, ``asyncio.timeout``, ``wait_for``) stay a
        CancelledError, as grpc.aio has it; only the channel's close cancels
        a call otherwise.
        """
        task = _current_task()
        if getattr(self, "_by_caller", False) or (task is not None and task.cancelling()):
            return cancelled
        pool = self._pool
        if self._connection.channel not in pool.closed_by_pool:  # type: ignore[comparison-overlap]
            # grpcio before 1.85 reports a call lost with its connection as
            # cancelled: it may have reached the server, so it is not sent again.
            error = _AioRpcError(
                grpc.StatusCode.UNAVAILABLE,
                grpc.aio.Metadata(),
                grpc.aio.Metadata(),
                details="the call's connection was lost (grpc.aio reported it cancelled)",
            )
            error.__suppress_context__ = True
            return error
        error = _AioRpcError(
            grpc.StatusCode.CANCELLED,
            grpc.aio.Metadata(),
            grpc.aio.Metadata(),
            details=(
                f"the call was cut when its connection's drain ended: pool {pool.name!r} "
                f"closed the connection connection.drain_timeout "
                f"({pool.config.connection.drain_timeout:g} s) after it left the pool"
            ),
        )
        error.__suppress_context__ = True
        return error

    def _time_left(self) -> tuple[bool, float | None]:
        """Whether the call may be sent again as far as time goes, and its time left (None: no
        deadline)."""
        try:
            left = self._call.time_remaining()
        except NotImplementedError:  # a call through grpc.aio interceptors does not say
            return self._kwargs.get("timeout") is None, None
        return left is None or left > 0, left

    def _failed(self, error: BaseException) -> bool:
        """A failure of the running attempt: True if it was sent again instead."""
        self._connection.failed(error, time.monotonic())
        if getattr(self, "_answered", False) or not self._resends or not never_sent(error):
            return False
        tried = getattr(self, "_tried", None)
        if tried is None:
            tried = self._tried = [self._connection]
        pool = self._pool
        connection = untried(pool.view, tried) if pool.ended is None else None
        in_time, left = self._time_left()
        if connection is None or not in_time:
            return False
        kwargs = self._kwargs if left is None else {**self._kwargs, "timeout": left}
        tried.append(connection)
        ticket = pool.capacity.try_start(connection)
        if ticket is None:  # no room there, or it left the pool meanwhile
            return False
        self._call = self._run_again(connection, ticket, kwargs)
        self._connection = connection
        return True

    def _refused(self, error: BaseException) -> bool:
        """Whether the running attempt was refused by its server and is to be routed again."""
        if not (self._resends and refused_stream(error)) or getattr(self, "_answered", False):
            return False
        refusals = getattr(self, "_refusals", 0) + 1
        self._refusals = refusals
        return refusals <= MAX_REFUSED_REROUTES and self._pool.ended is None

    async def _route_again(self, error: BaseException) -> None:
        """Routes a refused call again, as a new call is routed (it may wait for a slot).

        Raises:
            BaseException: ``error`` when no connection is ready or no time is
                left; the queue's ``PoolCallError`` when it is full, or the
                deadline passes while the call waits.
        """
        in_time, left = self._time_left()
        if not in_time:
            raise error
        deadline = None if left is None else time.monotonic() + left
        try:
            connection, ticket = await self._pool.capacity.acquire(deadline)
        except PoolCallError:
            raise
        except NotConnectedError:
            raise error from None
        kwargs = self._kwargs
        if deadline is not None:
            kwargs = {**kwargs, "timeout": max(0.0, deadline - time.monotonic())}
        self._call = self._run_again(connection, ticket, kwargs)
        self._connection = connection

    def _run_again(self, connection: ReadyConnection, ticket: int, kwargs: dict[str, Any]) -> Any:
        """Starts the call again on ``connection`` (counted there as ``ticket``)."""
        return self._routed.run(connection, ticket, self._request, kwargs)


class _Awaited(PoolCall):
    """A call with one response: awaiting it gives the response."""

    __slots__ = ()

    def __await__(self) -> Generator[Any, None, Any]:
        while True:
            try:
                return (yield from self._call.__await__())
            except _Cancelled as cancelled:
                raise self._cut(cancelled)  # noqa: B904 - _cut says which, and why
            except _AioRpcError as error:
                if self._refused(error):
                    yield from self._route_again(error).__await__()
                elif not self._failed(error):
                    raise


class _Iterated(PoolCall):
    """A call with a stream of responses: iterated, or read one at a time."""

    __slots__ = ()

    def __aiter__(self) -> AsyncIterator[Any]:
        return self._responses()

    async def _responses(self) -> AsyncIterator[Any]:
        while True:
            try:
                async for response in self._call:
                    self._answered = True
                    yield response
                return
            except _Cancelled as cancelled:
                raise self._cut(cancelled)  # noqa: B904
            except _AioRpcError as error:
                if self._refused(error):
                    await self._route_again(error)
                elif not self._failed(error):
                    raise

    async def read(self) -> Any:
        while True:
            try:
                response = await self._call.read()
            except _Cancelled as cancelled:
                raise self._cut(cancelled)  # noqa: B904
            except _AioRpcError as error:
                if self._refused(error):
                    await self._route_again(error)
                elif not self._failed(error):
                    raise
            else:
                self._answered = True
                return response


class _Written(PoolCall):
    """A call with a stream of requests, written one at a time if not from an iterator."""

    __slots__ = ()

    async def write(self, request: Any) -> None:
        try:
            await self._call.write(request)
        except _Cancelled as cancelled:
            raise self._cut(cancelled)  # noqa: B904
        except _AioRpcError as error:
            self._connection.failed(error, time.monotonic())
            raise

    async def done_writing(self) -> None:
        try:
            await self._call.done_writing()
        except _Cancelled as cancelled:
            raise self._cut(cancelled)  # noqa: B904


class UnaryUnaryCall(_Awaited):
    __slots__ = ()
    _resends = True


class UnaryStreamCall(_Iterated):
    __slots__ = ()
    _resends = True


class StreamUnaryCall(_Awaited, _Written):
    __slots__ = ()


class StreamStreamCall(_Iterated, _Written):
    __slots__ = ()


_CLASSES: dict[str, type[PoolCall]] = {
    "unary_unary": UnaryUnaryCall,
    "unary_stream": UnaryStreamCall,
    "stream_unary": StreamUnaryCall,
    "stream_stream": StreamStreamCall,
}


def call_class(kind: str) -> type[PoolCall]:
    """The :class:`PoolCall` class for a multi-callable of ``kind`` (``"unary_unary"``, ...)."""
    return _CLASSES[kind]
