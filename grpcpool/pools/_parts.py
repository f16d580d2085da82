"""What the actors of one running pool share: :class:`PoolParts`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pykka

from grpcpool.config import Config

if TYPE_CHECKING:
    from grpcpool.connection import PoolChannels
    from grpcpool.pools._entry import PoolEntry

__all__ = ["PoolParts"]


class PoolParts:
    """The pieces of one incarnation of a pool, handed to its actors.

    A PoolSupervisor makes one when it starts and passes it to each child.
    Every attribute but ``registry`` is fixed; ``registry`` is written by the
    PoolSupervisor alone, each time it (re)starts the HealthRegistry, and read
    by workers when they report.

    Attributes:
        entry: The pool's entry in the process table (stable across restarts).
        name: The pool's name.
        config: Its configuration.
        channels: Opens, retires and closes this pool's grpc channels.
        registry: The current HealthRegistry, once started.
    """

    __slots__ = ("channels", "config", "entry", "name", "registry")

    def __init__(self, entry: PoolEntry, channels: PoolChannels) -> None:
        self.entry = entry
        self.name: str = entry.name
        self.config: Config = entry.config
        self.channels = channels
        self.registry: pykka.ActorRef[Any] | None = None

    def __repr__(self) -> str:
        return f"<PoolParts {self.name!r}>"
