"""The asyncio pool's driver: tasks on the pool's event loop, no thread per connection.

Each connection is a task driving the worker state machine of
:mod:`grpcpool.connection`; the pool's rules (view, spread, scaling, restart
intensity) are those of :mod:`grpcpool.core`, as in the sync pool, whose
actors this package never imports. The public face is :mod:`grpcpool.aio`.
"""

from grpcpool.tasks._pool import POOLS, TaskPool

__all__ = ["POOLS", "TaskPool"]
