"""grpcpool.aio: the pool on the asyncio event loop, with no thread per connection.

``async with grpcpool.aio.Pool(config, name="kv") as pool:`` starts a pool of
``grpc.aio`` channels on the running loop. Each connection is a task driving
the same worker state machine as the sync pool's actors; connectivity comes
from ``grpc.aio``'s own completion queue, so a pool adds no thread. The view,
pickers, strategies, status records, errors and telemetry signals are the
sync pool's. The module functions find a running asyncio pool by name; the
names are shared with the sync pools (one pool per name in the process), and
asking here for a sync pool's name says so.
"""

from grpcpool.api._aio import (
    AioPoolChannel,
    Pool,
    await_ready,
    channel,
    get_channel,
    pool,
    resize,
    scale_down,
    scale_up,
    status,
    stop,
)

__all__ = [
    "AioPoolChannel",
    "Pool",
    "await_ready",
    "channel",
    "get_channel",
    "pool",
    "resize",
    "scale_down",
    "scale_up",
    "status",
    "stop",
]
