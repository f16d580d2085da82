"""PoolView: one immutable picture of a pool, as callers see it.

Everything a caller reads about a running pool (which channels are ready,
how to pick one, the per-worker records, the expected size, whether the pool
is running) is in one frozen :class:`PoolView`. The pool's HealthRegistry
builds a new view after each change it hears of and publishes it with ONE
assignment to the pool's entry, so a reader sees the old picture or the new
one, each consistent with itself, and needs no lock: in a running pool,
``status()`` can never show a ``current_size`` that disagrees with its own
worker records. (While a pool starts or restarts it hands nothing out, so its
``current_size`` is 0 whatever its workers report.)

Ejected connections (outlier detection, :mod:`grpcpool.core._ejections`)
leave routing: the pickers are built over the ready connections that are not
ejected, and the others wait in ``unrouted``; unless fewer than
``pool.panic_threshold`` percent of the pool's connections are ready and not
ejected (or none is), when the pool *panics* and routes over every ready
connection, ejected or not (Envoy's panic mode). Without an ejected ready
connection there is no panic: it would route the same.

A view holds the ready channels twice: as bare ``channels`` with their
picker for ``get_channel``, and as :class:`ReadyConnection` records with
theirs for the pool channel, which counts calls in flight on them. For a
strategy that routes by load the channel picker hands out the picked
connection's channel; a built-in strategy, blind to what it picks, gets a
picker of its own over the connections; a custom one sees channels only,
and the pool channel looks up the picked channel's connection.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Literal, NoReturn

import grpc

from grpcpool import telemetry
from grpcpool._config_capacity import Autoscale
from grpcpool._config_routing import DEFAULT_PANIC_THRESHOLD
from grpcpool._status import PoolStatus, WorkerState, WorkerStatus
from grpcpool.connection._machine_types import Emit
from grpcpool.core._ready import ReadyConnection
from grpcpool.errors import NotConnectedError, shorten
from grpcpool.strategy import Strategy, make_picker, picks_any_items, routes_by_load

__all__ = ["ALL_RETIRED", "Lifecycle", "PoolView", "build_view", "empty_view", "unready_cause"]

#: Why no call could start when :meth:`PoolView.admit` found each ready
#: connection retired (a view read just before the next was published).
ALL_RETIRED = "no ready channel (the ready ones left the pool just now)"

#: Where a pool is in its life. ``starting``: its workers are being started;
#: ``running``; ``restarting``: its supervisor crashed and its parent is about
#: to start it again (nothing is handed out meanwhile); ``stopped``: for good.
Lifecycle = Literal["starting", "running", "restarting", "stopped"]


@dataclass(frozen=True, slots=True, eq=False)
class PoolView:
    """A pool at one moment.

    Attributes:
        channels: The ready channels calls are routed to, in worker start order.
        pick: Returns one of ``channels`` (the strategy's picker), or raises
            :class:`NotConnectedError` when there is none.
        workers: One record per worker, in start order.
        expected_size: How many workers the pool is meant to have.
        lifecycle: See :data:`Lifecycle`.
        connections: The ready connections, one per channel of ``channels``,
            in the same order.
        pick_connection: Returns one of ``connections``, or raises as
            ``pick`` does.
        unrouted: Ready connections left out of routing (ejected, the pool
            not in panic).
        panic: The pool routes over ejected connections too (see above).
    """

    channels: tuple[grpc.Channel, ...]
    pick: Callable[[], grpc.Channel]
    workers: tuple[WorkerStatus, ...]
    expected_size: int
    lifecycle: Lifecycle
    connections: tuple[ReadyConnection, ...]
    pick_connection: Callable[[], ReadyConnection]
    unrouted: tuple[ReadyConnection, ...] = ()
    panic: bool = False

    @property
    def ready_count(self) -> int:
        """How many connections are ready, routed or not."""
        return len(self.channels) + len(self.unrouted)

    def admit(self) -> tuple[ReadyConnection, int] | None:
        """A ready connection with a call counted on it (see :meth:`ReadyConnection.start`).

        The strategy picks. A connection retired since this view was taken
        (read by a caller just before the pool published the next one)
        refuses the call, which then goes to the first of the view's other
        connections that takes it.

        Returns:
            The connection and the call's ticket; None if every ready
            connection of this view was retired meanwhile (the next view,
            about to be published, has none of them).

        Raises:
            NotConnectedError: No connection is ready.
        """
        connection = self.pick_connection()
        ticket = connection.start()
        if ticket is not None:
            return connection, ticket
        for other in self.connections:
            ticket = other.start()
            if ticket is not None:
                return other, ticket
        return None

    def status(
        self,
        pool_name: str,
        resolver_error: str | None = None,
        queued: int = 0,
        *,
        autoscale: Autoscale | None = None,
    ) -> PoolStatus:
        """This view as the public :class:`PoolStatus` record, with calls in flight now,
        ``queued`` (the calls waiting for a slot, which the pool's capacity counts) and
        the range of the pool's ``autoscale``, if it has one."""
        workers = self.workers
        # Ejected connections still carry the calls that were running on them.
        loads = {
            c.worker_id: count
            for c in (*self.connections, *self.unrouted)
            if (count := len(c.calls))
        }
        if loads:
            workers = tuple(
                replace(worker, in_flight=loads[worker.worker_id])
                if worker.worker_id in loads
                else worker
                for worker in workers
            )
        bounds = None if autoscale is None else autoscale.bounds
        return PoolStatus.of(
            pool_name,
            self.expected_size,
            self.ready_count,
            workers,
            resolver_error,
            queued,
            autoscale=bounds,
        )


_LIFECYCLE_NOTES: dict[Lifecycle, str] = {
    "starting": "the pool is starting",
    "restarting": "the pool is restarting",
    "stopped": "the pool has stopped",
}

_STATE_WORDS: dict[WorkerState, str] = {
    "connecting": "connecting",
    "backoff": "backing off",
    "stopped": "stopped",
}


def unready_cause(workers: tuple[WorkerStatus, ...]) -> tuple[str | None, str | None]:
    """Why the workers that are not ready are not: a summary and the last error.

    Returns:
        ``("3 workers backing off; last error: <text>", "<text>")``: what the
        non-ready workers are doing, and the most recent error among them
        (grpc's text, shortened), or None for either when there is nothing
        to say. Only the error text a worker recorded is quoted.
    """
    counts: dict[WorkerState, int] = {}
    last: WorkerStatus | None = None
    for worker in workers:
        if worker.state == "ready":
            continue
        counts[worker.state] = counts.get(worker.state, 0) + 1
        if worker.last_error and (last is None or worker.since >= last.since):
            last = worker
    parts = [
        f"{count} {'worker' if count == 1 else 'workers'} {_STATE_WORDS.get(state, state)}"
        for state, count in counts.items()
    ]
    summary = ", ".join(parts)
    last_error = shorten(last.last_error) if last is not None and last.last_error else None
    if last_error is not None:
        summary = f"{summary}; last error: {last_error}" if summary else f"last error: {last_error}"
    return summary or None, last_error


def _none_ready(
    pool_name: str, lifecycle: Lifecycle, workers: tuple[WorkerStatus, ...] = ()
) -> Callable[[], NoReturn]:
    # The message is composed here, once per view, not on each failed call:
    # callers of a pool that is down may call in a tight loop.
    cause, last_error = unready_cause(workers)
    notes = [note for note in (_LIFECYCLE_NOTES.get(lifecycle), cause) if note]
    detail = f"no ready channel ({'; '.join(notes)})" if notes else "no ready channel"

    def pick() -> NoReturn:
        raise NotConnectedError(pool_name, detail, last_error=last_error)

    return pick


def _unready_view(
    pool_name: str,
    lifecycle: Lifecycle,
    workers: tuple[WorkerStatus, ...],
    expected_size: int,
) -> PoolView:
    pick = _none_ready(pool_name, lifecycle, workers)
    return PoolView((), pick, workers, expected_size, lifecycle, (), pick)


def empty_view(pool_name: str, expected_size: int, lifecycle: Lifecycle) -> PoolView:
    """A view with nothing ready and no worker records."""
    return _unready_view(pool_name, lifecycle, (), expected_size)


def _pickers(
    strategy: Strategy, connections: tuple[ReadyConnection, ...]
) -> tuple[Callable[[], grpc.Channel], Callable[[], ReadyConnection]]:
    """The channel picker and the connection picker over ``connections``, sharing one choice."""
    if routes_by_load(strategy):
        pick_connection = make_picker(strategy, connections)

        def pick_channel() -> grpc.Channel:
            return pick_connection().channel

        return pick_channel, pick_connection
    pick = make_picker(strategy, tuple(c.channel for c in connections))
    if picks_any_items(strategy):
        # Its picker never looks at the items: one over the connections
        # themselves saves the pool channel a lookup per call. It keeps a
        # rotation (or usage counts) of its own, apart from get_channel's.
        return pick, make_picker(strategy, connections)
    by_channel = {c.channel: c for c in connections}
    connection_of = by_channel.__getitem__

    def pick_connection_of_channel() -> ReadyConnection:
        return connection_of(pick())

    return pick, pick_connection_of_channel


def build_view(
    pool_name: str,
    strategy: Strategy,
    previous: PoolView,
    *,
    connections: tuple[ReadyConnection, ...],
    workers: tuple[WorkerStatus, ...],
    expected_size: int,
    lifecycle: Lifecycle,
    ejected: frozenset[ReadyConnection] = frozenset(),
    panic_threshold: float = DEFAULT_PANIC_THRESHOLD,
) -> PoolView:
    """The next view after ``previous``.

    Only a running pool hands out channels. ``ejected`` connections are
    left out of routing unless the pool panics (see the module's text). The
    pickers are rebuilt only when the set of routed connections changed, so
    a worker's routine report (a ping result, say) does not restart the
    strategy's rotation or usage counts.
    """
    if lifecycle != "running":
        connections = ()
    if not connections:
        return _unready_view(pool_name, lifecycle, workers, expected_size)
    unrouted: tuple[ReadyConnection, ...] = ()
    panic = False
    if ejected:
        routable = tuple(c for c in connections if c not in ejected)
        if len(routable) < len(connections):
            total = max(len(workers), len(connections))
            panic = not routable or len(routable) * 100 < panic_threshold * total
            if not panic:
                unrouted = tuple(c for c in connections if c in ejected)
                connections = routable
    channels = tuple(c.channel for c in connections)
    if connections == previous.connections and previous.lifecycle == "running":
        pick, pick_connection = previous.pick, previous.pick_connection
    else:
        pick, pick_connection = _pickers(strategy, connections)
    return PoolView(
        channels,
        pick,
        workers,
        expected_size,
        lifecycle,
        connections,
        pick_connection,
        unrouted,
        panic,
    )


def status_signal(view: PoolView, name: str, queued: int = 0) -> Emit:
    """``pool.status`` for pool ``name`` from one view (sync and asyncio pools alike).

    Expected and current size and calls in flight come from the one view, so
    a report never mixes two moments; ``queued`` is the calls waiting for a slot.
    """
    status = view.status(name)
    return Emit(
        telemetry.pool_status.name,
        {
            "expected_size": status.expected_size,
            "current_size": status.current_size,
            "in_flight": status.in_flight,
            "queued": queued,
        },
        {},
    )


def connectivity_of(view: PoolView | None) -> grpc.ChannelConnectivity:
    """The connectivity a pool channel reports for a pool in ``view`` (None: no pool)."""
    if view is None or view.lifecycle == "stopped":
        return grpc.ChannelConnectivity.IDLE
    if view.channels:
        return grpc.ChannelConnectivity.READY
    if any(worker.state == "backoff" for worker in view.workers):
        return grpc.ChannelConnectivity.TRANSIENT_FAILURE
    return grpc.ChannelConnectivity.CONNECTING
