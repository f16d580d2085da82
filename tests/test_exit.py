"""watch_exit and SupervisedActor: noticing that an actor ended, and why."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pykka
import pytest

from grpcpool.supervisor import ExitReason, SupervisedActor, watch_exit
from tests.waiting import wait_for

WAIT = 5.0

Call = tuple[ExitReason, threading.Thread]


def recorder(calls: list[Call]) -> Callable[[ExitReason], None]:
    """A callback recording each reason with the thread it ran on."""

    def callback(reason: ExitReason) -> None:
        calls.append((reason, threading.current_thread()))

    return callback


class Supervised(SupervisedActor):
    """Notes its thread; crashes on "crash", stops itself on "stop"."""

    def __init__(self) -> None:
        super().__init__()
        self.thread: threading.Thread | None = None

    def on_start(self) -> None:
        self.thread = threading.current_thread()

    def on_receive(self, message: Any) -> Any:
        if message == "crash":
            raise RuntimeError("boom")
        if message == "stop":
            self.stop()
        return None


class Plain(pykka.ThreadingActor):
    def on_receive(self, message: Any) -> Any:
        if message == "crash":
            raise RuntimeError("boom")
        return None


class GatedStartFailure(SupervisedActor):
    """Raises from on_start once the test opens the gate (so the watch is in place first)."""

    def __init__(self, gate: threading.Event) -> None:
        super().__init__()
        self.gate = gate

    def on_start(self) -> None:
        self.gate.wait(WAIT)
        raise ValueError("bad start")


class OverridingStartFailure(GatedStartFailure):
    """Overrides on_start without calling super()."""

    def on_start(self) -> None:
        self.gate.wait(WAIT)
        raise KeyError("bad start in subclass")


def test_normal_stop_reports_normal_once() -> None:
    """A SupervisedActor stopped from outside reports ExitReason(normal) once, on its own thread."""
    calls: list[Call] = []
    ref = Supervised.start()
    actor_thread = ref.proxy().thread.get(timeout=WAIT)
    watch = watch_exit(ref, recorder(calls))
    assert calls == []
    ref.stop(timeout=WAIT)
    wait_for(lambda: len(calls) == 1)
    reason, thread = calls[0]
    assert reason == ExitReason(known=True, error=None)
    assert reason.normal
    assert reason.describe() == "normal"
    assert thread is actor_thread
    assert watch.thread is actor_thread
    # The callback runs only on the actor's thread: once that thread has
    # finished, no second call can come.
    assert watch.join(WAIT)
    assert len(calls) == 1


def test_self_stop_reports_normal() -> None:
    """A SupervisedActor that calls self.stop() reports a normal end."""
    calls: list[Call] = []
    ref = Supervised.start()
    watch_exit(ref, recorder(calls))
    ref.tell("stop")
    wait_for(lambda: len(calls) == 1)
    assert calls[0][0].normal


def test_crash_in_told_message_reports_the_error() -> None:
    """A crash in a told message reports that exception."""
    calls: list[Call] = []
    ref = Supervised.start()
    watch = watch_exit(ref, recorder(calls))
    ref.tell("crash")
    wait_for(lambda: len(calls) == 1)
    reason = calls[0][0]
    assert reason.known
    assert not reason.normal
    assert isinstance(reason.error, RuntimeError)
    assert str(reason.error) == "boom"
    assert reason.describe() == "RuntimeError: boom"
    assert watch.join(WAIT)  # the actor's thread is done: no second call can come
    assert len(calls) == 1


def test_crash_in_asked_message_does_not_end_the_actor() -> None:
    """An exception returned to an asker does not end the actor, so nothing is reported."""
    calls: list[Call] = []
    ref = Supervised.start()
    watch_exit(ref, recorder(calls))
    with pytest.raises(RuntimeError):
        ref.ask("crash", timeout=WAIT)
    assert ref.is_alive()
    assert calls == []
    ref.stop(timeout=WAIT)
    wait_for(lambda: len(calls) == 1)
    assert calls[0][0].normal


@pytest.mark.parametrize(
    ("actor_class", "error_type"),
    [(GatedStartFailure, ValueError), (OverridingStartFailure, KeyError)],
)
def test_on_start_crash_reports_the_error(
    actor_class: type[GatedStartFailure], error_type: type[BaseException]
) -> None:
    """An exception from on_start (also one a subclass raises) is the reported reason."""
    calls: list[Call] = []
    gate = threading.Event()
    ref = actor_class.start(gate)
    watch = watch_exit(ref, recorder(calls))
    gate.set()
    wait_for(lambda: len(calls) == 1)
    reason, thread = calls[0]
    assert reason.known
    assert isinstance(reason.error, error_type)
    assert not reason.normal
    assert thread is not threading.current_thread()
    assert watch.join(WAIT)
    assert not ref.is_alive()


def test_failure_in_on_stop_keeps_the_normal_reason() -> None:
    """An exception in on_stop after a normal stop neither changes the reason nor fires again."""

    class FailingStop(SupervisedActor):
        def on_stop(self) -> None:
            raise RuntimeError("on_stop failed")

    calls: list[Call] = []
    ref = FailingStop.start()
    watch = watch_exit(ref, recorder(calls))
    ref.stop(timeout=WAIT)
    assert watch.join(WAIT)
    assert len(calls) == 1
    assert calls[0][0] == ExitReason(known=True, error=None)


@pytest.mark.parametrize("how", ["stop", "crash"])
def test_plain_actor_reason_is_unknown(how: str) -> None:
    """For a plain pykka actor the reason is unknown (known=False), however it ended."""
    calls: list[Call] = []
    ref = Plain.start()
    watch_exit(ref, recorder(calls))
    if how == "stop":
        ref.stop(timeout=WAIT)
    else:
        ref.tell("crash")
    wait_for(lambda: len(calls) == 1)
    reason = calls[0][0]
    assert reason == ExitReason(known=False)
    assert not reason.normal
    assert reason.describe() == "stopped without being asked"


def test_watching_a_dead_actor_fires_at_once() -> None:
    """watch_exit on an actor that already ended calls back at once, on the caller's thread."""
    calls: list[Call] = []
    ref = Supervised.start()
    ref.tell("crash")
    wait_for(lambda: not ref.is_alive())
    watch = watch_exit(ref, recorder(calls))
    assert len(calls) == 1
    reason, thread = calls[0]
    assert isinstance(reason.error, RuntimeError)
    assert thread is threading.current_thread()
    assert watch.thread is None
    assert watch.join(0)


