"""The ``peak_ewma`` strategy: two random connections, the one expected to answer sooner wins.

Its picker draws two distinct ready connections (the second on another
backend address when there is one) and compares their cost,
latency estimate x (calls in flight + 1): the estimate says how long a call
takes there, the count how many are queued ahead of a new one. The rules of
the estimate (a peak EWMA, drifting toward the pool's typical latency while
idle; a failed call counts as a slow one) live in
:mod:`grpcpool.core._latency`; this module only wires them to a pool.

How the figures reach the rules: a pool resolves its strategy once
(``resolve_strategy(config.pool.strategy, ewma_decay=config.pool.ewma_decay)``,
sync and asyncio alike), so a :class:`PeakEwma` built from the name belongs
to one pool and holds that pool's :class:`PoolLatency`: ``pool.ewma_decay``
and the typical latency. Each time the pool's ready connections change, its
registry asks for a new picker over them, and the picker hands the
:class:`PoolLatency` to each connection's
:class:`~grpcpool.core._call_stats.CallStats` (``stats.track``), which
updates its estimate and the pool's typical latency as each call through
the pool channel ends. A connection's stats outlive the pickers (the
registry keeps the same :class:`~grpcpool.core.ReadyConnection` while its
channel stays ready), so no estimate is lost when another connection comes
or goes. Nothing is shared between pools, nor computed on a timer.

Calls made on a channel from ``get_channel`` are neither counted nor timed:
``get_channel`` hands out the picked connection's channel (as
``least_in_flight`` does), but only calls through the pool channel teach
the estimates. With only ``get_channel`` users every estimate stays
unknown, and the pick is a random one among connections of equal cost.
"""

from __future__ import annotations

import functools
import operator
import random as _random
import time
from collections.abc import Callable
from typing import Any, TypeVar, cast

from grpcpool._config_routing import DEFAULT_EWMA_DECAY, check_ewma_decay

__all__ = ["PeakEwma", "PoolLatency"]

T = TypeVar("T")


class PoolLatency:
    """The latency figures the connections of one ``peak_ewma`` pool share: data only.

    Attributes:
        decay: ``pool.ewma_decay``, seconds: how fast estimates forget.
        typical: The pool's typical latency, seconds (None until a call
            with one response has ended).
        stamp: When ``typical`` last changed (``time.monotonic()``).

    ``typical`` and ``stamp`` are written by the connections' ``CallStats``
    (with :func:`grpcpool.core._latency.typical_after`) as calls end, on any
    thread, without a lock: two calls ending at once may lose one sample,
    which only skews an average.
    """

    __slots__ = ("decay", "stamp", "typical")

    def __init__(self, decay: float) -> None:
        self.decay = decay
        self.typical: float | None = None
        self.stamp = 0.0

    def __repr__(self) -> str:
        typical = "unknown" if self.typical is None else f"{self.typical * 1e3:.3g}ms"
        return f"<PoolLatency decay={self.decay:g}s typical={typical}>"


class PeakEwma:
    """Draws two different ready connections; the one with the lower latency x (in flight + 1) wins.

    Power of two distinct choices, as ``least_in_flight``, but the second
    connection is drawn among those to another backend address when there
    is one (see :func:`_rivals`), and the cost is the connection's latency
    estimate read now times its calls in flight plus one: a connection that answers 50 ms late loses to one answering in
    1 ms that has 40 calls queued. The estimate is a peak EWMA
    (:mod:`grpcpool.core._latency`): a slow answer counts at once, fast ones
    pull it back over ``decay`` seconds; an idle connection drifts toward
    the pool's typical latency, so it is tried again; a failed call counts
    as a slow one, so a backend that fails fast does not draw calls.

    One instance per pool: it holds the pool's :class:`PoolLatency`. A pool
    given the name ``"peak_ewma"`` builds one with ``pool.ewma_decay``; an
    instance given as ``pool.strategy`` keeps the ``decay`` it was built
    with (and should not be given to two pools, which would then share a
    typical latency).

    A pick reads ``time.monotonic()`` once and two estimates: O(1). Items
    without call counts and stats (bare channels) get a uniform random pick.

    Args:
        decay: Seconds over which an estimate forgets (``pool.ewma_decay``,
            default 10 s).
        rng: The random source of the draws (for tests).
    """

    name = "peak_ewma"
    routes_by_load = True

    def __init__(self, decay: float | None = None, rng: _random.Random | None = None) -> None:
        if decay is None:
            decay = DEFAULT_EWMA_DECAY
        check_ewma_decay(decay)
        self.latency = PoolLatency(float(decay))
        self._uniform = (rng or _random.Random()).random

    @property
    def decay(self) -> float:
        """Seconds over which an estimate forgets."""
        return self.latency.decay

    def picker(self, items: tuple[T, ...]) -> Callable[[], T]:
        uniform, count = self._uniform, len(items)
        if count == 1:
            return cast("Callable[[], T]", functools.partial(operator.getitem, items, 0))
        loads: list[Any] = [getattr(item, "calls", None) for item in items]
        stats: list[Any] = [getattr(item, "stats", None) for item in items]
        if any(load is None for load in loads) or not all(
            callable(getattr(stat, "track", None)) for stat in stats
        ):

            def pick_any() -> T:
                return items[int(uniform() * count)]

            return pick_any
        for stat in stats:
            stat.track(self.latency)
        estimates: list[Callable[[float], float]] = [stat.latency for stat in stats]
        order, spans = _rivals([getattr(item, "address", None) for item in items])
        others, monotonic = count - 1, time.monotonic

        def pick() -> T:
            first = int(uniform() * count)
            start, size = spans[first]
            if size < count:  # another address: drawn among its connections
                second = int(uniform() * (count - size))
                if second >= start:
                    second += size  # skips the first one's address
                second = order[second]
            else:  # one address: any other connection
                second = int(uniform() * others)
                if second >= first:
                    second += 1
            now = monotonic()
            if estimates[second](now) * (len(loads[second]) + 1) < estimates[first](now) * (
                len(loads[first]) + 1
            ):
                first = second
            return items[first]

        return pick

    def __repr__(self) -> str:
        return f"PeakEwma(decay={self.decay:g})"


def _rivals(addresses: list[str | None]) -> tuple[list[int], list[tuple[int, int]]]:
    """How the second draw avoids the first one's backend: the indexes grouped by address.

    A pool of 8 over 4 backends has two connections to each. If the second
    draw could land on the first one's backend, 1 draw in 28 would compare
    a slow or failing backend's two connections with each other and send it
    the call whatever their estimates: 3.6% of the calls, the whole of what
    the strategy is for. So the second connection is drawn among those to
    other addresses; only where there is none (one backend, or connections
    to ``host:port`` without an address) among all the other connections.

    Returns:
        ``order``: every index, those of one address next to each other;
        ``spans[i]``: where the indexes of ``i``'s address start in ``order``
        and how many there are. Drawing ``r`` in ``range(count - size)`` and
        stepping over the span gives a uniform index of another address, in
        O(1); building this is O(n), once per change of the ready set.
    """
    groups: dict[str | None, list[int]] = {}
    for index, address in enumerate(addresses):
        groups.setdefault(address, []).append(index)
    order: list[int] = []
    spans: list[tuple[int, int]] = [(0, 0)] * len(addresses)
    for members in groups.values():
        for index in members:
            spans[index] = (len(order), len(members))
        order.extend(members)
    return order, spans
