"""Tests for grpcpool.core._waiting: what ``await_ready`` means, for both kinds of pool.

Pure logic: a view, the arguments and whether the pool ended in; a verdict
or an error out. The sync API (tests/test_api.py, tests/test_pool_sizes.py)
and the asyncio pool (tests/test_aio.py) wait on real servers with it.
"""

from __future__ import annotations

from typing import Any

import pytest

from grpcpool._status import WorkerStatus
from grpcpool.core._view import PoolView, build_view, empty_view
from grpcpool.core._waiting import check_wait, wait_failed, wait_met, wait_over
from grpcpool.errors import PoolNotFoundError, PoolSizeError, PoolTimeoutError
from grpcpool.strategy import resolve_strategy
from tests.pools import ready_connections

NAME = "waiting"


def view_with(ready: int, workers: tuple[WorkerStatus, ...] = ()) -> PoolView:
    """A running pool's view with ``ready`` ready channels and these worker records."""
    return build_view(
        NAME,
        resolve_strategy("round_robin"),
        empty_view(NAME, 3, "running"),
        connections=ready_connections(tuple(object() for _ in range(ready))),
        workers=workers,
        expected_size=3,
        lifecycle="running",
    )


@pytest.mark.parametrize("timeout", [None, 0, 0.5, 10, 2**40])
def test_good_arguments_pass(timeout: Any) -> None:
    """None or any finite number >= 0 as the timeout, an int >= 1 as min_ready."""
    check_wait(NAME, timeout, 1)
    check_wait(NAME, timeout, 7)


@pytest.mark.parametrize(
    ("timeout", "message"),
    [
        (-1, "got -1"),
        (float("inf"), "got inf"),
        (float("nan"), "got nan"),
        (10**400, "got 1000"),
        (True, "got True"),
        ("5", "got str"),
        ([5], "got list"),
    ],
)
def test_a_bad_timeout_is_a_value_error_that_shows_numbers_only(timeout: Any, message: str) -> None:
    """A timeout that is not None or a finite number >= 0 is refused; a number is shown,
    anything else by its type only (it may be a secret)."""
    with pytest.raises(ValueError, match="timeout must be None or a finite number >= 0") as caught:
        check_wait(NAME, timeout, 1)
    assert message in str(caught.value)


def test_a_bad_min_ready_is_refused() -> None:
    """min_ready must be an int (not a bool: TypeError, as every count) of at least 1."""
    for bad in ("1", 1.0, True, None):
        with pytest.raises(TypeError, match="min_ready must be an int, got"):
            check_wait(NAME, 5, bad)
    with pytest.raises(PoolSizeError, match="min_ready must be >= 1, got 0"):
        check_wait(NAME, 5, 0)


def test_a_wait_is_met_with_enough_ready_channels_while_the_pool_lives() -> None:
    """Met: at least min_ready channels ready and the pool not ended. Over: met, or ended."""
    two = view_with(2)

    assert [wait_met(two, n, None) for n in (1, 2, 3)] == [True, True, False]
    assert [wait_over(two, n, None) for n in (1, 2, 3)] == [True, True, False]
    assert not wait_met(two, 1, "stopped")
    assert wait_over(view_with(0), 1, "stopped")


def test_an_ended_pool_is_not_found_with_its_reason() -> None:
    """A wait over because the pool ended raises PoolNotFoundError with why it ended."""
    error = wait_failed(NAME, view_with(0), 1, 5.0, "supervisor gave up")

    assert isinstance(error, PoolNotFoundError)
    assert error.reason == "supervisor gave up"


def test_a_timeout_says_how_many_were_ready_and_why_the_others_were_not() -> None:
    """The timeout error counts the ready channels against min_ready, names the timeout,
    sums up what the other workers do and quotes their last error."""
    workers = (
        WorkerStatus("worker-1", "ready", 1.0),
        WorkerStatus("worker-2", "backoff", 2.0, last_error="connection refused"),
        WorkerStatus("worker-3", "connecting", 3.0),
    )

    error = wait_failed(NAME, view_with(1, workers), 3, 0.5, None)

    assert isinstance(error, PoolTimeoutError)
    assert str(error) == (
        "pool 'waiting': 1 of 3 required channels ready after 0.5s "
        "(1 worker backing off, 1 worker connecting; last error: connection refused)"
    )
    assert error.last_error == "connection refused"
    quiet = wait_failed(NAME, view_with(0), 1, 2.0, None)  # no worker to speak of
    assert str(quiet) == "pool 'waiting': 0 of 1 required channels ready after 2.0s"
