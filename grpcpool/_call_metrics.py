"""Per-call metrics: how the pool channels tell an exporter of each call and attempt.

gRFC A66 measures every call from the client's side: each attempt (started,
duration, the bytes of its messages) and the call as a whole (duration). The
pool channels (sync and asyncio) know where a call starts, which connection
each attempt goes to, when an attempt is sent again (a call that never left,
a hedge) and how each one ends; an exporter
(``grpcpool.metrics.*.register(per_call=True)``) knows what to do with it.
This module is the meeting point, below both: the exporter installs a
:class:`Recorder` here (:func:`install`), and the pool channels read
:data:`HOOK`'s ``recorder`` once per call. With none installed, that one
attribute read is all a call pays.

With a recorder installed, a call makes a :class:`CallTrace`, and each of its
attempts an :class:`Attempt`. The messages' sizes come from the
serializers: a pool channel running a traced attempt uses multi-callables
built with :func:`sized_key`'s wrapped serializers, which add each message's
serialized length to the attempt found in the running context
(:data:`ATTEMPT`, a context variable the pool channel sets around the grpc
call). grpcio's Python API shows no compressed size, so these are the
messages' bytes before compression.
"""

from __future__ import annotations

import contextvars
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

import grpc

__all__ = [
    "ATTEMPT",
    "HOOK",
    "Attempt",
    "CallTrace",
    "Recorder",
    "install",
    "message_size",
    "naming",
    "remove",
    "sized_callable",
    "sized_key",
]

_clock = time.perf_counter_ns


class Recorder(Protocol):
    """What an exporter installs to hear of calls; called on whichever thread a call ends on."""

    def labels(self, pool: str, method: str, registered: bool | None) -> Any:
        """What the measurements of calls of ``method`` on pool ``pool`` are filed under.

        ``registered`` is grpcio's ``_registered_method`` flag of the
        multi-callable (True for protoc-generated stubs). Called once per
        call: an exporter caches its answer.
        """

    def attempt_started(self, labels: Any) -> None:
        """An attempt of a call filed under ``labels`` started."""

    def attempt_ended(
        self,
        labels: Any,
        code: grpc.StatusCode,
        seconds: float,
        sent: int,
        received: int,
    ) -> None:
        """An attempt ended with ``code`` after ``seconds``, having sent and received
        ``sent`` and ``received`` bytes of serialized messages."""

    def call_ended(self, labels: Any, code: grpc.StatusCode, seconds: float) -> None:
        """A call ended with ``code`` (what its caller gets) ``seconds`` after it started."""


class _Recorders:
    """Several recorders as one (two exporters with ``per_call``)."""

    __slots__ = ("_each",)

    def __init__(self, each: tuple[Recorder, ...]) -> None:
        self._each = each

    def labels(self, pool: str, method: str, registered: bool | None) -> Any:
        return tuple(recorder.labels(pool, method, registered) for recorder in self._each)

    def attempt_started(self, labels: Any) -> None:
        for recorder, own in zip(self._each, labels, strict=True):
            recorder.attempt_started(own)

    def attempt_ended(
        self, labels: Any, code: grpc.StatusCode, seconds: float, sent: int, received: int
    ) -> None:
        for recorder, own in zip(self._each, labels, strict=True):
            recorder.attempt_ended(own, code, seconds, sent, received)

    def call_ended(self, labels: Any, code: grpc.StatusCode, seconds: float) -> None:
        for recorder, own in zip(self._each, labels, strict=True):
            recorder.call_ended(own, code, seconds)


class _Hook:
    """The installed recorder, read by the pool channels on every call."""

    __slots__ = ("recorder",)

    def __init__(self) -> None:
        self.recorder: Recorder | None = None


#: Read once per call through a pool channel: ``HOOK.recorder`` is None
#: unless an exporter was registered with ``per_call=True``.
HOOK = _Hook()

_installed: list[Recorder] = []
_lock = threading.Lock()


def install(recorder: Recorder) -> None:
    """Starts telling ``recorder`` of every call through a pool channel (either kind)."""
    with _lock:
        _installed.append(recorder)
        _publish()


