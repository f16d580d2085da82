"""Tests for grpcpool._status: PoolStatus.of and the WorkerStatus record."""

from __future__ import annotations

import dataclasses

import pytest

from grpcpool._status import PoolStatus, WorkerStatus


@pytest.mark.parametrize(
    ("expected", "current", "status"),
    [
        (3, 0, "down"),
        (3, 1, "degraded"),
        (3, 2, "degraded"),
        (3, 3, "healthy"),
        (3, 4, "healthy"),  # more ready than expected: a scale-down in progress
        (1, 0, "down"),
        (1, 1, "healthy"),
    ],
)
def test_status_is_down_at_zero_healthy_at_expected_degraded_between(
    expected: int, current: int, status: str
) -> None:
    """PoolStatus.of: none ready is down, all expected ready is healthy, anything between degraded."""
    report = PoolStatus.of("p", expected, current, ())

    assert report.status == status
    assert (report.pool_name, report.expected_size, report.current_size) == ("p", expected, current)


def test_of_keeps_worker_records_in_the_given_order() -> None:
    """PoolStatus.of passes the worker records through unchanged and in order."""
    workers = (
        WorkerStatus("worker-2", "ready", 2.0, peer="127.0.0.1:1"),
        WorkerStatus("worker-1", "backoff", 1.0, reconnect_attempt=3, last_error="refused"),
    )

    report = PoolStatus.of("p", 2, 1, workers)

    assert report.workers is workers
    assert [w.worker_id for w in report.workers] == ["worker-2", "worker-1"]


def test_status_records_are_immutable() -> None:
    """PoolStatus and WorkerStatus are frozen: a caller cannot alter a pool's view."""
    worker = WorkerStatus("worker-1", "ready", 1.0)
    report = PoolStatus.of("p", 1, 1, (worker,))

    with pytest.raises(dataclasses.FrozenInstanceError):
        report.status = "down"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        worker.state = "stopped"  # type: ignore[misc]
    assert worker.reconnect_attempt == 0
    assert worker.last_error is None
    assert worker.peer is None
