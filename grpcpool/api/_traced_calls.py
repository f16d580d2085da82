"""The sync pool channel's calls while a per-call metrics recorder listens (gRFC A66).

:mod:`grpcpool.api._pool_calls` reads ``HOOK.recorder`` once per call; when
an exporter registered with ``per_call=True`` installed one, the call runs
here instead: routed, counted, sent again and recorded on its connection
exactly as there (the same methods of the multi-callable do it), and told to
the recorder besides: a :class:`~grpcpool._call_metrics.CallTrace` for the
call, an :class:`~grpcpool._call_metrics.Attempt` for each attempt (a call
that never left and is sent again makes a second one, and so does one its
server refused at its stream limit and the pool routed again), each ended
with its status code.

Each attempt runs on the connection's *sized* multi-callable (its
serializers count each message's bytes for the attempt named by
:data:`~grpcpool._message_sizes.HERE`, this thread's, set here around the grpc call).
grpcio serializes a request on the calling thread (a stream of requests on
a thread of its own, where the iterator wrapped here names the attempt) and
reads a blocking call's response there too; the response of a ``future()``
call and a stream's responses it reads on its own threads, so those are
measured from the response messages (:func:`~grpcpool._message_sizes.message_size`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, Protocol

import grpc

from grpcpool._call_metrics import Attempt, CallTrace, Recorder
from grpcpool._message_sizes import HERE, message_size, sized_key
from grpcpool.api._call_ends import finished, options_of
from grpcpool.connection._call_errors import status_code
from grpcpool.core._ready import CallableKey, ReadyConnection
from grpcpool.core._reroute import never_sent
from grpcpool.errors import PoolCallError

if TYPE_CHECKING:
    from grpcpool.actors._entry import PoolEntry

__all__ = [
    "SizedResponses",
    "code_of",
    "fail",
    "sized_requests",
    "traced_attempt",
    "traced_blocking",
    "traced_started",
]

_OK = grpc.StatusCode.OK
_UNKNOWN = grpc.StatusCode.UNKNOWN

if TYPE_CHECKING:  # generic in the type stubs only
    _Future = grpc.Future[Any]
else:
    _Future = grpc.Future


class _Routing(Protocol):
    """What a traced call uses of the pool channel's multi-callable (``_pool_calls._Routed``)."""

    _key: CallableKey
    _name: str
    _sized: CallableKey | None
    _labeled: tuple[Recorder, Any] | None
    _timed: bool

    def _route(
        self,
        entry: PoolEntry | None,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        key: CallableKey | None = None,
    ) -> tuple[ReadyConnection, int, Any, tuple[Any, ...], dict[str, Any]]: ...

    def _again(self, error: grpc.RpcError, connection: ReadyConnection) -> bool: ...

    def _attempt(
        self,
        connection: ReadyConnection,
        built: Any,
        how: str | None,
        request: Any,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        started: int,
    ) -> Any: ...

    def _resend(
        self,
        how: str | None,
        request: Any,
        options: dict[str, Any],
        started: int,
        tried: list[ReadyConnection],
        error: grpc.RpcError,
        trace: CallTrace | None = None,
    ) -> Any: ...


def _sized(routed: _Routing, connection: ReadyConnection) -> Any:
    """The connection's multi-callable for the method whose serializers count bytes."""
    sized = routed._sized
    if sized is None:
        sized = routed._sized = sized_key(routed._key)
    return connection.callables.get(sized) or connection.multi_callable(sized)


def code_of(error: BaseException) -> grpc.StatusCode:
    """The status a failed call or attempt is recorded with (UNKNOWN: not a grpc error)."""
    return status_code(error) or _UNKNOWN


def fail(trace: CallTrace, attempt: Attempt, error: BaseException) -> None:
    """``error`` ended the call (and its attempt, if that had not ended yet)."""
    code = code_of(error)
    attempt.end(code)
    trace.finish(code)


def traced_attempt(
    routed: _Routing,
    connection: ReadyConnection,
    how: str | None,
    request: Any,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    started: int,
    attempt: Attempt,
) -> Any:
    """One blocking attempt (``routed._attempt``) on the sized multi-callable, told to ``attempt``."""
    slot = HERE.named
    named = slot[0]
    slot[0] = attempt
    try:
        built = _sized(routed, connection)
        answer = routed._attempt(connection, built, how, request, args, kwargs, started)
    except BaseException as error:
        (attempt.end_unsent if never_sent(error) else attempt.end)(code_of(error))
        raise
    finally:
        slot[0] = named
    attempt.end(_OK)
    return answer


def traced_blocking(
    routed: _Routing,
    recorder: Recorder,
    how: str | None,
    request: Any,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    entry: PoolEntry | None,
) -> Any:
    """A call that blocks until its response (``_Routed._blocking``), traced.

    The first attempt is :func:`traced_attempt` written out, and ``_sized``
    with it: this is the path of every traced unary call, and each function
    call saved is a tenth of a microsecond of the two that tracing may cost.
    The call's trace is its first attempt; routing it looks up the sized
    multi-callable at once (not the plain one, to be swapped).
    """
    trace = attempt = CallTrace(recorder, routed, True)
    started = trace.started
    sized = routed._sized
    if sized is None:
        sized = routed._sized = sized_key(routed._key)
    try:
        connection, ticket, built, args, kwargs = routed._route(entry, args, kwargs, sized)
        if routed._key[0] == "stream_unary":
            request = sized_requests(request, attempt)
        slot = HERE.named
        named = slot[0]
        slot[0] = attempt
        try:
            answer = routed._attempt(connection, built, how, request, args, kwargs, started)
        except grpc.RpcError as error:
            unsent = never_sent(error)
            if not routed._again(error, connection):  # (a refusal lowers the limit there)
                if unsent:
                    attempt.sent = 0  # serialized, but no byte of it left
                attempt.end_with_call(code_of(error))
                raise
            (attempt.end_unsent if unsent else attempt.end)(code_of(error))
            failed = error
        else:
            attempt.end_with_call(_OK)
            return answer
        finally:
            slot[0] = named
            connection.end(ticket)
        options = options_of(args, kwargs)
        answer = routed._resend(how, request, options, started, [connection], failed, trace)
    except BaseException as error:
        fail(trace, attempt, error)
        raise
    trace.finish(_OK)
    return answer


