"""The one-for-one Supervisor, driven with real pykka actors (no mocks of pykka)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import blinker
import pykka
import pytest

from grpcpool import telemetry
from grpcpool.supervisor import (
    ChildSpec,
    ChildStartError,
    ExitReason,
    RestartIntensityError,
    SupervisedActor,
    Supervisor,
    watch_exit,
)
from grpcpool.supervisor._children import ChildExited as _ChildExited
from tests.waiting import wait_for

WAIT = 5.0

Event = tuple[Any, dict[str, Any], dict[str, Any]]


# --- helpers ------------------------------------------------------------------


@contextmanager
def receiving(signal: blinker.NamedSignal) -> Iterator[list[Event]]:
    """Collects ``(sender, measurements, metadata)`` for each send of ``signal``."""
    events: list[Event] = []

    def receiver(sender: Any, *, measurements: dict[str, Any], metadata: dict[str, Any]) -> None:
        events.append((sender, measurements, metadata))

    signal.connect(receiver, weak=False)
    try:
        yield events
    finally:
        signal.disconnect(receiver)


@contextmanager
def running(**options: Any) -> Iterator[pykka.ActorRef[Any]]:
    """Starts a supervisor and stops it (whole tree) when the block ends."""
    ref = Supervisor.start(**options)
    try:
        yield ref
    finally:
        ref.stop(timeout=10)


def children(sup: pykka.ActorRef[Any]) -> dict[str, pykka.ActorRef[Any] | None]:
    return {child_id: ref for child_id, ref, _ in sup.proxy().which_children().get(timeout=WAIT)}


def child_ref(sup: pykka.ActorRef[Any], child_id: str) -> pykka.ActorRef[Any]:
    ref = children(sup)[child_id]
    assert ref is not None, f"child {child_id!r} is not running"
    return ref


def wait_for_new_ref(
    sup: pykka.ActorRef[Any], child_id: str, old: pykka.ActorRef[Any]
) -> pykka.ActorRef[Any]:
    """Waits until ``child_id`` runs as an incarnation other than ``old``; returns it."""

    def replaced() -> bool:
        ref = children(sup).get(child_id)
        return ref is not None and ref.actor_urn != old.actor_urn and ref.is_alive()

    wait_for(replaced)
    return child_ref(sup, child_id)


# --- actors -------------------------------------------------------------------


class _Behaviour:
    """Records its lifecycle in a shared log; crashes or stops itself on request."""

    log: list[str]
    label: str

    def on_start(self) -> None:
        self.log.append(f"start:{self.label}")

    def on_stop(self) -> None:
        self.log.append(f"stop:{self.label}")

    def on_receive(self, message: Any) -> Any:
        if message == "crash":
            raise RuntimeError(f"{self.label} crashed")
        if message == "stop":
            self.stop()  # type: ignore[attr-defined]
            return None
        return None


class Worker(_Behaviour, SupervisedActor):
    def __init__(self, label: str, log: list[str] | None = None) -> None:
        super().__init__()
        self.label = label
        self.log = [] if log is None else log


class PlainWorker(_Behaviour, pykka.ThreadingActor):
    def __init__(self, label: str, log: list[str] | None = None) -> None:
        super().__init__()
        self.label = label
        self.log = [] if log is None else log


class SlowStarter(Worker):
    """Takes a while in on_start, so a caller that does not wait would notice."""

    def on_start(self) -> None:
        time.sleep(0.05)  # the slowness is the point: nothing to wait for here
        super().on_start()


class FailingStart(SupervisedActor):
    def on_start(self) -> None:
        raise RuntimeError("on_start failed")


class PlainFailingStart(pykka.ThreadingActor):
    def on_start(self) -> None:
        raise RuntimeError("on_start failed")


def worker(child_id: str, log: list[str] | None = None, **spec: Any) -> ChildSpec:
    return ChildSpec(child_id, start=lambda: Worker.start(child_id, log), **spec)


def plain(child_id: str, log: list[str] | None = None, **spec: Any) -> ChildSpec:
    return ChildSpec(child_id, start=lambda: PlainWorker.start(child_id, log), **spec)


# --- starting -----------------------------------------------------------------


def test_start_returns_after_all_children_started_in_order() -> None:
    """Supervisor.start starts children in order and returns once every on_start ran."""
    log: list[str] = []
    specs = [
        ChildSpec(label, start=lambda label=label: SlowStarter.start(label, log))  # type: ignore[misc]
        for label in ("a", "b", "c")
    ]
    with running(children=specs) as sup:
        assert log == ["start:a", "start:b", "start:c"]
        refs = children(sup)
        assert list(refs) == ["a", "b", "c"]
        assert all(ref is not None and ref.is_alive() for ref in refs.values())


def test_start_raising_makes_supervisor_start_fail_with_nothing_running() -> None:
    """A child whose start raises makes Supervisor.start raise ChildStartError; nothing survives."""
    log: list[str] = []

    def boom() -> pykka.ActorRef[Any]:
        raise RuntimeError("cannot start")

    specs = [worker("a", log), ChildSpec("bad", start=boom), worker("c", log)]
    with pytest.raises(ChildStartError) as info:
        Supervisor.start(children=specs)
    assert info.value.child_id == "bad"
    assert "RuntimeError: cannot start" in str(info.value)
    assert isinstance(info.value.__cause__, RuntimeError)
    assert log == ["start:a", "stop:a"]  # c never started, a was stopped
    assert pykka.ActorRegistry.get_all() == []


@pytest.mark.parametrize(
    ("actor_class", "described"),
    [(FailingStart, "RuntimeError: on_start failed"), (PlainFailingStart, "without being asked")],
)
def test_on_start_raising_makes_supervisor_start_fail_with_nothing_running(
    actor_class: type[pykka.ThreadingActor], described: str
) -> None:
    """A child whose on_start raises makes Supervisor.start raise ChildStartError; nothing survives."""
    log: list[str] = []
    specs = [worker("a", log), ChildSpec("bad", start=actor_class.start), worker("c", log)]
    with pytest.raises(ChildStartError) as info:
        Supervisor.start(children=specs)
    assert info.value.child_id == "bad"
    assert described in str(info.value)
    assert log == ["start:a", "stop:a"]
    assert pykka.ActorRegistry.get_all() == []


def test_start_returning_a_non_ref_is_a_child_start_error() -> None:
    """A start callable that returns something other than an ActorRef is a ChildStartError."""
    with pytest.raises(ChildStartError, match=r"not a pykka\.ActorRef"):
        Supervisor.start(children=[ChildSpec("odd", start=lambda: "nope")])  # type: ignore[arg-type,return-value]
    assert pykka.ActorRegistry.get_all() == []


# --- restarting ---------------------------------------------------------------


def test_crashing_plain_actor_is_restarted_and_reported() -> None:
    """A plain actor crashing in a told message is restarted with a new urn and child_restarted fires."""
    with (
        receiving(telemetry.supervisor_child_restarted) as events,
        running(children=[plain("w")], name="top") as sup,
    ):
        old = child_ref(sup, "w")
        old.tell("crash")
        new = wait_for_new_ref(sup, "w", old)
        assert new.actor_urn != old.actor_urn
        assert not old.is_alive()
        wait_for(lambda: len(events) == 1)
        sender, measurements, metadata = events[0]
        assert sender == "top"
        assert measurements == {"restarts": 1}
        assert set(metadata) == {"supervisor", "child_id", "reason"}
        assert metadata["supervisor"] == "top"
        assert metadata["child_id"] == "w"
        assert isinstance(metadata["reason"], str) and metadata["reason"]


def test_crash_reason_of_supervised_actor_is_reported() -> None:
    """The restart event of a SupervisedActor names the exception that ended it."""
    with (
        receiving(telemetry.supervisor_child_restarted) as events,
        running(children=[worker("w")]) as sup,
    ):
        old = child_ref(sup, "w")
        old.tell("crash")
        wait_for_new_ref(sup, "w", old)
        wait_for(lambda: len(events) == 1)
        assert events[0][2]["reason"] == "RuntimeError: w crashed"


def test_plain_actor_stopping_itself_counts_as_abnormal() -> None:
    """A plain actor that stops itself (self.stop()) is restarted, even when transient."""
    with (
        receiving(telemetry.supervisor_child_restarted) as events,
        running(children=[plain("w", restart="transient")]) as sup,
    ):
        old = child_ref(sup, "w")
        old.tell("stop")
        wait_for_new_ref(sup, "w", old)
        wait_for(lambda: len(events) == 1)
        assert events[0][2]["reason"] == ExitReason(known=False).describe()


def test_temporary_child_is_not_restarted_and_is_removed() -> None:
    """A temporary child that crashes is not restarted and disappears from which_children."""
    with (
        receiving(telemetry.supervisor_child_restarted) as events,
        running(children=[worker("keep"), worker("temp", restart="temporary")]) as sup,
    ):
        child_ref(sup, "temp").tell("crash")
        wait_for(lambda: "temp" not in children(sup))
        assert list(children(sup)) == ["keep"]
        assert sup.proxy().count_children().get(timeout=WAIT)["specs"] == 1
        assert events == []


def test_transient_child_restarted_after_crash_not_after_normal_stop() -> None:
    """A transient SupervisedActor is restarted after a crash but not after self.stop()."""
    with (
        receiving(telemetry.supervisor_child_restarted) as events,
        running(children=[worker("t", restart="transient")]) as sup,
    ):
        first = child_ref(sup, "t")
        first.tell("crash")
        second = wait_for_new_ref(sup, "t", first)
        wait_for(lambda: len(events) == 1)

        second.tell("stop")
        # The supervisor decides on a restart while it handles the exit report,
        # and a failed restart attempt tells it a retry before that handling
        # ends; so once "t" shows as not running, the ask below comes after
        # every restart the stop could cause.
        wait_for(lambda: children(sup)["t"] is None)
        assert children(sup) == {"t": None}
        assert len(events) == 1
        counts = sup.proxy().count_children().get(timeout=WAIT)
        assert counts["specs"] == 1
        assert counts["active"] == 0


def test_on_start_crash_during_restart_is_retried_and_counts() -> None:
    """A restart whose on_start fails is retried, and each attempt counts against intensity."""

    class Flaky(Worker):
        failures_left = 0

        def on_start(self) -> None:
            if Flaky.failures_left > 0:
                Flaky.failures_left -= 1
                raise RuntimeError("not yet")
            super().on_start()

    spec = ChildSpec("f", start=lambda: Flaky.start("f"))
    with (
        receiving(telemetry.supervisor_child_restarted) as events,
        running(children=[spec], max_restarts=3, max_seconds=30) as sup,
    ):
        old = child_ref(sup, "f")
        Flaky.failures_left = 2
        old.tell("crash")
        wait_for_new_ref(sup, "f", old)
        wait_for(lambda: len(events) == 1)
        assert Flaky.failures_left == 0
        # Two failed attempts and the one that worked: three restarts in the window.
        assert events[0][1] == {"restarts": 3}
        assert sup.is_alive()


def test_on_start_crash_during_restart_can_exhaust_intensity() -> None:
    """Failed restart attempts alone can exceed max_restarts and stop the supervisor."""

    class AlwaysFailsAgain(Worker):
        started = 0

        def on_start(self) -> None:
            AlwaysFailsAgain.started += 1
            if AlwaysFailsAgain.started > 1:
                raise RuntimeError("broken for good")
            super().on_start()

    spec = ChildSpec("f", start=lambda: AlwaysFailsAgain.start("f"))
    with (
        receiving(telemetry.supervisor_shutdown) as shutdowns,
        running(children=[spec], max_restarts=2, max_seconds=30) as sup,
    ):
        child_ref(sup, "f").tell("crash")
        assert sup.actor_stopped.wait(WAIT)
        # The first start, then restart attempts 1 and 2; attempt 3 exceeds the limit.
        assert AlwaysFailsAgain.started == 3
        wait_for(lambda: len(shutdowns) == 1)
        assert shutdowns[0][1] == {"restarts": 3}


def test_exceeding_intensity_stops_siblings_in_reverse_and_gives_up() -> None:
    """More than max_restarts in max_seconds stops siblings in reverse order, then the supervisor."""
    log: list[str] = []
    specs = [worker("a", log), worker("b", log), worker("crasher"), worker("d", log)]
    reasons: list[ExitReason] = []
    with (
        receiving(telemetry.supervisor_shutdown) as shutdowns,
        receiving(telemetry.supervisor_child_restarted) as restarts,
        running(children=specs, max_restarts=2, max_seconds=30, name="sup") as sup,
    ):
        watch_exit(sup, reasons.append)
        for count in (1, 2):
            old = child_ref(sup, "crasher")
            old.tell("crash")
            wait_for_new_ref(sup, "crasher", old)
            wait_for(lambda count=count: len(restarts) == count)  # type: ignore[misc]
        log.clear()
        child_ref(sup, "crasher").tell("crash")
        assert sup.actor_stopped.wait(WAIT)
        wait_for(lambda: len(reasons) == 1)

        assert log == ["stop:d", "stop:b", "stop:a"]
        assert [m["restarts"] for _, m, _ in restarts] == [1, 2]
        assert len(shutdowns) == 1
        sender, measurements, metadata = shutdowns[0]
        assert sender == "sup"
        assert measurements == {"restarts": 3}
        assert metadata["supervisor"] == "sup"
        assert "crasher" in metadata["reason"]
        # It ended abnormally, so a parent supervisor would restart it.
        assert isinstance(reasons[0].error, RestartIntensityError)
        assert not reasons[0].normal


def test_restarts_outside_the_window_do_not_accumulate() -> None:
    """Restarts older than max_seconds fall out of the sliding window."""
    with (
        receiving(telemetry.supervisor_child_restarted) as events,
        running(children=[worker("w")], max_restarts=1, max_seconds=0.3) as sup,
    ):
        for count in (1, 2, 3):
            old = child_ref(sup, "w")
            old.tell("crash")
            wait_for_new_ref(sup, "w", old)
            wait_for(lambda count=count: len(events) == count)  # type: ignore[misc]
            time.sleep(0.4)  # let the restart leave the window
        assert sup.is_alive()
        assert [m["restarts"] for _, m, _ in events] == [1, 1, 1]


def test_parent_restarts_child_supervisor_that_gave_up() -> None:
    """A child supervisor that gives up is restarted by its parent (escalation)."""
    sub_spec = ChildSpec(
        "sub",
        start=lambda: Supervisor.start(children=[worker("w")], max_restarts=0, name="sub"),
        type="supervisor",
    )
    with (
        receiving(telemetry.supervisor_shutdown) as shutdowns,
        receiving(telemetry.supervisor_child_restarted) as restarts,
        running(children=[worker("sibling"), sub_spec], name="parent") as top,
    ):
        sibling = child_ref(top, "sibling")
        old_sub = child_ref(top, "sub")
        old_w = child_ref(old_sub, "w")
        old_w.tell("crash")

        new_sub = wait_for_new_ref(top, "sub", old_sub)
        assert not old_sub.is_alive()
        assert not old_w.is_alive()
        new_w = child_ref(new_sub, "w")
        assert new_w.is_alive() and new_w.actor_urn != old_w.actor_urn
        assert child_ref(top, "sibling") is sibling and sibling.is_alive()

        wait_for(lambda: len(restarts) == 1)
        _, measurements, metadata = restarts[0]
        assert metadata["supervisor"] == "parent"
        assert metadata["child_id"] == "sub"
        assert "RestartIntensityError" in metadata["reason"]
        assert measurements == {"restarts": 1}
        assert [s for s, _, _ in shutdowns] == ["sub"]


def test_stale_exit_reports_are_ignored() -> None:
    """One crash causes one restart; a report about an earlier incarnation changes nothing."""
    with (
        receiving(telemetry.supervisor_child_restarted) as events,
        running(children=[worker("w")]) as sup,
    ):
        old = child_ref(sup, "w")
        old.tell("crash")
        new = wait_for_new_ref(sup, "w", old)
        wait_for(lambda: len(events) == 1)
        # The old incarnation's exit watch fires once; a second report about it
        # is the stale report told below, whose handling the next ask awaits.
        assert len(events) == 1

        stale = _ChildExited("w", old.actor_urn, ExitReason(known=True, error=RuntimeError("old")))
        sup.tell(stale)
        # which_children is handled after the told report, so the report was seen.
        assert children(sup) == {"w": new}
        assert new.is_alive()
        assert len(events) == 1


# --- dynamic children ---------------------------------------------------------


def test_start_child_adds_a_child_and_rejects_duplicate_ids() -> None:
    """start_child starts and supervises a new child; a duplicate id raises ValueError."""
    with running(children=[worker("a")]) as sup:
        proxy = sup.proxy()
        ref = proxy.start_child(worker("b")).get(timeout=WAIT)
        assert ref.is_alive()
        assert children(sup) == {"a": child_ref(sup, "a"), "b": ref}

        with pytest.raises(ValueError, match="'a'"):
            proxy.start_child(worker("a")).get(timeout=WAIT)
        assert list(children(sup)) == ["a", "b"]

        # The dynamic child is supervised like the others.
        ref.tell("crash")
        wait_for_new_ref(sup, "b", ref)


def test_start_child_failure_keeps_supervisor_running() -> None:
    """start_child of a child that fails to start raises ChildStartError and keeps nothing."""
    with running(children=[worker("a")]) as sup:
        with pytest.raises(ChildStartError):
            sup.proxy().start_child(ChildSpec("bad", start=FailingStart.start)).get(timeout=WAIT)
        assert sup.is_alive()
        assert list(children(sup)) == ["a"]


def test_terminate_child_stops_it_for_good() -> None:
    """terminate_child stops the child, drops it and does not restart it; unknown ids raise."""
    log: list[str] = []
    with (
        receiving(telemetry.supervisor_child_restarted) as events,
        running(children=[worker("a", log), worker("b", log)]) as sup,
    ):
        proxy = sup.proxy()
        b = child_ref(sup, "b")
        assert proxy.terminate_child("b").get(timeout=WAIT) is None
        assert not b.is_alive()
        assert "stop:b" in log
        # b's exit report was told before its stop finished, so before
        # terminate_child returned: the ask below is handled after it.
        assert list(children(sup)) == ["a"]
        assert events == []

        with pytest.raises(LookupError, match="'b'"):
            proxy.terminate_child("b").get(timeout=WAIT)
        with pytest.raises(LookupError):
            proxy.terminate_child("nope").get(timeout=WAIT)


def test_which_children_and_count_children() -> None:
    """which_children lists (id, ref, type) in start order; count_children has the four counts."""
    sub = ChildSpec("sub", start=lambda: Supervisor.start(), type="supervisor")
    with running(children=[worker("a"), sub, worker("b", restart="transient")]) as sup:
        proxy = sup.proxy()
        proxy.start_child(worker("c")).get(timeout=WAIT)
        listed = proxy.which_children().get(timeout=WAIT)
        assert [(child_id, kind) for child_id, _, kind in listed] == [
            ("a", "worker"),
            ("sub", "supervisor"),
            ("b", "worker"),
            ("c", "worker"),
        ]
        assert all(isinstance(ref, pykka.ActorRef) and ref.is_alive() for _, ref, _ in listed)
        assert proxy.count_children().get(timeout=WAIT) == {
            "specs": 4,
            "active": 4,
            "supervisors": 1,
            "workers": 3,
        }

        child_ref(sup, "b").tell("stop")  # transient, normal: kept as a spec, not running
        wait_for(lambda: children(sup)["b"] is None)
        assert proxy.count_children().get(timeout=WAIT) == {
            "specs": 4,
            "active": 3,
            "supervisors": 1,
            "workers": 3,
        }


# --- stopping -----------------------------------------------------------------


def test_stopping_three_level_tree_leaves_nothing() -> None:
    """Stopping the top of a three-level tree stops every actor and joins every thread."""
    threads_before = set(threading.enumerate())
    log: list[str] = []
    bottom = ChildSpec(
        "bottom",
        start=lambda: Supervisor.start(children=[worker("w3", log), worker("w4", log)]),
        type="supervisor",
    )
    middle = ChildSpec(
        "middle",
        start=lambda: Supervisor.start(children=[worker("w2", log), bottom]),
        type="supervisor",
    )
    top = Supervisor.start(children=[worker("w1", log), middle])
    try:
        mid_ref = child_ref(top, "middle")
        bottom_ref = child_ref(mid_ref, "bottom")
        assert children(bottom_ref).keys() == {"w3", "w4"}
        assert len(pykka.ActorRegistry.get_all()) == 7
        assert top.proxy().count_children().get(timeout=WAIT) == {
            "specs": 2,
            "active": 2,
            "supervisors": 1,
            "workers": 1,
        }
    finally:
        assert top.stop(timeout=10) is True
    # Each supervisor stops its children (last started first) before it ends.
    assert log[-4:] == ["stop:w4", "stop:w3", "stop:w2", "stop:w1"]
    assert pykka.ActorRegistry.get_all() == []
    wait_for(lambda: set(threading.enumerate()) <= threads_before, timeout=2)


def test_slow_child_does_not_hang_supervisor_stop() -> None:
    """A child slower to stop than its shutdown is abandoned after about shutdown seconds."""
    threads: list[threading.Thread] = []
    log: list[str] = []
    release = threading.Event()

    class SlowStop(SupervisedActor):
        def on_start(self) -> None:
            threads.append(threading.current_thread())

        def on_stop(self) -> None:
            release.wait(WAIT)  # stuck until the supervisor's stop has returned

    specs = [worker("a", log), ChildSpec("slow", start=SlowStop.start, shutdown=0.3)]
    sup = Supervisor.start(children=specs)
    try:
        started = time.monotonic()
        sup.stop(timeout=10)
        elapsed = time.monotonic() - started
        assert 0.25 <= elapsed < 0.9
        assert log == ["start:a", "stop:a"]  # the stop went on past the slow child
        assert threads and threads[0].is_alive()  # abandoned, still in on_stop
    finally:
        release.set()
        sup.stop(timeout=10)
        for thread in threads:
            thread.join(WAIT)
    assert threads and not threads[0].is_alive()


# --- abandoned children and interpreter exit ----------------------------------

# A child whose on_stop never returns, for the scripts below.
_STUCK_CHILD = """
import logging, threading, time
from grpcpool.supervisor import ChildSpec, SupervisedActor, Supervisor
logging.basicConfig(level=logging.WARNING, format="%(name)s %(message)s")
never = threading.Event()

