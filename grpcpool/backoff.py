"""Exponential reconnect backoff with jitter, as an immutable value.

A worker keeps one :class:`Backoff` and replaces it after each outcome::

    delay, backoff = backoff.fail()     # wait `delay` seconds, then retry
    backoff = backoff.succeed()         # connected: start from the bottom

The delay for the n-th consecutive failure (n from 0) is drawn uniformly from
``[ceiling / 2, ceiling]`` with ``ceiling = min(maximum, minimum * 2 ** (n + 1))``
and then clamped to ``[minimum, maximum]`` ("equal jitter"). The ranges of two
successive attempts do not overlap until the ceiling reaches ``maximum``, so
delays never shrink while they are still growing; and because every delay is
random from the very first retry, workers that lost their connections together
do not hammer the server together when it comes back.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field, replace

__all__ = ["Backoff"]

# 2 ** 64 times any sane minimum is far past any maximum; capping the exponent
# keeps the float arithmetic finite after very many failures.
_MAX_EXPONENT = 64


@dataclass(frozen=True)
class Backoff:
    """Where a worker stands in its reconnect backoff.

    Attributes:
        minimum: Smallest delay in seconds (``connection.backoff_min``).
        maximum: Largest delay in seconds (``connection.backoff_max``).
        attempt: Consecutive failures so far.
        rng: Random source; inject a seeded one for reproducible tests.
    """

    minimum: float = 1.0
    maximum: float = 30.0
    attempt: int = 0
    rng: random.Random = field(default_factory=random.Random, compare=False, repr=False)

    def __post_init__(self) -> None:
        if not self.minimum > 0:
            raise ValueError(f"backoff minimum must be > 0, got {self.minimum!r}")
        if not self.maximum >= self.minimum:
            raise ValueError(
                f"backoff maximum ({self.maximum!r}) must be >= minimum ({self.minimum!r})"
            )
        if self.attempt < 0:
            raise ValueError(f"backoff attempt must be >= 0, got {self.attempt!r}")

    def ceiling(self) -> float:
        """The largest delay the current attempt may draw."""
        exponent = min(self.attempt + 1, _MAX_EXPONENT)
        return min(self.maximum, self.minimum * 2.0**exponent)

    def fail(self) -> tuple[float, Backoff]:
        """Records a failure.

        Returns:
            The delay in seconds before the next try, and the backoff to keep.
        """
        ceiling = self.ceiling()
        half = ceiling / 2.0
        delay = half + self.rng.uniform(0.0, half)
        delay = min(self.maximum, max(self.minimum, delay))
        return delay, replace(self, attempt=self.attempt + 1)

    def succeed(self) -> Backoff:
        """Records a success: the next failure starts from the bottom again."""
        return replace(self, attempt=0)
