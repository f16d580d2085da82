"""Child specifications: what a supervisor needs to know to (re)start a child."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

import pykka

__all__ = ["ChildSpec", "ChildSpecSource", "RestartType", "as_child_spec"]

RestartType = Literal["permanent", "transient", "temporary"]
ChildType = Literal["worker", "supervisor"]

_RESTART_TYPES = ("permanent", "transient", "temporary")
_CHILD_TYPES = ("worker", "supervisor")


@dataclass(frozen=True)
class ChildSpec:
    """How to start one child and what to do when it ends.

    Attributes:
        id: Unique among the supervisor's children; used by
            ``terminate_child`` and in telemetry.
        start: Called on the supervisor's thread to start the child; returns
            the child's ``pykka.ActorRef``. Called again on every restart.
        restart: ``"permanent"`` children are always restarted,
            ``"transient"`` ones only after an abnormal end, ``"temporary"``
            ones never (their spec is dropped when they end). A transient
            child that ended normally is dropped by a ``DynamicSupervisor``;
            a ``Supervisor`` keeps its spec, listed as not running.
        shutdown: Seconds the child gets to stop before it is abandoned.
        type: ``"supervisor"`` for a child that supervises others, else
            ``"worker"``; reported by ``count_children``.
        on_forget: Called once, on the supervisor's thread, with a short
            reason, when the supervisor forgets the child for good: no
            restart follows, so whatever the child stood for (a pool's
            worker, say) can be released. Never called on a restart, nor for
            a child that never started. The reasons:

            * ``"terminated"``: ``terminate_child`` or ``terminate_children``;
            * ``"exited: <why>"``: a temporary child ended (``why`` is
              ``"normal"`` or the error), or a transient one ended normally;
            * ``"supervisor gave up"``: too many restarts; every child is
              forgotten, also one that is dead and awaiting its restart;
            * ``"supervisor stopped"`` / ``"supervisor crashed"``: the
              supervisor's own end.
        on_duplicate: Makes the error a supervisor raises when another
            child given with this one has the same id (by default a
            ``ValueError`` naming the id): a pool's spec says that two pools
            share a name, which is what the user wrote.

            It must be quick and must not ask the supervisor anything (it
            runs on the supervisor's thread). An exception from it is logged
            and otherwise ignored.
    """

    id: str
    start: Callable[[], pykka.ActorRef[Any]]
    restart: RestartType = "permanent"
    shutdown: float = 5.0
    type: ChildType = "worker"
    on_forget: Callable[[str], None] | None = field(default=None, kw_only=True)
    on_duplicate: Callable[[], Exception] | None = field(default=None, kw_only=True)

    def __post_init__(self) -> None:
        if not isinstance(self.id, str) or not self.id:
            raise ValueError(f"child id must be a non-empty string, got {self.id!r}")
        if not callable(self.start):
            raise ValueError(f"child {self.id!r}: start must be callable, got {self.start!r}")
        if self.restart not in _RESTART_TYPES:
            raise ValueError(
                f"child {self.id!r}: restart must be one of {_RESTART_TYPES}, got {self.restart!r}"
            )
        if (
            isinstance(self.shutdown, bool)
            or not isinstance(self.shutdown, int | float)
            or not math.isfinite(self.shutdown)
            or self.shutdown <= 0
        ):
            raise ValueError(
                f"child {self.id!r}: shutdown must be a positive number of seconds, "
                f"got {self.shutdown!r}"
            )
        if self.type not in _CHILD_TYPES:
            raise ValueError(
                f"child {self.id!r}: type must be one of {_CHILD_TYPES}, got {self.type!r}"
            )
        if self.on_duplicate is not None and not callable(self.on_duplicate):
            raise TypeError(
                f"child {self.id!r}: on_duplicate must be callable or None, "
                f"got {type(self.on_duplicate).__name__}"
            )
        if self.on_forget is not None and not callable(self.on_forget):
            raise ValueError(
                f"child {self.id!r}: on_forget must be callable or None, got {self.on_forget!r}"
            )


@runtime_checkable
class ChildSpecSource(Protocol):
    """Anything that can describe itself as a child, such as a ``PoolSpec``."""

    def child_spec(self) -> ChildSpec: ...


def as_child_spec(child: ChildSpec | ChildSpecSource) -> ChildSpec:
    """Accepts a ``ChildSpec`` or an object that makes one.

    Raises:
        TypeError: ``child`` is neither.
    """
    if isinstance(child, ChildSpec):
        return child
    if isinstance(child, ChildSpecSource):
        spec = child.child_spec()
        if not isinstance(spec, ChildSpec):
            raise TypeError(f"{child!r}.child_spec() returned {spec!r}, not a ChildSpec")
        return spec
    raise TypeError(f"a child must be a ChildSpec or have child_spec(), got {child!r}")
