"""Hedged unary-unary calls through the asyncio pool channel (``pool.hedging``).

A call of a hedged method becomes an :class:`AioHedgedCall`: awaiting it
gives the winning attempt's answer or raises the error of the attempt that
settled the call. Each attempt is a ``grpc.aio`` call started as any call
through the pool channel is (counted in flight on its connection, its ending
recorded in the connection's ``stats``); the hedging timer is the loop's
``call_later``; everything runs on the pool's loop. The rules are in
:mod:`grpcpool.core._hedging`, the run in :mod:`grpcpool.api._hedging_run`.

Cancelling the call (``cancel()``, or the awaiting task's cancellation)
cancels every attempt. The error of a failed call is raised as a
:class:`~grpcpool.api._aio_calls.PoolCall` would raise it (a call cut by a
drain says so; passive health hears an ``UNAVAILABLE``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Generator
from typing import TYPE_CHECKING, Any, Protocol

import grpc

from grpcpool._call_metrics import Attempt, CallTrace
from grpcpool.api._aio_calls import UnaryUnaryCall
from grpcpool.api._hedging_run import HedgingRun
from grpcpool.connection._call_errors import REFUSED_STREAM as _REFUSED_STREAM
from grpcpool.connection._call_errors import finished_code, status_code
from grpcpool.core._hedging import HedgingState
from grpcpool.core._ready import CallableKey, ReadyConnection

if TYPE_CHECKING:
    from grpcpool.tasks._pool import TaskPool as Pool

__all__ = ["AioHedgedCall", "aio_hedged"]

_UNKNOWN = grpc.StatusCode.UNKNOWN
_UNAVAILABLE = grpc.StatusCode.UNAVAILABLE


class _Routed(Protocol):
    """The pool channel's multi-callable, which starts each attempt."""

    _key: CallableKey

    def run(
        self, connection: ReadyConnection, ticket: int, request: Any, kwargs: dict[str, Any]
    ) -> Any: ...

    def run_traced(
        self,
        connection: ReadyConnection,
        ticket: int,
        request: Any,
        kwargs: dict[str, Any],
        attempt: Attempt,
    ) -> Any: ...


class _Settled(UnaryUnaryCall):
    """The attempt that failed the call, raised as a pool call raises (never sent again)."""

    __slots__ = ()
    _resends = False


def finished_details(call: Any) -> str | None:
    """A finished ``grpc.aio`` call's details, read without awaiting (as ``finished_code``)."""
    try:
        details = call._cython_call._status.details()
    except (AttributeError, TypeError):
        return None
    return details if isinstance(details, str) else None


def ending(call: Any) -> tuple[grpc.StatusCode, str | None]:
    """How a finished attempt ended, read in its done callback: its code and details.

    A call through ``grpc.aio`` interceptors holds the real call (or the
    error the interceptors raised) in its interceptors' task; an interceptor
    that hands out a stream's responses itself leaves grpc.aio's wrapper of
    the real call there. An ending that cannot be read is UNKNOWN, which
    settles the call with that attempt: awaiting it then says how it really
    ended.
    """
    code = finished_code(call)
    if code is not None:
        return code, finished_details(call)
    task = getattr(call, "_interceptors_task", None)
    if isinstance(task, asyncio.Future) and task.done():
        if task.cancelled():
            return grpc.StatusCode.CANCELLED, None
        error = task.exception()
        if isinstance(error, grpc.aio.AioRpcError):
            return error.code(), error.details()
        if error is None:
            inner = task.result()
            code = finished_code(inner)
            if code is None:  # a stream's responses handed out by the interceptor
                inner = getattr(inner, "_call", None)
                code = finished_code(inner)
            if code is not None:
                return code, finished_details(inner)
    return _UNKNOWN, None


