"""Autoscaling a pool (``pool.autoscale``): the size its load asks for, pure.

A fixed-size pool either wastes connections when idle or runs short under a
burst; gRPC's own A105 pool only grows and never closes a connection, and
gax-java's ChannelPool resizes once a minute by at most two channels toward
``[peak / max RPCs per channel, peak / min RPCs per channel]``. This pool does
the latter on a shorter interval, and grows at once while calls wait.

The rules, for both drivers:

- The pool looks at its load :data:`~grpcpool._config_capacity.AUTOSCALE_SAMPLES`
  times an interval (:func:`look`): the peak of the interval is the highest
  load seen, and after the last look of an interval :func:`next_size` decides:
  the size moves toward ``[ceil(peak / high_calls), ceil(peak / low_calls)]``,
  clamped to ``[min_size, max_size]``, by at most ``max_step``; inside that
  range it stays.
- Calls waiting in the pool's queue grow it at once (:func:`grow_step`), at
  the next look or when the queue says a call started waiting, by at most
  ``max_step``, and again only once the connections it has are all ready, so
  a pool whose new connections are still connecting does not grow past what
  the wait needs.
- ``scale_up``, ``scale_down`` and ``resize`` on an autoscaled pool clamp
  the size they ask for into ``[min_size, max_size]``
  (:mod:`grpcpool.core._scaling` applies :func:`clamp`).

The load comes from a :class:`LoadSource`: the pool's
:class:`~grpcpool.core._capacity.Capacity`, which counts calls in flight and
queued (its own peak, for a pool whose calls it admits) and knows what waits. The drivers carry a step out through their resize path, so a
connection removed drains: it leaves routing, its calls finish, it closes.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from grpcpool import telemetry
from grpcpool._config_capacity import AUTOSCALE_SAMPLES, Autoscale
from grpcpool.connection._machine_types import Emit
from grpcpool.core._view import PoolView

__all__ = [
    "LoadSource",
    "Step",
    "Window",
    "autoscaled",
    "clamp",
    "grow_now",
    "grow_step",
    "look",
    "next_size",
    "target_range",
]

_AUTOSCALED = telemetry.pool_autoscaled.name


class LoadSource(Protocol):
    """Where an autoscaled pool reads its load.

    The pool's :class:`~grpcpool.core._capacity.Capacity` is the one both
    drivers pass: it counts calls in flight and queued as they come and go. Read by the pool's autoscaler only (one
    reader), from the pool's timer (sync: an actor's thread; asyncio: its
    loop). The autoscaler sets ``on_wait`` when it starts.

    Attributes:
        on_wait: Called each time a call starts waiting on a full pool (from
            the caller's thread, sync; on the loop, asyncio); it must not block.
    """

    on_wait: Callable[[], None]

    def take_peak(self) -> int:
        """The peak of calls in flight plus queued since the last call; starts a new count."""
        ...

    @property
    def queued(self) -> int:
        """The calls waiting now for a connection to take them."""
        ...


@dataclass(frozen=True, slots=True)
class Step:
    """A change of size the autoscaler asks its driver for.

    Attributes:
        from_size: The size it was decided from (a driver whose size changed
            meanwhile drops the step: the next look decides afresh).
        to_size: The size to reach.
        peak: The peak load (calls in flight plus queued) it was decided on.
        queued: The calls waiting when it was decided.
    """

    from_size: int
    to_size: int
    peak: int
    queued: int


@dataclass(frozen=True, slots=True)
class Window:
    """The load seen so far in the current interval.

    Attributes:
        peak: The highest load of its looks.
        looks: How many looks it has had.
    """

    peak: int = 0
    looks: int = 0


def target_range(peak: int, settings: Autoscale) -> tuple[int, int]:
    """The sizes ``peak`` calls ask for: ``[ceil(peak / high_calls), ceil(peak / low_calls)]``,
    clamped to ``[min_size, max_size]``."""
    low_calls, high_calls = settings.calls
    return clamp(math.ceil(peak / high_calls), settings), clamp(
        math.ceil(peak / low_calls), settings
    )


def clamp(size: int, settings: Autoscale) -> int:
    """``size`` within ``[min_size, max_size]``."""
    low, high = settings.bounds
    return min(max(size, low), high)


def next_size(size: int, peak: int, settings: Autoscale) -> int | None:
    """The size an interval with ``peak`` load moves a pool of ``size`` to; None: it stays.

    Toward :func:`target_range` by at most ``max_step``; a size inside it stays.
    """
    low, high = target_range(peak, settings)
    if size < low:
        return min(low, size + settings.max_step)
    if size > high:
        return max(high, size - settings.max_step)
    return None


def grow_now(size: int, ready: int, queued: int, settings: Autoscale) -> int | None:
    """The size ``queued`` waiting calls grow a pool of ``size`` to at once; None: not now.

    One connection per ``high_calls`` waiting calls (at least one), up to
    ``max_size``, in one step: ``max_step`` paces the interval's moves, not
    this one, since every waiting call is a caller held up now. Nothing
    while fewer than ``size`` connections are ready (the ones coming will
    take the wait), so a burst does not grow the pool twice for one wait.
    """
    _, most = settings.bounds
    if queued <= 0 or size >= most or ready < size:
        return None
    wanted = math.ceil(queued / settings.calls[1])
    return min(most, size + max(wanted, 1))


def look(
    window: Window, settings: Autoscale, view: PoolView, *, load: int, queued: int
) -> tuple[Window, Step | None]:
    """One look at the pool's load; the window after it and the step to take, if any.

    Args:
        window: The interval's looks so far.
        settings: The pool's ``pool.autoscale``.
        view: The pool's current view (its expected size, its ready connections).
        load: The load source's ``take_peak()``.
        queued: The load source's ``queued``.

    Returns:
        The next window (a fresh one after an interval's last look) and a
        :class:`Step`: waiting calls grow the pool at once
        (:func:`grow_step`); the interval's last look decides by
        :func:`next_size`. Nothing while the pool is not running.
    """
    if view.lifecycle != "running":
        return window, None
    peak = max(window.peak, load, queued)
    looks = window.looks + 1
    window = Window(peak, looks)
    urgent = grow_step(window, settings, view, queued)
    if looks < AUTOSCALE_SAMPLES:
        return window, urgent
    size = view.expected_size
    target = next_size(size, peak, settings)
    if urgent is not None and (target is None or urgent.to_size > target):
        return Window(), urgent
    return Window(), None if target is None else Step(size, target, peak, queued)


def grow_step(window: Window, settings: Autoscale, view: PoolView, queued: int) -> Step | None:
    """The step ``queued`` waiting calls ask of the pool in ``view`` at once (:func:`grow_now`)."""
    size = view.expected_size
    target = grow_now(size, view.ready_count, queued, settings)
    if target is None or view.lifecycle != "running":
        return None
    return Step(size, target, max(window.peak, queued), queued)


def autoscaled(step: Step, to_size: int) -> Emit:
    """``pool.autoscaled``: ``step`` carried out, the pool now at ``to_size``."""
    measurements = {
        "from_size": step.from_size,
        "to_size": to_size,
        "peak_in_flight": step.peak,
        "queued": step.queued,
    }
    return Emit(_AUTOSCALED, measurements, {})
