"""What the calls through a pool channel showed of one connection.

The pool channel tells each :class:`~grpcpool.core.ReadyConnection` how each
call on it ended (:meth:`CallStats.record`), from whichever thread or task
ended the call, without a lock: the counts are plain ints bumped under the
GIL, where a lost update only skews a figure by one call. The rules that read
them (routing by latency, outlier detection) take what they need from here.

Calls made on a channel from ``get_channel`` are not seen: the pool cannot
count those.
"""

from __future__ import annotations

import grpc

__all__ = ["CallStats"]

_OK = grpc.StatusCode.OK
_CANCELLED = grpc.StatusCode.CANCELLED


class CallStats:
    """How the calls on one connection ended.

    Attributes:
        successes: Calls that ended ``OK`` since the last :meth:`take_outcomes`.
        failures: Calls that ended with any other status but ``CANCELLED``
            (the caller gave up: nothing is learnt of the server) since then.
    """

    __slots__ = ("failures", "successes")

    def __init__(self) -> None:
        self.successes = 0
        self.failures = 0

    def record(self, seconds: float | None, code: grpc.StatusCode, now: float) -> None:
        """A call on the connection ended.

        Args:
            seconds: How long it took, for a call with one response; None for
                a stream of responses, whose length says nothing of latency.
            code: How it ended.
            now: ``time.monotonic()`` when it ended (the core reads no clock).
        """
        del seconds, now  # read by the latency rules that grow on this record
        if code is _OK:
            self.successes += 1
        elif code is not _CANCELLED:
            self.failures += 1

    def take_outcomes(self) -> tuple[int, int]:
        """The successes and failures counted so far, and counting starts again from zero."""
        successes, failures = self.successes, self.failures
        self.successes = self.failures = 0
        return successes, failures

    def __repr__(self) -> str:
        return f"<CallStats ok={self.successes} failed={self.failures}>"
