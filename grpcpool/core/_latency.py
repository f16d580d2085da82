"""Peak-EWMA latency estimates, the rules of the ``peak_ewma`` strategy (pure: time passed in).

Each connection keeps one estimate of how long a call on it takes, and the
pool keeps its *typical* latency; ``peak_ewma`` sends a call to the cheaper
of two random connections, cost = estimate x (calls in flight + 1). The
estimate is a *peak* EWMA (Finagle's and linkerd's): it must turn at once
when a backend turns slow, and come back only as evidence of speed builds up.

* **Observe** (:func:`observe`): a sample slower than the estimate replaces
  it at once; a faster one pulls it down, keeping ``exp(-elapsed / decay)``
  of the estimate (``elapsed``: seconds since the connection's last sample,
  ``decay``: ``pool.ewma_decay``), but never more than
  ``1 - 1 / PEAK_FADE_CALLS`` of it. On a quiet connection the weight is by
  time: a peak fades over ``decay`` seconds however few calls come. On a
  busy one the floor rules: a peak fades over about
  :data:`PEAK_FADE_CALLS` faster calls. Why: weighed by time alone, a
  connection taking 500 calls a second keeps 99.98% of its estimate per
  call, so its estimate is the slowest of its last few seconds' calls (a
  1-in-1000 hiccup of the client's own scheduling), not its latency. With
  16 callers over a pool of 8 whose healthy connections answer in 3-4 ms,
  such estimates sat at 15-30 ms, and times the 3-5 calls in flight their
  cost passed an idle connection's to a backend 50 ms slow, which then got
  1.8-3% of the calls (measured; its connections were rarely idle). A
  backend that turns slow still looks slow from its first slow answer, and
  stays so while its answers stay slow: only faster answers pull.
* **Read at now** (:func:`estimate_at`): the estimate drifts from its last
  value toward the pool's typical latency with the time since its last
  sample, by the same weight. A connection that looked slow gets no calls,
  hence no samples; without the drift it would never be tried again. With
  it, it is tried once its cost falls below a busy connection's, and one
  fast answer then counts almost fully (the weight of the old estimate is
  small after a long ``elapsed``). A connection without a sample yet is
  read as typical: a new connection is neither shunned nor flooded.
* **Typical** (:func:`typical_after`): a plain EWMA, by the same time
  weight, of the one-response calls that succeeded on any connection of the
  pool: the latency the pool's calls actually see, weighted by where they
  go, so a slow connection that gets few calls hardly moves it. Until the
  first success, the first call's duration (failed or not) seeds it.
* **A failure is a slow sample** (:func:`failure_sample`; any status but
  ``OK``, ``CANCELLED`` aside, which says nothing of the server): it counts
  as at least :data:`FAILURE_FACTOR` times the larger of the connection's
  estimate now and the typical latency, at most :data:`MAX_FAILURE_FACTOR`
  times the typical latency, and never less than the call's own duration
  or the estimate now.
  Why doubling rather than one fixed multiple: a fixed multiple ``k`` of
  the typical latency loses once the healthy connections carry ``k`` calls
  in flight each (their cost, typical x (in flight + 1), passes the failing
  one's, whose calls end at once), and the failing backend is then flooded,
  the black hole a least-loaded rule is known for. Doubling the estimate
  *it has now* is relative to the load that made it win: it won a draw
  because its cost fell below a busy connection's, and each failure doubles
  that cost again, so however loaded the pool, a backend that fails every
  call is tried about once per ``decay x ln 2`` or more (the time to decay
  back), and a single stray error costs a healthy connection only twice its
  usual figure. The floor at twice the typical latency makes even the
  fastest connection's failure count as slow. The cap keeps a burst of
  failures finite (the calls already in flight on a backend that starts
  failing each double it): once the backend heals it is tried again within
  about ``decay x ln(1000 / (calls in flight per connection + 1))`` even
  from the cap. It is high so that the doubling still works with hundreds of
  calls in flight per connection, as an asyncio client may have: at the
  cap's own multiple of calls in flight a failing backend would win again.

Everything here is plain arithmetic over floats; the connection's
:class:`~grpcpool.core._call_stats.CallStats` applies it as each call
through the pool channel ends, and the picker reads :func:`estimate_at`.
"""

from __future__ import annotations

import math

_exp = math.exp

__all__ = [
    "FAILURE_FACTOR",
    "MAX_FAILURE_FACTOR",
    "PEAK_FADE_CALLS",
    "UNKNOWN",
    "estimate_at",
    "failure_sample",
    "kept",
    "observe",
    "typical_after",
]