class Stuck(SupervisedActor):
    def on_stop(self):
        print("stuck: on_stop entered", flush=True)
        never.wait()

class Noting(SupervisedActor):
    def on_stop(self):
        print("noting: stopped", flush=True)

stuck = ChildSpec("stuck", start=Stuck.start, shutdown=0.2)
noting = ChildSpec("noting", start=Noting.start)
"""


def run_script(body: str) -> tuple[subprocess.CompletedProcess[str], float]:
    """Runs ``_STUCK_CHILD`` + ``body`` in a fresh interpreter; returns it and its run time.

    The timeout is generous: a process kept alive by a thread times out here.
    """
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-c", _STUCK_CHILD + textwrap.dedent(body)],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, "GRPC_VERBOSITY": "ERROR"},
    )
    return result, time.monotonic() - started


def test_an_abandoned_child_does_not_keep_the_process_alive() -> None:
    """A SupervisedActor whose on_stop never returns is abandoned after its shutdown
    time; sup.stop() returns then, and the process still exits."""
    result, elapsed = run_script(
        """
        sup = Supervisor.start(children=[noting, stuck], name="top")
        started = time.monotonic()
        sup.stop(timeout=10)
        print(f"stop took {time.monotonic() - started:.2f}", flush=True)
        """
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[:2] == ["stuck: on_stop entered", "noting: stopped"]
    stop_took = float(lines[2].removeprefix("stop took "))
    assert 0.15 <= stop_took < 1.0
    assert "top: child 'stuck' did not stop within 0.2s; abandoning it\n" in result.stderr
    assert elapsed < 15  # about 1 s: the interpreter's start and the 0.2 s wait


def test_a_tree_left_running_stops_in_order_at_exit_despite_a_stuck_child() -> None:
    """A tree nobody stopped is stopped when the main thread ends: its children's
    on_stop run (daemon threads do not skip them), the stuck one is abandoned,
    and the process exits."""
    result, elapsed = run_script(
        """
        Supervisor.start(children=[noting, stuck], name="left")
        print("main: done", flush=True)
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "main: done",
        "stuck: on_stop entered",
        "noting: stopped",
    ]
    assert "left: child 'stuck' did not stop within 0.2s; abandoning it\n" in result.stderr
    assert elapsed < 15


