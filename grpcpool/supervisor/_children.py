"""One supervised child: starting it, hearing of its end, stopping it, forgetting it.

The mechanics a supervisor applies to each child, apart from its decisions
(when to restart, when to give up, in which order to stop), which are
:class:`~grpcpool.supervisor.DynamicSupervisor`'s. Everything here runs on
the supervisor's thread, except the exit watch's ``tell``.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pykka

from grpcpool.errors import GrpcPoolError
from grpcpool.supervisor._child_spec import ChildSpec
from grpcpool.supervisor._errors import ChildStartError
from grpcpool.supervisor._exit import ExitReason, ExitWatch, exit_reason, watch_exit
from grpcpool.supervisor._starting import START_TIMEOUT, await_started, starting

__all__ = [
    "Child",
    "ChildExited",
    "RetryRestart",
    "StartChildren",
    "count_children",
    "launch",
    "shutdown_groups",
    "stop_together",
]

_log = logging.getLogger(__name__)


@dataclass
class Child:
    """A child as its supervisor knows it: the spec and the current incarnation."""

    spec: ChildSpec
    ref: pykka.ActorRef[Any] | None = None
    watch: ExitWatch | None = None
    # on_forget has run: no restart may follow.
    forgotten: bool = False

    def forget(self, supervisor: str, reason: str) -> None:
        """Runs the spec's ``on_forget`` once; its errors are only logged."""
        if self.forgotten:
            return
        self.forgotten = True
        callback = self.spec.on_forget
        if callback is None:
            return
        try:
            callback(reason)
        except Exception:
            _log.exception("%s: on_forget of child %r failed", supervisor, self.spec.id)


@dataclass(frozen=True)
class ChildExited:
    """Told to the supervisor by the exit watch of the incarnation ``urn``."""

    child_id: str
    urn: str
    reason: ExitReason


@dataclass(frozen=True)
class RetryRestart:
    """Told by the supervisor to itself after a restart attempt failed."""

    child_id: str
    reason: str


@dataclass(frozen=True)
class StartChildren:
    """Asked of a new supervisor: start these children, in order."""

    specs: tuple[ChildSpec, ...]


def count_children(children: list[Child]) -> dict[str, int]:
    """``count_children``'s answer for ``children``: specs, active, supervisors, workers."""
    return {
        "specs": len(children),
        "active": sum(1 for c in children if c.ref is not None and c.ref.is_alive()),
        "supervisors": sum(1 for c in children if c.spec.type == "supervisor"),
        "workers": sum(1 for c in children if c.spec.type == "worker"),
    }


def launch(child: Child, supervisor: pykka.ActorRef[Any]) -> None:
    """Starts the child, waits for its on_start, and begins watching it.

    Raises:
        ChildStartError: ``start`` raised, returned something other than an
            actor, or the actor died or hung starting.
        GrpcPoolError: ``start`` raised one (it already says what went wrong).
    """
    spec = child.spec
    starting.parent = supervisor
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

    def on_exit(reason: ExitReason) -> None:
        # If the supervisor itself is gone there is nobody to report to.
        with contextlib.suppress(pykka.ActorDeadError):
            supervisor.tell(ChildExited(spec.id, urn, reason))

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


def stop_together(children: list[Child], supervisor: str) -> None:
    """Asks every child to stop at once, then waits for each in turn.

    Children that hold slow resources (a grpc channel takes up to 0.2 s
    to close) stop in parallel this way; each still gets its own
    ``shutdown`` seconds, and one that overruns is abandoned with a
    warning, because a Python thread cannot be killed. An abandoned child
    on a daemon thread (every ``SupervisedActor``) does not keep the
    interpreter from exiting; one on pykka's default non-daemon thread
    does, until it ends, and the warning says so.
    """
    pending = []
    for child in children:
        ref, child.ref = child.ref, None
        if ref is None:
            continue
        deadline = time.monotonic() + child.spec.shutdown
        pending.append((child, ref, ref.stop(block=False), deadline))
    for child, ref, stopped, deadline in pending:
        try:
            stopped.get(timeout=max(0.0, deadline - time.monotonic()))
        except pykka.Timeout:
            _log.warning(
                "%s: child %r did not stop within %ss; abandoning it%s",
                supervisor,
                child.spec.id,
                child.spec.shutdown,
                "" if _runs_on_daemon_thread(child, ref) else _BLOCKS_EXIT,
            )
            continue
        watch = child.watch
        if watch is not None and not watch.join(max(0.0, deadline - time.monotonic())):
            _log.warning("%s: child %r thread still running after stop", supervisor, child.spec.id)


def shutdown_groups(
    supervisor: str, ids: list[str], order: Callable[[list[str]], Any]
) -> list[list[str]]:
    """The groups of child ids a supervisor stops, one group after the other.

    ``order`` is the supervisor's ``shutdown_order`` hook. Whatever its groups
    leave out is stopped afterwards, alone, last started first; so is every
    child if it raises or returns something other than a list of lists.
    """
    default = [[child_id] for child_id in reversed(ids)]
    try:
        groups = order(list(ids))
        if not isinstance(groups, list | tuple) or not all(
            isinstance(group, list | tuple) for group in groups
        ):
            raise TypeError(f"shutdown_order returned {groups!r}, not a list of lists")
    except Exception:
        _log.exception("%s: shutdown_order failed; stopping children one by one", supervisor)
        return default
    return [list(group) for group in groups] + default


_BLOCKS_EXIT = (
    "; its thread is not a daemon thread, so the interpreter cannot exit until it ends "
    "(make the actor a grpcpool SupervisedActor, or set use_daemon_thread = True on its class)"
)


def _runs_on_daemon_thread(child: Child, ref: pykka.ActorRef[Any]) -> bool:
    # The thread is known once the actor has begun to stop (pykka sets
    # actor_stopped before on_stop); one stuck in a message has not, and
    # its class says what pykka made its thread.
    watch = child.watch
    thread = watch.thread if watch is not None else None
    if thread is not None:
        return thread.daemon
    return bool(getattr(ref.actor_class, "use_daemon_thread", False))
