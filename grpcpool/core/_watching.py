"""A push resolver's watch, as the balancer follows it (pure).

A resolver with ``watch`` (:class:`grpcpool.resolver.PushResolver`) is not
asked on a schedule: the balancer starts one watch (:class:`StartWatch`) and
hears its sets as they come. A watch that fails is started again after a
backoff (``WATCH_RETRY_MIN`` .. ``WATCH_RETRY_MAX``), numbered, so news from
a watch replaced meanwhile is told from the current one's and dropped.
"""

from __future__ import annotations

from dataclasses import dataclass

from grpcpool._config_timings import WATCH_RETRY_MAX, WATCH_RETRY_MIN
from grpcpool.backoff import Backoff

__all__ = ["StartWatch", "Watching"]


@dataclass(frozen=True)
class StartWatch:
    """Close the pool's watch, if any, and start watch ``number`` (answer with
    ``Pushed`` and ``WatchFailed`` events carrying that number)."""

    number: int


class Watching:
    """Which watch is current and when a failed one is started again.

    Attributes:
        number: The current watch's number (0: none started yet).
        retry_at: When (monotonic) to start the next watch after a failure.
    """

    def __init__(self) -> None:
        self.number = 0
        self.retry_at: float | None = None
        self._backoff = Backoff(WATCH_RETRY_MIN, WATCH_RETRY_MAX)

    def start(self) -> StartWatch:
        """The effect that starts the next watch."""
        self.number += 1
        self.retry_at = None
        return StartWatch(self.number)

    def answered(self) -> None:
        """The current watch gave a set: its next failure backs off from the bottom."""
        self._backoff = self._backoff.succeed()

    def failed(self, now: float) -> float:
        """The current watch failed: seconds until the next one starts."""
        delay, self._backoff = self._backoff.fail()
        self.retry_at = now + delay
        return delay

    def due(self, now: float) -> bool:
        """True (once) when a failed watch's retry time has come."""
        if self.retry_at is None or now < self.retry_at:
            return False
        self.retry_at = None
        return True
