"""One name table per process: a pool name belongs to one pool, sync or asyncio.

Sync pools live in ``PROCESS.pools`` (their entries, read by the sync hot
path) and asyncio pools in ``PROCESS.aio_pools`` (read by theirs). Telemetry
signals, the Prometheus and OpenTelemetry exporters and ``status`` all key
a pool by its name alone, so two pools of one name, one of each kind, would
report as one and each hide the other. So both kinds claim a name under
``PROCESS.lock``, each checking both tables: the second pool of a name is a
:class:`~grpcpool.ConfigError` on ``pool.name``, whichever kind started
first. A stopped pool's name is free again, for either kind.

The sync claim itself stays in :mod:`grpcpool.actors._entry` (it also
follows restarts); this module holds what both kinds share: the check,
the error, the asyncio claim and release, and which kind holds a name.
"""

from __future__ import annotations

from typing import Literal, Protocol

from grpcpool._process import ENDED_POOLS_KEPT, PROCESS
from grpcpool.errors import ConfigError, shorten


class AioPool(Protocol):
    """An asyncio pool as the name table sees it (``grpcpool.tasks.TaskPool``): its name."""

    name: str

__all__ = [
    "Kind",
    "check_free",
    "claim_aio",
    "held_by",
    "name_in_use",
    "release_aio",
    "remember_ended",
]

Kind = Literal["sync", "asyncio"]


def held_by(name: str) -> Kind | None:
    """Which kind of pool holds ``name`` now, if any.

    A forked child's parent pool, not yet started again here, counts as a
    sync pool: its first use through grpcpool's functions starts it.
    """
    if name in PROCESS.pools or name in PROCESS.forked_pools:
        return "sync"
    if name in PROCESS.aio_pools:
        return "asyncio"
    return None


def check_free(name: str) -> None:
    """Raises :func:`name_in_use` if a running pool of either kind holds ``name``.

    A forked child's parent pool does not hold its name against a new
    pool: starting one takes the name over (and the parent's pool is not
    started again here). Call it under ``PROCESS.lock`` to decide; outside,
    it is an early check that a claim repeats.

    Raises:
        ConfigError: The name is in use (key ``pool.name``).
    """
    if name in PROCESS.pools:
        raise name_in_use(name, "sync")
    if name in PROCESS.aio_pools:
        raise name_in_use(name, "asyncio")


def name_in_use(name: str, kind: Kind) -> ConfigError:
    """The error for starting a pool under a name a running pool holds."""
    if kind == "asyncio":
        holder, stop = "an asyncio pool (grpcpool.aio.Pool)", f"await grpcpool.aio.stop({name!r})"
    else:
        holder, stop = "a sync pool", f"grpcpool.stop({name!r})"
    return ConfigError(
        "pool.name",
        f"a pool named {name!r} is already running as {holder}; pool names are unique in "
        f"the process, across sync and asyncio pools: give this pool another name, or "
        f"stop that one first ({stop})",
    )


def claim_aio(pool: AioPool) -> None:
    """Enters a starting asyncio pool in the table under its name.

    The name may have been a forked child's parent pool: that pool is then
    not started again here (as when a sync pool takes the name).

    Raises:
        ConfigError: A pool of either kind holds the name.
    """
    with PROCESS.lock:
        check_free(pool.name)
        PROCESS.aio_pools[pool.name] = pool
        PROCESS.ended_pools.pop(pool.name, None)
        PROCESS.forked_pools.pop(pool.name, None)


def release_aio(pool: AioPool, reason: str) -> None:
    """Frees ``pool``'s name, if ``pool`` still holds it, remembering why it ended. Idempotent."""
    with PROCESS.lock:
        if PROCESS.aio_pools.get(pool.name) is pool:
            # Recorded before the pool leaves: a reader that misses the pool
            # finds the reason (dict operations are atomic).
            remember_ended(pool.name, shorten(reason))
            del PROCESS.aio_pools[pool.name]


def remember_ended(name: str, reason: str) -> None:
    """Records why pool ``name`` ended (either kind), keeping the newest ``ENDED_POOLS_KEPT``.

    Callers hold ``PROCESS.lock``. Asking for the name later says "was shut
    down: <reason>", not "not found".
    """
    ended = PROCESS.ended_pools
    ended.pop(name, None)
    ended[name] = reason
    while len(ended) > ENDED_POOLS_KEPT:
        ended.popitem(last=False)
