"""A one-for-one supervisor whose children are started one by one at run time.

Elixir's ``DynamicSupervisor`` is the model: it starts with no children, and
``start_child`` adds them. :class:`~grpcpool.supervisor.Supervisor` is this
class plus the children given to its ``start``; the restart and stop logic
lives here only.

How messages flow (no two actors ever wait on each other in a cycle):

* A caller ``ask``s the supervisor (``start_child``, ``terminate_child``,
  ``terminate_children``, ``which_children``, ``count_children``, ``stop``).
* The supervisor, on its own thread, starts children by calling their
  ``ChildSpec.start`` and then ``ask``s each new child one trivial question
  (its URN) to know that ``on_start`` finished. It stops children with
  ``ActorRef.stop``. Those are the only waits it performs.
* A child never ``ask``s its supervisor. Its end reaches the supervisor as a
  ``tell`` sent by an exit watch running on the child's own thread.
* Restarts triggered by those reports run on the supervisor's thread, one at
  a time, in the order the reports arrive.

A supervisor is itself a :class:`SupervisedActor`, so it can be the child of
another supervisor: when it gives up it stops its children and raises, which
its parent sees as an abnormal end (escalation).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from types import TracebackType
from typing import Any, ClassVar, Self

import pykka

from grpcpool.connection._announce import announce_as
from grpcpool.core._intensity import RestartWindow, gave_up, record_restart, restarted
from grpcpool.supervisor._child_spec import ChildSpec, ChildSpecSource, as_child_spec
from grpcpool.supervisor._children import (
    Child,
    ChildExited,
    RetryRestart,
    StartChildren,
    count_children,
    launch,
    shutdown_groups,
    stop_together,
)
from grpcpool.supervisor._errors import MaxChildrenError, RestartIntensityError
from grpcpool.supervisor._exit import SupervisedActor
from grpcpool.supervisor._starting import check_options, track_root

__all__ = ["DynamicSupervisor"]

_log = logging.getLogger(__name__)

# The reasons given to ChildSpec.on_forget (besides "exited: <why>").
TERMINATED = "terminated"
GAVE_UP = "supervisor gave up"
STOPPED = "supervisor stopped"
CRASHED = "supervisor crashed"


class DynamicSupervisor(SupervisedActor):
    """Supervises children started at run time; restarts the ones that die.

    Start one with :meth:`start`. Its proxy offers :meth:`start_child`,
    :meth:`terminate_child`, :meth:`terminate_children`,
    :meth:`which_children` and :meth:`count_children`; a subclass may call
    them directly on the actor's own thread (from one of its own proxy
    methods, say).

    Each child is restarted on its own (one for one) according to its
    ``ChildSpec.restart``. More than :meth:`restart_limit` restarts within
    ``max_seconds`` make the supervisor give up: it stops every child and
    ends with :class:`RestartIntensityError`, which its own supervisor sees
    as a crash.

    When it stops, gives up or crashes, it stops every child (in the order
    :meth:`shutdown_order` gives) and forgets it (``ChildSpec.on_forget``).
    One started outside any supervisor is the root of a tree, stopped at
    interpreter exit if nobody stopped it.

    Subclasses may override these hooks, all run on the actor's thread:
    :meth:`restart_limit`, :meth:`describe_restart_limit`,
    :meth:`child_restarted`, :meth:`child_terminated` and
    :meth:`shutdown_order`.

    Args:
        max_restarts: Restarts allowed within ``max_seconds``.
        max_seconds: The length of the sliding restart window.
        name: Used in logs and telemetry; generated when not given.
        max_children: At most this many children at once (children awaiting
            a restart count); ``None`` for no limit. ``start_child`` beyond
            it raises :class:`MaxChildrenError`.
    """

    # A transient child that ended normally: dropped here (no restart can
    # follow), kept as a spec not running by Supervisor, as in OTP.
    _keep_ended_transient: ClassVar[bool] = False

    def __init__(
        self,
        max_restarts: int = 3,
        max_seconds: float = 5.0,
        name: str | None = None,
        max_children: int | None = None,
    ) -> None:
        super().__init__()
        check_options(max_restarts, max_seconds, name, max_children)
        self.max_restarts = max_restarts
        self.max_seconds = float(max_seconds)
        self.max_children = max_children
        self.name = name or f"supervisor-{self.actor_urn.rsplit(':', 1)[-1][:8]}"
        # Children in start order; ids are unique. A restart keeps the place.
        self._children: dict[str, Child] = {}
        self._restarts = RestartWindow(self.max_seconds)
        self._stopping = False

    @classmethod
    def start(
        cls,
        *,
        max_restarts: int = 3,
        max_seconds: float = 5.0,
        name: str | None = None,
        max_children: int | None = None,
        **actor_kwargs: Any,
    ) -> pykka.ActorRef[Self]:
        """Starts a supervisor with no children.

        ``actor_kwargs`` go to a subclass's ``__init__``, with the options.

        Raises:
            ValueError: An option is invalid.
        """
        check_options(max_restarts, max_seconds, name, max_children)
        options = {
            "max_restarts": max_restarts,
            "max_seconds": max_seconds,
            "name": name,
            "max_children": max_children,
        }
        return cls._start_tree((), {**options, **actor_kwargs})

    @classmethod
    def _start_tree(
        cls, specs: tuple[ChildSpec, ...], kwargs: dict[str, Any]
    ) -> pykka.ActorRef[Self]:
        """Starts the actor and ``specs`` in order; a tree root if nobody supervises it."""
        ref = super().start(**kwargs)
        if specs:
            try:
                ref.ask(StartChildren(specs))
            except BaseException:
                ref.stop()
                raise
        track_root(ref)
        return ref

    # --- proxy API ------------------------------------------------------------

    def start_child(self, spec: ChildSpec | ChildSpecSource) -> pykka.ActorRef[Any]:
        """Starts and supervises one more child; returns once its ``on_start`` ran.

        Raises:
            ValueError: A child with that id exists already.
            MaxChildrenError: The supervisor has ``max_children`` already.
            ChildStartError: The child failed to start; nothing is kept.
        """
        return self._add_child(as_child_spec(spec))

    def terminate_child(self, child_id: str) -> None:
        """Stops a child and forgets it, so it is not restarted.

        Raises:
            LookupError: No child has that id.
        """
        self.terminate_children([child_id])

    def terminate_children(self, child_ids: Iterable[str]) -> None:
        """Stops several children together, then forgets them.

        Every child is asked to stop at once and each still gets its own
        ``shutdown`` seconds, so children holding slow resources stop in
        parallel. Then, in the order given, each one's ``on_forget`` and
        :meth:`child_terminated` run.

        Raises:
            LookupError: One of the ids is unknown; nothing was stopped.
        """
        if isinstance(child_ids, str):
            raise TypeError(f"{self.name}: terminate_children takes a list of ids, not a str")
        ids = list(dict.fromkeys(child_ids))
        unknown = [child_id for child_id in ids if child_id not in self._children]
        if unknown:
            raise LookupError(f"{self.name}: no child with id {unknown[0]!r}")
        children = [self._children.pop(child_id) for child_id in ids]
        stop_together(children, self.name)
        for child in children:
            child.forget(self.name, TERMINATED)
        for child in children:
            self.child_terminated(child.spec.id)

    def which_children(self) -> list[tuple[str, pykka.ActorRef[Any] | None, str]]:
        """``(id, ref or None, type)`` for each child, in start order."""
        return [(c.spec.id, c.ref, c.spec.type) for c in self._children.values()]

    def count_children(self) -> dict[str, int]:
        """Counts of ``specs``, ``active`` children, ``supervisors`` and ``workers``."""
        return count_children(list(self._children.values()))

    # --- hooks for subclasses -------------------------------------------------

    def restart_limit(self) -> int:
        """Restarts allowed within ``max_seconds``; ``max_restarts`` unless overridden.

        Asked at every restart, so a subclass can scale it with its number of
        children (one crash per child must not take the supervisor down).
        """
        return self.max_restarts

    def describe_restart_limit(self, limit: int) -> str:
        """How the give-up message states ``limit``, the limit it exceeded.

        ``limit`` is what :meth:`restart_limit` returned for the restart that
        made the supervisor give up. The default is the number alone when it
        is ``max_restarts``, else the number and where it came from; a
        subclass that computes its limit says how (``"5 = 3 + 2 workers"``),
        so the message states the limit actually applied. If this raises,
        the number is used.
        """
        if limit == self.max_restarts:
            return str(limit)
        return f"{limit} from restart_limit(); max_restarts is {self.max_restarts}"

    def child_restarted(self, child_id: str, ref: pykka.ActorRef[Any]) -> None:
        """Runs after ``child_id`` was restarted as ``ref`` (and its ``on_start`` ran).

        An exception here crashes the supervisor, as any bug in it would.
        """

    def child_terminated(self, child_id: str) -> None:
        """Runs after ``terminate_child``/``terminate_children`` stopped and forgot a child.

        An exception here reaches the caller of the terminate method.
        """

    def shutdown_order(self, child_ids: list[str]) -> list[list[str]]:
        """How the children are stopped when the supervisor stops or gives up.

        Args:
            child_ids: Every child, in start order.

        Returns:
            Groups of ids, stopped one group after the other; the children of
            one group are stopped together, in parallel. Unknown or repeated
            ids are skipped; a child in no group is stopped alone afterwards,
            last started first. The default is that order: each child alone,
            last started first. If this raises, the default is used.
        """
        return [[child_id] for child_id in reversed(child_ids)]

    # --- actor hooks ----------------------------------------------------------

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, ChildExited):
            self._on_child_exited(message)
        elif isinstance(message, RetryRestart):
            child = self._children.get(message.child_id)
            if (
                child is not None
                and child.ref is None
                and not child.forgotten
                and not self._stopping
            ):
                self._restart(child, message.reason)
        elif isinstance(message, StartChildren):
            self._start_children(message.specs)
        else:
            return super().on_receive(message)
        return None

    def on_stop(self) -> None:
        self._stop_children(STOPPED)

    def on_failure(
        self,
        exception_type: type[BaseException] | None,
        exception_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._stop_children(CRASHED)

    def __repr__(self) -> str:
        alive = sum(1 for c in self._children.values() if c.ref is not None)
        kind = type(self).__name__
        return f"<{kind} {self.name!r} [{alive}/{len(self._children)} children running]>"

    # --- starting -------------------------------------------------------------

    def _start_children(self, specs: tuple[ChildSpec, ...]) -> None:
        for spec in specs:
            try:
                self._add_child(spec)
            except BaseException:
                self._stop_children(STOPPED)
                raise

    def _add_child(self, spec: ChildSpec) -> pykka.ActorRef[Any]:
        if spec.id in self._children:
            raise ValueError(f"{self.name}: a child with id {spec.id!r} exists already")
        if self.max_children is not None and len(self._children) >= self.max_children:
            raise MaxChildrenError(spec.id, self.max_children)
        child = Child(spec)
        launch(child, self.actor_ref)
        self._children[spec.id] = child
        assert child.ref is not None
        return child.ref

    # --- restarting -----------------------------------------------------------

    def _on_child_exited(self, message: ChildExited) -> None:
        child = self._children.get(message.child_id)
        if child is None or child.ref is None or child.ref.actor_urn != message.urn:
            return  # an earlier incarnation, or a child we stopped on purpose
        if self._stopping:
            return
        child.ref = None
        spec = child.spec
        reason = message.reason
        abnormal = not reason.normal
        log = _log.warning if abnormal else _log.debug
        log("%s: child %r ended (%s)", self.name, spec.id, reason.describe())
        if spec.restart == "permanent" or (spec.restart == "transient" and abnormal):
            self._restart(child, reason.describe())
            return
        if spec.restart == "temporary" or not self._keep_ended_transient:
            del self._children[spec.id]
        child.forget(self.name, f"exited: {reason.describe()}")

    def _restart(self, child: Child, reason: str) -> None:
        limit = self.restart_limit()
        self._restarts, verdict = record_restart(self._restarts, time.monotonic(), limit)
        if verdict.give_up:
            self._give_up(child.spec.id, reason, verdict.restarts, limit)
        try:
            launch(child, self.actor_ref)
        except Exception as error:
            _log.error("%s: restarting %r failed: %s", self.name, child.spec.id, error)
            # Retried as a fresh message, so the failure counts against the
            # restart intensity and other reports are not starved.
            self.actor_ref.tell(RetryRestart(child.spec.id, str(error)))
            return
        assert child.ref is not None
        self.child_restarted(child.spec.id, child.ref)
        announce_as(restarted(self.name, child.spec.id, reason, verdict.restarts), self.name)

    def _give_up(self, child_id: str, reason: str, restarts: int, limit: int) -> None:
        message = (
            f"{self.name}: {restarts} restarts within {self.max_seconds}s "
            f"(max {self._describe_limit(limit)}); last: child {child_id!r} {reason}"
        )
        _log.error("%s; shutting down", message)
        announce_as(gave_up(self.name, message, restarts), self.name)
        self._stop_children(GAVE_UP)
        # Raised from a told message: pykka ends this actor abnormally, and a
        # parent supervisor's watch sees the error (escalation).
        raise RestartIntensityError(message)

    def _describe_limit(self, limit: int) -> str:
        try:
            return str(self.describe_restart_limit(limit))
        except Exception:
            _log.exception("%s: describe_restart_limit failed", self.name)
            return str(limit)

    # --- stopping -------------------------------------------------------------

    def _stop_children(self, reason: str) -> None:
        """Stops and forgets every child, in the groups :meth:`shutdown_order` gives."""
        self._stopping = True
        ids = list(self._children)
        if not ids:
            return
        for group in shutdown_groups(self.name, ids, self.shutdown_order):
            children = [self._children.pop(i) for i in group if i in self._children]
            stop_together(children, self.name)
            for child in children:
                child.forget(self.name, reason)
