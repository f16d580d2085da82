"""Shared fixtures. Every test runs under the leak check below."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pykka
import pytest

# How long a test's threads and actors get to wind down after it returns.
LEAK_GRACE_SECONDS = 5.0


def _describe(threads: list[threading.Thread]) -> str:
    return ", ".join(sorted(thread.name for thread in threads))


@pytest.fixture(autouse=True)
def no_leaks() -> Iterator[None]:
    """Fails the test if it leaves threads alive or pykka actors registered."""
    before = set(threading.enumerate())
    yield
    deadline = time.monotonic() + LEAK_GRACE_SECONDS
    while True:
        threads = [t for t in threading.enumerate() if t not in before and t.is_alive()]
        actors = pykka.ActorRegistry.get_all()
        if not threads and not actors:
            return
        if time.monotonic() >= deadline:
            break
        time.sleep(0.02)
    # Clean up so one leak does not cascade into every later test.
    pykka.ActorRegistry.stop_all(block=True, timeout=5)
    problems = []
    if actors:
        problems.append(f"actors still registered: {actors}")
    if threads:
        problems.append(f"threads still alive: {_describe(threads)}")
    pytest.fail("; ".join(problems), pytrace=False)