def traced_started(
    routed: _Routing,
    recorder: Recorder,
    how: str | None,
    request: Any,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    entry: PoolEntry | None,
) -> Any:
    """A call that returns at once (``_Routed._started``: a future or a stream), traced.

    The call has one attempt (only blocking calls are sent again); both end
    in the grpc call's done callback.
    """
    trace = attempt = CallTrace(recorder, routed, True)
    try:
        connection, ticket, _, args, kwargs = routed._route(entry, args, kwargs)
    except BaseException as error:
        fail(trace, attempt, error)
        if isinstance(error, PoolCallError):
            return error  # the call object of a call that failed before it started
        raise
    kind = routed._key[0]
    if kind.startswith("stream"):
        request = sized_requests(request, attempt)
    slot = HERE.named
    named = slot[0]
    slot[0] = attempt
    try:
        built = _sized(routed, connection)
        call = (built if how is None else getattr(built, how))(request, *args, **kwargs)
    except BaseException as error:
        connection.end(ticket)
        fail(trace, attempt, error)
        raise
    finally:
        slot[0] = named
    started, timed, name = trace.started, routed._timed, routed._name
    streams = kind.endswith("stream")
    handed = SizedResponses(call, attempt) if streams else call  # holds it: before the end
    call.add_done_callback(
        lambda done: _ended(name, connection, ticket, done, started, timed, attempt, not streams)
    )
    return handed


def _ended(
    name: str,
    connection: ReadyConnection,
    ticket: int,
    call: Any,
    started: int,
    timed: bool,
    attempt: Attempt,
    one_response: bool,
) -> None:
    """A traced future or stream has ended (its done callback): as ``finished``, then told."""
    finished(name, connection, ticket, call, started, timed)
    code = _UNKNOWN
    with contextlib.suppress(Exception):  # a call object without a code: UNKNOWN
        code = call.code() or _UNKNOWN
        if one_response and code is _OK and not attempt.received:
            attempt.received = message_size(call.result())
    attempt.end(code)
    attempt.call.finish(code)


def sized_requests(requests: Any, attempt: Attempt) -> Iterator[Any]:
    """The request stream, naming ``attempt`` on the thread grpcio consumes it on.

    grpcio serializes each request right after taking it from the iterator,
    on the same thread, so the sized serializer counts it for ``attempt``.
    """
    for request in requests:
        HERE.named[0] = attempt
        yield request


class SizedResponses(grpc.Call, _Future):
    """A traced stream of responses: grpcio's call, each response's size told to the attempt.

    grpcio reads a stream's responses on its own thread, so each is
    measured from the message as it is handed out. The status may arrive
    before the last responses are read: the attempt is held until the
    stream is read to its end (or fails, or this is let go of).

    Everything else passes through to the call.
    """

    def __init__(self, call: Any, attempt: Attempt) -> None:
        self._call = call
        self._attempt = attempt
        attempt.hold()

    def __iter__(self) -> SizedResponses:
        return self

    def __next__(self) -> Any:
        try:
            response = next(self._call)
        except BaseException:  # the end of the stream, or its failure
            self._attempt.release()
            raise
        self._attempt.received += message_size(response)
        return response

    def __del__(self) -> None:
        self._attempt.release()

    def initial_metadata(self) -> Any:
        return self._call.initial_metadata()

    def trailing_metadata(self) -> Any:
        return self._call.trailing_metadata()

    def code(self) -> Any:
        return self._call.code()

    def details(self) -> Any:
        return self._call.details()

    def debug_error_string(self) -> Any:
        return self._call.debug_error_string()

    def is_active(self) -> bool:
        return bool(self._call.is_active())

    def time_remaining(self) -> Any:
        return self._call.time_remaining()

    def add_callback(self, callback: Callable[[], None]) -> bool:
        return bool(self._call.add_callback(callback))

    def cancel(self) -> bool:
        return bool(self._call.cancel())

    def cancelled(self) -> bool:
        return bool(self._call.cancelled())

    def running(self) -> bool:
        return bool(self._call.running())

    def done(self) -> bool:
        return bool(self._call.done())

    def result(self, timeout: float | None = None) -> Any:
        return self._call.result(timeout)

    def exception(self, timeout: float | None = None) -> Any:
        return self._call.exception(timeout)

    def traceback(self, timeout: float | None = None) -> Any:
        return self._call.traceback(timeout)

    def add_done_callback(self, fn: Callable[[Any], None]) -> None:
        self._call.add_done_callback(lambda _: fn(self))

    def __repr__(self) -> str:
        return f"<traced {self._call!r}>"
