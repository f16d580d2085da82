"""Running a worker's Emit and Log effects: the same for every driver of the machine.

The sync ``ChannelWorker`` actor and the asyncio worker task differ in how
they open channels, watch them and keep time, not in what they tell the
world: each signal carries the pool's and the worker's names before the
machine's own metadata, and each log line names both.
"""

from __future__ import annotations

import logging

import blinker

from grpcpool import telemetry
from grpcpool.connection._machine_types import Emit, Log

__all__ = ["announce"]


def announce(effect: Emit | Log, pool_name: str, worker_id: str, log: logging.Logger) -> None:
    """Sends an Emit effect's signal, or writes a Log effect's line to ``log``."""
    if isinstance(effect, Emit):
        metadata = {"pool_name": pool_name, "worker_id": worker_id}
        metadata.update(effect.metadata)
        signal = blinker.signal(effect.signal)
        telemetry.emit(signal, pool_name, effect.measurements, metadata)
    else:
        log.log(effect.level, "pool %r %s: %s", pool_name, worker_id, effect.message)
