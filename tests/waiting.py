"""Waiting in tests for something to become true, with a timeout.

Prefer an event the code under test already gives (a ``threading.Event`` a
receiver sets, a pykka future, ``await_ready``, a thread join, a telemetry
event in an :class:`~tests.events.EventLog`); poll with :func:`wait_for` or
:func:`wait_until` only on a real predicate, never instead of one.
"""

from __future__ import annotations

import threading
import time
from typing import Any


def wait_for(predicate: Any, timeout: float = 5.0, interval: float = 0.01) -> None:
    """Polls ``predicate`` until it is true; fails the test after ``timeout`` seconds."""
    if not wait_until(predicate, timeout, interval):
        raise AssertionError(f"condition not met within {timeout}s")


def wait_until(predicate: Any, timeout: float = 5.0, interval: float = 0.01) -> bool:
    """Polls ``predicate`` until it is true or ``timeout`` passes; returns its last value."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return bool(predicate())
        time.sleep(interval)


def has_waiters(condition: threading.Condition) -> bool:
    """True while some thread is blocked in ``condition.wait()``.

    ``threading.Condition`` keeps one lock per sleeping thread in its private
    ``_waiters``; a thread is in it only between entering ``wait`` and being
    woken, so this tells a test that another thread is parked on the
    condition, not merely about to reach it.
    """
    return bool(condition._waiters)  # type: ignore[attr-defined]
