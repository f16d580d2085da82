"""What the actors of one running pool share: :class:`PoolParts`, and how workers report."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

import pykka

from grpcpool.config import Config

if TYPE_CHECKING:
    from grpcpool.actors._entry import PoolEntry
    from grpcpool.connection import PoolChannels

__all__ = ["REGISTRY_TIMEOUT", "MoveOwner", "Nudge", "PoolParts", "send_to_registry"]

_log = logging.getLogger(__name__)


class Nudge:
    """Tells a listener that something changed, once until it has looked.

    The HealthRegistry rings it after each change of a worker's state; the
    pool's balancer listens. A burst of changes (every connection of a pool
    dropping at once) makes one wake-up, not one per change: the listener
    calls :meth:`taken` before it looks, so a change after that rings again
    and none is missed. Any thread may ring; a plain flag is enough, since
    a race only costs one extra look.
    """

    __slots__ = ("_listener", "_pending")

    def __init__(self) -> None:
        self._pending = False
        self._listener: Callable[[], None] | None = None

    def attach(self, listener: Callable[[], None] | None) -> None:
        """Sets (or with None, removes) the listener."""
        self._listener = listener
        self._pending = False

    def __call__(self) -> None:
        listener = self._listener
        if listener is None or self._pending:
            return
        self._pending = True
        listener()

    def taken(self) -> None:
        """The listener is about to look: the next change rings again."""
        self._pending = False


class MoveOwner(Protocol):
    """The calls a pool's Balancer makes of its PoolSupervisor: the mechanics of a move.

    The PoolSupervisor's typed proxy is one. The Balancer never waits on
    these futures (the PoolSupervisor stops the Balancer before itself, and
    may be busy stopping workers); it only polls the one of
    :meth:`add_pinned_worker` for the replacement's id.
    """

    def add_pinned_worker(self, address: str) -> pykka.Future[str]:
        """Starts a replacement worker pinned to ``address``; its id."""
        ...

    def retire_worker(self, worker_id: str, replacement: str | None = None) -> pykka.Future[None]:
        """Stops ``worker_id`` for good; ``replacement`` takes its place in the pool."""
        ...

    def drop_replacements(self) -> pykka.Future[None]:
        """Stops every replacement whose move has not ended."""
        ...


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
        nudge: Rung by the registry when a worker's state changes (the
            balancer listens).
        workers: Each running worker's actor, by worker id: written by the
            PoolSupervisor alone as it starts, restarts and ends them; the
            balancer tells a worker to move through it, straight, without
            queueing behind the supervisor's own work.
    """

    __slots__ = ("channels", "config", "entry", "name", "nudge", "registry", "workers")

    def __init__(self, entry: PoolEntry, channels: PoolChannels) -> None:
        self.entry = entry
        self.name: str = entry.name
        self.config: Config = entry.config
        self.channels = channels
        self.registry: pykka.ActorRef[Any] | None = None
        self.nudge = Nudge()
        self.workers: dict[str, pykka.ActorRef[Any]] = {}

    def __repr__(self) -> str:
        return f"<PoolParts {self.name!r}>"


# How long a worker waits for the registry to act on a synchronous report
# (dropping its channel from the view before the channel is closed).
REGISTRY_TIMEOUT = 2.0


def send_to_registry(registry: pykka.ActorRef[Any] | None, message: Any, *, sync: bool) -> None:
    """Tells the registry ``message``, or asks it (to be sure it has acted) when ``sync``.

    Never raises: a registry that is gone or failing is being restarted, and
    the new one asks every worker to report again.
    """
    if registry is None:
        return
    try:
        if sync:
            registry.ask(message, timeout=REGISTRY_TIMEOUT)
        else:
            registry.tell(message)
    except pykka.ActorDeadError:
        pass
    except pykka.Timeout:
        _log.warning("health registry did not answer within %ss", REGISTRY_TIMEOUT)
    except Exception:
        _log.exception("health registry failed on %r", message)
