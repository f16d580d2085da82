"""The actors of a pool: its supervisor, health registry, channel workers and reporter."""

from grpcpool.actors._channel_worker import ChannelWorker, ReconnectLimitError, Resync
from grpcpool.actors._health_registry import ExpectedSize, HealthRegistry, SetLifecycle
from grpcpool.actors._pool_spec import PoolSpec
from grpcpool.actors._pool_supervisor import PoolSupervisor
from grpcpool.actors._telemetry_reporter import TelemetryReporter

__all__ = [
    "ChannelWorker",
    "ExpectedSize",
    "HealthRegistry",
    "PoolSpec",
    "PoolSupervisor",
    "ReconnectLimitError",
    "Resync",
    "SetLifecycle",
    "TelemetryReporter",
]
