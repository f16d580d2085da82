"""Hedged unary-unary calls through the sync pool channel (``pool.hedging``).

A call of a hedged method (``__call__``, ``with_call`` or ``future()``)
becomes a :class:`HedgedCall`: a ``grpc.Future`` and ``grpc.Call`` over its
attempts, each a grpcio future (``multi_callable.future``) on a connection
of the pool, counted in flight there and recorded in its ``stats`` like any
call through the pool channel. The rules are in :mod:`grpcpool.core._hedging`,
the run in :mod:`grpcpool.api._hedging_run`; the hedging timer is the
process's timer thread (:mod:`grpcpool._timer`).

The caller gets the winning attempt's answer (``with_call``: and the
HedgedCall as its call, whose metadata, code and details are the winner's),
or the error of the attempt that settled the call: the first with a status
other than OK and ``UNAVAILABLE`` (the others are cancelled then), else the
last ``UNAVAILABLE``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import grpc

from grpcpool._call_metrics import Attempt, CallTrace
from grpcpool._message_sizes import HERE, message_size, sized_callable
from grpcpool._timer import call_later
from grpcpool.api._hedging_run import HedgingRun, Pool
from grpcpool.connection._call_errors import REFUSED_STREAM, status_code
from grpcpool.core._hedging import HedgingState
from grpcpool.core._ready import CallableKey, ReadyConnection
from grpcpool.core._reroute import NEVER_SENT

__all__ = ["HedgedCall", "hedged"]

_log = logging.getLogger(__name__)

_clock_ns = time.perf_counter_ns
_OK = grpc.StatusCode.OK
_UNKNOWN = grpc.StatusCode.UNKNOWN
_UNAVAILABLE = grpc.StatusCode.UNAVAILABLE


if TYPE_CHECKING:  # generic in the type stubs only
    _Future = grpc.Future[Any]
else:
    _Future = grpc.Future


class HedgedCall(HedgingRun, grpc.Call, _Future):  # type: ignore[misc]
    """A hedged unary-unary call: its attempts, settled by the first OK answer.

    Args:
        pool: The pool's entry.
        hedging: The pool's hedging state.
        key: The method's multi-callable key.
        request: The request, sent by each attempt.
        options: The call's keyword arguments (``timeout`` counted from now).
        blocking: The caller blocks in :meth:`answer` until the call settles,
            and its thread keeps the hedging timer (no timer thread is
            woken, or started, for the call); ``future()`` calls use the
            process's timer thread.
        trace: The call's per-call metrics, if a recorder listens.
    """

    def __init__(
        self,
        pool: Pool,
        hedging: HedgingState,
        key: CallableKey,
        request: Any,
        options: dict[str, Any],
        blocking: bool,
        trace: CallTrace | None = None,
    ) -> None:
        super().__init__(pool, hedging, key, options, trace)
        self._request = request
        self._done = threading.Event()
        self._callbacks: list[Callable[[Any], None]] = []
        self._blocking = blocking
        # Blocking calls: when the caller's thread fires the timer; it waits
        # on this condition, woken when that changes or the call settles.
        self._due_at: float | None = None
        self._changed = threading.Condition(self._lock)

    # --- HedgingRun -------------------------------------------------------------------------

    def _start_call(
        self, index: int, connection: ReadyConnection, ticket: int, options: dict[str, Any]
    ) -> Any:
        key = self._key
        started = _clock_ns()
        trace = self._trace
        attempt = None if trace is None else trace.attempt(index == 0)
        slot = HERE.named
        named = slot[0]
        try:
            if attempt is None:
                built = connection.callables.get(key) or connection.multi_callable(key)
            else:
                built = sized_callable(connection, key)
                slot[0] = attempt
            call = built.future(self._request, **options)
        except BaseException as error:
            connection.end(ticket)
            if attempt is not None:
                attempt.end(status_code(error) or _UNKNOWN)
            raise
        finally:
            slot[0] = named
        call.add_done_callback(
            lambda done: self._attempt_ended(index, connection, ticket, done, started, attempt)
        )
        return call

    def _attempt_ended(
        self,
        index: int,
        connection: ReadyConnection,
        ticket: int,
        call: Any,
        started: int,
        attempt: Attempt | None,
    ) -> None:
        """An attempt's done callback: counted out and recorded on its connection, then told."""
        code, details = _UNKNOWN, None
        try:
            try:
                code = call.code() or _UNKNOWN
                details = call.details()
                if code is _UNAVAILABLE and details and REFUSED_STREAM in details:
                    # Its server refused it at its stream limit: no handler saw it. The
                    # limit is lowered while it is counted there, before its slot frees.
                    others = len(connection.calls) - (ticket in connection.calls)
                    self._pool.capacity.note_refused(connection, others)
                    return
            finally:
                connection.end(ticket)
            now = time.monotonic()
            connection.stats.record((_clock_ns() - started) / 1e9, code, now)
            connection.failed(call, now)
            if attempt is not None and code is _OK and not attempt.received:
                # grpcio read the response on its own thread: measured from the message.
                attempt.received = message_size(call.result())
        except Exception:  # an interceptor's call object, say: the run must still hear of it
            _log.debug("reading a hedged attempt's end failed", exc_info=True)
        finally:
            if attempt is not None:
                if (details or "").startswith(NEVER_SENT):
                    attempt.end_unsent(code)
                else:
                    attempt.end(code)
            self.ended(index, code, details)

    def _schedule(self, delay: float) -> Any:
        if not self._blocking:
            return call_later(delay, self._fire_elsewhere, "hedge")
        due = time.monotonic() + delay
        with self._changed:
            self._due_at = due
            self._changed.notify_all()
        return _CallerTimer(self, due)

    def _fire_elsewhere(self) -> None:
        """The delay of a ``future()`` call is up: fire on a thread of its own.

        The process's one timer thread must never wait: firing starts the
        next attempt (through the endpoint's interceptors) and may settle the
        call, which runs the caller's done callbacks, so that happens on a
        short-lived thread, not on the timer's.
        """
        threading.Thread(target=self.fired, name="grpcpool-hedge", daemon=True).start()

    def _settled(self) -> None:
        with self._changed:
            callbacks, self._callbacks = self._callbacks, []
            self._done.set()
            self._changed.notify_all()
        for callback in callbacks:
            _run_callback(callback, self)

    def _keep_timer(self) -> None:
        """Blocks the caller until the call settles, firing the timer when it is due."""
        changed = self._changed
        while True:
            with changed:
                while True:
                    if self._done.is_set():
                        return
                    due = self._due_at
                    left = None if due is None else due - time.monotonic()
                    if left is not None and left <= 0:
                        self._due_at = None
                        break
                    changed.wait(left)
            self.fired()

    # --- the answer -------------------------------------------------------------------------

    def _wait(self, timeout: float | None) -> Any:
        """The settling attempt's grpc call, once settled.

        Raises:
            grpc.FutureTimeoutError: Not settled within ``timeout``.
            BaseException: What starting the attempt raised, if it never started.
        """
        if not self._done.wait(timeout):
            raise grpc.FutureTimeoutError()
        _, call, _, raised = self.outcome
        if call is None:
            assert raised is not None
            raise raised
        return call

    def answer(self) -> Any:
        """Blocks until settled: the winning answer, or raises the settling error.

        An interruption of the wait (KeyboardInterrupt) cancels the attempts.
        """
        try:
            if self._blocking:
                self._keep_timer()
            return self.result()
        except grpc.RpcError:
            raise
        except BaseException:
            self.cancel()
            raise

    # --- grpc.Future ------------------------------------------------------------------------

    def cancel(self) -> bool:
        return self.cancel_all()

    def cancelled(self) -> bool:
        return self._cancelled and self._done.is_set()

    def running(self) -> bool:
        return not self._done.is_set()

    def done(self) -> bool:
        return self._done.is_set()

    def result(self, timeout: float | None = None) -> Any:
        return self._wait(timeout).result()

    def exception(self, timeout: float | None = None) -> Any:
        return self._wait(timeout).exception()

    def traceback(self, timeout: float | None = None) -> Any:
        return self._wait(timeout).traceback()

    def add_done_callback(self, fn: Callable[[Any], None]) -> None:
        with self._lock:
            if not self._done.is_set():
                self._callbacks.append(fn)
                return
        _run_callback(fn, self)

    # --- grpc.Call (the settling attempt's, once settled) -------------------------------------

    def initial_metadata(self) -> Any:
        return self._wait(None).initial_metadata()

    def trailing_metadata(self) -> Any:
        return self._wait(None).trailing_metadata()

    def code(self) -> Any:
        return self._wait(None).code()

    def details(self) -> Any:
        return self._wait(None).details()

    def is_active(self) -> bool:
        return not self._done.is_set()

    def add_callback(self, callback: Callable[[], None]) -> bool:
        self.add_done_callback(lambda _: callback())
        return True

    def __repr__(self) -> str:
        state = "settled" if self._done.is_set() else "running"
        return f"<HedgedCall {self._key[1]} {state}, {len(self._calls)} attempt(s)>"


