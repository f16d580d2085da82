"""The bytes of a traced attempt's messages, counted by the serializers grpc calls.

grpcio's Python API shows no message sizes, compressed or not. So a traced
attempt (:class:`~grpcpool._call_metrics.Attempt`) runs on a *sized*
multi-callable of its connection, built once per connection and method
from :func:`sized_key`: the same method with its serializers wrapped, each
wrapper adding the length of the bytes it produced or read to the attempt
named where it runs. These are the messages' serialized bytes, before
compression.

Where the attempt is named differs by kind of pool:

* **sync** (:data:`HERE`'s ``named``, one slot per thread): grpcio serializes a request
  and reads a blocking call's response on the calling thread, where the pool
  channel names the attempt around the grpc call; the requests of a stream
  it takes on a thread of its own, where the pool channel's iterator names
  it. A per-thread slot is not copied into the threads grpcio starts (it
  copies the context into them), so a channel's event thread, started inside
  some call, never counts later calls' messages for that call's attempt.
  grpcio reads a ``future()``'s response and a stream's responses on that
  event thread: those are measured from the messages (:func:`message_size`).
* **asyncio** (:data:`ATTEMPT`, a context variable): grpc.aio serializes and
  reads a call's messages in the call's own tasks, which copy the context
  they were created in, or in the task that reads a stream or writes to it,
  where the pool channel names the attempt.
"""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Callable
from typing import Any

from grpcpool._call_metrics import Attempt

__all__ = ["ATTEMPT", "HERE", "message_size", "sized_callable", "sized_key"]


class _Here(threading.local):
    """The attempt named on this thread (sync pool channel), in ``named[0]``.

    A one-item list, so that a traced call reads the thread-local once and
    then names its attempt and puts the previous one back with plain item
    writes: reading or writing a thread-local's attribute costs several
    times as much, and a traced call would pay it five times.
    """

    def __init__(self) -> None:
        self.named: list[Attempt | None] = [None]


#: Sync: the attempt whose messages this thread's serializers count. Set it
#: with ``named = HERE.named; previous = named[0]; named[0] = attempt`` and
#: put ``previous`` back after the grpc call.
HERE = _Here()

#: Asyncio: the attempt whose messages are (de)serialized in this context.
ATTEMPT: contextvars.ContextVar[Attempt | None] = contextvars.ContextVar(
    "grpcpool_attempt", default=None
)

Serializer = Callable[[Any], Any]

# The wrapped serializers, one per (kind of pool, direction, wrapped function),
# so that a sized key is the same for the same multi-callable and a connection
# builds its sized multi-callable once.
_sizing: dict[tuple[bool, bool, Any], Serializer] = {}
_sized_keys: dict[tuple[bool, tuple[Any, ...]], tuple[Any, ...]] = {}


def _sending(serialize: Serializer | None, aio: bool) -> Serializer:
    named = ATTEMPT.get
    here = HERE

    def send(message: Any) -> Any:
        data = message if serialize is None else serialize(message)
        attempt = named() if aio else here.named[0]
        if attempt is not None and isinstance(data, bytes):  # else grpcio refuses it next
            attempt.sent += len(data)
        return data

    return send


def _receiving(deserialize: Serializer | None, aio: bool) -> Serializer:
    if not aio:
        return _receiving_here(deserialize)
    named = ATTEMPT.get

    def receive(data: Any) -> Any:
        attempt = named()
        if attempt is None:
            return data if deserialize is None else deserialize(data)
        attempt.received += len(data)
        try:
            return data if deserialize is None else deserialize(data)
        finally:
            if attempt.reads_one:
                attempt.release()

    return receive


def _receiving_here(deserialize: Serializer | None) -> Serializer:
    """The sync pool's: no attempt there ``reads_one`` (grpcio reads a blocking
    call's response before it returns), so nothing to release."""
    here = HERE

    def receive(data: Any) -> Any:
        attempt = here.named[0]
        if attempt is not None:
            attempt.received += len(data)
        return data if deserialize is None else deserialize(data)

    return receive


def _wrapped(aio: bool, receiving: bool, function: Serializer | None) -> Serializer:
    wrapped = _sizing.get((aio, receiving, function))
    if wrapped is None:
        wrapped = _receiving(function, aio) if receiving else _sending(function, aio)
        wrapped = _sizing.setdefault((aio, receiving, function), wrapped)
    return wrapped


def sized_key(key: tuple[Any, ...], *, aio: bool = False) -> tuple[Any, ...]:
    """``key`` (a multi-callable's kind, method, serializer, deserializer and
    registered flag) with serializers that count each message's bytes, for a sync
    or (``aio``) an asyncio pool's connections."""
    sized = _sized_keys.get((aio, key))
    if sized is None:
        kind, method, serialize, deserialize, registered = key
        sending, receiving = _wrapped(aio, False, serialize), _wrapped(aio, True, deserialize)
        sized = _sized_keys.setdefault((aio, key), (kind, method, sending, receiving, registered))
    return sized


def sized_callable(connection: Any, key: tuple[Any, ...], *, aio: bool = False) -> Any:
    """The multi-callable for ``key`` on ``connection`` (a ``ReadyConnection``) whose
    serializers count each message's bytes; built once per connection, like its others."""
    key = sized_key(key, aio=aio)
    return connection.callables.get(key) or connection.multi_callable(key)


def message_size(message: Any) -> int:
    """A message's serialized size where grpcio read it with no attempt named.

    grpcio reads the response of a sync ``future()`` call and a sync
    stream's responses on a thread of its own; their size is then the
    message's own: ``len`` of bytes, ``ByteSize()`` of a protobuf message,
    else 0 (unknown).
    """
    if isinstance(message, bytes | bytearray | memoryview):
        return len(message)
    byte_size = getattr(message, "ByteSize", None)
    if callable(byte_size):
        try:
            return int(byte_size())
        except Exception:
            return 0
    return 0