#: A failed call counts as at least this many times the larger of the
#: connection's estimate and the pool's typical latency: each failure in a
#: row doubles how slow the connection looks.
FAILURE_FACTOR = 2.0
#: ... and as at most this many times the pool's typical latency (unless the
#: call itself took longer), so a burst of failures cannot push the estimate
#: out of reach: a healed backend is tried again within a few decays.
MAX_FAILURE_FACTOR = 1000.0
#: A faster sample pulls the estimate at least ``1 / PEAK_FADE_CALLS`` of
#: the way toward itself, however soon after the previous one it came: on a
#: busy connection a peak fades to about 1/e over this many faster calls.
PEAK_FADE_CALLS = 8
# The most of the estimate a faster sample keeps.
_PEAK_KEPT = 1.0 - 1.0 / PEAK_FADE_CALLS
#: The estimate read when nothing is known: no call has ended in the pool
#: yet. Every connection is then in that state, so cost orders by calls in
#: flight alone; the unit is irrelevant.
UNKNOWN = 1.0


def kept(elapsed: float, decay: float) -> float:
    """How much of a value ``elapsed`` seconds old is kept: ``exp(-elapsed / decay)``.

    1 for ``elapsed <= 0``: clocks read on different threads may arrive out
    of order by a little, and a weight above 1 would extrapolate.
    """
    if elapsed <= 0.0:
        return 1.0
    return math.exp(-elapsed / decay)


def estimate_at(
    estimate: float | None, stamp: float, now: float, decay: float, typical: float | None
) -> float | None:
    """A connection's estimate read at ``now``: drifted toward ``typical`` since its last sample.

    Args:
        estimate: The estimate as of its last sample (None: no sample yet).
        stamp: When that sample was taken (``time.monotonic()``).
        now: The time now.
        decay: ``pool.ewma_decay``, seconds.
        typical: The pool's typical latency (None: nothing known yet).

    Returns:
        ``typical + (estimate - typical) x exp(-(now - stamp) / decay)``;
        ``typical`` without a sample, ``estimate`` without a typical.
    """
    if estimate is None:
        return typical
    if typical is None or now <= stamp:
        return estimate
    # kept() written out: the picker reads two estimates per call.
    return typical + (estimate - typical) * _exp((stamp - now) / decay)


def observe(
    estimate: float | None,
    stamp: float,
    sample: float,
    now: float,
    decay: float,
    typical: float | None,
) -> float:
    """The estimate after a call that took ``sample`` seconds ended at ``now``.

    The estimate as read at ``now`` (:func:`estimate_at`) is replaced by a
    slower sample; a faster one moves it toward the sample, keeping
    ``min(exp(-(now - stamp) / decay), 1 - 1 / PEAK_FADE_CALLS)`` of it (by
    time on a quiet connection, by count on a busy one: see the module's
    docstring). The first sample is taken as it is. The result is never
    below ``sample``.
    """
    if estimate is None:  # the first sample: nothing to weigh it against
        return sample
    # estimate_at() written out, sharing its exp with the pull (this runs per call).
    if now <= stamp:
        weight, current = 1.0, estimate
    else:
        weight = _exp((stamp - now) / decay)
        current = estimate if typical is None else typical + (estimate - typical) * weight
    if sample >= current:
        return sample
    if weight > _PEAK_KEPT:
        weight = _PEAK_KEPT
    return sample + (current - sample) * weight


def failure_sample(seconds: float | None, current: float | None, typical: float | None) -> float | None:
    """The slow sample a failed call counts as.

    Args:
        seconds: How long the call took (None: a stream of responses).
        current: The connection's estimate read now (:func:`estimate_at`).
        typical: The pool's typical latency.

    Returns:
        ``max(seconds, current, min(FAILURE_FACTOR x max(current, typical),
        MAX_FAILURE_FACTOR x typical))``, the reasons for which are in the
        module's docstring: never faster than the estimate now, so a failure
        never pulls it down. None if nothing is known to scale it by (no
        estimate, no typical latency, no duration).
    """
    base = current if typical is None else typical if current is None else max(current, typical)
    if base is None:
        return seconds
    sample = FAILURE_FACTOR * base
    if typical is not None:
        sample = min(sample, MAX_FAILURE_FACTOR * typical)
    if current is not None and current > sample:
        sample = current  # the cap never makes a failure look faster than the estimate
    if seconds is not None and seconds > sample:
        return seconds
    return sample


def typical_after(typical: float | None, stamp: float, sample: float, now: float, decay: float) -> float:
    """The pool's typical latency after a call took ``sample`` seconds, ending at ``now``.

    A plain EWMA by time: ``exp(-(now - stamp) / decay)`` of the old value
    is kept (``stamp``: when it last changed); the first sample is taken as
    it is.
    """
    if typical is None:
        return sample
    return sample + (typical - sample) * kept(now - stamp, decay)
