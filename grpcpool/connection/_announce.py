"""Running Emit and Log effects, a worker's or a pool's: the same for every driver.

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

__all__ = ["announce", "announce_as", "announce_pool"]


def announce(effect: Emit | Log, pool_name: str, worker_id: str, log: logging.Logger) -> None:
    """Sends an Emit effect's signal, or writes a Log effect's line to ``log``."""
    if isinstance(effect, Emit):
        metadata = {"pool_name": pool_name, "worker_id": worker_id}
        metadata.update(effect.metadata)
        signal = blinker.signal(effect.signal)
        telemetry.emit(signal, pool_name, effect.measurements, metadata)
    else:
        log.log(effect.level, "pool %r %s: %s", pool_name, worker_id, effect.message)


def announce_pool(effect: Emit | Log, pool_name: str, log: logging.Logger) -> None:
    """Runs a pool rule's Emit or Log effect: the signal carries ``pool_name`` first."""
    if isinstance(effect, Emit):
        metadata = {"pool_name": pool_name}
        metadata.update(effect.metadata)
        telemetry.emit(blinker.signal(effect.signal), pool_name, effect.measurements, metadata)
    else:
        log.log(effect.level, "pool %r: %s", pool_name, effect.message)


def announce_as(effect: Emit, sender: str) -> None:
    """Sends an Emit effect's signal from ``sender`` with its metadata as it is (a supervisor's)."""
    telemetry.emit(blinker.signal(effect.signal), sender, effect.measurements, effect.metadata)
