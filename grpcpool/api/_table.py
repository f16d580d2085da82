"""The sync pools' table as the API sees it: finding an entry by name, starting a
forked child's pool on first use, and the process-wide default supervisor."""

from __future__ import annotations

import pykka

from grpcpool._process import PROCESS
from grpcpool.actors._entry import FORK_ADVICE, FORKED_POOLS, POOLS, PoolEntry, forget_forked
from grpcpool.actors._pool_spec import PoolSpec
from grpcpool.config import Config
from grpcpool.errors import NotConnectedError, PoolNotFoundError
from grpcpool.supervisor import Supervisor
from grpcpool.supervisor._proxy import supervisor_proxy

__all__ = ["lookup", "start_default", "stop_default_if_idle"]

# Seconds a stop waits for the default supervisor to wind down.
_STOP_TIMEOUT = 60.0


def lookup(name: str) -> PoolEntry:
    """The entry of the pool called ``name``.

    In a forked child, the first lookup of a pool the parent ran starts
    that pool again here (see :func:`_start_forked`); only a miss in the
    table gets that far, so the hot path is unchanged.

    Raises:
        PoolNotFoundError: No sync pool of that name is running; its message
            says why, if a pool of that name ran and was shut down, or that
            the name is an asyncio pool's.
        NotConnectedError: The parent's pool could not be started again in
            this forked process.
    """
    entry = POOLS.get(name)
    if entry is None:
        if name in PROCESS.forked_pools:
            return _start_forked(name)
        if name in PROCESS.aio_pools:
            raise PoolNotFoundError(name, running="asyncio")
        raise PoolNotFoundError(name, PROCESS.ended_pools.get(name))
    return entry


def _start_forked(name: str) -> PoolEntry:
    """Starts the parent's pool ``name`` in this forked process, once.

    The parent's channels and threads did not survive the fork, so the child
    starts its own pool of the same name and config (and the parent's
    expected size) under its default supervisor, as ``grpcpool.start``
    would: prefork servers need no post-fork hook. The parent's pool is not
    touched. ``PROCESS.default_lock`` makes concurrent first uses start it
    once; :func:`claim` then forgets the name, so a pool the child stops
    stays stopped.
    """
    with PROCESS.default_lock:
        entry = POOLS.get(name)
        if entry is not None:
            return entry  # another thread started it first
        forked = FORKED_POOLS.get(name)
        if forked is None:  # stopped (or started and ended) meanwhile
            raise PoolNotFoundError(name, PROCESS.ended_pools.get(name))
        try:
            start_default(forked.sized_config(), name)
        except Exception as error:
            entry = POOLS.get(name)
            if entry is not None:  # started meanwhile by other means (its own supervisor)
                return entry
            reason = f"could not start again after os.fork(): {type(error).__name__}"
            forget_forked(name, reason)
            # The cause is chained, not quoted: its text is not ours to echo.
            raise NotConnectedError(name, f"{reason}; {FORK_ADVICE}") from error
    entry = POOLS.get(name)
    if entry is None:  # ended as soon as it started
        raise PoolNotFoundError(name, PROCESS.ended_pools.get(name))
    return entry


# --- the process-wide default supervisor (the Elixir start_link) -------------


def _default() -> pykka.ActorRef[Supervisor]:
    supervisor = PROCESS.default_supervisor
    if supervisor is None or not supervisor.is_alive():
        supervisor = Supervisor.start(name="grpcpool", max_restarts=10, max_seconds=10.0)
        PROCESS.default_supervisor = supervisor
    return supervisor


def stop_default_if_idle() -> None:
    supervisor = PROCESS.default_supervisor
    if supervisor is None:
        return
    if supervisor.is_alive() and supervisor_proxy(supervisor).count_children().get()["specs"] > 0:
        return
    PROCESS.default_supervisor = None
    supervisor.stop(timeout=_STOP_TIMEOUT)


def start_default(config: Config, name: str | None = None) -> str:
    """Starts a pool under the process-wide default supervisor; returns its name.

    Raises:
        ConfigError: A pool of that name is already running (key ``pool.name``).
    """
    spec = PoolSpec(config, name)
    with PROCESS.default_lock:
        supervisor = _default()
        try:
            supervisor_proxy(supervisor).start_child(spec).get()
        except BaseException:
            stop_default_if_idle()
            raise
    return spec.pool_name
