"""A pool's worker records and the view built from them, as a pure machine.

Every pool has one keeper of its records: the sync pool's HealthRegistry
actor, the asyncio pool's Registry. Both drive :func:`step`: the records and
what happened (a worker's report, a worker gone, a new expected size or
lifecycle) go in with the wall-clock time; the new records and what the keeper
must do come out. The view is built here, by
:func:`~grpcpool.core._view.build_view`, so both kinds of pool publish the same
picture after the same events; the keeper only swaps it in (which wakes
``await_ready`` waiters) and pokes its balancer.

Rules kept here, once:

* A report from another incarnation of a worker (a different URN) than the
  one on record is stale and changes nothing, unless it says ``connecting``:
  only a worker starting afresh may replace another incarnation's record. A
  :class:`WorkerGone` removes a record only when its URN is the record's.
* ``since`` is kept while the same incarnation reports the same state at the
  same address; a new state, a move or a new incarnation starts it anew.
* A ready channel keeps its :class:`ReadyConnection` (with its count of calls
  in flight and its multi-callables) while the worker reports the same
  channel ready; a channel reported with any other state never reaches the
  view.
* Records keep worker start order (a replaced record keeps its place), and
  so does the view.
* A keeper that starts where the last view was running carries the pool on
  (it was itself restarted inside a running pool); after any other lifecycle
  it starts the pool. Either way it keeps the expected size.
* With ``pool.outlier_detection`` the keeper hands in a
  :class:`JudgeOutliers` every interval (:func:`judgement` takes the calls'
  outcomes from the ready connections); the judge's verdict
  (:mod:`grpcpool.core._outliers`) is stepped in here, so the ejected units
  are a fact of the records, with one writer, and every view built from them
  leaves their connections out of routing (or panics: ``pool.panic``, emitted
  as the view enters and leaves panic). A keeper that starts afresh knows no
  ejection.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from grpcpool import telemetry
from grpcpool._config_routing import DEFAULT_PANIC_THRESHOLD, OutlierDetection
from grpcpool._status import WorkerStatus
from grpcpool.connection._machine_types import Emit
from grpcpool.core._ejections import (
    ReplaceConnection,
    ejected_connections,
    outlier_signal,
    replacement,
    tally,
)
from grpcpool.core._outliers import Outliers, Unit, judge, new_outliers
from grpcpool.core._ready import ReadyConnection
from grpcpool.core._reports import WorkerGone, WorkerReport
from grpcpool.core._view import Lifecycle, PoolView, build_view
from grpcpool.strategy import Strategy

__all__ = [
    "ExpectedSize",
    "ForgetWorkers",
    "JudgeOutliers",
    "Publish",
    "Record",
    "Records",
    "RecordsEffect",
    "RecordsEvent",
    "RecordsStep",
    "ReplaceConnection",
    "SetLifecycle",
    "WorkersChanged",
    "judgement",
    "publish",
    "records_after",
    "step",
]


# --- events ------------------------------------------------------------------------


@dataclass(frozen=True)
class ExpectedSize:
    """The pool was scaled: this many workers are meant to run.

    Raises:
        ValueError: ``size`` is negative (a driver's bug: scaling checks
            counts before it tells the keeper).
    """

    size: int

    def __post_init__(self) -> None:
        if self.size < 0:
            raise ValueError(f"an expected size is never negative, got {self.size}")


@dataclass(frozen=True)
class SetLifecycle:
    """The pool moves to another stage of its life."""

    lifecycle: Lifecycle


@dataclass(frozen=True)
class ForgetWorkers:
    """The keeper stops or crashes: nobody keeps the records current, so none is kept.

    Until a new keeper starts (and every worker reports to it again) the pool
    hands out nothing rather than channels that may be closing meanwhile.
    """


@dataclass(frozen=True)
class JudgeOutliers:
    """An interval of outlier detection has passed: judge the units (see :func:`judgement`).

    Attributes:
        outcomes: Every unit of the pool with its ``(successes, failures)``
            over the interval.
        now: The monotonic time.
    """

    outcomes: Mapping[Unit, tuple[int, int]] = field(repr=False)
    now: float


RecordsEvent = (
    WorkerReport | WorkerGone | ExpectedSize | SetLifecycle | ForgetWorkers | JudgeOutliers
)

# --- effects -----------------------------------------------------------------------


@dataclass(frozen=True)
class Publish:
    """Swap ``view`` in as the pool's view (one assignment) and wake its waiters."""

    view: PoolView


