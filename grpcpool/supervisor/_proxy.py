"""Typed views of a supervisor's proxy, the way ``pykka.typing`` types proxies.

``ActorRef.proxy()`` returns an ``ActorProxy`` whose attributes pykka types
as ``Any``, since it finds them at run time. pykka's remedy is a class that
declares each method the proxy forwards (``proxy_method``) and a cast of the
proxy to it; these are those classes, so that calls through a supervisor's
proxy, and what their futures hold, are type-checked. They are never
instantiated: the object is still pykka's ``ActorProxy``.
"""

from __future__ import annotations

from typing import TypeVar, cast

import pykka
from pykka.typing import ActorMemberMixin, proxy_method

from grpcpool.supervisor._dynamic import DynamicSupervisor

__all__ = ["SupervisorProxy", "supervisor_proxy"]

S = TypeVar("S", bound=DynamicSupervisor)


class SupervisorProxy(ActorMemberMixin, pykka.ActorProxy[DynamicSupervisor]):
    """The proxy API of a :class:`DynamicSupervisor` (and so of a ``Supervisor``)."""

    start_child = proxy_method(DynamicSupervisor.start_child)
    terminate_child = proxy_method(DynamicSupervisor.terminate_child)
    terminate_children = proxy_method(DynamicSupervisor.terminate_children)
    which_children = proxy_method(DynamicSupervisor.which_children)
    count_children = proxy_method(DynamicSupervisor.count_children)


def supervisor_proxy(ref: pykka.ActorRef[S]) -> SupervisorProxy:
    """``ref.proxy()``, typed with the supervisor's proxy API.

    Raises:
        pykka.ActorDeadError: The supervisor is not running.
    """
    return cast(SupervisorProxy, ref.proxy())