def test_several_watches_each_fire_once() -> None:
    """Two watches on one actor both fire, once each."""
    first: list[Call] = []
    second: list[Call] = []
    ref = Supervised.start()
    watches = [watch_exit(ref, recorder(first)), watch_exit(ref, recorder(second))]
    ref.stop(timeout=WAIT)
    wait_for(lambda: len(first) == 1 and len(second) == 1)
    # Both callbacks run only on the actor's thread: once it has finished,
    # neither can be called again.
    assert all(watch.join(WAIT) for watch in watches)
    assert len(first) == len(second) == 1


def test_join_waits_for_the_actor_thread() -> None:
    """ExitWatch.join waits for the ended actor's thread and says whether it finished."""

    release = threading.Event()

    class SlowStop(SupervisedActor):
        def on_stop(self) -> None:
            release.wait(WAIT)  # slow until the test has seen the thread still busy

    calls: list[Call] = []
    ref = SlowStop.start()
    watch = watch_exit(ref, recorder(calls))
    ref.stop(block=False)
    try:
        # The callback runs as the stop begins, before the slow on_stop.
        wait_for(lambda: len(calls) == 1)
        thread = watch.thread
        assert thread is not None and thread is calls[0][1]
        assert watch.join(0.05) is False
        assert thread.is_alive()
    finally:
        release.set()
    assert watch.join(WAIT) is True
    assert not thread.is_alive()


def test_join_from_the_actor_thread_returns_at_once() -> None:
    """ExitWatch.join called on the actor's own thread does not wait for itself."""
    results: list[bool] = []
    ref = Supervised.start()
    holder: list[Any] = []

    def callback(reason: ExitReason) -> None:
        results.append(holder[0].join(WAIT))

    holder.append(watch_exit(ref, callback))
    started = time.monotonic()
    ref.stop(timeout=WAIT)
    wait_for(lambda: len(results) == 1)
    assert results == [True]
    assert time.monotonic() - started < WAIT / 2
