"""What a pool's outlier units are, and what its records make of the judge's verdicts.

The judge (:mod:`grpcpool.core._outliers`) works on units of any kind; this
module says which they are for a pool, once for both drivers:

* A pool whose workers are pinned to several addresses judges each
  *address*: all its connections leave routing together, since they reach
  the same server.
* A pool with one address (or none resolved yet) judges each *connection*:
  behind a layer-4 balancer each connection may reach another server. A
  connection is a unit for as long as it stays ready: one that reconnects,
  or is replaced, is a new unit with no history.

It also turns the judge's effects into the pool's signals
(``pool.ejected``, ``pool.unejected``) and into the replacement of a
connection ejected twice in a row.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from grpcpool import telemetry
from grpcpool._status import WorkerStatus
from grpcpool.connection._machine_types import Emit
from grpcpool.core._outliers import Ejected, OutlierEffect, Unit
from grpcpool.core._ready import ReadyConnection

__all__ = [
    "ReplaceConnection",
    "ejected_connections",
    "outlier_signal",
    "replacement",
    "spans_addresses",
    "tally",
    "unit_of",
]

_EJECTED = telemetry.pool_ejected.name
_UNEJECTED = telemetry.pool_unejected.name


@dataclass(frozen=True)
class ReplaceConnection:
    """Have ``worker_id`` let its connection go and connect afresh (it was ejected twice in a row)."""

    worker_id: str


def spans_addresses(workers: Iterable[WorkerStatus]) -> bool:
    """True if the pool's workers are pinned to more than one address: addresses are judged."""
    first: str | None = None
    for worker in workers:
        address = worker.address
        if address is None:
            continue
        if first is None:
            first = address
        elif address != first:
            return True
    return False


def unit_of(connection: ReadyConnection, by_address: bool) -> Unit:
    """The unit ``connection`` is judged in: its address, or itself."""
    if by_address and connection.address is not None:
        return connection.address
    return connection


def tally(
    connections: Iterable[ReadyConnection], workers: tuple[WorkerStatus, ...]
) -> dict[Unit, tuple[int, int]]:
    """Every unit of the pool with the ``(successes, failures)`` of its calls since the last tally.

    Takes (and so resets) each connection's counts. An address with no ready
    connection is a unit all the same (with no calls): it stays in the pool,
    and so does its ejection.
    """
    by_address = spans_addresses(workers)
    outcomes: dict[Unit, tuple[int, int]] = {}
    if by_address:
        for worker in workers:
            if worker.address is not None:
                outcomes.setdefault(worker.address, (0, 0))
    for connection in connections:
        successes, failures = connection.stats.take_outcomes()
        unit = unit_of(connection, by_address)
        before = outcomes.get(unit, (0, 0))
        outcomes[unit] = (before[0] + successes, before[1] + failures)
    return outcomes


def ejected_connections(
    connections: Iterable[ReadyConnection],
    workers: tuple[WorkerStatus, ...],
    ejected: frozenset[Unit],
) -> tuple[frozenset[ReadyConnection], frozenset[str]]:
    """Of ``connections``, those in an ejected unit; and the ids of the workers ejected.

    A worker is ejected if its address is (whatever its state), or, when
    connections are judged, its connection.
    """
    if not ejected:
        return frozenset(), frozenset()
    by_address = spans_addresses(workers)
    out = frozenset(c for c in connections if unit_of(c, by_address) in ejected)
    ids = {c.worker_id for c in out}
    if by_address:
        ids.update(w.worker_id for w in workers if w.address in ejected)
    return out, frozenset(ids)


def outlier_signal(effect: OutlierEffect) -> Emit:
    """The ``pool.ejected`` or ``pool.unejected`` signal of one of the judge's effects."""
    where = _where(effect.unit)
    if isinstance(effect, Ejected):
        calls = effect.successes + effect.failures
        success_rate = 100.0 * effect.successes / calls if calls else 100.0
        return Emit(
            _EJECTED,
            {
                "ejection_time": effect.ejection_time,
                "successes": effect.successes,
                "failures": effect.failures,
                "success_rate": success_rate,
                "failure_percentage": 100.0 - success_rate,
                "threshold": effect.threshold,
            },
            {**where, "reason": effect.reason},
        )
    return Emit(_UNEJECTED, {"ejection_time": effect.ejected_for}, {**where, "reason": effect.reason})


def replacement(effect: OutlierEffect) -> ReplaceConnection | None:
    """A connection (not an address) ejected twice in a row is replaced by a fresh one."""
    if isinstance(effect, Ejected) and effect.again and isinstance(effect.unit, ReadyConnection):
        return ReplaceConnection(effect.unit.worker_id)
    return None


def _where(unit: Unit) -> Mapping[str, str | None]:
    if isinstance(unit, ReadyConnection):
        return {"worker_id": unit.worker_id, "address": unit.address}
    return {"address": str(unit)}
