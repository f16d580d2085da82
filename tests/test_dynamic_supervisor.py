"""DynamicSupervisor: children started at run time, its hooks, on_forget, max_children.

Driven with real pykka actors; every wait is on an event or has a timeout.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pykka
import pytest

import grpcpool
from grpcpool import telemetry
from grpcpool._process import PROCESS
from grpcpool.supervisor import (
    ChildSpec,
    ChildStartError,
    DynamicSupervisor,
    MaxChildrenError,
    RestartIntensityError,
    SupervisedActor,
    Supervisor,
    watch_exit,
)
from tests.waiting import wait_for

WAIT = 5.0


# --- helpers ------------------------------------------------------------------


class Recorder:
    """A thread-safe list of records with a way to wait for the n-th one."""

    def __init__(self) -> None:
        self._condition = threading.Condition()
        self.items: list[Any] = []

    def add(self, item: Any) -> None:
        with self._condition:
            self.items.append(item)
            self._condition.notify_all()

    def wait(self, count: int, timeout: float = WAIT) -> list[Any]:
        """Waits until at least ``count`` records exist; returns a copy of them."""
        with self._condition:
            assert self._condition.wait_for(lambda: len(self.items) >= count, timeout), (
                f"expected {count} records, got {self.items}"
            )
            return list(self.items)


class Worker(SupervisedActor):
    """Records its start and stop; crashes or stops itself on request."""

    def __init__(self, label: str, log: Recorder | None = None) -> None:
        super().__init__()
        self.label = label
        self.log = log

    def on_start(self) -> None:
        if self.log is not None:
            self.log.add(f"start:{self.label}")

    def on_stop(self) -> None:
        if self.log is not None:
            self.log.add(f"stop:{self.label}")

    def on_receive(self, message: Any) -> Any:
        if message == "crash":
            raise RuntimeError(f"{self.label} crashed")
        if message == "stop":
            self.stop()
        return None


class MeetsOnStop(SupervisedActor):
    """Waits in on_stop until every party of the barrier stopped too.

    Children stopped one after the other would break the barrier (its timeout),
    so ``passed`` tells whether they were stopped together.
    """

    def __init__(self, label: str, barrier: threading.Barrier, log: Recorder) -> None:
        super().__init__()
        self.label = label
        self.barrier = barrier
        self.log = log

    def on_stop(self) -> None:
        try:
            self.barrier.wait(timeout=10)
            self.log.add(f"met:{self.label}")
        except threading.BrokenBarrierError:
            self.log.add(f"alone:{self.label}")


def worker(child_id: str, log: Recorder | None = None, **fields: Any) -> ChildSpec:
    return ChildSpec(child_id, start=lambda: Worker.start(child_id, log), **fields)


def forgetting(child_id: str, forgets: Recorder, **fields: Any) -> ChildSpec:
    """A worker spec whose on_forget records ``(child_id, reason, thread)``."""

    def on_forget(reason: str) -> None:
        forgets.add((child_id, reason, threading.current_thread()))

    return worker(child_id, on_forget=on_forget, **fields)


@contextmanager
def running(
    cls: type[DynamicSupervisor] = DynamicSupervisor, **options: Any
) -> Iterator[pykka.ActorRef[Any]]:
    """Starts a supervisor of ``cls`` and stops it (whole tree) when the block ends."""
    ref = cls.start(**options)
    try:
        yield ref
    finally:
        ref.stop(timeout=10)


def children(sup: pykka.ActorRef[Any]) -> dict[str, pykka.ActorRef[Any] | None]:
    return {child_id: ref for child_id, ref, _ in sup.proxy().which_children().get(timeout=WAIT)}


def actor_thread(sup: pykka.ActorRef[Any]) -> threading.Thread:
    """The thread the supervisor runs on (asked of the actor itself)."""
    thread: threading.Thread = sup.proxy().own_thread().get(timeout=WAIT)
    return thread


class Hooked(DynamicSupervisor):
    """Records every hook call with the thread it ran on."""

    def __init__(self, calls: Recorder, **options: Any) -> None:
        super().__init__(**options)
        self.calls = calls

    def own_thread(self) -> threading.Thread:
        return threading.current_thread()

    def child_restarted(self, child_id: str, ref: pykka.ActorRef[Any]) -> None:
        self.calls.add(("restarted", child_id, ref, threading.current_thread()))

    def child_terminated(self, child_id: str) -> None:
        self.calls.add(("terminated", child_id, threading.current_thread()))

    def replace(self, old_id: str, spec: ChildSpec) -> pykka.ActorRef[Any]:
        """Terminates one child and starts another, on the actor's own thread."""
        self.terminate_child(old_id)
        return self.start_child(spec)


