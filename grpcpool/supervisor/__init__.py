"""Supervision for pykka actors: supervisors, child specs, exit watching, timers.

Nothing here knows about gRPC; a pool is just one kind of child.
"""

from grpcpool._timer import TimerHandle, call_later
from grpcpool.supervisor._child_spec import ChildSpec, ChildSpecSource, RestartType
from grpcpool.supervisor._dynamic import DynamicSupervisor
from grpcpool.supervisor._errors import ChildStartError, MaxChildrenError, RestartIntensityError
from grpcpool.supervisor._exit import ExitReason, SupervisedActor, watch_exit
from grpcpool.supervisor._send_after import send_after
from grpcpool.supervisor._starting import current_supervisor
from grpcpool.supervisor._supervisor import Supervisor

__all__ = [
    "ChildSpec",
    "ChildSpecSource",
    "ChildStartError",
    "DynamicSupervisor",
    "ExitReason",
    "MaxChildrenError",
    "RestartIntensityError",
    "RestartType",
    "SupervisedActor",
    "Supervisor",
    "TimerHandle",
    "call_later",
    "current_supervisor",
    "send_after",
    "watch_exit",
]
