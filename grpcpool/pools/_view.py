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

A view also carries the stub cache of its channels: a new view starts with
the stubs of the channels it keeps, so stubs of a channel that left the pool
are dropped with the view that held it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import grpc

from grpcpool._status import PoolStatus, WorkerState, WorkerStatus
from grpcpool.errors import NotConnectedError, shorten
from grpcpool.strategy import Strategy, make_picker

__all__ = ["Lifecycle", "PoolView", "build_view", "empty_view", "unready_cause"]

#: Where a pool is in its life. ``starting``: its workers are being started;
#: ``running``; ``restarting``: its supervisor crashed and its parent is about
#: to start it again (nothing is handed out meanwhile); ``stopped``: for good.
Lifecycle = Literal["starting", "running", "restarting", "stopped"]


@dataclass(frozen=True, slots=True, eq=False)
class PoolView:
    """A pool at one moment.

    Attributes:
        channels: The ready channels, in worker start order.
        pick: Returns one of ``channels`` (the strategy's picker), or raises
            :class:`NotConnectedError` when there is none.
        workers: One record per worker, in start order.
        expected_size: How many workers the pool is meant to have.
        lifecycle: See :data:`Lifecycle`.
        stubs: Stubs built on ``channels``, by (channel, stub class); filled
            by callers (a dict item assignment is atomic under the GIL).
    """

    channels: tuple[grpc.Channel, ...]
    pick: Callable[[], grpc.Channel]
    workers: tuple[WorkerStatus, ...]
    expected_size: int
    lifecycle: Lifecycle
    stubs: dict[tuple[grpc.Channel, type[Any]], Any] = field(default_factory=dict)

    def status(self, pool_name: str) -> PoolStatus:
        """This view as the public :class:`PoolStatus` record."""
        return PoolStatus.of(pool_name, self.expected_size, len(self.channels), self.workers)


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
) -> Callable[[], grpc.Channel]:
    # The message is composed here, once per view, not on each failed call:
    # callers of a pool that is down may call in a tight loop.
    cause, last_error = unready_cause(workers)
    notes = [note for note in (_LIFECYCLE_NOTES.get(lifecycle), cause) if note]
    detail = f"no ready channel ({'; '.join(notes)})" if notes else "no ready channel"

    def pick() -> grpc.Channel:
        raise NotConnectedError(pool_name, detail, last_error=last_error)

    return pick


def empty_view(pool_name: str, expected_size: int, lifecycle: Lifecycle) -> PoolView:
    """A view with nothing ready and no worker records."""
    return PoolView((), _none_ready(pool_name, lifecycle), (), expected_size, lifecycle)


def build_view(
    pool_name: str,
    strategy: Strategy,
    previous: PoolView,
    *,
    channels: tuple[grpc.Channel, ...],
    workers: tuple[WorkerStatus, ...],
    expected_size: int,
    lifecycle: Lifecycle,
) -> PoolView:
    """The next view after ``previous``.

    Only a running pool hands out channels. The picker is rebuilt only when
    the set of ready channels changed, so a worker's routine report (a ping
    result, say) does not restart the strategy's rotation or usage counts.
    """
    if lifecycle != "running":
        channels = ()
    if not channels:
        pick = _none_ready(pool_name, lifecycle, workers)
        return PoolView((), pick, workers, expected_size, lifecycle)
    if channels == previous.channels and previous.lifecycle == "running":
        pick, stubs = previous.pick, previous.stubs
    else:
        pick = make_picker(strategy, channels)
        kept = set(channels)
        stubs = {key: stub for key, stub in list(previous.stubs.items()) if key[0] in kept}
    return PoolView(channels, pick, workers, expected_size, lifecycle, stubs)
