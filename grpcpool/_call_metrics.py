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
attempts an :class:`Attempt`, whose messages' bytes
:mod:`grpcpool._message_sizes` counts.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Protocol

import grpc

__all__ = ["HOOK", "Attempt", "CallTrace", "Recorder", "Traced", "install", "remove"]

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

    def attempt_and_call_ended(
        self, labels: Any, code: grpc.StatusCode, seconds: float, sent: int, received: int
    ) -> None:
        """A call's one attempt ended, and the call with it: ``attempt_ended`` and
        ``call_ended`` at once (the attempt started with the call, so ``seconds`` is
        both durations). The path of most calls, hence one call for both."""


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

    def attempt_and_call_ended(
        self, labels: Any, code: grpc.StatusCode, seconds: float, sent: int, received: int
    ) -> None:
        for recorder, own in zip(self._each, labels, strict=True):
            recorder.attempt_and_call_ended(own, code, seconds, sent, received)


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


class Attempt:
    """One attempt of a traced call: when it started and the bytes of its messages.

    ``sent`` and ``received`` grow as the sized serializers run for it
    (see :mod:`grpcpool._message_sizes`), or as the pool channel measures
    the responses it hands out.

    An attempt ends when its status arrives (:meth:`end`). The responses of
    a stream may still be unread then: grpc holds them until the caller
    reads them, and they are counted as they are read. So a stream's
    attempt is held (:meth:`hold`) while its responses are read, and told to
    the recorder once both have happened (with its duration up to its
    status). grpc.aio reads even a single response after the call's status
    has arrived: an attempt that ``reads_one`` is released by reading it.

    A call's first attempt is the call's :class:`CallTrace` itself (a
    subclass): most calls have one attempt, and one object per call instead
    of two is a good part of what tracing a call costs.
    """

    __slots__ = ("_code", "_held", "_once", "call", "reads_one", "received", "seconds", "sent", "started")

    call: CallTrace

    def __init__(self, call: CallTrace, started: int) -> None:
        #: Its duration, once it ended.
        self.seconds = 0.0
        self.call = call
        self.started = started
        self.sent = self.received = 0
        self._code: grpc.StatusCode | None = None
        # Once held: whether it still is, and the right to report, taken by one
        # list.pop(), so that it is reported once, whichever thread sees the
        # second of (ended, released).
        self._held = False
        self._once: list[None] | None = None
        self.reads_one = False

    def end(self, code: grpc.StatusCode) -> None:
        """The attempt ended with ``code`` (its status arrived); only the first end counts."""
        if self._code is not None:
            return
        self.seconds = seconds = (_clock() - self.started) / 1e9
        self._code = code
        if self._once is None:  # never held: nothing else reports it
            call = self.call
            call.recorder.attempt_ended(call.labels, code, seconds, self.sent, self.received)
        elif not self._held:
            self._report()

    def end_with_call(self, code: grpc.StatusCode) -> None:
        """The call's first attempt, never held, ended with ``code`` and the call with it."""
        call = self.call
        if self._code is not None or call._ended:
            self.end(code)
            call.finish(code)
            return
        self.seconds = seconds = (_clock() - self.started) / 1e9
        self._code = code
        call._ended = True
        call.recorder.attempt_and_call_ended(call.labels, code, seconds, self.sent, self.received)

    def end_unsent(self, code: grpc.StatusCode) -> None:
        """It failed before it was sent: grpcio serialized its request, but no byte of
        it left, so it sent nothing."""
        if self._code is None:
            self.sent = 0
        self.end(code)

    def hold(self) -> None:
        """Its responses are still to be read: report it only once released too.

        Called before the attempt can end (before its grpc call's done
        callback is added).
        """
        self._once = [None]
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
            self._once.pop()  # type: ignore[union-attr]  # held, so set
        except IndexError:  # reported already
            return
        code, call = self._code, self.call
        assert code is not None
        call.recorder.attempt_ended(call.labels, code, self.seconds, self.sent, self.received)


class Traced(Protocol):
    """A pool channel's multi-callable, as a :class:`CallTrace` of its calls reads it."""

    _name: str
    _key: tuple[Any, ...]
    _labeled: tuple[Recorder, Any] | None


class CallTrace(Attempt):
    """One call through a pool channel, as its recorder hears of it; also its first attempt.

    Made when the call starts; :meth:`attempt` for each attempt (the first,
    one sent again because the first never left, each hedge), :meth:`finish`
    once, when the caller's outcome is known. The first attempt is this
    object itself (it starts with the call, as A66 has it: picking a
    connection is part of it); only a second attempt makes an
    :class:`Attempt` of its own.

    The labels are asked of the recorder once per multi-callable and
    recorder, and kept on the multi-callable (``routed._labeled``): the same
    pool and method give the same labels, and asking on every call costs a
    call to the exporter for nothing. (All of it in ``__init__``, not in a
    helper, for the same reason: a traced call should cost little.)

    Args:
        recorder: The installed recorder (``HOOK.recorder`` as the call read it).
        routed: The pool channel's multi-callable the call was made on.
        first: Start the first attempt too (``attempt(True)``): a sync call
            picks its connection at once.
    """

    __slots__ = ("_ended", "attempts", "labels", "recorder")

    def __init__(self, recorder: Recorder, routed: Traced, first: bool = False) -> None:
        self.started = _clock()
        labeled = routed._labeled
        if labeled is None or labeled[0] is not recorder:
            key = routed._key
            labeled = routed._labeled = (recorder, recorder.labels(routed._name, key[1], key[4]))
        self.labels = labels = labeled[1]
        self.recorder = recorder
        self.call = self
        self.seconds = 0.0
        self.sent = self.received = 0
        self._code = None
        self._held = False
        self._once = None
        self.reads_one = False
        self._ended = False
        #: How many attempts were started.
        self.attempts = 0
        if first:
            self.attempts = 1
            recorder.attempt_started(labels)

    def attempt(self, first: bool = False) -> Attempt:
        """A new attempt, started now; the first is this trace itself (started with the call)."""
        self.attempts += 1
        self.recorder.attempt_started(self.labels)
        return self if first else Attempt(self, _clock())

    def failed(self, code: grpc.StatusCode) -> None:
        """The call ended with ``code`` before an attempt of it started (no connection
        to pick, say): that counts as one attempt, failed with the call."""
        if not self.attempts:
            self.attempt(True).end(code)
        self.finish(code)

    def finish(self, code: grpc.StatusCode, seconds: float | None = None) -> None:
        """The call ended with ``code``; only the first finish counts. ``seconds``: how
        long it took, if known (its first attempt's, which started with it, say)."""
        if not self._ended:
            self._ended = True
            if seconds is None:
                seconds = (_clock() - self.started) / 1e9
            self.recorder.call_ended(self.labels, code, seconds)

    @property
    def ended(self) -> bool:
        return self._ended
