"""PoolSpec: a pool as a child of any supervisor.

A supervisor asks a child spec how to start its child; a :class:`PoolSpec`
answers with a :class:`~grpcpool.actors.PoolSupervisor` for the pool, after
checking that the pool's name is free.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from grpcpool._config_checks import aio_interceptors, check_pool_name
from grpcpool.actors._entry import check_name_free, release_token
from grpcpool.actors._pool_supervisor import POOL_SHUTDOWN_SECONDS, PoolSupervisor, pool_child_id
from grpcpool.config import Config
from grpcpool.errors import ConfigError
from grpcpool.supervisor import ChildSpec

__all__ = ["PoolSpec"]


@dataclass(frozen=True)
class PoolSpec:
    """A pool as a child of a supervisor.

    Args:
        config: The pool's configuration.
        name: The pool's name; falls back to ``config.pool.name``, then
            ``"default"``.
    """

    config: Config
    name: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.config, Config):
            raise TypeError(f"PoolSpec needs a grpcpool.Config, got {type(self.config).__name__}")
        if self.name is not None:
            check_pool_name("pool.name", self.name)  # a ConfigError, so a ValueError
        if aio_interceptors(self.config.endpoint.interceptors):
            raise ConfigError(
                "endpoint.interceptors",
                "holds grpc.aio interceptors, which a sync grpc channel cannot use; give "
                "sync grpc interceptors, or use the config with a grpcpool.aio pool",
            )

    @property
    def pool_name(self) -> str:
        return self.config.pool_name(self.name)

    def child_spec(self) -> ChildSpec:
        """The child spec a supervisor starts the pool with.

        A supervisor asks for it before it looks at the child's id, so a
        pool name already running (under this supervisor or another) is
        refused here, with the same ConfigError either way, rather than as
        a duplicate child id. The supervisor stays unaware of pools.

        Raises:
            ConfigError: A pool of that name is running (key ``pool.name``).
        """
        # transient: a pool that crashes is restarted; one stopped on purpose
        # (grpcpool.stop) is not. The token ties the pool's entry to this
        # child: its restarts get the same entry, and when the supervisor
        # forgets the child the entry ends.
        name, token = self.pool_name, object()
        check_name_free(name)
        return ChildSpec(
            id=pool_child_id(name),
            start=functools.partial(PoolSupervisor.start_pool, self.config, name, token),
            restart="transient",
            shutdown=POOL_SHUTDOWN_SECONDS,
            type="supervisor",
            on_forget=functools.partial(release_token, name, token),
            on_duplicate=functools.partial(_same_name_twice, name),
        )


def _same_name_twice(name: str) -> ConfigError:
    return ConfigError(
        "pool.name", f"two pools in one start are named {name!r}; give each pool its own name"
    )