# --- the public API -----------------------------------------------------------


def test_starts_empty_and_start_child_returns_after_on_start() -> None:
    """A DynamicSupervisor starts with no children; start_child returns once on_start ran."""
    log = Recorder()
    with running(name="dyn") as sup:
        proxy = sup.proxy()
        assert proxy.which_children().get(timeout=WAIT) == []
        a = proxy.start_child(worker("a", log)).get(timeout=WAIT)
        assert log.items == ["start:a"]
        b = proxy.start_child(worker("b", log, type="supervisor")).get(timeout=WAIT)
        assert a.is_alive() and b.is_alive()
        assert proxy.which_children().get(timeout=WAIT) == [
            ("a", a, "worker"),
            ("b", b, "supervisor"),
        ]
        assert proxy.count_children().get(timeout=WAIT) == {
            "specs": 2,
            "active": 2,
            "supervisors": 1,
            "workers": 1,
        }
        assert proxy.name.get(timeout=WAIT) == "dyn"
    assert log.items == ["start:a", "start:b", "stop:b", "stop:a"]


def test_is_exported_from_the_package() -> None:
    """DynamicSupervisor is public in grpcpool and grpcpool.supervisor."""
    assert grpcpool.DynamicSupervisor is DynamicSupervisor
    assert "DynamicSupervisor" in grpcpool.__all__
    assert issubclass(Supervisor, DynamicSupervisor)
    assert issubclass(MaxChildrenError, ChildStartError)


def test_start_child_rejects_duplicates_and_keeps_nothing_that_failed() -> None:
    """A duplicate id raises ValueError; a child that fails to start raises ChildStartError."""

    class FailingStart(SupervisedActor):
        def on_start(self) -> None:
            raise RuntimeError("on_start failed")

    with running() as sup:
        proxy = sup.proxy()
        proxy.start_child(worker("a")).get(timeout=WAIT)
        with pytest.raises(ValueError, match="'a'"):
            proxy.start_child(worker("a")).get(timeout=WAIT)
        with pytest.raises(ChildStartError, match="on_start failed"):
            proxy.start_child(ChildSpec("bad", start=FailingStart.start)).get(timeout=WAIT)
        assert list(children(sup)) == ["a"]
        assert sup.is_alive()


def test_crashed_child_is_restarted_in_place_and_hook_runs_on_actor_thread() -> None:
    """A crashed permanent child restarts in its place; child_restarted gets its new ref."""
    calls = Recorder()
    with running(Hooked, calls=calls) as sup:
        proxy = sup.proxy()
        old = proxy.start_child(worker("a")).get(timeout=WAIT)
        proxy.start_child(worker("b")).get(timeout=WAIT)
        old.tell("crash")
        (kind, child_id, new, thread), *_ = calls.wait(1)
        assert (kind, child_id) == ("restarted", "a")
        assert new.actor_urn != old.actor_urn and new.is_alive()
        assert thread is actor_thread(sup)
        assert children(sup) == {"a": new, "b": children(sup)["b"]}
        assert list(children(sup)) == ["a", "b"]


def test_terminate_child_stops_and_forgets_it() -> None:
    """terminate_child stops the child, forgets it, runs child_terminated; unknown ids raise."""
    calls = Recorder()
    log = Recorder()
    with running(Hooked, calls=calls) as sup:
        proxy = sup.proxy()
        a = proxy.start_child(worker("a", log)).get(timeout=WAIT)
        proxy.start_child(worker("b", log)).get(timeout=WAIT)
        assert proxy.terminate_child("a").get(timeout=WAIT) is None
        assert not a.is_alive()
        assert "stop:a" in log.items
        assert list(children(sup)) == ["b"]
        assert calls.wait(1) == [("terminated", "a", actor_thread(sup))]
        with pytest.raises(LookupError, match="'a'"):
            proxy.terminate_child("a").get(timeout=WAIT)
        # The id is free again.
        proxy.start_child(worker("a", log)).get(timeout=WAIT)
        assert list(children(sup)) == ["b", "a"]


