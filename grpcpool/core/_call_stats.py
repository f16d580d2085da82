"""What the calls through a pool channel showed of one connection.

The pool channel tells each :class:`~grpcpool.core.ReadyConnection` how each
call on it ended (:meth:`CallStats.record`), from whichever thread or task
ended the call, without a lock: the figures are plain numbers updated under
the GIL, where a lost update only skews a figure by one call. The rules that
read them (routing by latency, outlier detection) take what they need from
here.

Outcomes (``successes``, ``failures``) are always counted. The latency
estimate of the ``peak_ewma`` strategy (:mod:`grpcpool.core._latency`) is
kept only once its picker has handed the pool's
:class:`~grpcpool._strategy_latency.PoolLatency` to the stats
(:meth:`CallStats.track`): other strategies pay nothing for it.

Calls made on a channel from ``get_channel`` are not seen: the pool cannot
count or time those.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import grpc

from grpcpool.core._latency import UNKNOWN, estimate_at, failure_sample, observe, typical_after

if TYPE_CHECKING:
    from grpcpool._strategy_latency import PoolLatency

__all__ = ["CallStats"]

_OK = grpc.StatusCode.OK
_CANCELLED = grpc.StatusCode.CANCELLED


class CallStats:
    """How the calls on one connection ended, and how long they took.

    Attributes:
        successes: Calls that ended ``OK`` since the last :meth:`take_outcomes`.
        failures: Calls that ended with any other status but ``CANCELLED``
            (the caller gave up: nothing is learnt of the server) since then.
        pool: The latency figures of the pool whose ``peak_ewma`` picker
            tracks this connection (None: no latency is kept).
        estimate: The connection's peak-EWMA latency estimate in seconds, as
            of its last sample (None: no sample yet); read it at a time with
            :meth:`latency`.
        stamp: When the last sample was taken (``time.monotonic()``).
    """

    __slots__ = ("estimate", "failures", "pool", "stamp", "successes")

    def __init__(self) -> None:
        self.successes = 0
        self.failures = 0
        self.pool: PoolLatency | None = None
        self.estimate: float | None = None
        self.stamp = 0.0

    def track(self, pool: PoolLatency) -> None:
        """Keeps a latency estimate from now on, with ``pool``'s decay and typical latency.

        Called by the ``peak_ewma`` picker for each connection it picks
        among, each time it is built: idempotent.
        """
        self.pool = pool

    def record(self, seconds: float | None, code: grpc.StatusCode, now: float) -> None:
        """A call on the connection ended.

        Args:
            seconds: How long it took, for a call with one response; None for
                a stream of responses, whose length says nothing of latency
                (a stream that fails still counts as a slow sample).
            code: How it ended.
            now: ``time.monotonic()`` when it ended (the core reads no clock).
        """
        if code is _OK:
            self.successes += 1
        elif code is not _CANCELLED:
            self.failures += 1
        else:
            return
        pool = self.pool
        if pool is None:
            return
        typical = pool.typical
        if code is _OK:
            if seconds is None:
                return
            pool.typical = typical_after(typical, pool.stamp, seconds, now, pool.decay)
            pool.stamp = now
        else:
            if typical is None and seconds is not None:
                # Nothing succeeded yet: the first duration seen sets the scale.
                pool.typical = typical = seconds
                pool.stamp = now
            current = estimate_at(self.estimate, self.stamp, now, pool.decay, typical)
            slow = failure_sample(seconds, current, typical)
            if slow is None:
                return
            seconds = slow
        self.estimate = observe(self.estimate, self.stamp, seconds, now, pool.decay, typical)
        self.stamp = now

    def outlasted(self, seconds: float, now: float) -> None:
        """A call here was cancelled after ``seconds`` without an answer (a hedge's loser).

        Its latency was at least that: an estimate below it is raised to it
        (a peak, as a slower sample is), one above it is left alone, and no
        outcome is counted. Without this a backend whose first attempts
        always lose to hedges would never look slow, since a cancelled call
        is otherwise no sample.
        """
        pool = self.pool
        if pool is None:
            return
        current = estimate_at(self.estimate, self.stamp, now, pool.decay, pool.typical)
        if current is not None and seconds <= current:
            return
        self.estimate = observe(self.estimate, self.stamp, seconds, now, pool.decay, pool.typical)
        self.stamp = now

    def latency(self, now: float) -> float:
        """The latency estimate read at ``now`` (seconds), for the ``peak_ewma`` picker.

        Drifted toward the pool's typical latency since the last sample; the
        typical latency if there was none; :data:`~grpcpool.core._latency.UNKNOWN`
        if nothing is known (untracked, or no call ended in the pool yet).
        """
        pool = self.pool
        if pool is None:
            return UNKNOWN
        estimate = estimate_at(self.estimate, self.stamp, now, pool.decay, pool.typical)
        return UNKNOWN if estimate is None else estimate

    def take_outcomes(self) -> tuple[int, int]:
        """The successes and failures counted so far, and counting starts again from zero."""
        successes, failures = self.successes, self.failures
        self.successes = self.failures = 0
        return successes, failures

    def __repr__(self) -> str:
        latency = "" if self.estimate is None else f" estimate={self.estimate * 1e3:.3g}ms"
        return f"<CallStats ok={self.successes} failed={self.failures}{latency}>"
