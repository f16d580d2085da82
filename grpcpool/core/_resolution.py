"""A pool's resolver answers: what each result means, and when to ask again (pure).

Both drivers keep their addresses in :class:`Answers`, so a result is judged
and reported the same way; running the resolver is theirs
(:mod:`grpcpool._resolving`).
"""

from __future__ import annotations

import logging
import random
from collections.abc import Sequence

from grpcpool import telemetry
from grpcpool.backoff import Backoff
from grpcpool.connection._machine_types import Emit, Log
from grpcpool.core._spread import targets

__all__ = [
    "FAILURE_RESOLVE_GAP",
    "RESOLVE_RETRY_MAX",
    "START_RESOLVE_WAIT",
    "Answers",
    "initial_addresses",
    "timed_out",
]

# How long a pool's start waits for its first resolution before starting its
# workers unpinned (on host:port); the Balancer moves them once it hears.
START_RESOLVE_WAIT = 1.0
# The longest wait between two resolutions of a pool that has no answer yet.
RESOLVE_RETRY_MAX = 30.0
# At most one resolution per this many seconds because connections fail.
FAILURE_RESOLVE_GAP = 1.0


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


def timed_out(limit: float) -> str:
    """The error of a resolution abandoned after ``endpoint.resolve_timeout`` (``limit``)."""
    return f"no answer within endpoint.resolve_timeout ({limit:g}s); abandoned"


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
        revision: The registry revision of the last pushed set, if it said one.
    """

    def __init__(self, target: str, interval: float | None = None) -> None:
        self._target = target
        self.addresses: tuple[str, ...] = ()
        self.problem: str | None = None
        self.revision: int | None = None
        self._empty_kept = False  # a pushed empty set was refused (warned once)
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

    def take_pushed(
        self,
        addresses: tuple[str, ...] | None,
        error: str | None,
        revision: int | None,
        *,
        allow_empty: bool,
    ) -> tuple[bool, tuple[Emit | Log, ...]]:
        """Judges a set a push resolver's watch gave (see :meth:`take`).

        An empty set does not empty the pool unless ``allow_empty``: the last
        non-empty set is kept, with one WARNING per streak of empty sets (a
        registry emptied by mistake must not take every backend away). A set
        equal to the one held changes nothing and is not announced.
        """
        if addresses is None:
            return self.take(None, error, 0.0)
        if revision is not None:
            self.revision = revision
        if not addresses and not allow_empty:
            if self._empty_kept:
                return False, ()
            self._empty_kept = True
            why = (
                f"the resolver of {self._target} pushed an empty set; keeping the last "
                f"{len(self.addresses)} addresses (a resolver with allow_empty=True is followed)"
            )
            return False, (Log(logging.WARNING, why),)
        self._empty_kept = False
        if addresses == self.addresses and self.problem is None:
            return False, ()
        return self.take(addresses, None, 0.0, revision)

    def take(
        self,
        addresses: tuple[str, ...] | None,
        error: str | None,
        took: float,
        revision: int | None = None,
    ) -> tuple[bool, tuple[Emit | Log, ...]]:
        """Judges one resolution.

        Returns:
            Whether it gave a new good answer, and what the driver announces
            (a log line for the first failure of a streak and for the
            recovery; ``pool.resolved`` for a good answer).
        """
        if addresses is None:
            effects: tuple[Emit | Log, ...] = ()
            if self.problem is None:
                if self.addresses:
                    why = (
                        f"resolving {self._target} failed ({error}); keeping the last good "
                        f"answer ({len(self.addresses)} addresses)"
                    )
                else:
                    why = (
                        f"resolving {self._target} failed ({error}); no address to connect "
                        f"to yet, asking the resolver again with backoff"
                    )
                effects = (Log(logging.WARNING, why),)
            self.problem = error or "failed"
            return False, effects
        recovered = self.problem is not None
        self.problem = None
        self._backoff = self._backoff.succeed()
        before, self.addresses = self.addresses, addresses
        details: dict[str, object] = {
            "added": sorted(set(addresses) - set(before)),
            "removed": sorted(set(before) - set(addresses)),
        }
        if revision is not None:
            details["revision"] = revision
        resolved = Emit(
            telemetry.pool_resolved.name, {"addresses": len(addresses), "duration": took}, details
        )
        if recovered:
            return True, (Log(logging.INFO, "resolving works again"), resolved)
        return True, (resolved,)
