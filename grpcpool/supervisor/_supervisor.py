"""An OTP-style one-for-one supervisor: a DynamicSupervisor with children given at start.

Everything about restarting and stopping is :class:`DynamicSupervisor`'s;
this class adds the children started, in order, before :meth:`Supervisor.start`
returns, and the ``strategy`` option of OTP's supervisor (only
``"one_for_one"`` exists).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, ClassVar, Self

import pykka

from grpcpool.supervisor._child_spec import ChildSpec, ChildSpecSource, as_child_spec
from grpcpool.supervisor._dynamic import DynamicSupervisor
from grpcpool.supervisor._starting import check_options, check_strategy, check_unique

__all__ = ["Supervisor"]


class Supervisor(DynamicSupervisor):
    """Starts children, restarts the ones that die, stops them in order.

    Start one with :meth:`start`, which returns once every child is running.
    Its proxy offers :meth:`start_child`, :meth:`terminate_child`,
    :meth:`terminate_children`, :meth:`which_children` and
    :meth:`count_children`, as a :class:`DynamicSupervisor`'s does. Unlike
    one, it keeps the spec of a transient child that ended normally (listed
    as not running), as OTP's supervisor does.
    """

    _keep_ended_transient: ClassVar[bool] = True

    def __init__(
        self,
        strategy: str = "one_for_one",
        max_restarts: int = 3,
        max_seconds: float = 5.0,
        name: str | None = None,
    ) -> None:
        check_strategy(strategy)
        super().__init__(max_restarts=max_restarts, max_seconds=max_seconds, name=name)
        self.strategy = strategy

    @classmethod
    def start(
        cls,
        children: Iterable[ChildSpec | ChildSpecSource] = (),
        strategy: str = "one_for_one",
        max_restarts: int = 3,
        max_seconds: float = 5.0,
        name: str | None = None,
        **actor_kwargs: Any,
    ) -> pykka.ActorRef[Self]:
        """Starts a supervisor and all its children, in order.

        Returns only when every child has started. If any child fails to
        start, the ones already started are stopped in reverse order, the
        supervisor stops, and the error is raised here.

        Raises:
            ValueError: An option or child spec is invalid, or two children
                share an id.
            ChildStartError: A child's ``start`` raised or it died starting.
        """
        check_strategy(strategy)
        check_options(max_restarts, max_seconds, name, None)
        specs = tuple(as_child_spec(child) for child in children)
        check_unique(specs)
        options = {
            "strategy": strategy,
            "max_restarts": max_restarts,
            "max_seconds": max_seconds,
            "name": name,
        }
        return cls._start_tree(specs, {**options, **actor_kwargs})
