"""AioPoolChannel: an asyncio pool as one ``grpc.aio.Channel``, routing each call.

As the sync :class:`~grpcpool.PoolChannel`: each call picks a ready connection
of the pool when it starts (with the pool's strategy, ``least_in_flight``
included), runs on that connection's multi-callable for the method (built
once per connection and method), and is counted in flight until it is done.
A stub built once on it keeps working across reconnects and scaling. The
count holds a connection that left the pool open until its last call ends
(see :class:`~grpcpool.core.CallLedger` and :mod:`grpcpool.tasks._drain`).

With no ready connection a call fails as a grpc.aio call does, when it is
awaited (or iterated): with a :class:`~grpcpool.PoolCallError`, a
``grpc.RpcError`` with code ``UNAVAILABLE`` that is also a
``NotConnectedError``. With ``wait_for_ready=True`` the call first waits for
a ready connection for up to its timeout (then ``DEADLINE_EXCEEDED``).
Otherwise the caller gets a :class:`~grpcpool.api._aio_calls.PoolCall` around
the ``grpc.aio`` call: how a call cut by a drain ends, and which calls are
sent again after failing before they reached a server (or being refused by
it at its stream limit), is said there. A unary-unary call of a method the
pool hedges (``pool.hedging``) is an
:class:`~grpcpool.api._aio_hedged.AioHedgedCall` instead. A call to a limited
pool (``pool.max_calls_per_connection``, or connections whose servers
refused streams) that finds every connection at its limit waits for a slot
in the pool's queue when it is awaited (:mod:`grpcpool.core._capacity`).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import grpc

from grpcpool._call_metrics import HOOK, Attempt, CallTrace, Recorder
from grpcpool._config_checks import check_pool_name
from grpcpool._message_sizes import ATTEMPT, sized_key
from grpcpool.api._aio_calls import call_class
from grpcpool.api._aio_hedged import aio_hedged, ending, finished_details
from grpcpool.api._aio_pending import FailedCall, WaitingCall, admit, not_running
from grpcpool.api._aio_traced import traced_call
from grpcpool.connection._call_errors import REFUSED_STREAM, finished_code, status_code
from grpcpool.core._ready import CallableKey, ReadyConnection, callable_key
from grpcpool.core._reroute import NEVER_SENT
from grpcpool.core._view import connectivity_of
from grpcpool.errors import NotConnectedError, PoolCallError
from grpcpool.tasks import POOLS

if TYPE_CHECKING:
    from grpcpool.tasks._pool import TaskPool as Pool

# The asyncio pools by name; read on every call (PROCESS clears it in place after a fork).
_pools = POOLS

# The loop checks of grpcpool.tasks._pool (thread ids on the hot path).
running_loop = asyncio.events._get_running_loop
thread_id = threading.get_ident

__all__ = ["AioPoolChannel"]

_clock = time.monotonic
_UNAVAILABLE = grpc.StatusCode.UNAVAILABLE


class AioPoolChannel(grpc.aio.Channel):
    """A ``grpc.aio.Channel`` over the ready connections of the asyncio pool ``name``.

    It follows the name, as the sync :class:`~grpcpool.PoolChannel` does: a
    stub built on it works with whichever pool of that name runs, and a call
    made while none runs fails ``UNAVAILABLE``. ``close()`` (and leaving
    ``async with``) does not stop the pool. Use it on the pool's loop only,
    like the pool.
    """

    def __init__(self, name: str) -> None:
        check_pool_name("pool.name", name)
        self._name = name

    @property
    def name(self) -> str:
        """The name of the pool whose connections the calls run on."""
        return self._name

    def unary_unary(
        self,
        method: str,
        request_serializer: Callable[[Any], bytes] | None = None,
        response_deserializer: Callable[[bytes], Any] | None = None,
        _registered_method: bool | None = False,
    ) -> Any:
        key = callable_key(
            "unary_unary", method, request_serializer, response_deserializer, _registered_method
        )
        return _Routed(self._name, key)

    def unary_stream(
        self,
        method: str,
        request_serializer: Callable[[Any], bytes] | None = None,
        response_deserializer: Callable[[bytes], Any] | None = None,
        _registered_method: bool | None = False,
    ) -> Any:
        key = callable_key(
            "unary_stream", method, request_serializer, response_deserializer, _registered_method
        )
        return _Routed(self._name, key)

    def stream_unary(
        self,
        method: str,
        request_serializer: Callable[[Any], bytes] | None = None,
        response_deserializer: Callable[[bytes], Any] | None = None,
        _registered_method: bool | None = False,
    ) -> Any:
        key = callable_key(
            "stream_unary", method, request_serializer, response_deserializer, _registered_method
        )
        return _Routed(self._name, key)

    def stream_stream(
        self,
        method: str,
        request_serializer: Callable[[Any], bytes] | None = None,
        response_deserializer: Callable[[bytes], Any] | None = None,
        _registered_method: bool | None = False,
    ) -> Any:
        key = callable_key(
            "stream_stream", method, request_serializer, response_deserializer, _registered_method
        )
        return _Routed(self._name, key)

    def get_state(self, try_to_connect: bool = False) -> grpc.ChannelConnectivity:
        """The pool's readiness as connectivity: READY while a connection is ready.

        IDLE while no pool of the name runs (one may start later), as for
        the sync pool channel.
        """
        pool = _pools.get(self._name)
        return connectivity_of(pool.view if pool is not None else None)

    async def wait_for_state_change(self, last_observed_state: grpc.ChannelConnectivity) -> None:
        """Waits until the state differs from ``last_observed_state`` (or no pool runs)."""
        while self.get_state() is last_observed_state:
            pool = _pools.get(self._name)
            if pool is None or pool.ended is not None:
                return
            await pool.wait_changed(None)

    async def channel_ready(self) -> None:
        """Waits until a connection is ready.

        Raises:
            PoolNotFoundError: No pool of the name runs (or it stopped while
                waiting): nothing would wake the wait.
        """
        while self.get_state() is not grpc.ChannelConnectivity.READY:
            pool = _pools.get(self._name)
            if pool is None or pool.ended is not None:
                raise not_running(self._name)
            await pool.wait_changed(None)

    async def close(self, grace: float | None = None) -> None:
        """Does not stop the pool (``await pool.stop()`` does)."""

    async def __aenter__(self) -> AioPoolChannel:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def __repr__(self) -> str:
        return f"<AioPoolChannel {self._name!r} {self.get_state().name}>"


class _Routed:
    """A multi-callable of the pool channel: routes each call when it starts."""

    __slots__ = ("_hedgeable", "_key", "_labeled", "_make", "_name", "_one_response", "_sized")

    def __init__(self, name: str, key: CallableKey) -> None:
        self._name = name
        self._key = key
        # The key of its multi-callables that count message bytes (per-call
        # metrics), made by the first traced call.
        self._sized: CallableKey | None = None
        # The per-call metrics recorder that last traced a call, and its labels
        # for this method (see CallTrace).
        self._labeled: tuple[Recorder, Any] | None = None
        self._make = call_class(key[0])
        # One request, one response: its duration is a latency sample.
        self._one_response = key[0] == "unary_unary"
        # Only unary-unary calls are hedged (pool.hedging names the methods).
        self._hedgeable = key[0] == "unary_unary"

    def __call__(self, request: Any = None, **kwargs: Any) -> Any:
        # request: the request, or the request iterator (None: write() the requests)
        recorder = HOOK.recorder
        if recorder is not None:  # per-call metrics: the same call, traced
            return self._traced(recorder, request, kwargs)
        pool = _pools.get(self._name)
        if pool is None:
            return FailedCall(PoolCallError.of(not_running(self._name)))
        if thread_id() != pool._thread:
            raise pool._wrong_loop(running_loop())
        try:
            admitted = admit(pool)
        except NotConnectedError as error:
            if kwargs.get("wait_for_ready"):
                return WaitingCall(self, pool, request, kwargs)
            return FailedCall(PoolCallError.of(error))
        if admitted is None:  # every connection at its limit: the call waits for a slot
            return WaitingCall(self, pool, request, kwargs)
        connection, ticket = admitted
        hedging = pool.hedging if self._hedgeable else None
        if hedging is not None and self._key[1] in hedging.methods:
            return aio_hedged(self, pool, hedging, request, kwargs, connection, ticket)
        call = self.run(connection, ticket, request, kwargs)
        return self._make(call, connection, self, pool, request, kwargs)

    def _traced(self, recorder: Recorder, request: Any, kwargs: dict[str, Any]) -> Any:
        """``__call__`` while a per-call metrics recorder listens."""
        trace = CallTrace(recorder, self)
        pool = _pools.get(self._name)
        if pool is None:
            failed = PoolCallError.of(not_running(self._name))
            trace.failed(failed.code())
            return FailedCall(failed)
        if thread_id() != pool._thread:
            raise pool._wrong_loop(running_loop())
        try:
            admitted = admit(pool)
        except NotConnectedError as error:
            if kwargs.get("wait_for_ready"):
                return WaitingCall(self, pool, request, kwargs, trace)
            failed = PoolCallError.of(error)
            trace.failed(failed.code())
            return FailedCall(failed)
        if admitted is None:  # every connection at its limit: the call waits for a slot
            return WaitingCall(self, pool, request, kwargs, trace)
        return self.start(admitted[0], admitted[1], pool, request, kwargs, trace)

    def start(
        self,
        connection: ReadyConnection,
        ticket: int,
        pool: Pool,
        request: Any,
        kwargs: dict[str, Any],
        trace: CallTrace | None = None,
    ) -> Any:
        """Runs the call on ``connection`` of ``pool``; returns the :class:`PoolCall` the
        caller holds (or the hedged call, for a method the pool hedges). ``trace``:
        the call's per-call metrics, if a recorder listens."""
        hedging = pool.hedging if self._hedgeable else None
        if hedging is not None and self._key[1] in hedging.methods:
            return aio_hedged(self, pool, hedging, request, kwargs, connection, ticket, trace)
        if trace is not None:
            return traced_call(self, connection, ticket, pool, request, kwargs, trace)
        call = self.run(connection, ticket, request, kwargs)
        return self._make(call, connection, self, pool, request, kwargs)

    def run(
        self, connection: ReadyConnection, ticket: int, request: Any, kwargs: dict[str, Any]
    ) -> Any:
        """Starts the ``grpc.aio`` call on ``connection``, where it is counted as ``ticket``.

        The count ends when the call is done (``connection.end``).
        """
        started = _clock()
        try:
            built = connection.callables.get(self._key) or connection.multi_callable(self._key)
            call = built(request, **kwargs)
        except BaseException:
            connection.end(ticket)
            raise
        one_response, name = self._one_response, self._name
        call.add_done_callback(
            lambda done: _ended(name, connection, ticket, done, started, one_response)
        )
        return call

    def run_traced(
        self,
        connection: ReadyConnection,
        ticket: int,
        request: Any,
        kwargs: dict[str, Any],
        attempt: Attempt,
    ) -> Any:
        """:meth:`run` as an ``attempt`` of a traced call: on the connection's sized
        multi-callable, the attempt named in the context the call's task copies (its
        messages' bytes count for it), and ended with the call's status."""
        started = _clock()
        if self._key[0].endswith("unary"):  # its response is read after its status arrives
            attempt.reads_one = True
            attempt.hold()
        token = ATTEMPT.set(attempt)
        try:
            sized = self._sized
            if sized is None:
                sized = self._sized = sized_key(self._key, aio=True)
            built = connection.callables.get(sized) or connection.multi_callable(sized)
            call = built(request, **kwargs)
        except BaseException as error:
            connection.end(ticket)
            attempt.end(status_code(error) or grpc.StatusCode.UNKNOWN)
            raise
        finally:
            ATTEMPT.reset(token)
        one_response, name = self._one_response, self._name

        def done(call: Any) -> None:
            _ended(name, connection, ticket, call, started, one_response)
            code, details = ending(call)
            if (details or "").startswith(NEVER_SENT):
                attempt.end_unsent(code)
            else:
                attempt.end(code)
            if code is not grpc.StatusCode.OK:
                attempt.release()  # no response to read

        call.add_done_callback(done)
        return call


def _ended(
    name: str,
    connection: ReadyConnection,
    ticket: int,
    call: Any,
    started: float,
    one_response: bool,
) -> None:
    """A ``grpc.aio`` call on ``connection`` is done (its done callback): count it out, record it.

    grpc.aio runs it before the awaiting caller resumes, so a connection whose
    server refused the call has lowered its limit by the time the call is
    routed again (:mod:`grpcpool.api._aio_calls`). A refused call reached no
    handler: it is not recorded. Its limit is lowered before its ticket ends,
    so the slot it frees goes to a waiting call under the lowered limit.
    """
    code = finished_code(call)
    if code is _UNAVAILABLE and REFUSED_STREAM in (finished_details(call) or ""):
        pool = _pools.get(name)
        if pool is not None:  # the others on it: what its server took
            others = len(connection.calls) - (ticket in connection.calls)
            pool.capacity.note_refused(connection, others)
        connection.end(ticket)
        return
    connection.end(ticket)
    if code is not None:
        now = _clock()
        connection.stats.record(now - started if one_response else None, code, now)