class AioHedgedCall(HedgingRun):
    """A hedged unary-unary call on an asyncio pool: awaited, it gives the winning answer.

    Args:
        routed: The pool channel's multi-callable for the method.
        pool: The pool (its loop runs everything).
        hedging: The pool's hedging state.
        request: The request, sent by each attempt.
        kwargs: The call's keyword arguments (``timeout`` counted from now).
        trace: The call's per-call metrics, if a recorder listens.
    """

    def __init__(
        self,
        routed: _Routed,
        pool: Pool,
        hedging: HedgingState,
        request: Any,
        kwargs: dict[str, Any],
        trace: CallTrace | None = None,
    ) -> None:
        super().__init__(pool, hedging, routed._key, kwargs, trace)
        self._routed = routed
        self._task_pool = pool
        self._request = request
        loop = pool._loop
        assert loop is not None  # a call is made on the running pool's loop
        self._loop = loop
        self._done: asyncio.Future[None] = loop.create_future()
        # The awaiting task cancelled (awaiting the future cancels it): so are the attempts.
        self._done.add_done_callback(self._maybe_cancelled)

    # --- HedgingRun -------------------------------------------------------------------------

    def _start_call(
        self, index: int, connection: ReadyConnection, ticket: int, options: dict[str, Any]
    ) -> Any:
        trace = self._trace
        if trace is None:
            call = self._routed.run(connection, ticket, self._request, options)
        else:
            attempt = trace.attempt(index == 0)
            call = self._routed.run_traced(connection, ticket, self._request, options, attempt)
        call.add_done_callback(lambda done: self._attempt_ended(index, connection, done))
        return call

    def _attempt_ended(self, index: int, connection: ReadyConnection, call: Any) -> None:
        code, details = _UNKNOWN, None
        try:
            code, details = ending(call)
            if code is _UNAVAILABLE and not (details and _REFUSED_STREAM in details):
                # Passive health, as ReadyConnection.failed has it (a stream the
                # server refused at its limit says nothing of the connection);
                # at most once a second per connection, so the settling
                # attempt reported again by the caller's error costs nothing.
                connection.report_unavailable(time.monotonic())
        finally:
            self.ended(index, code, details)

    def _schedule(self, delay: float) -> Any:
        return self._loop.call_later(delay, self.fired)

    def _settled(self) -> None:
        if not self._done.done():
            self._done.set_result(None)

    def _maybe_cancelled(self, done: asyncio.Future[None]) -> None:
        if done.cancelled():
            self.cancel_all()

    # --- awaiting ---------------------------------------------------------------------------

    def __await__(self) -> Generator[Any, None, Any]:
        yield from self._done.__await__()
        return (yield from self._final().__await__())

    def _final(self) -> Any:
        """What awaiting the call comes to: the winning grpc.aio call, or the failed one
        wrapped to raise as a pool call does."""
        won, call, connection, raised = self.outcome
        if call is None:
            assert raised is not None
            raise raised
        if won:
            return call
        assert connection is not None
        settled = _Settled(
            call, connection, self._routed, self._task_pool, self._request, self._options
        )
        if self._cancelled:
            settled._by_caller = True
        return settled

    async def _call(self) -> Any:
        """The settling attempt's grpc.aio call, once settled."""
        await asyncio.shield(self._done)
        _, call, _, raised = self.outcome
        if call is None:
            assert raised is not None
            raise raised
        return call

    # --- grpc.aio.Call ------------------------------------------------------------------------

    def cancel(self) -> bool:
        return self.cancel_all()

    def cancelled(self) -> bool:
        return self._cancelled and self._done.done()

    def done(self) -> bool:
        return self._done.done()

    def add_done_callback(self, callback: Callable[[Any], None]) -> None:
        self._done.add_done_callback(lambda _: callback(self))

    async def initial_metadata(self) -> Any:
        return await (await self._call()).initial_metadata()

    async def trailing_metadata(self) -> Any:
        return await (await self._call()).trailing_metadata()

    async def code(self) -> grpc.StatusCode:
        code: grpc.StatusCode = await (await self._call()).code()
        return code

    async def details(self) -> str:
        details: str = await (await self._call()).details()
        return details

    async def debug_error_string(self) -> str:
        text: str = await (await self._call()).debug_error_string()
        return text

    async def wait_for_connection(self) -> None:
        await self._calls[0].wait_for_connection()

    def __repr__(self) -> str:
        state = "settled" if self._done.done() else "running"
        return f"<hedged pool call {self._key[1]} {state}, {len(self._calls)} attempt(s)>"


def aio_hedged(
    routed: _Routed,
    pool: Pool,
    hedging: HedgingState,
    request: Any,
    kwargs: dict[str, Any],
    connection: ReadyConnection,
    ticket: int,
    trace: CallTrace | None = None,
) -> AioHedgedCall:
    """Starts a hedged call whose first attempt goes to ``connection`` (counted as ``ticket``);
    ``trace``: the call's per-call metrics, if a recorder listens."""
    try:
        call = AioHedgedCall(routed, pool, hedging, request, kwargs, trace)
        call.begin(connection, ticket)
    except BaseException as error:
        connection.end(ticket)  # idempotent: an attempt begun ends it too
        if trace is not None:
            trace.failed(status_code(error) or _UNKNOWN)
        raise
    return call