def remove(recorder: Recorder) -> None:
    """Stops telling ``recorder``; calls already under way may still tell it. Idempotent."""
    with _lock:
        if recorder in _installed:
            _installed.remove(recorder)
        _publish()


def _publish() -> None:
    if not _installed:
        HOOK.recorder = None
    elif len(_installed) == 1:
        HOOK.recorder = _installed[0]
    else:
        HOOK.recorder = _Recorders(tuple(_installed))


class CallTrace:
    """One call through a pool channel, as its recorder hears of it.

    Made when the call starts; :meth:`attempt` for each attempt (the first,
    one sent again because the first never left, each hedge), :meth:`end`
    once, when the caller's outcome is known.

    Args:
        recorder: The installed recorder (``HOOK.recorder`` as the call read it).
        pool: The pool channel's pool name.
        key: The multi-callable's key (kind, method, serializer,
            deserializer, registered).
    """

    __slots__ = ("_ended", "_recorder", "attempts", "labels", "started")

    def __init__(self, recorder: Recorder, pool: str, key: tuple[Any, ...]) -> None:
        self._recorder = recorder
        self.labels = recorder.labels(pool, key[1], key[4])
        self.started = _clock()
        self._ended = False
        #: How many attempts were started.
        self.attempts = 0

    def attempt(self, *, first: bool = False) -> Attempt:
        """A new attempt, started now (the first: when the call started, so that it
        includes picking a connection, as A66 has it)."""
        self.attempts += 1
        self._recorder.attempt_started(self.labels)
        return Attempt(self, self.started if first else _clock())

    def failed(self, code: grpc.StatusCode) -> None:
        """The call ended with ``code`` before an attempt of it started (no connection
        to pick, say): that counts as one attempt, failed with the call."""
        if not self.attempts:
            self.attempt(first=True).end(code)
        self.end(code)

    def end(self, code: grpc.StatusCode) -> None:
        """The call ended with ``code``; only the first end counts."""
        if self._ended:
            return
        self._ended = True
        self._recorder.call_ended(self.labels, code, (_clock() - self.started) / 1e9)

    @property
    def ended(self) -> bool:
        return self._ended

    def _attempt_ended(self, attempt: Attempt, code: grpc.StatusCode, seconds: float) -> None:
        self._recorder.attempt_ended(self.labels, code, seconds, attempt.sent, attempt.received)


class Attempt:
    """One attempt of a traced call: when it started and the bytes of its messages.

    ``sent`` and ``received`` grow as the sized serializers run for it
    (:data:`ATTEMPT` names the attempt they count for), or as the pool
    channel measures the responses it hands out.

    An attempt ends when its status arrives (:meth:`end`). The responses of
    a stream may still be unread then: grpc holds them until the caller
    reads them, and they are counted as they are read. So a stream's
    attempt is :meth:`held` while its responses are read, and told to the
    recorder once both have happened (with its duration up to its status).
    grpc.aio reads even a single response after the call's status has
    arrived: an attempt that ``reads_one`` is released by reading it.
    """

    __slots__ = (
        "_call",
        "_code",
        "_held",
        "_once",
        "_seconds",
        "reads_one",
        "received",
        "sent",
        "started",
    )

    def __init__(self, call: CallTrace, started: int) -> None:
        self._call = call
        self.started = started
        self.sent = 0
        self.received = 0
        self._code: grpc.StatusCode | None = None
        self._seconds = 0.0
        self._held = False
        self.reads_one = False
        # The right to report, taken by one list.pop(): reported once, whichever
        # thread sees the second of (ended, released) first.
        self._once: list[None] = [None]

    @property
    def call(self) -> CallTrace:
        return self._call

    def end(self, code: grpc.StatusCode, *, left: bool = True) -> None:
        """The attempt ended with ``code`` (its status arrived); only the first end counts.

        ``left=False``: it failed before it was sent (grpcio serialized its
        request, but no byte of it left), so it sent nothing.
        """
        if self._code is not None:
            return
        if not left:
            self.sent = 0
        self._seconds = (_clock() - self.started) / 1e9
        self._code = code
        if not self._held:
            self._report()

    def hold(self) -> None:
        """Its responses are still to be read: report it only once :meth:`release`d too."""
        self._held = True

    def release(self) -> None:
        """Its responses have been read (or never will be). Idempotent."""
        if not self._held:
            return
        self._held = False
        if self._code is not None:
            self._report()

    def _report(self) -> None:
        try:
            self._once.pop()
        except IndexError:  # reported already
            return
        code = self._code
        assert code is not None
        self._call._attempt_ended(self, code, self._seconds)