@dataclass(frozen=True)
class WorkersChanged:
    """A worker's record changed: the pool's balancer should look at the new view.

    Always after the :class:`Publish` of that change, so the balancer sees it.
    """


#: ``Emit``: send a signal (``pool.ejected``, ``pool.unejected``, ``pool.panic``).
#: ``ReplaceConnection``: tell the worker to connect afresh.
RecordsEffect = Publish | WorkersChanged | Emit | ReplaceConnection

# --- state -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Record:
    """One worker as its keeper last heard of it.

    Attributes:
        urn: The incarnation that reported it.
        status: The record the view shows.
        connection: Its ready connection, when it is ready.
    """

    urn: str
    status: WorkerStatus
    connection: ReadyConnection | None


@dataclass(frozen=True, slots=True)
class Records:
    """A pool's records and the view last built from them.

    The mapping is never changed in place: each step makes a new one.

    Attributes:
        name: The pool's name.
        strategy: Builds the view's pickers.
        view: The view last built (the one the keeper published, or the one
            it started from).
        workers: One record per worker id, in worker start order.
        expected: How many workers the pool is meant to have.
        lifecycle: Where the pool is in its life.
        outliers: The outlier judge's state; None: outlier detection is off.
        panic_threshold: ``pool.panic_threshold``.
    """

    name: str
    strategy: Strategy
    view: PoolView
    workers: Mapping[str, Record]
    expected: int
    lifecycle: Lifecycle
    outliers: Outliers | None = None
    panic_threshold: float = DEFAULT_PANIC_THRESHOLD


RecordsStep = tuple[Records, tuple[RecordsEffect, ...]]

_PANIC = telemetry.pool_panic.name


def records_after(
    name: str,
    strategy: Strategy,
    previous: PoolView,
    *,
    outlier_detection: OutlierDetection | None = None,
    panic_threshold: float = DEFAULT_PANIC_THRESHOLD,
    rng: random.Random | None = None,
) -> Records:
    """The records a keeper starts with, where ``previous`` was the pool's view.

    No worker is on record yet (each reports to a new keeper), and no unit
    is ejected; the expected size is the last view's, and the pool runs on
    only if it ran. The view is ``previous`` until the first :func:`publish`
    or step. ``rng`` draws outlier detection's enforcement chances.
    """
    lifecycle: Lifecycle = "running" if previous.lifecycle == "running" else "starting"
    outliers = None if outlier_detection is None else new_outliers(outlier_detection, rng)
    return Records(
        name, strategy, previous, {}, previous.expected_size, lifecycle, outliers, panic_threshold
    )


def judgement(records: Records, now: float) -> JudgeOutliers:
    """The :class:`JudgeOutliers` of this interval: takes (and resets) each ready connection's
    outcomes, summed per unit. ``now`` is the monotonic time."""
    connections = (r.connection for r in records.workers.values() if r.connection is not None)
    statuses = tuple(r.status for r in records.workers.values())
    return JudgeOutliers(tally(connections, statuses), now)


def publish(records: Records) -> RecordsStep:
    """Builds the view of ``records`` and publishes it (and says so if the pool enters or
    leaves panic)."""
    connections = tuple(r.connection for r in records.workers.values() if r.connection is not None)
    workers = tuple(r.status for r in records.workers.values())
    ejected: frozenset[ReadyConnection] = frozenset()
    if records.outliers is not None:
        ejected, ejected_ids = ejected_connections(connections, workers, records.outliers.ejected)
        if ejected_ids:
            workers = tuple(
                replace(w, ejected=True) if w.worker_id in ejected_ids else w for w in workers
            )
    view = build_view(
        records.name,
        records.strategy,
        records.view,
        connections=connections,
        workers=workers,
        expected_size=records.expected,
        lifecycle=records.lifecycle,
        ejected=ejected,
        panic_threshold=records.panic_threshold,
    )
    effects: tuple[RecordsEffect, ...] = (Publish(view),)
    if view.panic != records.view.panic:
        effects += (_panic_signal(view),)
    return replace(records, view=view), effects


