"""How often the connectivity watcher sweeps: the rule, apart from the thread.

Checking a channel's state costs about a microsecond, but waking a thread to
do it costs far more, and a process that sweeps every 10 ms spends about 1%
of a core doing so even for one channel. So the watcher sweeps often only
while something may be changing, and rarely once everything has settled:

* **Fast** (every :data:`MIN_PERIOD` seconds, or slower if a sweep is costly,
  so that sweeping takes at most about ``1 / COST_FACTOR`` of a core): while
  some channel is not READY (connecting, reconnecting, failing), while some
  ready channel's connection cannot be heard hanging up (see
  :mod:`grpcpool.connection._sockets`), and right after any change or hint.
* **Idle**: once every channel is READY and every connection would be heard
  hanging up, the pause doubles after each quiet sweep up to
  :data:`IDLE_PERIOD`. A connection that drops then wakes the watcher at
  once (the kernel tells it) and the pace snaps back to fast; the idle
  sweeps are only the backstop for a change no socket tells of.

:class:`Pace` holds nothing but the current pause, so the rule is tested
without threads, channels or clocks.
"""

from __future__ import annotations

__all__ = [
    "COST_FACTOR",
    "GROWTH",
    "IDLE_PERIOD",
    "MAX_PERIOD",
    "MIN_PERIOD",
    "Pace",
]

# The shortest time between two sweeps of every channel, in seconds.
MIN_PERIOD = 0.01
# The longest while sweeping fast: even a very large process notices a drop
# no socket tells of within a second.
MAX_PERIOD = 1.0
# While fast, a sweep is followed by a pause COST_FACTOR times as long as the
# sweep took, so checking uses at most about 1/COST_FACTOR of one CPU.
COST_FACTOR = 50
# Once settled, each quiet sweep multiplies the pause by GROWTH ...
GROWTH = 2.0
# ... up to this many seconds (or the fast pause, if sweeping is costlier).
IDLE_PERIOD = 1.0


class Pace:
    """The pause between two sweeps of the watcher, adapted after each sweep.

    Attributes:
        period: Seconds until the next sweep, as last decided.
        idle: Whether the last decision was an idle one (everything settled).
    """

    __slots__ = ("idle", "period")

    def __init__(self) -> None:
        self.period = MIN_PERIOD
        self.idle = False

    def after_sweep(self, cost: float, *, changed: bool, settled: bool) -> float:
        """Decides the pause after a sweep of every channel; returns it in seconds.

        Args:
            cost: CPU seconds the sweep took (callbacks left out).
            changed: Whether the sweep saw any channel change state.
            settled: Whether every channel is READY and its connection would
                be heard hanging up: nothing is expected to change unannounced.
        """
        fast = fast_period(cost)
        if changed or not settled:
            self.period, self.idle = fast, False
        else:
            ceiling = max(IDLE_PERIOD, fast)
            self.period, self.idle = min(ceiling, max(fast, self.period * GROWTH)), True
        return self.period

    def hurry(self) -> None:
        """A hint that something changes (a connection hung up, a check failed).

        The next sweep is due now, and the pace is fast again until the
        sweeps find everything settled once more.
        """
        self.period, self.idle = MIN_PERIOD, False

    def __repr__(self) -> str:
        return f"<Pace {'idle' if self.idle else 'fast'} {self.period:.3f}s>"


def fast_period(cost: float) -> float:
    """The pause after a sweep that cost ``cost`` CPU seconds while sweeping fast.

    Grows with the cost, so that watching many channels stays cheap, between
    :data:`MIN_PERIOD` and :data:`MAX_PERIOD`.
    """
    return min(MAX_PERIOD, max(MIN_PERIOD, COST_FACTOR * cost))
