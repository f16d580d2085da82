"""The pool as data: the name table, its entries, views, and what workers report.

:class:`PoolEntry` is a pool's stable place in the process table;
:class:`PoolView` is one immutable picture of it, published by the pool's
HealthRegistry. The public functions and :class:`~grpcpool.PoolProxy` are in
``grpcpool.pools._api`` and re-exported by :mod:`grpcpool`; they are not
imported here, so that the actors can import this package without a cycle.
"""

from grpcpool.pools._entry import PoolEntry, lookup, names
from grpcpool.pools._parts import PoolParts
from grpcpool.pools._ready import ReadyConnection
from grpcpool.pools._reports import WorkerGone, WorkerReport
from grpcpool.pools._view import Lifecycle, PoolView

__all__ = [
    "Lifecycle",
    "PoolEntry",
    "PoolParts",
    "PoolView",
    "ReadyConnection",
    "WorkerGone",
    "WorkerReport",
    "lookup",
    "names",
]
