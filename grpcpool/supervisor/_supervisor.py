"""An OTP-style one-for-one supervisor built on pykka.

How messages flow (no two actors ever wait on each other in a cycle):

* A caller ``ask``s the supervisor (``start``, ``start_child``,
  ``terminate_child``, ``which_children``, ``count_children``, ``stop``).
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

import collections
import contextlib
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import pykka

from grpcpool import telemetry
from grpcpool.errors import GrpcPoolError
from grpcpool.supervisor._child_spec import ChildSpec, ChildSpecSource, as_child_spec
from grpcpool.supervisor._exit import (
    ExitReason,
    ExitWatch,
    SupervisedActor,
    exit_reason,
    watch_exit,
)
from grpcpool.supervisor._starting import (
    START_TIMEOUT,
    await_started,
    check_options,
    check_unique,
    current_supervisor,
    starting,
    track_root,
)

__all__ = ["ChildStartError", "RestartIntensityError", "Supervisor", "current_supervisor"]

_log = logging.getLogger(__name__)


class ChildStartError(GrpcPoolError):
    """A child could not be started (its ``start`` raised or it died starting)."""

    def __init__(self, child_id: str, reason: str) -> None:
        self.child_id = child_id
        super().__init__(f"child {child_id!r} failed to start: {reason}")


class RestartIntensityError(GrpcPoolError):
    """A supervisor restarted children too often and gave up."""


@dataclass
class _Child:
    spec: ChildSpec
    ref: pykka.ActorRef[Any] | None = None
    watch: ExitWatch | None = None


@dataclass(frozen=True)
class _ChildExited:
    child_id: str
    urn: str
    reason: ExitReason


@dataclass(frozen=True)
class _RetryRestart:
    child_id: str
    reason: str


@dataclass(frozen=True)
class _StartChildren:
    specs: tuple[ChildSpec, ...]


class Supervisor(SupervisedActor):
    """Starts children, restarts the ones that die, stops them in order.

    Start one with :meth:`start`, which returns once every child is running.
    Its proxy offers :meth:`start_child`, :meth:`terminate_child`,
    :meth:`which_children` and :meth:`count_children`.
    """

    def __init__(
        self,
        strategy: str = "one_for_one",
        max_restarts: int = 3,
        max_seconds: float = 5.0,
        name: str | None = None,
    ) -> None:
        super().__init__()
        check_options(strategy, max_restarts, max_seconds, name)
        self.strategy = strategy
        self.max_restarts = max_restarts
        self.max_seconds = float(max_seconds)
        self.name = name or f"supervisor-{self.actor_urn.rsplit(':', 1)[-1][:8]}"
        # Children in start order; ids are unique.
        self._children: dict[str, _Child] = {}
        self._restart_times: collections.deque[float] = collections.deque()
        self._stopping = False

    @classmethod
    def start(
        cls,
        children: Iterable[ChildSpec | ChildSpecSource] = (),
        strategy: str = "one_for_one",
        max_restarts: int = 3,
        max_seconds: float = 5.0,
        name: str | None = None,
        **actor_kwargs: Any,
    ) -> pykka.ActorRef[Any]:
        """Starts a supervisor and all its children, in order.

        Returns only when every child has started. If any child fails to
        start, the ones already started are stopped in reverse order, the
        supervisor stops, and the error is raised here.

        Raises:
            ValueError: An option or child spec is invalid, or two children
                share an id.
            ChildStartError: A child's ``start`` raised or it died starting.
        """
        check_options(strategy, max_restarts, max_seconds, name)
        specs = tuple(as_child_spec(child) for child in children)
        check_unique(specs)
        ref = super().start(
            strategy=strategy,
            max_restarts=max_restarts,
            max_seconds=max_seconds,
            name=name,
            **actor_kwargs,
        )
        try:
            ref.ask(_StartChildren(specs))
        except BaseException:
            ref.stop()
            raise
        track_root(ref)
        return ref

    # --- proxy API ------------------------------------------------------------

    def start_child(self, spec: ChildSpec | ChildSpecSource) -> pykka.ActorRef[Any]:
        """Starts and supervises one more child; returns its ref.

        Raises:
            ValueError: A child with that id exists already.
            ChildStartError: The child failed to start; nothing is kept.
        """
        child_spec = as_child_spec(spec)
        if child_spec.id in self._children:
            raise ValueError(f"{self.name}: a child with id {child_spec.id!r} exists already")
        child = _Child(child_spec)
        self._launch(child)
        self._children[child_spec.id] = child
        assert child.ref is not None
        return child.ref

    def terminate_child(self, child_id: str) -> None:
        """Stops a child and forgets its spec, so it is not restarted.

        Raises:
            LookupError: No child has that id.
        """
        child = self._children.pop(child_id, None)
        if child is None:
            raise LookupError(f"{self.name}: no child with id {child_id!r}")
        self._stop_child(child)

    def which_children(self) -> list[tuple[str, pykka.ActorRef[Any] | None, str]]:
        """``(id, ref or None, type)`` for each child, in start order."""
        return [(c.spec.id, c.ref, c.spec.type) for c in self._children.values()]

    def count_children(self) -> dict[str, int]:
        """Counts of ``specs``, ``active`` children, ``supervisors`` and ``workers``."""
        children = list(self._children.values())
        return {
            "specs": len(children),
            "active": sum(1 for c in children if c.ref is not None and c.ref.is_alive()),
            "supervisors": sum(1 for c in children if c.spec.type == "supervisor"),
            "workers": sum(1 for c in children if c.spec.type == "worker"),
        }

    # --- actor hooks ----------------------------------------------------------

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, _ChildExited):
            self._on_child_exited(message)
        elif isinstance(message, _RetryRestart):
            child = self._children.get(message.child_id)
            if child is not None and child.ref is None and not self._stopping:
                self._restart(child, message.reason)
        elif isinstance(message, _StartChildren):
            self._start_children(message.specs)
        else:
            return super().on_receive(message)
        return None

    def on_stop(self) -> None:
        self._stop_children()

    def on_failure(
        self,
        exception_type: type[BaseException] | None,
        exception_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._stop_children()

    def __repr__(self) -> str:
        alive = sum(1 for c in self._children.values() if c.ref is not None)
        return f"<Supervisor {self.name!r} [{alive}/{len(self._children)} children running]>"

    # --- starting -------------------------------------------------------------

    def _start_children(self, specs: tuple[ChildSpec, ...]) -> None:
        for spec in specs:
            if spec.id in self._children:
                self._stop_children()
                raise ValueError(f"{self.name}: a child with id {spec.id!r} exists already")
            child = _Child(spec)
            try:
                self._launch(child)
            except BaseException:
                self._stop_children()
                raise
            self._children[spec.id] = child

    def _launch(self, child: _Child) -> None:
        """Starts the child, waits for its on_start, and begins watching it."""
        spec = child.spec
        starting.parent = self.actor_ref
        try:
            ref = spec.start()
        except GrpcPoolError:
            raise  # already says what went wrong (a pool name in use, say)
        except Exception as error:
            raise ChildStartError(spec.id, f"{type(error).__name__}: {error}") from error
        finally:
            starting.parent = None
        if not isinstance(ref, pykka.ActorRef):
            raise ChildStartError(spec.id, f"start returned {ref!r}, not a pykka.ActorRef")
        urn = ref.actor_urn
        me = self.actor_ref

        def on_exit(reason: ExitReason) -> None:
            # If the supervisor itself is gone there is nobody to report to.
            with contextlib.suppress(pykka.ActorDeadError):
                me.tell(_ChildExited(spec.id, urn, reason))

        try:
            await_started(ref)
        except pykka.ActorDeadError:
            reason = exit_reason(ref)
            raise ChildStartError(spec.id, reason.describe()) from reason.error
        except pykka.Timeout:
            ref.stop(block=False)
            raise ChildStartError(spec.id, f"on_start took over {START_TIMEOUT}s") from None
        child.ref = ref
        child.watch = watch_exit(ref, on_exit)

    # --- restarting -----------------------------------------------------------

    def _on_child_exited(self, message: _ChildExited) -> None:
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
        if spec.restart == "temporary":
            del self._children[spec.id]
        elif spec.restart == "permanent" or abnormal:
            self._restart(child, reason.describe())

    def _restart(self, child: _Child, reason: str) -> None:
        now = time.monotonic()
        window = self._restart_times
        window.append(now)
        while window and window[0] < now - self.max_seconds:
            window.popleft()
        if len(window) > self.restart_limit():
            self._give_up(child.spec.id, reason)
        try:
            self._launch(child)
        except Exception as error:
            _log.error("%s: restarting %r failed: %s", self.name, child.spec.id, error)
            # Retried as a fresh message, so the failure counts against the
            # restart intensity and other reports are not starved.
            self.actor_ref.tell(_RetryRestart(child.spec.id, str(error)))
            return
        self._child_restarted(child.spec.id)
        telemetry.emit(
            telemetry.supervisor_child_restarted,
            self.name,
            {"restarts": len(window)},
            {"supervisor": self.name, "child_id": child.spec.id, "reason": reason},
        )

    def restart_limit(self) -> int:
        """Restarts allowed within ``max_seconds``; subclasses may scale it."""
        return self.max_restarts

    def _child_restarted(self, child_id: str) -> None:
        """Hook run after a child was restarted; subclasses may react."""

    def _give_up(self, child_id: str, reason: str) -> None:
        restarts = len(self._restart_times)
        message = (
            f"{self.name}: {restarts} restarts within {self.max_seconds}s "
            f"(max {self.max_restarts}); last: child {child_id!r} {reason}"
        )
        _log.error("%s; shutting down", message)
        telemetry.emit(
            telemetry.supervisor_shutdown,
            self.name,
            {"restarts": restarts},
            {"supervisor": self.name, "reason": message},
        )
        self._stop_children()
        # Raised from a told message: pykka ends this actor abnormally, and a
        # parent supervisor's watch sees the error (escalation).
        raise RestartIntensityError(message)

    # --- stopping -------------------------------------------------------------

    def _stop_children(self) -> None:
        self._stopping = True
        for child in reversed(list(self._children.values())):
            self._stop_child(child)

    def _stop_child(self, child: _Child) -> None:
        self._stop_together([child])

    def _stop_together(self, children: list[_Child]) -> None:
        """Asks every child to stop at once, then waits for each in turn.

        Children that hold slow resources (a grpc channel takes up to 0.2 s
        to close) stop in parallel this way; each still gets its own
        ``shutdown`` seconds, and one that overruns is abandoned with a
        warning, because a Python thread cannot be killed.
        """
        pending = []
        for child in children:
            ref, child.ref = child.ref, None
            if ref is None:
                continue
            deadline = time.monotonic() + child.spec.shutdown
            pending.append((child, ref.stop(block=False), deadline))
        for child, stopped, deadline in pending:
            try:
                stopped.get(timeout=max(0.0, deadline - time.monotonic()))
            except pykka.Timeout:
                _log.warning(
                    "%s: child %r did not stop within %ss; abandoning it",
                    self.name,
                    child.spec.id,
                    child.spec.shutdown,
                )
                continue
            watch = child.watch
            if watch is not None and not watch.join(max(0.0, deadline - time.monotonic())):
                _log.warning(
                    "%s: child %r thread still running after stop", self.name, child.spec.id
                )