def test_terminate_children_stops_them_together_then_forgets_them() -> None:
    """terminate_children stops several children in parallel, then forgets each one."""
    calls = Recorder()
    log = Recorder()
    forgets = Recorder()
    barrier = threading.Barrier(2, timeout=WAIT)

    def meeting(label: str) -> ChildSpec:
        return ChildSpec(
            label,
            start=lambda: MeetsOnStop.start(label, barrier, log),
            on_forget=lambda reason: forgets.add((label, reason)),
        )

    with running(Hooked, calls=calls) as sup:
        proxy = sup.proxy()
        for spec in (meeting("x"), worker("keep"), meeting("y")):
            proxy.start_child(spec).get(timeout=WAIT)
        proxy.terminate_children(["x", "y"]).get(timeout=WAIT)
        assert sorted(log.items) == ["met:x", "met:y"]
        assert forgets.items == [("x", "terminated"), ("y", "terminated")]
        thread = actor_thread(sup)
        assert calls.items == [("terminated", "x", thread), ("terminated", "y", thread)]
        assert list(children(sup)) == ["keep"]


def test_terminate_children_with_an_unknown_id_stops_nothing() -> None:
    """An unknown id among several makes terminate_children raise before stopping any."""
    with running() as sup:
        proxy = sup.proxy()
        proxy.start_child(worker("a")).get(timeout=WAIT)
        with pytest.raises(LookupError, match="'nope'"):
            proxy.terminate_children(["a", "nope"]).get(timeout=WAIT)
        with pytest.raises(TypeError):
            proxy.terminate_children("a").get(timeout=WAIT)
        assert list(children(sup)) == ["a"]
        assert children(sup)["a"] is not None


def test_subclass_calls_the_api_on_its_own_thread() -> None:
    """A subclass's own proxy method may terminate and start children directly."""
    calls = Recorder()
    log = Recorder()
    with running(Hooked, calls=calls) as sup:
        proxy = sup.proxy()
        proxy.start_child(worker("old", log)).get(timeout=WAIT)
        new = proxy.replace("old", worker("new", log)).get(timeout=WAIT)
        assert new.is_alive()
        assert children(sup) == {"new": new}
        assert log.items == ["start:old", "stop:old", "start:new"]
        assert [c[:2] for c in calls.items] == [("terminated", "old")]


def test_transient_child_ending_normally_is_dropped() -> None:
    """Unlike Supervisor, a DynamicSupervisor drops a transient child that ended normally."""
    forgets = Recorder()
    with running() as sup:
        proxy = sup.proxy()
        ref = proxy.start_child(forgetting("t", forgets, restart="transient")).get(timeout=WAIT)
        ref.tell("stop")
        assert [f[:2] for f in forgets.wait(1)] == [("t", "exited: normal")]
        assert children(sup) == {}


def test_started_outside_a_supervisor_it_is_a_root() -> None:
    """A DynamicSupervisor started by no supervisor is a tree root; one started by one is not."""
    with running() as top:
        with PROCESS.lock:
            assert top in PROCESS.roots
        nested = (
            top.proxy()
            .start_child(ChildSpec("sub", start=DynamicSupervisor.start, type="supervisor"))
            .get(timeout=WAIT)
        )
        with PROCESS.lock:
            assert nested not in PROCESS.roots


@pytest.mark.parametrize(
    "options",
    [
        {"max_restarts": -1},
        {"max_seconds": 0},
        {"name": ""},
        {"max_children": -1},
        {"max_children": 1.5},
        {"max_children": True},
    ],
    ids=repr,
)
def test_invalid_options_raise_before_anything_starts(options: dict[str, Any]) -> None:
    """Invalid options raise ValueError and start no actor."""
    with pytest.raises(ValueError):
        DynamicSupervisor.start(**options)
    assert pykka.ActorRegistry.get_all() == []


# --- max_children -------------------------------------------------------------


