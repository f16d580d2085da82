"""The four multi-callables of a PoolChannel: each call routed when it starts.

A call asks the pool's current view for a ready connection (the pool's
strategy picks), counts itself in flight there, runs on that connection's own
grpc multi-callable for the method and, when it ends, tells the connection how
it went (:class:`~grpcpool.core._call_stats.CallStats`: its outcome, and its
latency for a call with one response). A blocking unary call that failed
before it reached a server is sent again (:mod:`grpcpool.core._reroute`),
and so is one its server refused at its stream limit, after that connection
lowered its limit (:mod:`grpcpool.core._capacity`). A call to a limited pool
(``pool.max_calls_per_connection``, or refused streams) is admitted through
the pool's capacity and may wait there for a slot.
A unary-unary call of a method the pool hedges (``pool.hedging``) runs as a
:class:`~grpcpool.api._hedged_calls.HedgedCall` instead.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import grpc

from grpcpool._call_metrics import HOOK, CallTrace, Recorder
from grpcpool._config_capacity import MAX_REFUSED_REROUTES
from grpcpool._process import PROCESS
from grpcpool.actors._entry import PoolEntry
from grpcpool.api._call_ends import finished, options_of, record_failure, refused, seconds
from grpcpool.api._hedged_calls import HedgedCall, hedged
from grpcpool.api._traced_calls import code_of, traced_attempt, traced_blocking, traced_started
from grpcpool.connection._call_errors import refused_stream
from grpcpool.core._hedging import HedgingState
from grpcpool.core._ready import CallableKey, ReadyConnection
from grpcpool.core._reroute import never_sent, untried
from grpcpool.errors import NotConnectedError, PoolCallError

if TYPE_CHECKING:
    from grpcpool.api._pool_channel import PoolChannel

__all__ = ["routed_callable"]

# Read without a lock on every call; PROCESS clears it in place after a fork.
_pools: dict[str, PoolEntry] = PROCESS.pools

_clock = time.perf_counter_ns
_OK = grpc.StatusCode.OK


if TYPE_CHECKING:  # generic in the type stubs only
    _UnaryUnaryBase = grpc.UnaryUnaryMultiCallable[Any, Any]
    _UnaryStreamBase = grpc.UnaryStreamMultiCallable[Any, Any]
    _StreamUnaryBase = grpc.StreamUnaryMultiCallable[Any, Any]
    _StreamStreamBase = grpc.StreamStreamMultiCallable[Any, Any]
else:
    _UnaryUnaryBase = grpc.UnaryUnaryMultiCallable
    _UnaryStreamBase = grpc.UnaryStreamMultiCallable
    _StreamUnaryBase = grpc.StreamUnaryMultiCallable
    _StreamStreamBase = grpc.StreamStreamMultiCallable


class _Routed:
    """What the four multi-callables share: the pool channel and the method's key.

    The fast path (a ready connection) hands the caller's arguments to grpc's
    multi-callable untouched, so grpc checks them; only a call that finds no
    ready connection, or is made to a limited pool (which admits it through
    its capacity, perhaps after a wait for a slot), reads them by name, to
    wait and shorten its timeout.
    """

    __slots__ = ("_channel", "_key", "_labeled", "_name", "_sized")

    def __init__(self, channel: PoolChannel, key: CallableKey) -> None:
        self._channel = channel
        self._key = key
        self._name = channel.name
        # The key of its multi-callables that count message bytes (per-call
        # metrics), made by the first traced call.
        self._sized: CallableKey | None = None
        # The per-call metrics recorder that last traced a call, and its labels
        # for this method (see CallTrace).
        self._labeled: tuple[Recorder, Any] | None = None

    def _route(
        self,
        entry: PoolEntry | None,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        key: CallableKey | None = None,
    ) -> tuple[ReadyConnection, int, Any, tuple[Any, ...], dict[str, Any]]:
        """A ready connection of ``entry``'s pool (the caller looked it up) with the call
        counted on it, the call's ticket there, the connection's multi-callable for
        the method (for ``key`` if given: a traced call's sized one), and the call's
        arguments.

        The caller ends the ticket (``connection.end``) when the call ends.
        """
        try:
            admitted = (
                entry.view.admit() if entry is not None and not entry.capacity.limited else None
            )
        except NotConnectedError:
            admitted = None
        if admitted is None:
            kwargs, args = options_of(args, kwargs), ()
            connection, ticket, kwargs["timeout"] = self._channel._admit_slowly(
                kwargs.get("wait_for_ready"), kwargs.get("timeout")
            )
        else:
            connection, ticket = admitted
        if key is None:
            key = self._key
        try:
            built = connection.callables.get(key) or connection.multi_callable(key)
        except BaseException:
            connection.end(ticket)
            raise
        return connection, ticket, built, args, kwargs

    # Whether a blocking call that failed before it reached a server is sent
    # again: not a stream of requests, which grpc may have begun to consume.
    _resends = False
    # Whether the call's duration is a latency sample: one request and one
    # response (a stream's length, or an upload's pace, says nothing of it).
    _timed = False

    def _blocking(
        self,
        how: str | None,
        request: Any,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        entry: PoolEntry | None,
    ) -> Any:
        """Runs a call that blocks until its response, counted while it runs."""
        recorder = HOOK.recorder
        if recorder is not None:  # per-call metrics: the same call, traced
            return traced_blocking(self, recorder, how, request, args, kwargs, entry)
        # When it started, to keep a call sent again within its timeout.
        started = _clock()
        connection, ticket, built, args, kwargs = self._route(entry, args, kwargs)
        try:
            return self._attempt(connection, built, how, request, args, kwargs, started)
        except grpc.RpcError as error:
            if not self._again(error, connection):
                raise
            failed = error
        finally:
            connection.end(ticket)
        return self._resend(how, request, options_of(args, kwargs), started, [connection], failed)

    def _again(self, error: grpc.RpcError, connection: ReadyConnection) -> bool:
        """Whether a blocking attempt on ``connection`` that failed with ``error`` is sent again.

        A stream its server refused lowers the connection's limit first, while
        the attempt is still counted there (its ticket has not ended).
        """
        if refused_stream(error):
            refused(self._name, connection, len(connection.calls) - 1)
            return self._resends
        return self._resends and never_sent(error)

    def _attempt(
        self,
        connection: ReadyConnection,
        built: Any,
        how: str | None,
        request: Any,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        started: int,
    ) -> Any:
        """Runs one blocking attempt on ``connection`` and tells it how the attempt ended."""
        try:
            answer = (built if how is None else getattr(built, how))(request, *args, **kwargs)
        except grpc.RpcError as error:
            record_failure(connection, error, started, self._timed)
            raise
        connection.stats.record(seconds(started) if self._timed else None, _OK, time.monotonic())
        return answer

    def _resend(
        self,
        how: str | None,
        request: Any,
        options: dict[str, Any],
        started: int,
        tried: list[ReadyConnection],
        error: grpc.RpcError,
        trace: CallTrace | None = None,
    ) -> Any:
        """Sends a call that never reached a server (a handler) again.

        A call that failed at pick time goes to the next untried ready
        connection with room, each at most once. A call its server refused
        is routed again as a new call is (its connection's limit lowered),
        waiting in the pool's queue for a slot if it must, at most
        ``MAX_REFUSED_REROUTES`` times. Both within the call's timeout
        (counted from ``started``, a ``perf_counter_ns`` reading); the last
        failure is raised when no connection or no time is left.
        Each try is a new attempt of ``trace``, if the call is traced.
        """
        timeout = options.get("timeout")
        refusals = 0
        while True:
            entry = _pools.get(self._name)
            if entry is None:
                raise error
            left = None
            if timeout is not None:
                left = options["timeout"] = timeout - (_clock() - started) / 1e9
                if left <= 0:
                    raise error
            if refused_stream(error):
                refusals += 1
                if refusals > MAX_REFUSED_REROUTES:
                    raise error
                connection, ticket = self._slot_again(entry, left, options, error)
            else:
                next_one = untried(entry.view, tried)
                if next_one is None:
                    raise error
                tried.append(next_one)
                started_there = entry.capacity.try_start(next_one)
                if started_there is None:  # no room there, or it left the pool meanwhile
                    continue
                connection, ticket = next_one, started_there
            attempt = _clock()
            try:
                if trace is not None:
                    return traced_attempt(
                        self, connection, how, request, (), options, attempt, trace.attempt()
                    )
                built = connection.callables.get(self._key) or connection.multi_callable(self._key)
                return self._attempt(connection, built, how, request, (), options, attempt)
            except grpc.RpcError as again:
                if not self._again(again, connection):
                    raise
                error = again
            finally:
                connection.end(ticket)

    @staticmethod
    def _slot_again(
        entry: PoolEntry, left: float | None, options: dict[str, Any], error: grpc.RpcError
    ) -> tuple[ReadyConnection, int]:
        """A slot for a refused call, as a new call gets one (it may wait for it)."""
        deadline = None if left is None else time.monotonic() + left
        try:
            slot = entry.capacity.acquire(deadline)
        except PoolCallError:
            raise
        except NotConnectedError:
            raise error from None
        if deadline is not None:
            options["timeout"] = max(0.0, deadline - time.monotonic())
        return slot

    def _started(
        self,
        how: str | None,
        request: Any,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        entry: PoolEntry | None,
    ) -> Any:
        """Starts a call that returns at once (a future or a stream), counted until it ends."""
        recorder = HOOK.recorder
        if recorder is not None:  # per-call metrics: the same call, traced
            return traced_started(self, recorder, how, request, args, kwargs, entry)
        started = _clock()
        try:
            connection, ticket, built, args, kwargs = self._route(entry, args, kwargs)
        except PoolCallError as failed:
            return failed  # the call object of a call that failed before it started
        try:
            call = (built if how is None else getattr(built, how))(request, *args, **kwargs)
        except BaseException:
            connection.end(ticket)
            raise
        timed, name = self._timed, self._name
        # Runs at once if the call has ended already.
        call.add_done_callback(
            lambda done: finished(name, connection, ticket, done, started, timed)
        )
        return call


class _UnaryUnary(_Routed, _UnaryUnaryBase):
    """Unary-unary: the one kind a pool may hedge (``pool.hedging``), per method.

    A pool without hedging, or a method it does not hedge, costs one
    attribute read and a set lookup more than the other kinds.
    """

    __slots__ = ()
    _resends = True
    _timed = True

    def __call__(self, request: Any, *args: Any, **kwargs: Any) -> Any:
        entry = _pools.get(self._name)
        hedging = entry.hedging if entry is not None else None
        if hedging is not None and self._key[1] in hedging.methods:
            return self._hedged(entry, hedging, request, args, kwargs, True).answer()
        return self._blocking(None, request, args, kwargs, entry)

    def with_call(self, request: Any, *args: Any, **kwargs: Any) -> Any:
        entry = _pools.get(self._name)
        hedging = entry.hedging if entry is not None else None
        if hedging is not None and self._key[1] in hedging.methods:
            call = self._hedged(entry, hedging, request, args, kwargs, True)
            return call.answer(), call
        return self._blocking("with_call", request, args, kwargs, entry)

    def future(self, request: Any, *args: Any, **kwargs: Any) -> Any:
        entry = _pools.get(self._name)
        hedging = entry.hedging if entry is not None else None
        if hedging is not None and self._key[1] in hedging.methods:
            try:
                return self._hedged(entry, hedging, request, args, kwargs, False)
            except PoolCallError as failed:
                return failed  # as an unhedged future() does
        return self._started("future", request, args, kwargs, entry)

    def _hedged(
        self,
        entry: PoolEntry | None,
        hedging: HedgingState,
        request: Any,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        blocking: bool,
    ) -> HedgedCall:
        """Starts the call hedged: its first attempt routed as any call is."""
        assert entry is not None  # whose hedging it is
        recorder = HOOK.recorder
        trace = None if recorder is None else CallTrace(recorder, self)
        try:
            connection, ticket, _, args, kwargs = self._route(entry, args, kwargs)
            try:
                options = options_of(args, kwargs)
            except BaseException:
                connection.end(ticket)
                raise
            return hedged(
                entry, hedging, self._key, request, options, connection, ticket, blocking, trace
            )
        except BaseException as error:
            if trace is not None:
                trace.failed(code_of(error))
            raise


class _UnaryStream(_Routed, _UnaryStreamBase):
    __slots__ = ()
    def __call__(self, request: Any, *args: Any, **kwargs: Any) -> Any:
        return self._started(None, request, args, kwargs, _pools.get(self._name))


class _StreamUnary(_Routed, _StreamUnaryBase):
    __slots__ = ()

    def __call__(self, request_iterator: Any, *args: Any, **kwargs: Any) -> Any:
        return self._blocking(None, request_iterator, args, kwargs, _pools.get(self._name))

    def with_call(self, request_iterator: Any, *args: Any, **kwargs: Any) -> Any:
        entry = _pools.get(self._name)
        return self._blocking("with_call", request_iterator, args, kwargs, entry)

    def future(self, request_iterator: Any, *args: Any, **kwargs: Any) -> Any:
        entry = _pools.get(self._name)
        return self._started("future", request_iterator, args, kwargs, entry)


class _StreamStream(_Routed, _StreamStreamBase):
    __slots__ = ()
    def __call__(self, request_iterator: Any, *args: Any, **kwargs: Any) -> Any:
        return self._started(None, request_iterator, args, kwargs, _pools.get(self._name))


_KINDS: dict[str, type[_Routed]] = {
    "unary_unary": _UnaryUnary,
    "unary_stream": _UnaryStream,
    "stream_unary": _StreamUnary,
    "stream_stream": _StreamStream,
}


def routed_callable(channel: PoolChannel, key: CallableKey) -> Any:
    """The multi-callable of ``key`` (its kind first) on the pool channel ``channel``."""
    return _KINDS[key[0]](channel, key)