class _CallerTimer:
    """The hedging timer of a blocking call: kept by the caller's thread (``_keep_timer``)."""

    __slots__ = ("_call", "_due")

    def __init__(self, call: HedgedCall, due: float) -> None:
        self._call = call
        self._due = due

    def cancel(self) -> None:
        call = self._call
        with call._changed:
            if call._due_at == self._due:
                call._due_at = None


def _run_callback(callback: Callable[[Any], None], call: HedgedCall) -> None:
    try:
        callback(call)
    except Exception:
        _log.exception("a done callback of a hedged call raised")


def hedged(
    pool: Pool,
    hedging: HedgingState,
    key: CallableKey,
    request: Any,
    options: dict[str, Any],
    connection: ReadyConnection,
    ticket: int,
    blocking: bool,
    trace: CallTrace | None = None,
) -> HedgedCall:
    """Starts a hedged call whose first attempt goes to ``connection`` (counted as ``ticket``).

    ``blocking``: the caller waits in :meth:`HedgedCall.answer` (``__call__``,
    ``with_call``), not on a future. ``trace``: the call's per-call metrics.
    """
    try:
        call = HedgedCall(pool, hedging, key, request, options, blocking, trace)
        call.begin(connection, ticket)
    except BaseException:
        connection.end(ticket)  # idempotent: an attempt begun ends it too
        raise
    return call
