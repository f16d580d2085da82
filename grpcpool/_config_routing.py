"""The routing sections of ``pool``: latency decay, outlier detection, panic, hedging.

Each is an immutable value built from the mapping the user gives (or passed
as the value itself), with gRFC A50's and A6's names and defaults, and checked
when built: a bad field is a :class:`~grpcpool.errors.ConfigError` naming its
dotted key (``pool.outlier_detection.failure_percentage.threshold``).

:class:`~grpcpool.config.PoolConfig` holds them; :func:`normalize_outlier_detection`
and :func:`normalize_hedging` turn what the user gave into them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any, Literal

from grpcpool._config_checks import check_float, check_int, check_keys, kind
from grpcpool.errors import ConfigError, shorten

__all__ = [
    "DEFAULT_EWMA_DECAY",
    "DEFAULT_PANIC_THRESHOLD",
    "FailurePercentageEjection",
    "Hedging",
    "OutlierDetection",
    "SuccessRateEjection",
    "check_ewma_decay",
    "check_panic_threshold",
    "normalize_hedging",
    "normalize_outlier_detection",
]

#: ``pool.ewma_decay``: seconds over which a latency estimate forgets (Finagle, linkerd: 10 s).
DEFAULT_EWMA_DECAY = 10.0
#: Longest ``pool.ewma_decay`` taken: more is a typo (milliseconds as seconds).
MAX_EWMA_DECAY = 3600.0
#: ``pool.panic_threshold``: below this percentage of usable connections, route to all (Envoy).
DEFAULT_PANIC_THRESHOLD = 50.0

# gRFC A50's defaults.
DEFAULT_OUTLIER_INTERVAL = 10.0
DEFAULT_BASE_EJECTION_TIME = 30.0
DEFAULT_MAX_EJECTION_TIME = 300.0
DEFAULT_MAX_EJECTION_PERCENT = 10
MAX_OUTLIER_TIME = 86400.0

#: ``pool.hedging.delay``: the method's 95th percentile latency, learnt.
HEDGING_DELAY_P95: Literal["p95"] = "p95"
DEFAULT_HEDGING_DELAY: float | Literal["p95"] = HEDGING_DELAY_P95
DEFAULT_HEDGING_MAX_ATTEMPTS = 2
#: gRFC A6 caps attempts at 5, whatever the policy says.
MAX_HEDGING_ATTEMPTS = 5
DEFAULT_HEDGING_BUDGET = 0.1
MAX_HEDGING_DELAY = 60.0
#: The sliding window over which hedged attempts stay under ``budget`` x calls:
#: seconds, and the number of slots it is counted in (it slides by one slot).
HEDGING_BUDGET_WINDOW = 10.0
HEDGING_BUDGET_SLOTS = 10
#: ``delay: "p95"``: the quantile of a method's latency a hedge waits for, and
#: how many answers of the method the pool learns from before it hedges it at
#: all (until then its calls are sent once, as without hedging).
HEDGING_QUANTILE = 0.95
HEDGING_MIN_SAMPLES = 20
#: The latency estimate forgets: every this many samples, past ones count half.
HEDGING_HALVE_EVERY = 1000

# A full method name, as grpc sends it: /package.Service/Method.
_METHOD = re.compile(r"/[^/\s]+/[^/\s]+")


@dataclass(frozen=True)
class SuccessRateEjection:
    """Eject a unit whose success rate is far below the others' (gRFC A50 ``success_rate_ejection``).

    A unit with at least ``request_volume`` calls in an interval is ejected
    when its success rate is below ``mean - stdev * stdev_factor / 1000`` of
    the units that had that volume, with ``enforcement_percentage`` chance, if
    at least ``minimum_hosts`` units had it.
    """

    stdev_factor: int = 1900
    enforcement_percentage: int = 100
    minimum_hosts: int = 5
    request_volume: int = 100

    def __post_init__(self) -> None:
        key = "pool.outlier_detection.success_rate"
        check_int(f"{key}.stdev_factor", self.stdev_factor, minimum=0)
        check_int(
            f"{key}.enforcement_percentage", self.enforcement_percentage, minimum=0, maximum=100
        )
        check_int(f"{key}.minimum_hosts", self.minimum_hosts, minimum=1)
        check_int(f"{key}.request_volume", self.request_volume, minimum=1)


@dataclass(frozen=True)
class FailurePercentageEjection:
    """Eject a unit failing more than ``threshold`` percent of its calls (gRFC A50).

    Counted over units with at least ``request_volume`` calls in an interval,
    if at least ``minimum_hosts`` units had them; with ``enforcement_percentage``
    chance.
    """

    threshold: int = 85
    enforcement_percentage: int = 100
    minimum_hosts: int = 5
    request_volume: int = 50

    def __post_init__(self) -> None:
        key = "pool.outlier_detection.failure_percentage"
        check_int(f"{key}.threshold", self.threshold, minimum=0, maximum=100)
        check_int(
            f"{key}.enforcement_percentage", self.enforcement_percentage, minimum=0, maximum=100
        )
        check_int(f"{key}.minimum_hosts", self.minimum_hosts, minimum=1)
        check_int(f"{key}.request_volume", self.request_volume, minimum=1)


@dataclass(frozen=True)
class OutlierDetection:
    """``pool.outlier_detection``: take failing backends out of rotation (gRFC A50).

    Every ``interval`` seconds the calls of each unit (a backend address, or
    a connection when the pool has one address) are judged; an ejected unit
    stays out for ``base_ejection_time`` times the number of times it was
    ejected, at most ``max_ejection_time``; at most ``max_ejection_percent``
    of the units are out at once (at least one may be). ``success_rate`` and
    ``failure_percentage`` are the two ways of judging; either may be None
    (off).
    """

    interval: float = DEFAULT_OUTLIER_INTERVAL
    base_ejection_time: float = DEFAULT_BASE_EJECTION_TIME
    max_ejection_time: float = DEFAULT_MAX_EJECTION_TIME
    max_ejection_percent: int = DEFAULT_MAX_EJECTION_PERCENT
    success_rate: SuccessRateEjection | None = SuccessRateEjection()
    failure_percentage: FailurePercentageEjection | None = FailurePercentageEjection()

    def __post_init__(self) -> None:
        key = "pool.outlier_detection"
        for name in ("interval", "base_ejection_time", "max_ejection_time"):
            check_float(f"{key}.{name}", getattr(self, name), strict=True, maximum=MAX_OUTLIER_TIME)
        if self.max_ejection_time < self.base_ejection_time:
            raise ConfigError(
                f"{key}.max_ejection_time",
                f"must be >= base_ejection_time ({self.base_ejection_time:g}), "
                f"got {self.max_ejection_time:g}",
            )
        check_int(
            f"{key}.max_ejection_percent", self.max_ejection_percent, minimum=0, maximum=100
        )
        object.__setattr__(
            self,
            "success_rate",
            _section(f"{key}.success_rate", self.success_rate, SuccessRateEjection),
        )
        object.__setattr__(
            self,
            "failure_percentage",
            _section(
                f"{key}.failure_percentage", self.failure_percentage, FailurePercentageEjection
            ),
        )


@dataclass(frozen=True)
class Hedging:
    """``pool.hedging``: send a slow unary call again elsewhere (gRFC A6 hedging).

    For the unary-unary ``methods`` (full names, ``/pkg.Service/Method``)
    called through the pool channel: with no answer after ``delay`` seconds
    (or ``"p95"``: the method's 95th percentile latency in this pool, learnt)
    the same request goes to another connection, up to ``max_attempts`` in
    all; the first OK answer wins. Hedged attempts stay under ``budget``
    times the calls over a sliding window.
    """

    methods: tuple[str, ...] = ()
    delay: float | Literal["p95"] = DEFAULT_HEDGING_DELAY
    max_attempts: int = DEFAULT_HEDGING_MAX_ATTEMPTS
    budget: float = DEFAULT_HEDGING_BUDGET

    def __post_init__(self) -> None:
        key = "pool.hedging"
        methods: Any = self.methods  # as given, until checked
        if isinstance(methods, str | bytes) or not _iterable(methods):
            raise ConfigError(
                f"{key}.methods",
                f"must be a list of full method names ('/pkg.Service/Method'), got {kind(methods)}",
            )
        names = tuple(methods)
        for name in names:
            if not isinstance(name, str) or not _METHOD.fullmatch(name):
                shown = shorten(name, 80) if isinstance(name, str) else kind(name)
                raise ConfigError(
                    f"{key}.methods",
                    f"{shown!r} is not a full method name (write '/pkg.Service/Method')",
                )
        if not names:
            raise ConfigError(f"{key}.methods", "must name at least one method")
        object.__setattr__(self, "methods", tuple(dict.fromkeys(names)))
        delay: Any = self.delay  # as given, until checked
        if delay != HEDGING_DELAY_P95:
            if isinstance(delay, str):
                raise ConfigError(
                    f"{key}.delay", f"must be seconds or 'p95', got {shorten(delay, 40)!r}"
                )
            check_float(f"{key}.delay", delay, maximum=MAX_HEDGING_DELAY)
        check_int(
            f"{key}.max_attempts", self.max_attempts, minimum=2, maximum=MAX_HEDGING_ATTEMPTS
        )
        check_float(f"{key}.budget", self.budget, strict=True, maximum=1.0)


def _iterable(value: Any) -> bool:
    try:
        iter(value)
    except TypeError:
        return False
    return not isinstance(value, Mapping)


def _section(key: str, value: Any, cls: type[Any]) -> Any:
    """``value`` as an instance of ``cls``: None stays None, a mapping builds one."""
    if value is None or isinstance(value, cls):
        return value
    if not isinstance(value, Mapping):
        raise ConfigError(key, f"must be None, a mapping or a {cls.__name__}, got {kind(value)}")
    check_keys(key, value, frozenset(f.name for f in fields(cls)))
    return cls(**value)


def normalize_outlier_detection(value: Any) -> OutlierDetection | None:
    """``pool.outlier_detection`` as given: None (off), a mapping or an :class:`OutlierDetection`.

    In a mapping, ``success_rate`` and ``failure_percentage`` left out take
    their defaults; given as None they are off.
    """
    return _section("pool.outlier_detection", value, OutlierDetection)  # type: ignore[no-any-return]


def normalize_hedging(value: Any) -> Hedging | None:
    """``pool.hedging`` as given: None (off), a mapping or a :class:`Hedging`."""
    return _section("pool.hedging", value, Hedging)  # type: ignore[no-any-return]


def check_panic_threshold(value: Any) -> None:
    """``pool.panic_threshold``: a percentage, 0 to 100.

    At 0 a pool panics only when every ready connection is ejected.
    """
    check_float("pool.panic_threshold", value)
    if value > 100:
        raise ConfigError("pool.panic_threshold", f"is a percentage (0-100), got {value:g}")


def check_ewma_decay(value: Any) -> None:
    """``pool.ewma_decay``: seconds, > 0."""
    check_float("pool.ewma_decay", value, strict=True, maximum=MAX_EWMA_DECAY)