def test_max_children_refuses_one_more_without_starting_it() -> None:
    """Past max_children, start_child raises MaxChildrenError and never calls start."""
    started: list[str] = []

    def counted(child_id: str) -> ChildSpec:
        def start() -> pykka.ActorRef[Any]:
            started.append(child_id)
            return Worker.start(child_id)

        return ChildSpec(child_id, start=start)

    with running(max_children=2) as sup:
        proxy = sup.proxy()
        proxy.start_child(counted("a")).get(timeout=WAIT)
        proxy.start_child(counted("b")).get(timeout=WAIT)
        with pytest.raises(MaxChildrenError) as info:
            proxy.start_child(counted("c")).get(timeout=WAIT)
        assert info.value.child_id == "c"
        assert info.value.max_children == 2
        assert "max_children (2)" in str(info.value)
        assert started == ["a", "b"]
        # A freed place can be taken again.
        proxy.terminate_child("a").get(timeout=WAIT)
        proxy.start_child(counted("c")).get(timeout=WAIT)
        assert list(children(sup)) == ["b", "c"]


def test_max_children_zero_allows_none() -> None:
    """max_children=0 is allowed and refuses every child."""
    with running(max_children=0) as sup, pytest.raises(MaxChildrenError):
        sup.proxy().start_child(worker("a")).get(timeout=WAIT)


# --- hooks --------------------------------------------------------------------


def test_restart_limit_hook_sets_the_intensity() -> None:
    """restart_limit overrides max_restarts: more restarts are allowed, then it gives up."""

    class Generous(DynamicSupervisor):
        def restart_limit(self) -> int:
            return self.max_restarts + 2

    reasons = Recorder()
    restarts = Recorder()

    def on_restart(sender: Any, **_: Any) -> None:
        restarts.add(sender)

    telemetry.supervisor_child_restarted.connect(on_restart, weak=False)
    try:
        with running(Generous, max_restarts=0, max_seconds=60, name="gen") as sup:
            watch_exit(sup, reasons.add)
            ref = sup.proxy().start_child(worker("w")).get(timeout=WAIT)
            for count in (1, 2):
                ref.tell("crash")
                restarts.wait(count)
                ref = children(sup)["w"]
                assert ref is not None
            ref.tell("crash")
            (reason,) = reasons.wait(1)
            assert isinstance(reason.error, RestartIntensityError)
            # The message states the limit applied, and where it came from.
            assert "(max 2 from restart_limit(); max_restarts is 0)" in str(reason.error)
            assert len(restarts.items) == 2
    finally:
        telemetry.supervisor_child_restarted.disconnect(on_restart)


class Explained(DynamicSupervisor):
    """Allows two restarts more than max_restarts and says so when it gives up."""

    def __init__(self, restarts: Recorder, **options: Any) -> None:
        super().__init__(**options)
        self.restarts = restarts

    def restart_limit(self) -> int:
        return self.max_restarts + 2

    def describe_restart_limit(self, limit: int) -> str:
        return f"{limit} = {self.max_restarts} + 2 spares"

    def child_restarted(self, child_id: str, ref: pykka.ActorRef[Any]) -> None:
        self.restarts.add(ref)


class BrokenExplanation(Explained):
    """A describe_restart_limit that raises: the number alone is stated."""

    def describe_restart_limit(self, limit: int) -> str:
        raise RuntimeError("no words")


