"""The public pool API: module functions and :class:`PoolProxy`.

Every function takes the pool's name (``"default"`` if omitted) and looks the
pool up in the process-wide table on each call, so a proxy keeps working
across a restart of its pool.

``get_channel``, ``status`` and ``stub`` answer from the pool's view in the
caller's thread. Scaling is an ``ask`` to the pool's supervisor actor.
``channel`` returns a :class:`~grpcpool.PoolChannel`, which routes each call
when it starts.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any, TypeVar, cast

import grpc
import pykka

from grpcpool._config_checks import check_pool_name
from grpcpool._future import LazyFuture, ResolvedFuture
from grpcpool._process import PROCESS
from grpcpool._status import PoolStatus
from grpcpool.actors._entry import GET_CHANNEL_EVENT, POOLS, PoolEntry, forget_forked, release
from grpcpool.actors._pool_supervisor import PoolSupervisorProxy, pool_supervisor_proxy
from grpcpool.api._pool_channel import PoolChannel
from grpcpool.api._table import lookup, start_default, stop_default_if_idle
from grpcpool.api._waiting import check_wait, wait_ready
from grpcpool.config import DEFAULT_POOL_NAME, Config
from grpcpool.errors import GrpcPoolError, PoolNotFoundError, PoolTimeoutError
from grpcpool.strategy import strategy_name
from grpcpool.supervisor._proxy import supervisor_proxy
from grpcpool.tasks import TaskPool

__all__ = [
    "PoolProxy",
    "await_ready",
    "channel",
    "get_channel",
    "pool",
    "resize",
    "scale_down",
    "scale_up",
    "start",
    "status",
    "stop",
]

T = TypeVar("T")

# The pool table, read by the hot path without a lock. PROCESS clears it in
# place after a fork, so this reference stays valid.
_pools: dict[str, PoolEntry] = PROCESS.pools

# Seconds a stop waits for the pool's subtree to wind down.
_STOP_TIMEOUT = 60.0


class PoolProxy:
    """A handle on a named pool whose methods return pykka futures.

    ``get_channel()``, ``status()`` and ``stub()`` return futures that are
    already resolved (no actor round trip); ``scale_up``, ``scale_down`` and
    ``resize`` are answered by the pool's supervisor actor; ``await_ready``
    waits when its future's ``get`` is called. Errors surface from ``get``.
    """

    __slots__ = ("name",)

    def __init__(self, name: str = DEFAULT_POOL_NAME) -> None:
        check_pool_name("pool.name", name)
        self.name = name

    def get_channel(self) -> pykka.Future[grpc.Channel]:
        try:
            return ResolvedFuture(lookup(self.name).get_channel())
        except GrpcPoolError as error:
            return ResolvedFuture(error=error)

    def channel(self) -> pykka.Future[PoolChannel]:
        """The pool as a ``grpc.Channel`` (see :func:`channel`), in a resolved future."""
        return ResolvedFuture(PoolChannel(self.name))

    def stub(self, stub_class: type[T]) -> pykka.Future[T]:
        """A ``stub_class`` on the pool's :class:`PoolChannel`, built once per class.

        The stub routes each call to a ready connection, so it can be kept:
        it keeps working across reconnects, scaling and restarts.

        Errors (from ``get``): :class:`PoolNotFoundError` if no pool of this
        name runs; whatever ``stub_class(channel)`` raises.
        """
        try:
            lookup(self.name)
            return ResolvedFuture(_stub(self.name, stub_class))
        except Exception as error:  # the stub class is the caller's code too
            return ResolvedFuture(error=error)

    def status(self) -> pykka.Future[PoolStatus]:
        """The pool's health (see :func:`status`), in a resolved future."""
        try:
            return ResolvedFuture(_status(self.name))
        except GrpcPoolError as error:
            return ResolvedFuture(error=error)

    def await_ready(self, timeout: float | None = 10.0, min_ready: int = 1) -> pykka.Future[None]:
        """Waits, when ``get`` is called, until ``min_ready`` channels are ready.

        ``get(timeout=...)`` bounds the wait too: if it is the shorter bound
        and runs out, ``get`` raises ``pykka.Timeout`` (and may be called
        again), as with any pykka future.
        """
        try:
            check_wait(self.name, timeout, min_ready)
        except ValueError as error:
            return ResolvedFuture(error=error)
        name = self.name

        def wait(get_timeout: float | None) -> None:
            if get_timeout is None or (timeout is not None and timeout <= get_timeout):
                wait_ready(name, timeout, min_ready)
                return
            try:
                wait_ready(name, get_timeout, min_ready)
            except PoolTimeoutError:
                raise pykka.Timeout(f"{get_timeout} seconds") from None

        return LazyFuture(wait)

    def scale_up(self, count: int) -> pykka.Future[int]:
        return self._ask(lambda pool: pool.scale_up(count))

    def scale_down(self, count: int) -> pykka.Future[int]:
        return self._ask(lambda pool: pool.scale_down(count))

    def resize(self, target: int) -> pykka.Future[int]:
        return self._ask(lambda pool: pool.resize(target))

    def stop(self) -> pykka.Future[None]:
        """Stops the pool for good (not restarted). Idempotent."""
        try:
            _stop(self.name)
        except Exception as error:  # surfaces from get(), as the proxy promises
            return ResolvedFuture(error=error)
        return ResolvedFuture(None)

    def _ask(self, call: Callable[[PoolSupervisorProxy], pykka.Future[int]]) -> pykka.Future[int]:
        try:
            owner = lookup(self.name).owner
            if owner is None:
                raise PoolNotFoundError(self.name)
            future = call(pool_supervisor_proxy(owner))
        except pykka.ActorDeadError:
            return ResolvedFuture(error=PoolNotFoundError(self.name))
        except GrpcPoolError as error:
            return ResolvedFuture(error=error)
        return future

    def __repr__(self) -> str:
        # Read the table directly: a repr must not start a forked child's
        # pool (lookup would) nor raise.
        entry = POOLS.get(self.name)
        if entry is None:
            if self.name in PROCESS.aio_pools:
                return f"<PoolProxy {self.name!r}: the name is an asyncio pool's>"
            reason = PROCESS.ended_pools.get(self.name)
            if reason is not None:
                return f"<PoolProxy {self.name!r} shut down: {reason}>"
            if self.name in PROCESS.forked_pools:
                return f"<PoolProxy {self.name!r} of the parent process, started on first use>"
            return f"<PoolProxy {self.name!r} not running>"
        report = entry.status()
        return (
            f"<PoolProxy {self.name!r} {report.status} {report.current_size}/"
            f"{report.expected_size} {strategy_name(entry.strategy)}>"
        )

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PoolProxy) and other.name == self.name

    def __hash__(self) -> int:
        return hash((PoolProxy, self.name))


