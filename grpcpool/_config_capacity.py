"""The capacity sections of ``pool``: calls per connection, the queue of calls waiting, ``autoscale``.

``pool.max_calls_per_connection`` caps the calls the pool channel runs on one
connection at a time (None: no cap); when every ready connection is at its
cap a call waits in a FIFO queue of at most ``pool.max_queued_calls`` calls.
A connection whose server refuses a stream (HTTP/2 ``REFUSED_STREAM``) lowers
its own cap whether or not the key is set. The rules are in
:mod:`grpcpool.core._capacity`; the defaults and bounds live here, beside
their check, which :func:`~grpcpool._config_sections.check_pool` calls.

:class:`Autoscale` is an immutable value built from the mapping the user
gives (or passed as the value itself) and checked when built: a bad field is
a :class:`~grpcpool.errors.ConfigError` naming its dotted key
(``pool.autoscale.max_size``). Its defaults and bounds live here.

What needs the rest of ``pool`` (``max_size`` at most ``pool.max_size``; the
defaults taken from other keys) is settled by :func:`normalize_autoscale`,
which :class:`~grpcpool.config.PoolConfig` runs, so the value a pool holds
has every field set.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from grpcpool._config_checks import check_float, check_int, check_keys, kind
from grpcpool.errors import ConfigError

__all__ = [
    "AUTOSCALE_SAMPLES",
    "DEFAULT_AUTOSCALE_HIGH_CALLS",
    "DEFAULT_AUTOSCALE_INTERVAL",
    "DEFAULT_AUTOSCALE_LOW_CALLS",
    "DEFAULT_AUTOSCALE_MAX_STEP",
    "DEFAULT_AUTOSCALE_MIN_SIZE",
    "DEFAULT_MAX_CALLS_PER_CONNECTION",
    "DEFAULT_MAX_QUEUED_CALLS",
    "MAX_AUTOSCALE_INTERVAL",
    "MAX_MAX_CALLS_PER_CONNECTION",
    "MAX_MAX_QUEUED_CALLS",
    "MAX_REFUSED_REROUTES",
    "MIN_AUTOSCALE_INTERVAL",
    "Autoscale",
    "check_capacity",
    "normalize_autoscale",
    "start_size",
]

#: ``pool.max_calls_per_connection``: no cap (a server's own limit still
#: lowers a connection's cap when it refuses a stream).
DEFAULT_MAX_CALLS_PER_CONNECTION: int | None = None
#: ``pool.max_queued_calls``: calls that may wait for a free slot at once.
DEFAULT_MAX_QUEUED_CALLS = 10_000
#: Upper bounds that catch a typo: HTTP/2 counts streams in 31 bits, and a
#: queue of millions of waiting calls is a leak, not a queue.
MAX_MAX_CALLS_PER_CONNECTION = 2**31 - 1
MAX_MAX_QUEUED_CALLS = 1_000_000
#: How many times one call refused by its server (it never reached a
#: handler) is routed again before the refusal is raised: each refusal
#: lowers a connection's cap, so a call refused this often meets servers
#: that refuse whatever the pool does (other clients fill them).
MAX_REFUSED_REROUTES = 10


def check_capacity(pool: Any) -> None:
    """Checks ``pool.max_calls_per_connection`` and ``pool.max_queued_calls``.

    Raises:
        ConfigError: Naming the key: not an int (or None, for the cap), or out
            of its bounds.
    """
    if pool.max_calls_per_connection is not None:
        check_int(
            "pool.max_calls_per_connection",
            pool.max_calls_per_connection,
            minimum=1,
            maximum=MAX_MAX_CALLS_PER_CONNECTION,
        )
    check_int(
        "pool.max_queued_calls", pool.max_queued_calls, minimum=0, maximum=MAX_MAX_QUEUED_CALLS
    )


_KEY = "pool.autoscale"

#: ``pool.autoscale.min_size``: the fewest connections an autoscaled pool keeps.
DEFAULT_AUTOSCALE_MIN_SIZE = 1
#: ``pool.autoscale.low_calls``: below this many calls per connection the pool shrinks.
DEFAULT_AUTOSCALE_LOW_CALLS = 1
#: ``pool.autoscale.high_calls`` without ``pool.max_calls_per_connection``: above this
#: many calls per connection the pool grows.
DEFAULT_AUTOSCALE_HIGH_CALLS = 25
#: ``pool.autoscale.interval``: seconds between two decisions (gax-java: 60).
DEFAULT_AUTOSCALE_INTERVAL = 1.0
#: ``pool.autoscale.max_step``: connections added or removed per decision at most (gax-java: 2).
DEFAULT_AUTOSCALE_MAX_STEP = 2
#: The shortest ``interval`` taken: the load is sampled :data:`AUTOSCALE_SAMPLES`
#: times an interval, on the pool's timer.
MIN_AUTOSCALE_INTERVAL = 0.05
#: The longest ``interval`` taken: more is a typo (milliseconds as seconds).
MAX_AUTOSCALE_INTERVAL = 3600.0
#: How many times an interval the pool looks at its load: the peak of an
#: interval is the highest of these looks (exact with a load source that
#: counts its own peak, a sample without one), and waiting calls grow the
#: pool at the next look at the latest.
AUTOSCALE_SAMPLES = 10


@dataclass(frozen=True)
class Autoscale:
    """``pool.autoscale``: the pool's size follows its load, within ``[min_size, max_size]``.

    Every ``interval`` seconds the pool takes the peak of its calls in flight
    (plus queued calls) over the interval and moves its size toward
    ``[ceil(peak / high_calls), ceil(peak / low_calls)]``, clamped to
    ``[min_size, max_size]``, by at most ``max_step`` connections; a size
    inside that range stays. Calls waiting in the pool's queue grow it at
    once. A connection removed drains: it leaves routing, its calls finish,
    then it closes.

    Attributes:
        min_size: The fewest connections (>= 1).
        max_size: The most (<= ``pool.max_size``; None: ``pool.max_size``).
        low_calls: Calls per connection below which the pool shrinks (>= 1).
        high_calls: Calls per connection above which it grows (>= ``low_calls``;
            None: ``pool.max_calls_per_connection`` if set, else 25).
        interval: Seconds between decisions.
        max_step: Connections added or removed per decision at most (>= 1).
    """

    min_size: int = DEFAULT_AUTOSCALE_MIN_SIZE
    max_size: int | None = None
    low_calls: int = DEFAULT_AUTOSCALE_LOW_CALLS
    high_calls: int | None = None
    interval: float = DEFAULT_AUTOSCALE_INTERVAL
    max_step: int = DEFAULT_AUTOSCALE_MAX_STEP

    def __post_init__(self) -> None:
        check_int(f"{_KEY}.min_size", self.min_size, minimum=1)
        if self.max_size is not None:
            check_int(f"{_KEY}.max_size", self.max_size, minimum=1)
            if self.max_size < self.min_size:
                raise ConfigError(
                    f"{_KEY}.max_size",
                    f"{self.max_size} is below pool.autoscale.min_size ({self.min_size}); "
                    "raise max_size or lower min_size",
                )
        check_int(f"{_KEY}.low_calls", self.low_calls, minimum=1)
        if self.high_calls is not None:
            check_int(f"{_KEY}.high_calls", self.high_calls, minimum=1)
            if self.high_calls < self.low_calls:
                raise ConfigError(
                    f"{_KEY}.high_calls",
                    f"{self.high_calls} is below pool.autoscale.low_calls ({self.low_calls}); "
                    "the pool would grow and shrink at the same load",
                )
        check_float(
            f"{_KEY}.interval",
            self.interval,
            minimum=MIN_AUTOSCALE_INTERVAL,
            maximum=MAX_AUTOSCALE_INTERVAL,
        )
        check_int(f"{_KEY}.max_step", self.max_step, minimum=1)

    @property
    def bounds(self) -> tuple[int, int]:
        """``(min_size, max_size)``; ``max_size`` as :func:`normalize_autoscale` set it."""
        assert self.max_size is not None, "normalize_autoscale sets max_size"
        return self.min_size, self.max_size

    @property
    def calls(self) -> tuple[int, int]:
        """``(low_calls, high_calls)``; ``high_calls`` as :func:`normalize_autoscale` set it."""
        assert self.high_calls is not None, "normalize_autoscale sets high_calls"
        return self.low_calls, self.high_calls


def normalize_autoscale(
    value: Any, pool_max_size: int, max_calls_per_connection: int | None = None
) -> Autoscale | None:
    """``pool.autoscale`` as given (None, a mapping or an :class:`Autoscale`), with every field set.

    Args:
        value: What the user gave.
        pool_max_size: ``pool.max_size``: ``max_size`` may not be over it,
            and is it when not given.
        max_calls_per_connection: ``pool.max_calls_per_connection``, the
            default of ``high_calls`` when set.

    Raises:
        ConfigError: An unknown key, a bad value, ``max_size`` (or
            ``min_size``) over ``pool.max_size``, ``high_calls`` (or its
            default) below ``low_calls``.
    """
    if value is None:
        return None
    if isinstance(value, Mapping):
        check_keys(_KEY, value, frozenset(f.name for f in dataclasses.fields(Autoscale)))
        settings = Autoscale(**value)
    elif isinstance(value, Autoscale):
        settings = value
    else:
        raise ConfigError(_KEY, f"must be None, a mapping or an Autoscale, got {kind(value)}")
    if settings.max_size is not None and settings.max_size > pool_max_size:
        raise ConfigError(
            f"{_KEY}.max_size",
            f"{settings.max_size} is over pool.max_size ({pool_max_size}); "
            "lower it or raise pool.max_size",
        )
    if settings.min_size > pool_max_size:
        raise ConfigError(
            f"{_KEY}.min_size",
            f"{settings.min_size} is over pool.max_size ({pool_max_size}); "
            "lower it or raise pool.max_size",
        )
    high = settings.high_calls
    if high is None:
        high = max_calls_per_connection or DEFAULT_AUTOSCALE_HIGH_CALLS
        if high < settings.low_calls:
            raise ConfigError(
                f"{_KEY}.low_calls",
                f"{settings.low_calls} is over high_calls' default ({high}); "
                "set pool.autoscale.high_calls too",
            )
    return dataclasses.replace(
        settings,
        max_size=pool_max_size if settings.max_size is None else settings.max_size,
        high_calls=high,
    )


def start_size(size: int, autoscale: Autoscale | None) -> int:
    """How many connections a pool starts with: ``pool.size``, clamped into the autoscale range.

    An autoscaled pool starts at ``pool.size`` if it is within
    ``[min_size, max_size]``, else at the nearer end, and follows its load
    from there.
    """
    if autoscale is None:
        return size
    low, high = autoscale.bounds
    return min(max(size, low), high)
