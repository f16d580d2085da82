"""Supervision for pykka actors: supervisors, child specs, exit watching, timers.

Nothing here knows about gRPC; a pool is just one kind of child.
"""

from grpcpool.supervisor._child_spec import ChildSpec, ChildSpecSource, RestartType
from grpcpool.supervisor._exit import ExitReason, SupervisedActor, watch_exit
from grpcpool.supervisor._supervisor import (
    ChildStartError,
    RestartIntensityError,
    Supervisor,
    current_supervisor,
)
from grpcpool.supervisor._timer import TimerHandle, call_later, send_after

__all__ = [
    "ChildSpec",
    "ChildSpecSource",
    "ChildStartError",
    "ExitReason",
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
