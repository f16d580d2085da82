"""Telemetry capture for the behaviour suite: every signal, and waiting on them.

:class:`Signals` subscribes to every signal of :data:`grpcpool.telemetry.EVENTS`
with ``connect`` and unsubscribes with ``disconnect`` in :meth:`Signals.close`.
Receivers run on whichever thread emits (an actor's, the asyncio loop's, the
caller's), so the record is kept under a condition that also wakes waiters.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from grpcpool import telemetry
from tests.events import EventLog

#: One recorded event: (sender, measurements, metadata).
Event = tuple[str, dict[str, Any], dict[str, Any]]


class Signals(EventLog):
    """Records every telemetry event (:class:`tests.events.EventLog`); :meth:`wait` blocks
    until enough have come."""

    def of(self, short_name: str, sender: str | None = None) -> list[Event]:
        """Events named ``grpc_connection_pool.<short_name>`` so far (from ``sender`` only)."""
        with self._lock:
            events = list(self.events[f"{telemetry.PREFIX}.{short_name}"])
        return [event for event in events if sender is None or event[0] == sender]

    def metadata(self, short_name: str, sender: str | None = None) -> list[dict[str, Any]]:
        """The metadata of each such event."""
        return [metadata for _, _, metadata in self.of(short_name, sender)]

    def measurements(self, short_name: str, sender: str | None = None) -> list[dict[str, Any]]:
        """The measurements of each such event."""
        return [measurements for _, measurements, _ in self.of(short_name, sender)]

    def wait(
        self,
        short_name: str,
        predicate: Callable[[list[Event]], bool] | None = None,
        *,
        sender: str | None = None,
        timeout: float = 5.0,
    ) -> list[Event]:
        """Waits until ``predicate(events)`` holds (default: at least one event); returns them.

        Woken by each event; fails the scenario after ``timeout`` seconds.
        """
        check = predicate or bool
        deadline = time.monotonic() + timeout
        with self._lock:
            while True:
                events = self.of(short_name, sender)
                if check(events):
                    return events
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(
                        f"{short_name}: not seen as expected within {timeout}s; got {events}"
                    )
                self._lock.wait(left)