# Stubs on pool channels, by pool name and stub class. A stub holds only its
# pool's name, so one built for a pool serves every later pool of that name.
_stubs: dict[tuple[str, type[Any]], Any] = {}


def _stub(name: str, stub_class: type[T]) -> T:
    key = (name, stub_class)
    stub = _stubs.get(key)
    if stub is None:
        # Two callers racing here may each build one; the last stored wins.
        build: Any = stub_class
        stub = _stubs[key] = build(PoolChannel(name))
    return cast("T", stub)


def start(config: Config, name: str | None = None) -> PoolProxy:
    """Starts a pool under the process-wide default supervisor.

    Returns once every worker has started (not necessarily connected: see
    :func:`await_ready`).

    Raises:
        ConfigError: A pool of that name is already running, under this
            supervisor or any other (key ``pool.name``); nothing is started.
    """
    return PoolProxy(start_default(config, name))


def _stop(name: str) -> None:
    # A parent's pool this forked child never used: stopped means not restarted.
    forget_forked(name, "stopped by grpcpool.stop()")
    try:
        entry = lookup(name)
    except PoolNotFoundError as error:
        if error.running is not None:
            raise  # an asyncio pool: only its own loop can stop it
        return
    parent, child_id, owner = entry.parent, entry.child_id, entry.owner
    # Out of the table first: from here on callers hear that it was stopped,
    # and its waiters are woken, while its actors wind down.
    release(entry, "stopped by grpcpool.stop()")
    if parent is not None and child_id is not None and parent.is_alive():
        # Through the parent, even for a pool that crashed and awaits its
        # restart: the parent forgets the child, so it does not come back.
        with contextlib.suppress(LookupError, pykka.ActorDeadError):  # stopped meanwhile
            supervisor_proxy(parent).terminate_child(child_id).get(timeout=_STOP_TIMEOUT)
    elif owner is not None:
        owner.stop(timeout=_STOP_TIMEOUT)
    with PROCESS.default_lock:
        default = PROCESS.default_supervisor
        if parent is not None and default is not None and parent.actor_urn == default.actor_urn:
            stop_default_if_idle()


def pool(name: str = DEFAULT_POOL_NAME) -> PoolProxy:
    """A proxy to the running pool ``name``.

    Raises:
        PoolNotFoundError: No such pool is running.
        ConfigError: ``name`` is not a str of 1 to 128 characters.
    """
    check_pool_name("pool.name", name)
    lookup(name)
    return PoolProxy(name)


