"""What a failed grpc call's error says: its status code, and whether a live server refused it.

Pure reading of grpcio's error objects, sync and ``grpc.aio`` alike, shared by
the health check, passive health (:mod:`grpcpool.core._ready`) and sending
a never-sent call again (:mod:`grpcpool.core._reroute`).
"""

from __future__ import annotations

import grpc

__all__ = ["REFUSED_STREAM", "details", "finished_code", "refused_stream", "status_code"]


def status_code(error: BaseException) -> grpc.StatusCode | None:
    """The status code of a failed call's error, or ``None`` for an error that is no call.

    grpcio raises errors that are both ``grpc.RpcError`` and ``grpc.Call``,
    and ``grpc.aio.AioRpcError`` (a ``grpc.RpcError`` with the same ``code()``
    and ``details()``); a bare ``RpcError`` (from an interceptor, say) has no
    ``code()``.
    """
    if isinstance(error, grpc.Call | grpc.aio.AioRpcError):
        return error.code()
    return None


def finished_code(call: object) -> grpc.StatusCode | None:
    """How a finished ``grpc.aio`` call ended, read without awaiting; None if it cannot be read.

    ``grpc.aio`` offers the code only as a coroutine, too dear for a done
    callback that runs for every call: this reads the status grpc.aio stored
    when the call finished (``_cython_call._status``, set before the done
    callbacks run), pinned by ``tests/test_grpcio_contract.py``. An object
    without it (an interceptor's call, a future grpcio) gives None: the call
    is then not counted, which only thins the figures.
    """
    try:
        raw = call._cython_call._status.code()  # type: ignore[attr-defined]
        return _CODES[raw]
    except (AttributeError, KeyError, TypeError):
        return None


# grpc's status codes by number, as the C core reports them.
_CODES: dict[int, grpc.StatusCode] = {code.value[0]: code for code in grpc.StatusCode}


def details(error: BaseException) -> str | None:
    """A failed call's details, or ``None`` for an error that is no call."""
    if isinstance(error, grpc.Call | grpc.aio.AioRpcError):
        return error.details()
    return None


# How grpcio words a call the server refused with HTTP/2 RST_STREAM
# REFUSED_STREAM (error code 7): the server was at its
# max_concurrent_streams before the client had learnt the limit. Pinned by
# tests/test_grpcio_contract.py.
REFUSED_STREAM = "RST_STREAM with error code 7"


def refused_stream(error: BaseException) -> bool:
    """True if a failed call was refused by a live server at its stream limit.

    Such a call fails with ``UNAVAILABLE`` like a call on a dead connection,
    but the connection is fine: the server answered on it. Neither passive
    health nor a health check may take a connection out for it, or a busy
    server would have its connections replaced while it is busiest.
    """
    if status_code(error) is not grpc.StatusCode.UNAVAILABLE:
        return False
    said = details(error)
    return bool(said) and REFUSED_STREAM in str(said)
