"""Noticing that an actor ended, and why.

pykka has no links or monitors. What every pykka actor does have is its
``actor_stopped`` event, set on the actor's own thread when it stops for any
reason (a requested stop, an exception in a message, an exception in
``on_start``). :func:`watch_exit` wraps that event's ``set`` so a callback runs
right there: no polling thread, and nothing blocks the supervisor's inbox.

:class:`SupervisedActor` adds the *why*: it records the exception that ended
it, including one raised by ``on_start``, which pykka logs but never passes to
``on_failure``. For any other actor the reason is unknown.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, ClassVar

import pykka

__all__ = ["ExitReason", "ExitWatch", "SupervisedActor", "watch_exit"]

# Name of the attribute a SupervisedActor sets on its actor_stopped event.
_REASON_ATTRIBUTE = "grpcpool_exit_error"


@dataclass(frozen=True)
class ExitReason:
    """Why an actor ended.

    Attributes:
        known: ``True`` when the actor reported it (a ``SupervisedActor``).
        error: The exception that ended it, or ``None`` for a normal stop
            (or an unknown reason when ``known`` is false).
    """

    known: bool
    error: BaseException | None = None

    @property
    def normal(self) -> bool:
        return self.known and self.error is None

    def describe(self) -> str:
        if not self.known:
            return "stopped without being asked"
        if self.error is None:
            return "normal"
        return f"{type(self.error).__name__}: {self.error}"


class SupervisedActor(pykka.ThreadingActor):
    """A pykka actor that tells its supervisor why it ended.

    Use it as the base class of any actor whose crashes should be told apart
    from normal stops: a crash restarts a ``transient`` child, a normal stop
    does not. Subclasses override ``on_start``, ``on_receive``, ``on_stop``
    and ``on_failure`` as with any pykka actor.

    It runs on a daemon thread (pykka's ``use_daemon_thread``), so that a
    child its supervisor abandoned (its ``on_stop`` overran the child's
    ``shutdown`` seconds; a Python thread cannot be killed) does not keep
    the interpreter from exiting. An orderly stop is not lost by this: a
    supervisor stops its children and waits for them, and a tree nobody
    stopped is stopped, in order, when the main thread ends, before the
    interpreter joins or abandons any thread. An actor of this class started
    outside any supervisor is not stopped at exit: stop it yourself, or set
    ``use_daemon_thread = False`` on its class to have it keep the process
    alive, as pykka's actors do by default.
    """

    use_daemon_thread: ClassVar[bool] = True

    def _handle_failure(
        self,
        exception_type: type[BaseException] | None,
        exception_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        # pykka calls this for every failure, from on_start as well as from a
        # message, just before it sets actor_stopped; so the reason is in
        # place when the watchers run. A failure after the stop (in on_stop)
        # does not change a reason already reported.
        if not self.actor_stopped.is_set():
            setattr(self.actor_stopped, _REASON_ATTRIBUTE, exception_value)
        super()._handle_failure(exception_type, exception_value, traceback)


def exit_reason(ref: pykka.ActorRef[Any]) -> ExitReason:
    """The reason an ended actor gave, as far as it is known."""
    if not issubclass(ref.actor_class, SupervisedActor):
        return ExitReason(known=False)
    return ExitReason(known=True, error=getattr(ref.actor_stopped, _REASON_ATTRIBUTE, None))


class ExitWatch:
    """Runs a callback once, when the watched actor ends.

    Attributes:
        thread: The thread the actor ran on, once it has ended (``None`` if
            it had already ended when the watch began).
    """

    def __init__(self, ref: pykka.ActorRef[Any], callback: Callable[[ExitReason], None]) -> None:
        self._ref = ref
        self._callback = callback
        self._lock = threading.Lock()
        self._fired = False
        self.thread: threading.Thread | None = None
        event = ref.actor_stopped
        original_set = event.set

        def set_and_notify() -> None:
            original_set()
            self._fire(threading.current_thread())

        event.set = set_and_notify  # type: ignore[method-assign]
        if event.is_set():
            # It ended before the wrapper was in place.
            self._fire(None)

    def _fire(self, thread: threading.Thread | None) -> None:
        with self._lock:
            if self._fired:
                return
            self._fired = True
            self.thread = thread
        self._callback(exit_reason(self._ref))

    def join(self, timeout: float) -> bool:
        """Waits up to ``timeout`` for the actor's thread to finish; true if it did."""
        thread = self.thread
        if thread is None or thread is threading.current_thread():
            return True
        thread.join(timeout)
        return not thread.is_alive()


def watch_exit(ref: pykka.ActorRef[Any], callback: Callable[[ExitReason], None]) -> ExitWatch:
    """Calls ``callback(reason)`` once when the actor behind ``ref`` ends.

    The callback runs on the ending actor's thread (or at once on the caller's
    thread if it has already ended). It must be quick and must not block:
    ``tell`` a message to whoever cares.
    """
    return ExitWatch(ref, callback)



# --- pykka across os.fork() ----------------------------------------------------
# How long a fork waits for pykka's registry lock (held only briefly, by a
# thread registering or unregistering an actor).
_REGISTRY_WAIT = 2.0


class _NoLock:
    """Stands in for pykka's registry lock should a pykka release not have one."""

    def acquire(self, timeout: float = -1) -> bool:
        return False

    def release(self) -> None:
        pass


class _ForkGuard:
    """Holds pykka's registry lock across a fork; a child forgets its parent's actors."""

    def __init__(self) -> None:
        self.held = False

    def before(self) -> None:
        # Held across the fork, so that the child's copy of pykka's registry
        # is not half-changed by a thread caught in the middle of it.
        self.held = _registry_lock().acquire(timeout=_REGISTRY_WAIT)

    def after_in_parent(self) -> None:
        if self.held:
            self.held = False
            _registry_lock().release()

    def after_in_child(self) -> None:
        # The lock was held by the forking thread (see before) or, if that
        # timed out, maybe by a thread that does not exist here: either way
        # the child starts with a fresh one.
        self.held = False
        pykka.ActorRegistry._actor_refs_lock = threading.RLock()
        # pykka's registry still lists the parent's actors, whose threads are
        # gone: asking one would wait forever.
        for ref in pykka.ActorRegistry.get_all():
            if issubclass(ref.actor_class, SupervisedActor):
                pykka.ActorRegistry.unregister(ref)


def _registry_lock() -> Any:
    return getattr(pykka.ActorRegistry, "_actor_refs_lock", None) or _NoLock()


_FORK_GUARD = _ForkGuard()
os.register_at_fork(
    before=_FORK_GUARD.before,
    after_in_parent=_FORK_GUARD.after_in_parent,
    after_in_child=_FORK_GUARD.after_in_child,
)
