"""Running a pool's resolver: bounded, off the actors' threads, answers checked.

A resolver is user code or a system call that may block for seconds (a DNS
timeout), so it never runs on an actor's thread: the Balancer runs it on a
short-lived thread and hears the answer as a message, and a starting pool
waits for it at most :data:`START_RESOLVE_WAIT`.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Sequence

from grpcpool import telemetry
from grpcpool.backoff import Backoff
from grpcpool.config import Config
from grpcpool.errors import shorten
from grpcpool.pools._spread import targets
from grpcpool.resolver import normalize, system_resolver

__all__ = [
    "START_RESOLVE_WAIT",
    "Answers",
    "initial_addresses",
    "resolve",
    "resolve_within",
    "timed_out",
]

_log = logging.getLogger(__name__)

# How long a pool's start waits for its first resolution before starting its
# workers unpinned (on host:port); the Balancer moves them once it hears.
START_RESOLVE_WAIT = 1.0
# The longest wait between two resolutions of a pool that has no answer yet.
RESOLVE_RETRY_MAX = 30.0
# At most one resolution per this many seconds because connections fail.
FAILURE_RESOLVE_GAP = 1.0


def _resolver_of(config: Config) -> Callable[[str, int], Sequence[str]]:
    return config.endpoint.resolver or system_resolver


def resolve(config: Config) -> tuple[tuple[str, ...] | None, str | None, float]:
    """Runs the pool's resolver: (addresses, None, seconds) or (None, why not, seconds)."""
    endpoint = config.endpoint
    resolver = _resolver_of(config)
    started = time.monotonic()
    try:
        answer = normalize(resolver(endpoint.host, endpoint.port), _name_of(resolver))
    except Exception as error:  # a user resolver may raise anything
        return None, f"{type(error).__name__}: {shorten(str(error))}", time.monotonic() - started
    return answer, None, time.monotonic() - started


def timed_out(config: Config) -> str:
    """The error of a resolution abandoned after ``endpoint.resolve_timeout``."""
    limit = config.endpoint.resolve_timeout
    return f"no answer within endpoint.resolve_timeout ({limit:g}s); abandoned"


def _name_of(resolver: object) -> str:
    return getattr(resolver, "__qualname__", None) or type(resolver).__name__


def resolve_within(config: Config, timeout: float) -> tuple[tuple[str, ...] | None, float]:
    """The pool's addresses if its resolver answers within ``timeout`` seconds (else None),
    and how long the resolver took (or ``timeout``).

    The resolver runs on a daemon thread, so a slow one delays a pool's start
    by ``timeout`` at most and is then left to finish on its own.
    """
    result: list[tuple[tuple[str, ...] | None, float]] = []
    done = threading.Event()

    def run() -> None:
        addresses, _, duration = resolve(config)
        result.append((addresses, duration))
        done.set()

    threading.Thread(target=run, name="grpcpool-resolve", daemon=True).start()
    return result[0] if done.wait(timeout) else (None, timeout)


def initial_addresses(addresses: Sequence[str] | None, size: int) -> list[str | None]:
    """Where a starting pool's ``size`` workers connect: spread evenly, interleaved."""
    if not addresses:
        return [None] * size
    counts = targets(addresses, size, {}, random.Random())
    order: list[str | None] = []
    while len(order) < size:
        for address in addresses:
            if counts.get(address, 0) > 0:
                counts[address] -= 1
                order.append(address)
    return order


class Answers:
    """A pool's last good resolver answer, and what each new result means.

    Both pool drivers keep their addresses here, so a result is judged and
    reported the same way: a good answer replaces the last one and fires
    ``pool.resolved`` (what was added and removed); a failure keeps the last
    good answer and logs one WARNING per streak of failures.

    A pool with no good answer yet asks again after a backoff
    (:meth:`retry_delay`); one with an answer asks every
    ``endpoint.resolve_interval``.

    Attributes:
        addresses: The last good answer (empty before the first).
        problem: Why the last resolution failed, or None if it worked (shown
            as ``PoolStatus.resolver_error``).
    """

    def __init__(self, pool_name: str, target: str, interval: float | None = None) -> None:
        self._pool_name = pool_name
        self._target = target
        self.addresses: tuple[str, ...] = ()
        self.problem: str | None = None
        top = RESOLVE_RETRY_MAX if interval is None else max(1.0, min(interval, RESOLVE_RETRY_MAX))
        self._backoff = Backoff(1.0, top)
        self._interval = interval
        self._last_failure_resolve = -FAILURE_RESOLVE_GAP

    def failure_resolve_due(self, now: float) -> bool:
        """A connection cannot reconnect: True if the pool should resolve now (once a second).

        Args:
            now: ``time.monotonic()``.
        """
        if now - self._last_failure_resolve < FAILURE_RESOLVE_GAP:
            return False
        self._last_failure_resolve = now
        return True

    def retry_delay(self) -> float | None:
        """Seconds until the pool should ask again, after the resolution just judged."""
        if self.problem is not None and not self.addresses:
            delay, self._backoff = self._backoff.fail()
            return delay
        return self._interval

    def take(self, addresses: tuple[str, ...] | None, error: str | None, took: float) -> bool:
        """Judges one resolution; returns True if it gave a new good answer."""
        name = self._pool_name
        if addresses is None:
            if self.problem is None:
                if self.addresses:
                    _log.warning(
                        "pool %r: resolving %s failed (%s); keeping the last good answer "
                        "(%d addresses)",
                        name,
                        self._target,
                        error,
                        len(self.addresses),
                    )
                else:
                    _log.warning(
                        "pool %r: resolving %s failed (%s); no address to connect to yet, "
                        "asking the resolver again with backoff",
                        name,
                        self._target,
                        error,
                    )
            self.problem = error or "failed"
            return False
        if self.problem is not None:
            _log.info("pool %r: resolving works again", name)
        self.problem = None
        self._backoff = self._backoff.succeed()
        before, self.addresses = self.addresses, addresses
        telemetry.emit(
            telemetry.pool_resolved,
            name,
            {"addresses": len(addresses), "duration": took},
            {
                "pool_name": name,
                "added": sorted(set(addresses) - set(before)),
                "removed": sorted(set(before) - set(addresses)),
            },
        )
        return True
