"""Starting children: confirming a start, knowing the starter, checking options.

Also the roots of supervision trees: the supervisors started outside any
supervisor, kept in ``PROCESS.roots`` so that interpreter exit stops them.
"""

from __future__ import annotations

import atexit
import logging
import math
import threading
import time
from typing import Any

import pykka
from pykka.messages import ProxyGetAttr

from grpcpool._process import PROCESS
from grpcpool.supervisor._child_spec import ChildSpec

__all__ = [
    "START_TIMEOUT",
    "await_started",
    "check_options",
    "check_strategy",
    "check_unique",
    "current_supervisor",
    "starting",
    "track_root",
]

# How long a child's on_start may take before the start counts as failed.
START_TIMEOUT = 30.0
_START_POLL_SECONDS = 0.5
_STRATEGIES = ("one_for_one",)

_log = logging.getLogger(__name__)


class _Starting(threading.local):
    parent: pykka.ActorRef[Any] | None = None


# Which supervisor is calling a ChildSpec.start on this thread, if any.
starting = _Starting()


def current_supervisor() -> pykka.ActorRef[Any] | None:
    """The supervisor whose ``ChildSpec.start`` is running on this thread.

    A child that wants to know its parent (to ask it to terminate the child
    for good, say) calls this from its ``start`` callable.
    """
    return starting.parent


def await_started(ref: pykka.ActorRef[Any]) -> None:
    """Returns once the actor's ``on_start`` has returned.

    Raises:
        pykka.ActorDeadError: The actor ended while starting.
        pykka.Timeout: It was still starting after ``START_TIMEOUT`` seconds.
    """
    # A trivial question, answered only after on_start. If the actor dies in
    # the instant between pykka's liveness check and the question landing in
    # its inbox, nobody ever answers; so wait in slices and look again.
    future = ref.ask(ProxyGetAttr(attr_path=("actor_urn",)), block=False)
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        try:
            future.get(timeout=_START_POLL_SECONDS)
            return
        except pykka.Timeout:
            if not ref.is_alive():
                raise pykka.ActorDeadError(f"{ref} ended while starting") from None
            if time.monotonic() >= deadline:
                raise


def check_strategy(strategy: Any) -> None:
    if strategy not in _STRATEGIES:
        raise ValueError(f"supervisor strategy must be one of {_STRATEGIES}, got {strategy!r}")


def check_options(max_restarts: Any, max_seconds: Any, name: Any, max_children: Any) -> None:
    if isinstance(max_restarts, bool) or not isinstance(max_restarts, int) or max_restarts < 0:
        raise ValueError(f"max_restarts must be an int >= 0, got {max_restarts!r}")
    if (
        isinstance(max_seconds, bool)
        or not isinstance(max_seconds, int | float)
        or math.isnan(max_seconds)
        or max_seconds <= 0
    ):
        raise ValueError(f"max_seconds must be a positive number, got {max_seconds!r}")
    if name is not None and (not isinstance(name, str) or not name):
        raise ValueError(f"supervisor name must be a non-empty string, got {name!r}")
    if max_children is not None and (
        isinstance(max_children, bool) or not isinstance(max_children, int) or max_children < 0
    ):
        raise ValueError(f"max_children must be None or an int >= 0, got {max_children!r}")


def check_unique(specs: tuple[ChildSpec, ...]) -> None:
    seen: set[str] = set()
    for spec in specs:
        if spec.id in seen:
            if spec.on_duplicate is not None:
                raise spec.on_duplicate()
            raise ValueError(f"two children share the id {spec.id!r}")
        seen.add(spec.id)


def track_root(ref: pykka.ActorRef[Any]) -> None:
    """Remembers ``ref`` as a tree root if no supervisor is starting it."""
    if starting.parent is not None:
        return
    with PROCESS.lock:
        roots = PROCESS.roots
        roots[:] = [root for root in roots if root.is_alive()]
        roots.append(ref)


def _stop_roots() -> None:
    # A tree nobody stopped ends in order here, when the main thread is done,
    # before Python joins the remaining non-daemon threads; newest tree
    # first. Its actors run on daemon threads (SupervisedActor), which the
    # interpreter would otherwise stop dead at exit, without their on_stop;
    # a pykka actor on a default non-daemon thread would keep it alive.
    with PROCESS.lock:
        roots, PROCESS.roots[:] = list(PROCESS.roots), []
    for ref in reversed(roots):
        try:
            if ref.is_alive():
                ref.stop(timeout=START_TIMEOUT)
        except Exception:  # one stuck tree must not keep the others running
            _log.exception("stopping %s at exit failed", ref)


# threading's own hook runs as soon as the main thread is done, before
# non-daemon threads are joined; atexit would run only after them (never, if
# one lives on).
getattr(threading, "_register_atexit", atexit.register)(_stop_roots)
