"""The asyncio pool channel's calls while a per-call metrics recorder listens (gRFC A66).

A traced call runs as any call through an
:class:`~grpcpool.api._aio_channel.AioPoolChannel` does, and its caller holds
the same kind of :class:`~grpcpool.api._aio_calls.PoolCall`, one that also
tells the call's :class:`~grpcpool._call_metrics.CallTrace` how it went:

* each attempt (the first, one sent again because the one before never
  left, and one routed again because its server refused it at its stream
  limit) runs through ``run_traced``, which ends the attempt with its status;
* the call ends with the status of its last attempt: when an attempt ends,
  unless it failed before it was sent (or was refused) and may still be sent
  again, which the caller's await decides (:meth:`_Traced._failed`,
  :meth:`_Traced._route_again`);
* grpc.aio serializes and reads the messages of a unary call inside the
  call's own task, which copies the context the attempt was named in; the
  responses of a stream are read, and requests written with ``write()``
  are serialized, in the caller's task, so those steps name the attempt
  here (:data:`~grpcpool._message_sizes.ATTEMPT`).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any, Protocol

import grpc

from grpcpool._call_metrics import Attempt, CallTrace
from grpcpool._message_sizes import ATTEMPT
from grpcpool.api._aio_calls import (
    PoolCall,
    StreamStreamCall,
    StreamUnaryCall,
    UnaryStreamCall,
    UnaryUnaryCall,
)
from grpcpool.api._aio_hedged import ending
from grpcpool.connection._call_errors import REFUSED_STREAM, status_code
from grpcpool.core._ready import CallableKey, ReadyConnection
from grpcpool.core._reroute import NEVER_SENT

if TYPE_CHECKING:
    from grpcpool.tasks._pool import TaskPool as Pool

__all__ = ["traced_call"]

_UNAVAILABLE = grpc.StatusCode.UNAVAILABLE
_UNKNOWN = grpc.StatusCode.UNKNOWN


class _Routed(Protocol):
    """What a traced call needs of the pool channel's multi-callable."""

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


class _Traced(PoolCall):
    """A :class:`PoolCall` whose attempts and end are told to the call's trace."""

    __slots__ = ("_attempt", "_trace")

    _routed: _Routed
    # A stream of responses: its attempt is held while they are read (Attempt.hold).
    _reads = False

    def _traced(self, trace: CallTrace, attempt: Attempt) -> None:
        self._trace = trace
        self._attempt = attempt
        if self._reads:
            attempt.hold()
        self._call.add_done_callback(self._attempt_done)

    def _attempt_done(self, call: Any) -> None:
        """An attempt's grpc call is done: the call ends with it, unless it may be sent again."""
        code, details = ending(call)
        again = details is not None and (details.startswith(NEVER_SENT) or REFUSED_STREAM in details)
        if self._resends and code is _UNAVAILABLE and again:
            return  # _failed or _route_again decides, when the caller awaits it
        self._trace.finish(code)

    def _run_again(self, connection: ReadyConnection, ticket: int, kwargs: dict[str, Any]) -> Any:
        self._attempt.release()  # it failed: nothing more to read from it
        self._attempt = attempt = self._trace.attempt()
        if self._reads:
            attempt.hold()
        call = self._routed.run_traced(connection, ticket, self._request, kwargs, attempt)
        call.add_done_callback(self._attempt_done)
        return call

    def _failed(self, error: BaseException) -> bool:
        if super()._failed(error):
            return True
        self._trace.finish(status_code(error) or _UNKNOWN)
        return False

    async def _route_again(self, error: BaseException) -> None:
        try:
            await super()._route_again(error)
        except asyncio.CancelledError:  # its caller gave up while it waited for a slot
            self._trace.finish(grpc.StatusCode.CANCELLED)
            raise
        except BaseException as failed:  # no slot, no time: the call ends with it
            self._trace.finish(status_code(failed) or _UNKNOWN)
            raise


class _TracedReads(_Traced):
    """Names the attempt while a response of the stream is read (and deserialized), and
    releases it once the stream has been read to its end or failed."""

    __slots__ = ()
    _reads = True

    async def _responses(self) -> AsyncIterator[Any]:
        responses = super()._responses()  # type: ignore[misc]
        try:
            while True:
                token = ATTEMPT.set(self._attempt)
                try:
                    response = await responses.__anext__()
                except BaseException:  # its end, or its failure
                    self._attempt.release()
                    raise
                finally:
                    ATTEMPT.reset(token)
                yield response
        except StopAsyncIteration:
            return
        finally:
            await responses.aclose()

    async def read(self) -> Any:
        token = ATTEMPT.set(self._attempt)
        try:
            response = await super().read()  # type: ignore[misc]
        except BaseException:
            self._attempt.release()
            raise
        finally:
            ATTEMPT.reset(token)
        if response is grpc.aio.EOF:
            self._attempt.release()
        return response

    def __del__(self) -> None:
        attempt = getattr(self, "_attempt", None)
        if attempt is not None:
            attempt.release()


class _TracedWrites(_Traced):
    """Names the attempt while a request is written (and serialized)."""

    __slots__ = ()

    async def write(self, request: Any) -> None:
        token = ATTEMPT.set(self._attempt)
        try:
            await super().write(request)  # type: ignore[misc]
        finally:
            ATTEMPT.reset(token)


class _TracedUnaryUnary(_Traced, UnaryUnaryCall):
    __slots__ = ()


class _TracedUnaryStream(_TracedReads, UnaryStreamCall):
    __slots__ = ()


class _TracedStreamUnary(_TracedWrites, StreamUnaryCall):
    __slots__ = ()


class _TracedStreamStream(_TracedReads, _TracedWrites, StreamStreamCall):
    __slots__ = ()


_CLASSES: dict[str, type[_Traced]] = {
    "unary_unary": _TracedUnaryUnary,
    "unary_stream": _TracedUnaryStream,
    "stream_unary": _TracedStreamUnary,
    "stream_stream": _TracedStreamStream,
}


def traced_call(
    routed: _Routed,
    connection: ReadyConnection,
    ticket: int,
    pool: Pool,
    request: Any,
    kwargs: dict[str, Any],
    trace: CallTrace,
) -> PoolCall:
    """Starts the first attempt of a traced call on ``connection``; returns the caller's call."""
    attempt = trace.attempt(True)
    try:
        call = routed.run_traced(connection, ticket, request, kwargs, attempt)
    except BaseException as error:
        trace.finish(status_code(error) or _UNKNOWN)
        raise
    made = _CLASSES[routed._key[0]](call, connection, routed, pool, request, kwargs)
    made._traced(trace, attempt)
    return made