def _panic_signal(view: PoolView) -> Emit:
    measurements = {
        "active": int(view.panic),
        "ready": view.ready_count,
        "ejected": sum(1 for w in view.workers if w.ejected and w.state == "ready"),
    }
    return Emit(_PANIC, measurements, {})


def _judge(records: Records, event: JudgeOutliers) -> RecordsStep:
    if records.outliers is None:
        return records, ()
    outliers, verdict = judge(records.outliers, event.outcomes, event.now)
    records = replace(records, outliers=outliers)
    if not verdict:
        return records, ()
    # Who is routed may have changed: the view first (a receiver of the
    # signals sees it), then what the judge decided, then the panic it makes.
    records, (published, *panic) = publish(records)
    effects: list[RecordsEffect] = [published]
    for effect in verdict:
        effects.append(outlier_signal(effect))
        replaced = replacement(effect)
        if replaced is not None:
            effects.append(replaced)
    return records, (*effects, *panic)


def step(records: Records, event: RecordsEvent, now: float) -> RecordsStep:
    """Moves the records on by one event.

    Args:
        records: The current records.
        event: What happened.
        now: The wall-clock time (``time.time()``), for a record's ``since``.

    Returns:
        The new records and the effects to run, in order. A stale report or
        a :class:`WorkerGone` for a worker not on record changes nothing and
        has no effect.

    Raises:
        TypeError: ``event`` is not one of the records' events (or a worker id
            is unhashable).
    """
    match event:
        case WorkerReport():
            return _report(records, event, now)
        case WorkerGone():
            record = records.workers.get(event.worker_id)
            if record is None or record.urn != event.urn:
                return records, ()
            kept = {k: v for k, v in records.workers.items() if k != event.worker_id}
            return _changed(replace(records, workers=kept))
        case ExpectedSize():
            return publish(replace(records, expected=event.size))
        case SetLifecycle():
            return publish(replace(records, lifecycle=event.lifecycle))
        case ForgetWorkers():
            return publish(replace(records, workers={}))
        case JudgeOutliers():
            return _judge(records, event)
    raise TypeError(f"not a records event: {event!r}")


def _report(records: Records, report: WorkerReport, now: float) -> RecordsStep:
    record = records.workers.get(report.worker_id)
    if record is not None and record.urn != report.urn and report.state != "connecting":
        return records, ()  # another incarnation's, and not one starting afresh
    since = now
    if (
        record is not None
        and record.urn == report.urn
        and (record.status.state, record.status.address) == (report.state, report.address)
    ):
        since = record.status.since  # the same state (a move starts it anew)
    status = WorkerStatus(
        worker_id=report.worker_id,
        state=report.state,
        since=since,
        reconnect_attempt=report.reconnect_attempt,
        last_error=report.last_error,
        peer=report.peer,
        address=report.address,
    )
    connection = None
    if report.state == "ready" and report.channel is not None:
        # The same channel keeps its record, and with it the count of its
        # calls in flight and its multi-callables.
        kept = record.connection if record is not None else None
        if kept is not None and kept.channel is report.channel:
            connection = kept
        else:
            connection = ReadyConnection(
                report.channel,
                report.worker_id,
                report.suspect,
                report.address,
                report.ledger,
                report.on_last_call,
            )
    workers = dict(records.workers)
    workers[report.worker_id] = Record(report.urn, status, connection)
    return _changed(replace(records, workers=workers))


def _changed(records: Records) -> RecordsStep:
    records, published = publish(records)
    return records, (*published, WorkersChanged())
