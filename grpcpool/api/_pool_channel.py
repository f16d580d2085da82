"""PoolChannel: the pool as one ``grpc.Channel``, each call routed when it starts.

A stub built on a channel from ``get_channel`` keeps that one connection;
once the pool replaces it (a reconnect, a scale down, a restart) the stub's
calls fail with ``ValueError: Cannot invoke RPC on closed channel!``. A stub
built on a :class:`PoolChannel` holds the pool's *name*: each call looks the
pool up, picks a ready connection from its current view with the pool's
strategy, and runs on that connection's multi-callable for the method (built
once per connection and method, so a call builds nothing). The stub keeps
working for as long as a pool of that name runs, across reconnects, scaling
and restarts, and even before the pool starts or after it is restarted
under the same name.

Calls through a pool channel are counted per connection while in flight
(from the start until the response, the error, the cancellation or the end
of the response stream), which ``least_in_flight`` routes by and
``status()`` reports, and which holds a connection that left the pool open
until its last call ends (:class:`~grpcpool.core.CallLedger`). A call that
fails with ``UNAVAILABLE`` has its connection checked at once (passive
health). A blocking unary call that failed before it reached any server (the
pool's view lags a dead connection by some milliseconds) is sent again on
another ready connection within its timeout (:mod:`grpcpool.core._reroute`);
a call that succeeds pays nothing for that.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import grpc

from grpcpool import _connectivity
from grpcpool._config_checks import check_pool_name
from grpcpool._process import PROCESS
from grpcpool.actors._entry import POOLS, PoolEntry
from grpcpool.api._pool_calls import routed_callable
from grpcpool.api._table import lookup
from grpcpool.config import DEFAULT_POOL_NAME
from grpcpool.core._ready import ReadyConnection, callable_key
from grpcpool.core._view import ALL_RETIRED, connectivity_of
from grpcpool.errors import NotConnectedError, PoolCallError

__all__ = ["PoolChannel"]

# Read without a lock on every call; PROCESS clears it in place after a fork.
_pools: dict[str, PoolEntry] = PROCESS.pools

_clock = time.perf_counter_ns
_OK = grpc.StatusCode.OK
_UNKNOWN = grpc.StatusCode.UNKNOWN


class PoolChannel(grpc.Channel):
    """A ``grpc.Channel`` over the ready connections of the pool called ``name``.

    Build stubs on it once (``EchoStub(grpcpool.channel("kv"))``) and keep
    them. Everything a grpc multi-callable takes passes through: timeouts,
    metadata, call credentials, compression, ``wait_for_ready``.

    With no ready connection, a call fails as a grpc call does, with a
    :class:`~grpcpool.PoolCallError` (a ``grpc.RpcError`` with code
    ``UNAVAILABLE`` and a :class:`~grpcpool.NotConnectedError`); with
    ``wait_for_ready=True`` it waits for a ready connection for up to its
    timeout first (then ``DEADLINE_EXCEEDED``), and the call gets what is
    left of the timeout.

    ``subscribe`` reports the pool's readiness, so
    ``grpc.channel_ready_future`` works on it. ``close()`` ends this handle's
    subscriptions only: it does not stop the pool (``grpcpool.stop`` does),
    and calls made on the handle afterwards still run.
    """

    def __init__(self, name: str = DEFAULT_POOL_NAME) -> None:
        check_pool_name("pool.name", name)
        self._name = name
        self._callbacks: set[_connectivity.Callback] = set()

    @property
    def name(self) -> str:
        """The name of the pool whose connections the calls run on."""
        return self._name

    # --- routing ------------------------------------------------------------------

    def _admit_slowly(
        self, wait_for_ready: bool | None, timeout: float | None
    ) -> tuple[ReadyConnection, int, float | None]:
        """A connection with the call counted on it, its ticket, and what is left of ``timeout``.

        The slow path: no connection took the call at once, or the pool is
        limited, whose capacity admits the call (perhaps after a wait in its
        queue, which fails with ``RESOURCE_EXHAUSTED`` when full and with
        ``DEADLINE_EXCEEDED`` when the timeout runs out first).
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            try:
                entry = lookup(self._name)  # may start a forked child's pool
                capacity = entry.capacity
                admitted = (
                    capacity.acquire(deadline) if capacity.limited else entry.view.admit()
                )
                if admitted is None:
                    raise NotConnectedError(self._name, ALL_RETIRED)
                return admitted[0], admitted[1], _left(deadline)
            except PoolCallError:  # the queue's verdict: full, too late, or the pool stopped
                raise
            except NotConnectedError as error:
                # No pool of that name (PoolNotFoundError): waiting cannot help.
                if not wait_for_ready or self._name not in _pools:
                    # Callers that retry at once would otherwise keep the GIL
                    # from the threads that bring connections back: hand it on.
                    time.sleep(0)
                    raise PoolCallError.of(error) from None
                left = _left(deadline)
                if left is not None and left <= 0:
                    raise PoolCallError.of(error, grpc.StatusCode.DEADLINE_EXCEEDED) from None
                waiting_on = _pools.get(self._name)
                if waiting_on is not None:  # else stopped meanwhile: the next turn says so
                    waiting_on.wait_ready(1, left)

    # --- grpc.Channel ---------------------------------------------------------------

    def unary_unary(
        self,
        method: str,
        request_serializer: Callable[[Any], bytes] | None = None,
        response_deserializer: Callable[[bytes], Any] | None = None,
        _registered_method: bool | None = False,
    ) -> grpc.UnaryUnaryMultiCallable[Any, Any]:
        key = callable_key(
            "unary_unary", method, request_serializer, response_deserializer, _registered_method
        )
        return routed_callable(self, key)  # type: ignore[no-any-return]

    def unary_stream(
        self,
        method: str,
        request_serializer: Callable[[Any], bytes] | None = None,
        response_deserializer: Callable[[bytes], Any] | None = None,
        _registered_method: bool | None = False,
    ) -> grpc.UnaryStreamMultiCallable[Any, Any]:
        key = callable_key(
            "unary_stream", method, request_serializer, response_deserializer, _registered_method
        )
        return routed_callable(self, key)  # type: ignore[no-any-return]

    def stream_unary(
        self,
        method: str,
        request_serializer: Callable[[Any], bytes] | None = None,
        response_deserializer: Callable[[bytes], Any] | None = None,
        _registered_method: bool | None = False,
    ) -> grpc.StreamUnaryMultiCallable[Any, Any]:
        key = callable_key(
            "stream_unary", method, request_serializer, response_deserializer, _registered_method
        )
        return routed_callable(self, key)  # type: ignore[no-any-return]

    def stream_stream(
        self,
        method: str,
        request_serializer: Callable[[Any], bytes] | None = None,
        response_deserializer: Callable[[bytes], Any] | None = None,
        _registered_method: bool | None = False,
    ) -> grpc.StreamStreamMultiCallable[Any, Any]:
        key = callable_key(
            "stream_stream", method, request_serializer, response_deserializer, _registered_method
        )
        return routed_callable(self, key)  # type: ignore[no-any-return]

    def subscribe(self, callback: _connectivity.Callback, try_to_connect: bool = False) -> None:
        """Calls ``callback`` with the pool's connectivity now and on each change.

        ``READY`` while at least one connection is ready. ``try_to_connect``
        changes nothing: the pool's workers always connect.
        """
        self._callbacks.add(callback)
        _connectivity.subscribe(self._name, callback, self._state)

    def unsubscribe(self, callback: _connectivity.Callback) -> None:
        self._callbacks.discard(callback)
        _connectivity.unsubscribe(self._name, callback)

    def _state(self) -> grpc.ChannelConnectivity:
        entry = POOLS.get(self._name)
        return connectivity_of(entry.view if entry is not None else None)

    def close(self) -> None:
        """Ends this handle's subscriptions. The pool keeps running. Idempotent."""
        for callback in list(self._callbacks):
            self.unsubscribe(callback)

    def __enter__(self) -> PoolChannel:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = self._state().name
        return f"<PoolChannel {self._name!r} {state}>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PoolChannel) and other._name == self._name

    def __hash__(self) -> int:
        return hash((PoolChannel, self._name))


def _left(deadline: float | None) -> float | None:
    return None if deadline is None else deadline - time.monotonic()
