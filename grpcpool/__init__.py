"""grpcpool: a supervised pool of gRPC client channels.

Start pools under a :class:`Supervisor` (``Supervisor.start(children=[PoolSpec(...)])``)
or under the process-wide default one (:func:`start`), then build stubs on
:func:`channel` (a ``grpc.Channel`` that routes each call to a ready
connection of the pool), or take raw channels with :func:`get_channel` or
``pool(name).get_channel().get()``. The guide (``docs/guide.md``) is
a tour; :mod:`grpcpool.config`, :mod:`grpcpool.telemetry` and
:mod:`grpcpool.errors` document the parts.
"""

import logging

from grpcpool import telemetry
from grpcpool._status import PoolStatus, WorkerStatus
from grpcpool._version import __version__
from grpcpool.actors import (
    ChannelWorker,
    HealthRegistry,
    PoolSpec,
    PoolSupervisor,
    TelemetryReporter,
)
from grpcpool.api._pool_channel import PoolChannel
from grpcpool.api._pools import (
    PoolProxy,
    await_ready,
    channel,
    get_channel,
    pool,
    resize,
    scale_down,
    scale_up,
    start,
    status,
    stop,
)
from grpcpool.backoff import Backoff
from grpcpool.config import (
    Config,
    ConnectionConfig,
    EndpointConfig,
    PoolConfig,
    RetryConfig,
    TLSOptions,
)
from grpcpool.core._ready import ReadyConnection
from grpcpool.errors import (
    ConfigError,
    GrpcPoolError,
    NotConnectedError,
    PoolCallError,
    PoolNotFoundError,
    PoolSizeError,
    PoolTimeoutError,
    StrategyError,
)
from grpcpool.resolver import ResolveError, StaticResolver, static_resolver, system_resolver
from grpcpool.strategy import (
    LeastInFlight,
    PeakEwma,
    PowerOfTwo,
    Random,
    RoundRobin,
    Strategy,
)
from grpcpool.supervisor import (
    ChildSpec,
    ChildStartError,
    DynamicSupervisor,
    SupervisedActor,
    Supervisor,
)

__all__ = [
    "Backoff",
    "ChannelWorker",
    "ChildSpec",
    "ChildStartError",
    "Config",
    "ConfigError",
    "ConnectionConfig",
    "DynamicSupervisor",
    "EndpointConfig",
    "GrpcPoolError",
    "HealthRegistry",
    "LeastInFlight",
    "NotConnectedError",
    "PeakEwma",
    "PoolCallError",
    "PoolChannel",
    "PoolConfig",
    "PoolNotFoundError",
    "PoolProxy",
    "PoolSizeError",
    "PoolSpec",
    "PoolStatus",
    "PoolSupervisor",
    "PoolTimeoutError",
    "PowerOfTwo",
    "Random",
    "ReadyConnection",
    "ResolveError",
    "RetryConfig",
    "RoundRobin",
    "StaticResolver",
    "Strategy",
    "StrategyError",
    "SupervisedActor",
    "Supervisor",
    "TLSOptions",
    "TelemetryReporter",
    "WorkerStatus",
    "__version__",
    "await_ready",
    "channel",
    "get_channel",
    "pool",
    "resize",
    "scale_down",
    "scale_up",
    "start",
    "static_resolver",
    "status",
    "stop",
    "system_resolver",
    "telemetry",
]

logging.getLogger(__name__).addHandler(logging.NullHandler())
