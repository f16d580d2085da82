"""The sync pool's driver: its actors (supervisor, health registry, balancer, channel
workers, reporter) and its entry in the process's pool table."""

from grpcpool.actors._channel_worker import ChannelWorker, ReconnectLimitError, Resync
from grpcpool.actors._entry import PoolEntry, names
from grpcpool.actors._health_registry import ExpectedSize, HealthRegistry, SetLifecycle
from grpcpool.actors._parts import PoolParts
from grpcpool.actors._pool_spec import PoolSpec
from grpcpool.actors._pool_supervisor import PoolSupervisor
from grpcpool.actors._telemetry_reporter import TelemetryReporter

__all__ = [
    "ChannelWorker",
    "ExpectedSize",
    "HealthRegistry",
    "PoolEntry",
    "PoolParts",
    "PoolSpec",
    "PoolSupervisor",
    "ReconnectLimitError",
    "Resync",
    "SetLifecycle",
    "TelemetryReporter",
    "names",
]
