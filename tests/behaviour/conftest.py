"""Fixtures of the behaviour suite: ``driver`` (both kinds of pool), ``backends``, ``signals``.

Every scenario takes ``driver``, parametrized ``["sync", "asyncio"]``, so it
runs once per kind of pool. Teardown order, whatever the scenario did or
failed: held calls are released, every pool the driver started is stopped,
the driver's threads (its event loop, its callers) are joined, the
backends are stopped, and the receivers are disconnected. The suite-wide
leak check (``tests/conftest.py``) then finds nothing left.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.behaviour.backends import Backends
from tests.behaviour.harness import DRIVERS, Driver, make_driver
from tests.behaviour.signals import Signals


@pytest.fixture
def signals() -> Iterator[Signals]:
    """Every telemetry event emitted during the scenario (subscribed before any pool starts)."""
    recorder = Signals()
    try:
        yield recorder
    finally:
        recorder.close()


@pytest.fixture
def backends() -> Iterator[Backends]:
    """Echo servers on 127.0.0.2..5 (one port), started by the scenario as it needs them."""
    started = Backends()
    try:
        yield started
    finally:
        started.stop()


@pytest.fixture(params=DRIVERS)
def driver(
    request: pytest.FixtureRequest, backends: Backends, signals: Signals
) -> Iterator[Driver]:
    """One kind of pool behind the harness's synchronous API; everything stopped afterwards."""
    made = make_driver(request.param)
    try:
        yield made
    finally:
        try:
            backends.release_held()
        finally:
            made.close()
