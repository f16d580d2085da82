"""How a call through the sync pool channel ended, told to its connection and its pool.

A call's done callback (``future()``, streams) or its caller (blocking calls)
tells the connection how the call went (its
:class:`~grpcpool.core._call_stats.CallStats` and passive health); a stream
the server refused at its stream limit is told to the pool's capacity instead
(:mod:`grpcpool.core._capacity`), which lowers that connection's limit: it
reached no handler, so it is no failure of the connection. Also here: a
call's parameters read by name, for the calls that must read them.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any

import grpc

from grpcpool._process import PROCESS
from grpcpool.actors._entry import PoolEntry
from grpcpool.connection._call_errors import refused_stream, status_code
from grpcpool.core._ready import ReadyConnection

__all__ = ["finished", "options_of", "record_failure", "refused", "seconds"]

# Read without a lock; PROCESS clears it in place after a fork.
_pools: dict[str, PoolEntry] = PROCESS.pools

_clock = time.perf_counter_ns
_UNKNOWN = grpc.StatusCode.UNKNOWN
_UNAVAILABLE = grpc.StatusCode.UNAVAILABLE


def finished(
    name: str, connection: ReadyConnection, ticket: int, call: Any, started: int, timed: bool
) -> None:
    """A call started by ``future()`` or a streaming call has ended (a done callback).

    A stream its server refused lowers the connection's limit before its
    ticket ends, so the slot it frees goes to a waiting call under the
    lowered limit.
    """
    try:
        code = call.code()
        refusal = code is _UNAVAILABLE and refused_stream(call)
    except Exception:  # a call object without a code: nothing to learn
        connection.end(ticket)
        return
    if refusal:
        refused(name, connection, len(connection.calls) - (ticket in connection.calls))
        connection.end(ticket)
        return  # it never reached a handler: nothing to learn of the server
    connection.end(ticket)
    now = time.monotonic()
    with contextlib.suppress(Exception):
        took = seconds(started) if timed else None
        connection.stats.record(took, code, now)
        connection.failed(call, now)


def record_failure(
    connection: ReadyConnection, error: grpc.RpcError, started: int, timed: bool
) -> None:
    """Tells ``connection`` a blocking call failed with ``error``.

    A stream its server refused never reached a handler: it is not counted
    as a failure (nor does it ask for a health check).
    """
    if refused_stream(error):
        return
    now = time.monotonic()
    code = status_code(error)
    connection.stats.record(seconds(started) if timed else None, code or _UNKNOWN, now)
    connection.failed(error, now)


def refused(name: str, connection: ReadyConnection, others: int) -> None:
    """The server of ``connection`` refused a stream while ``others`` other calls ran on it."""
    entry = _pools.get(name)
    if entry is not None:
        entry.capacity.note_refused(connection, others)


def seconds(started: int) -> float:
    """Seconds since ``started``, a ``perf_counter_ns`` reading."""
    return (_clock() - started) / 1e9


# A multi-callable's parameters after the request, in grpc's order.
_PARAMETERS = ("timeout", "metadata", "credentials", "wait_for_ready", "compression")


def options_of(args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
    """The call's parameters by name, from grpc's positional order and keywords."""
    if len(args) > len(_PARAMETERS):
        raise TypeError(f"a call takes at most {len(_PARAMETERS) + 1} positional arguments")
    options = dict(zip(_PARAMETERS, args, strict=False))
    for name in kwargs:
        if name not in _PARAMETERS:
            raise TypeError(f"a call got an unexpected keyword argument {name!r}")
        if name in options:
            raise TypeError(f"a call got multiple values for argument {name!r}")
    options.update(kwargs)
    return options
