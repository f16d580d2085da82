"""Autoscaler: a sync pool's ``pool.autoscale``, on the process timer.

The rules are :mod:`grpcpool.core._autoscale`'s (pure, shared with the
asyncio pool); this actor is their driver. It looks at the pool's load
``AUTOSCALE_SAMPLES`` times an interval (a ``send_after`` to itself, so its
thread only wakes to look), steps the rules, and hands each step to the
pool's PoolSupervisor (:class:`AutoscaleOwner`), which carries it out
through its resize path (so a removed connection drains) and announces
``pool.autoscaled``. It never waits on the supervisor: the supervisor stops
it before itself, and drops a step decided from a size that changed since.

A pool's call queue, when it is the load source, tells the autoscaler that a
call started waiting (its ``on_wait``, which the autoscaler sets to a
:class:`~grpcpool.actors._parts.Nudge`: one :class:`CallWaiting` message
until it has looked, however many calls wait): the pool then grows at once
rather than at the next look.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Protocol

import pykka

from grpcpool._config_capacity import AUTOSCALE_SAMPLES, Autoscale
from grpcpool.actors._entry import PoolEntry
from grpcpool.actors._parts import Nudge
from grpcpool.core._autoscale import LoadSource, Step, Window, grow_step, look
from grpcpool.supervisor import SupervisedActor, TimerHandle, send_after

__all__ = ["AutoscaleOwner", "Autoscaler", "CallWaiting"]


@dataclass(frozen=True)
class _Look:
    """Time to look at the load."""


@dataclass(frozen=True)
class CallWaiting:
    """A call started waiting for a connection: grow now if the rules allow."""


class AutoscaleOwner(Protocol):
    """What the Autoscaler asks of its PoolSupervisor (whose typed proxy is one)."""

    def autoscale(self, step: Step) -> pykka.Future[None]:
        """Carries out ``step``, unless the pool's size changed since it was decided."""
        ...


class Autoscaler(SupervisedActor):
    """Moves one pool's size with its load (``pool.autoscale``).

    Args:
        entry: The pool's entry (its config and current view).
        owner: The pool's PoolSupervisor (its typed proxy), never waited on.
        load: Where the load is read: the pool's capacity (calls in flight
            plus queued). Its ``on_wait`` is set to this actor's nudge.
    """

    def __init__(
        self, entry: PoolEntry, owner: AutoscaleOwner, load: LoadSource
    ) -> None:
        super().__init__()
        settings = entry.config.pool.autoscale
        assert settings is not None, "started for an autoscaled pool only"
        self._settings: Autoscale = settings
        self._entry = entry
        self._owner = owner
        self._load = load
        self._every = settings.interval / AUTOSCALE_SAMPLES
        self._window = Window()
        self._timer: TimerHandle | None = None
        self._waiting = Nudge()

    def on_start(self) -> None:
        me = self.actor_ref
        self._waiting.attach(lambda: me.tell(CallWaiting()))
        self._load.on_wait = self._waiting
        self._timer = send_after(self._every, me, _Look())

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, _Look):
            self._look()
            self._timer = send_after(self._every, self.actor_ref, _Look())
        elif isinstance(message, CallWaiting):
            self._waiting.taken()
            self._grow_now()
        else:
            return super().on_receive(message)
        return None

    def on_stop(self) -> None:
        self._let_go()

    def on_failure(
        self,
        exception_type: type[BaseException] | None,
        exception_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._let_go()
        super().on_failure(exception_type, exception_value, traceback)

    def _let_go(self) -> None:
        self._waiting.attach(None)
        if self._timer is not None:
            self._timer.cancel()

    def _look(self) -> None:
        load = self._load
        self._window, step = look(
            self._window,
            self._settings,
            self._entry.view,
            load=load.take_peak(),
            queued=load.queued,
        )
        self._hand_over(step)

    def _grow_now(self) -> None:
        queued = self._load.queued
        self._hand_over(grow_step(self._window, self._settings, self._entry.view, queued))

    def _hand_over(self, step: Step | None) -> None:
        if step is not None:
            # The pool is ending if its supervisor is gone: nothing to scale.
            with contextlib.suppress(pykka.ActorDeadError):
                self._owner.autoscale(step)

    def __repr__(self) -> str:
        low, high = self._settings.bounds
        return f"<Autoscaler {self._entry.name!r} {low}..{high}>"
