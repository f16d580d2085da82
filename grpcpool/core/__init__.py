"""A pool's rules as pure code, shared by the sync and the asyncio drivers.

Nothing here starts a thread or a task, calls grpc or an actor, or reads the
clock: a rule takes the state and what happened (with the time, when it
matters) and returns the new state and what to do, as data. The sync pool's
actors and the asyncio pool's tasks drive the same rules, so that each rule
is written once and a behaviour of one kind of pool is a behaviour of both.
"""

from grpcpool.connection._calls import CallLedger, Close
from grpcpool.core._planner import Planner
from grpcpool.core._ready import ReadyConnection
from grpcpool.core._reports import WorkerGone, WorkerReport
from grpcpool.core._view import Lifecycle, PoolView

__all__ = [
    "CallLedger",
    "Close",
    "Lifecycle",
    "Planner",
    "PoolView",
    "ReadyConnection",
    "WorkerGone",
    "WorkerReport",
]