def get_channel(name: str = DEFAULT_POOL_NAME) -> grpc.Channel:
    """A ready channel of pool ``name``: the hot path.

    Raises:
        PoolNotFoundError: No such pool is running (the message says if it
            was shut down, and why).
        NotConnectedError: The pool has no ready channel (the message says
            what its workers are doing and their last error).
        StrategyError: A custom strategy failed to pick a ready channel.
    """
    # PoolEntry.get_channel and lookup() inlined: each Python call saved is
    # a third of what this costs.
    try:
        entry = _pools.get(name)
    except TypeError:  # an unhashable name: check_pool_name says what is wrong
        entry = None
    if entry is None:
        check_pool_name("pool.name", name)
        entry = lookup(name)  # raises the right error
    entry.raw_handed_out = True  # before the view is read (see PoolEntry)
    channel = entry.view.pick()
    if GET_CHANNEL_EVENT.receivers:
        entry.report_get_channel()
    return channel


def channel(name: str = DEFAULT_POOL_NAME) -> PoolChannel:
    """The pool ``name`` as a ``grpc.Channel``: build stubs on it once and keep them.

    Each call on it runs on a ready connection of the pool, picked when the
    call starts by the pool's strategy, and is counted while in flight. The
    pool need not be running yet: calls fail with ``UNAVAILABLE`` (a
    :class:`PoolCallError`) until a pool of that name has a ready
    connection. ``close()`` on it does not stop the pool.

    Raises:
        ConfigError: ``name`` is not a str of 1 to 128 characters.
    """
    return PoolChannel(name)


def status(name: str = DEFAULT_POOL_NAME) -> PoolStatus:
    """The pool's health now; from any thread, for a sync or an asyncio pool.

    An asyncio pool's status is read from its current view, an immutable
    picture, so it needs neither its loop nor its thread.

    Raises:
        PoolNotFoundError: No pool of that name is running.
    """
    check_pool_name("pool.name", name)
    return _status(name)


def _status(name: str) -> PoolStatus:
    aio_pool: TaskPool | None = PROCESS.aio_pools.get(name)
    if aio_pool is not None:
        return aio_pool.status()
    return lookup(name).status()


def await_ready(
    name: str = DEFAULT_POOL_NAME, timeout: float | None = 10.0, min_ready: int = 1
) -> None:
    """Blocks until ``min_ready`` channels of pool ``name`` are ready.

    Woken by the pool's state changes, not by polling.

    Raises:
        PoolTimeoutError: Not ready within ``timeout`` seconds (the message
            says what the workers are doing and their last error).
        PoolNotFoundError: No such pool is running, or it was shut down
            while waiting.
        PoolSizeError: ``min_ready`` is below 1 or more than the pool's
            size (at once: such a wait could only time out).
    """
    check_pool_name("pool.name", name)
    check_wait(name, timeout, min_ready)
    wait_ready(name, timeout, min_ready)


def scale_up(name: str, count: int) -> int:
    """Adds ``count`` workers; returns the new expected size.

    An autoscaled pool (``pool.autoscale``) stops at its ``max_size`` instead of raising.

    Raises:
        PoolSizeError: ``count`` is below 1 or takes the pool over ``pool.max_size``.
    """
    return PoolProxy(name).scale_up(count).get(timeout=_STOP_TIMEOUT)


def scale_down(name: str, count: int) -> int:
    """Removes ``count`` workers (never below 1); returns the new expected size.

    An autoscaled pool (``pool.autoscale``) stops at its ``min_size`` instead of raising.

    Raises:
        PoolSizeError: ``count`` is below 1 or would leave no worker.
    """
    return PoolProxy(name).scale_down(count).get(timeout=_STOP_TIMEOUT)


def resize(name: str, target: int) -> int:
    """Scales to ``target`` workers; returns the new expected size.

    An autoscaled pool (``pool.autoscale``) clamps ``target`` into its range.

    Raises:
        PoolSizeError: ``target`` is below 1 or over ``pool.max_size``.
    """
    return PoolProxy(name).resize(target).get(timeout=_STOP_TIMEOUT)


def stop(name: str = DEFAULT_POOL_NAME) -> None:
    """Stops pool ``name`` for good; it is removed, not restarted. Idempotent.

    Raises:
        PoolNotFoundError: ``name`` is an asyncio pool's (stop it on its loop:
            ``await grpcpool.aio.stop(name)``); a name no pool holds is no error.
    """
    check_pool_name("pool.name", name)
    _stop(name)
