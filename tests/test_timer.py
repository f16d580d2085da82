"""send_after: the process-wide timer that tells an actor a message later."""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Iterator
from typing import Any

import pykka
import pytest

from grpcpool._process import PROCESS
from grpcpool.supervisor import TimerHandle, send_after
from tests.waiting import has_waiters, wait_for

WAIT = 5.0
TIMER_THREAD = "grpcpool-timer"


def timer_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == TIMER_THREAD and t.is_alive()]


class Inbox(pykka.ThreadingActor):
    """Puts every message it gets, with the time it got it, on a queue."""

    def __init__(self, received: queue.Queue[tuple[float, Any]]) -> None:
        super().__init__()
        self.received = received

    def on_receive(self, message: Any) -> None:
        self.received.put((time.monotonic(), message))


@pytest.fixture
def received() -> queue.Queue[tuple[float, Any]]:
    return queue.Queue()


@pytest.fixture
def inbox(received: queue.Queue[tuple[float, Any]]) -> Iterator[pykka.ActorRef[Any]]:
    ref = Inbox.start(received)
    try:
        yield ref
    finally:
        ref.stop(timeout=WAIT)


@pytest.fixture(autouse=True)
def no_pending_timers() -> Iterator[list[TimerHandle]]:
    """Cancels the timers a test registers here, so none outlives it."""
    handles: list[TimerHandle] = []
    yield handles
    for handle in handles:
        handle.cancel()


def test_delivers_after_about_the_delay(
    inbox: pykka.ActorRef[Any], received: queue.Queue[tuple[float, Any]]
) -> None:
    """A message is told to the actor after about the delay, not before."""
    started = time.monotonic()
    handle = send_after(0.2, inbox, "ping")
    at, message = received.get(timeout=WAIT)
    assert message == "ping"
    assert 0.19 <= at - started < 2.0
    assert not handle.cancelled
    assert handle.done  # delivered: an owner may forget it


def test_pending_and_cancelled_handles_report_done_correctly(
    inbox: pykka.ActorRef[Any], no_pending_timers: list[TimerHandle]
) -> None:
    """A pending timer is not done; a cancelled one is."""
    handle = send_after(30, inbox, "later")
    no_pending_timers.append(handle)
    assert not handle.done
    handle.cancel()
    assert handle.done


def test_zero_delay_delivers_promptly(
    inbox: pykka.ActorRef[Any], received: queue.Queue[tuple[float, Any]]
) -> None:
    """A zero delay delivers at once."""
    send_after(0, inbox, "now")
    assert received.get(timeout=WAIT)[1] == "now"


def test_cancel_prevents_delivery(
    inbox: pykka.ActorRef[Any], received: queue.Queue[tuple[float, Any]]
) -> None:
    """A cancelled timer is never delivered."""
    handle = send_after(0.1, inbox, "cancelled")
    handle.cancel()
    assert handle.cancelled
    send_after(0.3, inbox, "sentinel")
    assert received.get(timeout=WAIT)[1] == "sentinel"
    assert received.empty()


def test_cancel_is_idempotent(
    inbox: pykka.ActorRef[Any], received: queue.Queue[tuple[float, Any]]
) -> None:
    """Cancelling twice, or after delivery, raises nothing."""
    handle = send_after(0.1, inbox, "x")
    handle.cancel()
    handle.cancel()
    assert handle.cancelled

    delivered = send_after(0, inbox, "y")
    assert received.get(timeout=WAIT)[1] == "y"
    delivered.cancel()
    delivered.cancel()
    assert received.empty()


def test_timers_fire_in_deadline_order(
    inbox: pykka.ActorRef[Any], received: queue.Queue[tuple[float, Any]]
) -> None:
    """Several timers are delivered in the order of their deadlines, not of scheduling."""
    for delay, message in [(0.3, "c"), (0.1, "a"), (0.4, "d"), (0.2, "b"), (0.0, "first")]:
        send_after(delay, inbox, message)
    got = [received.get(timeout=WAIT)[1] for _ in range(5)]
    assert got == ["first", "a", "b", "c", "d"]


def test_dead_target_is_skipped_without_error(
    inbox: pykka.ActorRef[Any],
    received: queue.Queue[tuple[float, Any]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A timer whose actor has stopped is dropped quietly and the timer keeps working."""
    dead = Inbox.start(received)
    send_after(0.05, dead, "lost")
    dead.stop(timeout=WAIT)
    with caplog.at_level(logging.DEBUG, logger="grpcpool"):
        send_after(0.2, inbox, "after")
        assert received.get(timeout=WAIT)[1] == "after"
    assert received.empty()
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []


def test_timer_thread_exits_when_nothing_is_pending(
    inbox: pykka.ActorRef[Any], received: queue.Queue[tuple[float, Any]]
) -> None:
    """The grpcpool-timer thread exists while timers are pending and exits after."""
    send_after(0.1, inbox, "x")
    assert timer_threads()
    received.get(timeout=WAIT)
    wait_for(lambda: not timer_threads())

    # Cancelling the only pending timer also lets it exit, long before the deadline.
    handle = send_after(30, inbox, "never")
    assert timer_threads()
    handle.cancel()
    wait_for(lambda: not timer_threads(), timeout=2)
    assert received.empty()


@pytest.mark.parametrize("delay", [-0.001, -1, float("nan"), float("inf"), float("-inf")])
def test_invalid_delay_raises(inbox: pykka.ActorRef[Any], delay: float) -> None:
    """A negative or non-finite delay raises ValueError and schedules nothing."""
    with pytest.raises(ValueError):
        send_after(delay, inbox, "x")
    assert not timer_threads()


def test_huge_delay_does_not_break_the_timer(
    inbox: pykka.ActorRef[Any],
    received: queue.Queue[tuple[float, Any]],
    no_pending_timers: list[TimerHandle],
) -> None:
    """A delay beyond threading.TIMEOUT_MAX neither kills the timer thread nor blocks others."""
    far = send_after(threading.TIMEOUT_MAX * 10, inbox, "far")
    no_pending_timers.append(far)
    scheduler = PROCESS.scheduler
    assert scheduler is not None
    # The thread is now waiting for the far deadline (a wait that overflowed
    # would have raised instead and ended the thread).
    wait_for(lambda: has_waiters(scheduler._condition))
    send_after(0.05, inbox, "soon")
    assert received.get(timeout=WAIT)[1] == "soon"
    wait_for(lambda: has_waiters(scheduler._condition))  # and waits for it again
    send_after(0.05, inbox, "again")
    assert received.get(timeout=WAIT)[1] == "again"
    far.cancel()
    wait_for(lambda: not timer_threads())