def test_abandoning_a_plain_actor_warns_that_it_keeps_the_process_alive(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A plain pykka actor runs on a non-daemon thread the supervisor cannot change:
    when it is abandoned the warning says that it blocks interpreter exit, and how
    to avoid that."""
    release = threading.Event()
    threads: list[threading.Thread] = []

    class PlainStuck(pykka.ThreadingActor):
        def on_start(self) -> None:
            threads.append(threading.current_thread())

        def on_stop(self) -> None:
            release.wait(WAIT)  # stuck until the supervisor's stop has returned

    sup = Supervisor.start(
        children=[ChildSpec("plain", start=PlainStuck.start, shutdown=0.2)], name="holder"
    )
    try:
        sup.stop(timeout=10)
    finally:
        release.set()
        for thread in threads:
            thread.join(WAIT)
    assert threads and not threads[0].daemon
    (warning,) = [r.getMessage() for r in caplog.records if "abandoning" in r.getMessage()]
    assert warning.startswith("holder: child 'plain' did not stop within 0.2s; abandoning it;")
    assert "not a daemon thread" in warning
    assert "use_daemon_thread = True" in warning


def test_a_supervised_child_stuck_in_a_message_is_abandoned_without_the_exit_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A SupervisedActor busy in a message never sees its stop; it is abandoned, and
    as its thread is a daemon the warning does not claim it blocks exit."""
    release = threading.Event()
    busy = threading.Event()
    threads: list[threading.Thread] = []

    class Busy(SupervisedActor):
        def on_start(self) -> None:
            threads.append(threading.current_thread())

        def on_receive(self, message: Any) -> Any:
            busy.set()
            release.wait(WAIT)  # stuck until the supervisor's stop has returned

    sup = Supervisor.start(
        children=[ChildSpec("busy", start=Busy.start, shutdown=0.2)], name="holder"
    )
    try:
        child_ref(sup, "busy").tell("work")
        assert busy.wait(WAIT)
        sup.stop(timeout=10)
    finally:
        release.set()
        for thread in threads:
            thread.join(WAIT)
    assert threads and threads[0].daemon
    (warning,) = [r.getMessage() for r in caplog.records if "abandoning" in r.getMessage()]
    assert warning == "holder: child 'busy' did not stop within 0.2s; abandoning it"


# --- invalid options ----------------------------------------------------------


@pytest.mark.parametrize(
    "options",
    [
        {"strategy": "one_for_all"},
        {"strategy": "rest_for_one"},
        {"max_restarts": -1},
        {"max_restarts": True},
        {"max_restarts": 1.5},
        {"max_seconds": 0},
        {"max_seconds": -1.0},
        {"max_seconds": float("nan")},
        {"max_seconds": False},
        {"name": ""},
    ],
    ids=repr,
)
def test_invalid_supervisor_options_raise_before_anything_starts(options: dict[str, Any]) -> None:
    """Invalid supervisor options raise ValueError before any child or actor starts."""
    calls: list[str] = []

    def start() -> pykka.ActorRef[Any]:
        calls.append("start")
        return Worker.start("never")

    with pytest.raises(ValueError):
        Supervisor.start(children=[ChildSpec("c", start=start)], **options)
    assert calls == []
    assert pykka.ActorRegistry.get_all() == []


@pytest.mark.parametrize(
    "fields",
    [
        {"id": ""},
        {"id": 3},
        {"start": "not callable"},
        {"restart": "always"},
        {"shutdown": 0},
        {"shutdown": -1},
        {"shutdown": True},
        {"shutdown": float("inf")},
        {"shutdown": float("nan")},
        {"shutdown": "5"},
        {"type": "dynamic"},
    ],
    ids=repr,
)
def test_invalid_child_spec_fields_raise(fields: dict[str, Any]) -> None:
    """ChildSpec rejects a bad id, start, restart, shutdown or type with ValueError."""
    arguments: dict[str, Any] = {"id": "c", "start": lambda: Worker.start("never")}
    arguments.update(fields)
    with pytest.raises(ValueError):
        ChildSpec(**arguments)


def test_duplicate_child_ids_raise_before_anything_starts() -> None:
    """Two children with one id make Supervisor.start raise ValueError, starting nothing."""
    log: list[str] = []
    with pytest.raises(ValueError, match="'x'"):
        Supervisor.start(children=[worker("x", log), worker("x", log)])
    assert log == []
    assert pykka.ActorRegistry.get_all() == []


def test_non_spec_child_raises_type_error() -> None:
    """A child that is neither a ChildSpec nor has child_spec() raises TypeError, starting nothing."""
    with pytest.raises(TypeError):
        Supervisor.start(children=[object()])  # type: ignore[list-item]
    assert pykka.ActorRegistry.get_all() == []