#: The attempt whose messages are being (de)serialized in this context, with
#: the thread that named it (:func:`naming`). The pool channel names it around
#: starting a traced attempt: grpcio serializes a request and reads a blocking
#: call's response on the calling thread, and grpc.aio does both in the
#: call's task, which copies the context it was created in. grpcio copies the
#: context into the threads it starts, too, and may start a long-lived one
#: (a channel's event thread) inside a call: the thread in the value keeps
#: such a copy from counting later calls' messages for this attempt. Where
#: grpcio works on a thread of its own for the call (the requests of a
#: stream), the pool channel names the attempt there again.
ATTEMPT: contextvars.ContextVar[tuple[int, Attempt] | None] = contextvars.ContextVar(
    "grpcpool_attempt", default=None
)

_get_named = ATTEMPT.get
_thread = threading.get_ident


def naming(attempt: Attempt) -> contextvars.Token[tuple[int, Attempt] | None]:
    """Names ``attempt`` in this context, on this thread; ``ATTEMPT.reset(token)`` undoes it."""
    return ATTEMPT.set((_thread(), attempt))


def _get_attempt() -> Attempt | None:
    named = _get_named()
    if named is None or named[0] != _thread():
        return None
    return named[1]

Serializer = Callable[[Any], Any]

# The wrapped serializers, one per wrapped function (None: bytes as they are),
# so that a sized key is the same object for the same multi-callable and a
# connection builds its sized multi-callable once.
_sizing: dict[tuple[bool, Any], Serializer] = {}
_sized_keys: dict[tuple[Any, ...], tuple[Any, ...]] = {}


def _sending(serialize: Serializer | None) -> Serializer:
    def send(message: Any) -> Any:
        data = message if serialize is None else serialize(message)
        attempt = _get_attempt()
        if attempt is not None:
            attempt.sent += _length(data)
        return data

    return send


def _receiving(deserialize: Serializer | None) -> Serializer:
    def receive(data: Any) -> Any:
        attempt = _get_attempt()
        if attempt is None:
            return data if deserialize is None else deserialize(data)
        attempt.received += _length(data)
        try:
            return data if deserialize is None else deserialize(data)
        finally:
            if attempt.reads_one:
                attempt.release()

    return receive


def _length(data: Any) -> int:
    try:
        return len(data)
    except TypeError:  # not bytes: grpcio refuses it next, with its own error
        return 0


def _wrapped(receiving: bool, function: Serializer | None) -> Serializer:
    wrapped = _sizing.get((receiving, function))
    if wrapped is None:
        wrapped = _receiving(function) if receiving else _sending(function)
        wrapped = _sizing.setdefault((receiving, function), wrapped)
    return wrapped


def sized_key(key: tuple[Any, ...]) -> tuple[Any, ...]:
    """``key`` (a multi-callable's kind, method, serializer, deserializer and
    registered flag) with serializers that count each message's bytes."""
    sized = _sized_keys.get(key)
    if sized is None:
        kind, method, serialize, deserialize, registered = key
        sized = (kind, method, _wrapped(False, serialize), _wrapped(True, deserialize), registered)
        sized = _sized_keys.setdefault(key, sized)
    return sized


def sized_callable(connection: Any, key: tuple[Any, ...]) -> Any:
    """The multi-callable for ``key`` on ``connection`` (a ``ReadyConnection``) whose
    serializers count each message's bytes; built once per connection, like its others."""
    key = sized_key(key)
    return connection.callables.get(key) or connection.multi_callable(key)


def message_size(message: Any) -> int:
    """A message's serialized size when grpcio read it where no attempt was named.

    grpcio reads the response of a sync ``future()`` call on a thread of its
    own; its size is then the message's own: ``len`` of bytes, ``ByteSize()``
    of a protobuf message, else 0 (unknown).
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