@pytest.mark.parametrize(
    ("cls", "stated"),
    [(Explained, "(max 3 = 1 + 2 spares)"), (BrokenExplanation, "(max 3)")],
    ids=["explained", "explanation-fails"],
)
def test_give_up_message_states_the_limit_applied(
    cls: type[Explained], stated: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The give-up error states restart_limit()'s number as describe_restart_limit
    words it, or the number alone when that hook fails."""
    reasons = Recorder()
    restarts = Recorder()
    with running(cls, restarts=restarts, max_restarts=1, max_seconds=60, name="explains") as sup:
        watch_exit(sup, reasons.add)
        ref = sup.proxy().start_child(worker("w")).get(timeout=WAIT)
        for count in (1, 2, 3):  # the limit: three restarts
            ref.tell("crash")
            ref = restarts.wait(count)[-1]
        ref.tell("crash")  # the fourth is one too many
        (reason,) = reasons.wait(1)
    assert isinstance(reason.error, RestartIntensityError)
    assert str(reason.error).startswith(f"explains: 4 restarts within 60.0s {stated}; last:")
    failed = [r for r in caplog.records if "describe_restart_limit failed" in r.getMessage()]
    assert len(failed) == (cls is BrokenExplanation)


class Ordered(DynamicSupervisor):
    """Stops d first, then a and c together; b is left to the default."""

    def shutdown_order(self, child_ids: list[str]) -> list[list[str]]:
        assert child_ids == ["a", "b", "c", "d"]
        return [["d", "unknown"], ["a", "c", "d"]]


class BrokenOrder(DynamicSupervisor):
    """A shutdown_order that raises: the default order is used."""

    def shutdown_order(self, child_ids: list[str]) -> list[list[str]]:
        raise RuntimeError("no order")


def test_shutdown_order_groups_are_stopped_in_order_and_together() -> None:
    """shutdown_order's groups stop one after the other, each group in parallel; leftovers last."""
    log = Recorder()
    barrier = threading.Barrier(2, timeout=WAIT)
    specs = [
        ChildSpec("a", start=lambda: MeetsOnStop.start("a", barrier, log)),
        worker("b", log),
        ChildSpec("c", start=lambda: MeetsOnStop.start("c", barrier, log)),
        worker("d", log),
    ]
    sup = Ordered.start()
    for spec in specs:
        sup.proxy().start_child(spec).get(timeout=WAIT)
    log.items.clear()
    sup.stop(timeout=10)
    assert log.items[0] == "stop:d"
    assert sorted(log.items[1:3]) == ["met:a", "met:c"]
    assert log.items[3:] == ["stop:b"]


def test_failing_shutdown_order_falls_back_to_reverse_start_order(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A shutdown_order that raises is logged and children stop last started first."""
    log = Recorder()
    sup = BrokenOrder.start()
    for child_id in ("a", "b", "c"):
        sup.proxy().start_child(worker(child_id, log)).get(timeout=WAIT)
    with caplog.at_level(logging.ERROR, logger="grpcpool"):
        sup.stop(timeout=10)
    assert log.items[3:] == ["stop:c", "stop:b", "stop:a"]
    assert any("shutdown_order failed" in r.getMessage() for r in caplog.records)


# --- on_forget ----------------------------------------------------------------


def test_on_forget_on_terminate_runs_once_on_the_supervisor_thread() -> None:
    """terminate_child forgets the child: on_forget("terminated") once, on the actor thread."""
    forgets = Recorder()
    with running(Hooked, calls=Recorder()) as sup:
        proxy = sup.proxy()
        proxy.start_child(forgetting("a", forgets)).get(timeout=WAIT)
        proxy.terminate_child("a").get(timeout=WAIT)
        assert forgets.items == [("a", "terminated", actor_thread(sup))]
    assert len(forgets.items) == 1


@pytest.mark.parametrize(
    ("message", "reason"),
    [("crash", "exited: RuntimeError: temp crashed"), ("stop", "exited: normal")],
)
def test_on_forget_when_a_temporary_child_ends(message: str, reason: str) -> None:
    """A temporary child's end, normal or not, forgets it with the reason it ended."""
    forgets = Recorder()
    with running() as sup:
        ref = (
            sup.proxy()
            .start_child(forgetting("temp", forgets, restart="temporary"))
            .get(timeout=WAIT)
        )
        ref.tell(message)
        assert [f[:2] for f in forgets.wait(1)] == [("temp", reason)]
        assert children(sup) == {}
    assert len(forgets.items) == 1


def test_on_forget_for_a_kept_transient_spec_runs_once() -> None:
    """A Supervisor keeps an ended transient spec; terminating it later does not forget twice."""
    forgets = Recorder()
    with running(Supervisor, children=[forgetting("t", forgets, restart="transient")]) as sup:
        ref = children(sup)["t"]
        assert ref is not None
        ref.tell("stop")
        assert [f[:2] for f in forgets.wait(1)] == [("t", "exited: normal")]
        assert children(sup) == {"t": None}
        sup.proxy().terminate_child("t").get(timeout=WAIT)
        assert children(sup) == {}
    assert len(forgets.items) == 1


def test_on_forget_is_not_called_on_restart_but_on_supervisor_stop() -> None:
    """A restart keeps the child; the supervisor's stop forgets every child once."""
    forgets = Recorder()
    calls = Recorder()
    sup = Hooked.start(calls=calls)
    proxy = sup.proxy()
    ref = proxy.start_child(forgetting("a", forgets)).get(timeout=WAIT)
    proxy.start_child(forgetting("b", forgets, restart="transient")).get(timeout=WAIT)
    ref.tell("crash")
    calls.wait(1)
    assert forgets.items == []
    sup.stop(timeout=10)
    assert [f[:2] for f in forgets.items] == [
        ("b", "supervisor stopped"),
        ("a", "supervisor stopped"),
    ]


def test_on_forget_when_the_supervisor_gives_up_includes_dead_children() -> None:
    """Giving up forgets every child, also one that is dead and awaiting its restart."""

    class BrokenAfterFirst(Worker):
        starts = 0

        def on_start(self) -> None:
            BrokenAfterFirst.starts += 1
            if BrokenAfterFirst.starts > 1:
                raise RuntimeError("broken for good")

    forgets = Recorder()
    reasons = Recorder()
    with running(max_restarts=1, max_seconds=60) as sup:
        watch_exit(sup, reasons.add)
        proxy = sup.proxy()
        proxy.start_child(forgetting("a", forgets)).get(timeout=WAIT)
        ref = proxy.start_child(
            ChildSpec(
                "f",
                start=lambda: BrokenAfterFirst.start("f"),
                on_forget=lambda reason: forgets.add(("f", reason, None)),
            )
        ).get(timeout=WAIT)
        ref.tell("crash")
        (reason,) = reasons.wait(1)
        assert isinstance(reason.error, RestartIntensityError)
    assert sorted(f[:2] for f in forgets.items) == [
        ("a", "supervisor gave up"),
        ("f", "supervisor gave up"),
    ]


def test_on_forget_when_the_supervisor_crashes() -> None:
    """A supervisor that crashes forgets its children with "supervisor crashed"."""

    class Crashing(DynamicSupervisor):
        def on_receive(self, message: Any) -> Any:
            if message == "crash":
                raise RuntimeError("supervisor bug")
            return super().on_receive(message)

    forgets = Recorder()
    reasons = Recorder()
    sup = Crashing.start()
    watch_exit(sup, reasons.add)
    sup.proxy().start_child(forgetting("a", forgets)).get(timeout=WAIT)
    sup.tell("crash")
    reasons.wait(1)
    assert [f[:2] for f in forgets.wait(1)] == [("a", "supervisor crashed")]
    wait_for(lambda: pykka.ActorRegistry.get_all() == [])


def test_on_forget_errors_are_logged_and_do_not_break_the_supervisor(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An on_forget that raises is logged; the supervisor goes on and forgets the others."""
    forgets = Recorder()

    def broken(reason: str) -> None:
        raise RuntimeError("on_forget bug")

    with caplog.at_level(logging.ERROR, logger="grpcpool"), running() as sup:
        proxy = sup.proxy()
        proxy.start_child(worker("bad", on_forget=broken)).get(timeout=WAIT)
        proxy.start_child(forgetting("good", forgets)).get(timeout=WAIT)
        proxy.terminate_children(["bad", "good"]).get(timeout=WAIT)
        assert [f[:2] for f in forgets.items] == [("good", "terminated")]
        assert sup.is_alive()
        assert children(sup) == {}
    assert any("on_forget of child 'bad' failed" in r.getMessage() for r in caplog.records)


def test_on_forget_is_not_called_for_a_child_that_never_started() -> None:
    """A child whose start fails was never known, so it is not forgotten either."""

    def boom() -> pykka.ActorRef[Any]:
        raise RuntimeError("cannot start")

    forgets = Recorder()
    with running() as sup, pytest.raises(ChildStartError):
        sup.proxy().start_child(
            ChildSpec("bad", start=boom, on_forget=lambda r: forgets.add(r))
        ).get(timeout=WAIT)
    assert forgets.items == []


def test_on_forget_of_children_started_before_a_failing_one() -> None:
    """Supervisor.start failing midway forgets the children it had started."""
    forgets = Recorder()

    def boom() -> pykka.ActorRef[Any]:
        raise RuntimeError("cannot start")

    with pytest.raises(ChildStartError):
        Supervisor.start(children=[forgetting("a", forgets), ChildSpec("bad", start=boom)])
    assert [f[:2] for f in forgets.items] == [("a", "supervisor stopped")]


def test_on_forget_must_be_callable() -> None:
    """ChildSpec rejects an on_forget that is not callable; it is keyword-only."""
    with pytest.raises(ValueError, match="on_forget"):
        ChildSpec("c", start=lambda: Worker.start("c"), on_forget="nope")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        ChildSpec("c", lambda: Worker.start("c"), "permanent", 5.0, "worker", print)  # type: ignore[call-arg]
