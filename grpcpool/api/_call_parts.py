"""What the sync pool channel's multi-callables and their traced path share.

:mod:`grpcpool.api._pool_calls` runs a call; :mod:`grpcpool.api._traced_calls`
runs the same call while a per-call metrics recorder listens. Both read a
call's arguments and end a started call the same way, from here.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any

from grpcpool.core._ready import ReadyConnection

__all__ = ["PARAMETERS", "call_options", "finished", "seconds"]

_clock = time.perf_counter_ns


def finished(
    connection: ReadyConnection, ticket: int, call: Any, started: int, timed: bool
) -> None:
    """A call started by ``future()`` or a streaming call has ended (a done callback)."""
    connection.end(ticket)
    now = time.monotonic()
    with contextlib.suppress(Exception):  # a call object without a code: nothing to learn
        code = call.code()
        elapsed = seconds(started) if timed else None
        connection.stats.record(elapsed, code, now)
        connection.failed(call, now)


def seconds(started: int) -> float:
    """Seconds since ``started``, a ``perf_counter_ns`` reading."""
    return (_clock() - started) / 1e9


# A multi-callable's parameters after the request, in grpc's order.
PARAMETERS = ("timeout", "metadata", "credentials", "wait_for_ready", "compression")


def call_options(args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
    """The call's parameters by name, from grpc's positional order and keywords."""
    if len(args) > len(PARAMETERS):
        raise TypeError(f"a call takes at most {len(PARAMETERS) + 1} positional arguments")
    options = dict(zip(PARAMETERS, args, strict=False))
    for name in kwargs:
        if name not in PARAMETERS:
            raise TypeError(f"a call got an unexpected keyword argument {name!r}")
        if name in options:
            raise TypeError(f"a call got multiple values for argument {name!r}")
    options.update(kwargs)
    return options
