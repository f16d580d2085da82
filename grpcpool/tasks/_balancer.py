"""The asyncio pool's balancing task: follow the resolver, keep the spread, refresh by age.

What the sync pool's Balancer actor does, as one task on the pool's loop: it
asks the resolver again every ``endpoint.resolve_interval`` and whenever a
connection cannot reconnect (abandoning a resolution that outlasts
``endpoint.resolve_timeout``), and carries out what the shared
:class:`~grpcpool.core._planner.Planner` decides: workers that serve nothing
are repinned to live addresses at once, and ready ones are replaced one at a
time (an uneven spread, an address gone, a connection past
``connection.max_age``). A replacement worker starts on the target address;
once it is ready the replaced worker stops and its channel drains, so
capacity never drops. The task wakes when a worker's state changes (the pool
pokes it), when the plan says time alone changes something, and for the
next resolution; it never polls.

A static resolver or an IP literal is asked on the loop (there is nothing to
wait for); any other resolver runs in the loop's default executor, since a
lookup may block.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from grpcpool import telemetry
from grpcpool._resolving import resolve, timed_out
from grpcpool.config import Config
from grpcpool.connection._announce import announce_pool
from grpcpool.core._planner import Candidate, Planner
from grpcpool.core._resolution import START_RESOLVE_WAIT, Answers
from grpcpool.resolver import StaticResolver
from grpcpool.tasks._registry import wait_event

if TYPE_CHECKING:
    from grpcpool.tasks._pool import TaskPool as Pool

__all__ = ["Balancer", "first_addresses", "resolves_inline"]

_log = logging.getLogger(__name__)

# The longest pause between two looks at connection ages (with max_age).
AGE_POLL = 1.0


def resolves_inline(config: Config) -> bool:
    """True if the pool's resolver needs no lookup: a static list, or the system's for an IP."""
    resolver = config.endpoint.resolver
    if isinstance(resolver, StaticResolver):
        return True
    try:
        ipaddress.ip_address(config.endpoint.host.strip("[]"))
    except ValueError:
        return False
    return resolver is None


async def first_addresses(config: Config) -> tuple[tuple[str, ...] | None, float]:
    """A starting pool's addresses and how long they took; never blocks the loop for long.

    A lookup that takes over ``START_RESOLVE_WAIT`` leaves the workers to start
    on ``host:port``; the balancing task moves them once it has an answer.
    """
    if resolves_inline(config):
        addresses, _, took = resolve(config)  # nothing to wait for
        return addresses, took
    lookup = asyncio.get_running_loop().run_in_executor(None, resolve, config)
    try:
        addresses, _, took = await asyncio.wait_for(lookup, START_RESOLVE_WAIT)
    except TimeoutError:
        return None, START_RESOLVE_WAIT
    return addresses, took


@dataclass
class _Move:
    """A replacement under way: ``replaced`` leaves once ``added`` is ready."""

    candidate: Candidate
    added: str
    deadline: float


class Balancer:
    """Keeps one asyncio pool spread over its live addresses and refreshed by age.

    Args:
        pool: The pool (same loop).
        addresses: The answer the pool started with, if any.
        took: How long that answer took (seconds).
        inline: The resolver needs no lookup (a static list or an IP literal).
    """

    def __init__(
        self, pool: Pool, addresses: tuple[str, ...] | None, took: float, *, inline: bool
    ) -> None:
        connection = pool.config.connection
        self._pool = pool
        self._interval = pool.config.endpoint.resolve_interval
        self._answers = Answers(pool.config.endpoint.target, self._interval)
        self._start_answer = addresses
        self._took = took
        self._inline = inline
        self._planner = Planner(connection.max_age, connection.backoff_min, connection.backoff_max)
        self._move_limit = connection.connect_timeout + connection.ping_timeout + 1.0
        self._move: _Move | None = None
        self._wake = asyncio.Event()
        self._resolve_at: float | None = None  # monotonic; None: not scheduled
        self._resolving: asyncio.Task[None] | None = None

    def poke(self) -> None:
        """The pool's workers changed (a state, or scaling): look again."""
        self._wake.set()

    async def run(self) -> None:
        """Runs until cancelled (the pool stops)."""
        try:
            if self._start_answer:
                self._take(self._start_answer, None, self._took)
                self._resolve_at = self._after(self._interval)
            else:
                self._resolve_at = time.monotonic()
            while True:
                self._wake.clear()
                if self._resolve_at is not None and time.monotonic() >= self._resolve_at:
                    self._resolve_at = None
                    self._start_resolution()
                wake_in = await self._look()
                await wait_event(self._wake, self._timeout(wake_in))
        finally:
            # A move's replacement stops with the pool's other workers.
            if self._resolving is not None:
                self._resolving.cancel()

    def _timeout(self, wake_in: float | None) -> float | None:
        delays = [] if wake_in is None else [wake_in]
        if self._resolve_at is not None:
            delays.append(self._resolve_at - time.monotonic())
        if self._move is not None:
            delays.append(self._move.deadline - time.monotonic())
        if self._pool.config.connection.max_age is not None:
            delays.append(AGE_POLL)
        return max(0.0, min(delays)) if delays else None

    @staticmethod
    def _after(delay: float | None) -> float | None:
        return None if delay is None else time.monotonic() + delay

    # --- resolution -------------------------------------------------------------------

    def _start_resolution(self) -> None:
        if self._resolving is not None and not self._resolving.done():
            return
        self._resolving = asyncio.get_running_loop().create_task(
            self._resolve(), name="grpcpool-resolve"
        )

    def _take(self, addresses: tuple[str, ...] | None, error: str | None, took: float) -> bool:
        changed, effects = self._answers.take(addresses, error, took)
        for effect in effects:
            announce_pool(effect, self._pool.name, _log)
        return changed

    async def _resolve(self) -> None:
        config = self._pool.config
        if self._inline:
            addresses, error, took = resolve(config)  # nothing to wait for
        else:
            lookup = asyncio.get_running_loop().run_in_executor(None, resolve, config)
            limit = config.endpoint.resolve_timeout
            done, _ = await asyncio.wait({lookup}, timeout=limit)
            if done:
                addresses, error, took = lookup.result()
            else:  # abandoned: the executor's thread finishes on its own
                addresses, error, took = None, timed_out(config), limit
        changed = self._take(addresses, error, took)
        self._pool.resolver_error = self._answers.problem
        self._resolve_at = self._after(self._answers.retry_delay())
        if changed or self._resolve_at is not None:
            self._wake.set()

    # --- moves ----------------------------------------------------------------------------

    async def _look(self) -> float | None:
        """Advances the move under way, makes the repins and moves due; returns the wake time."""
        pool = self._pool
        move = self._move
        if move is not None:
            await self._advance(move)
        move = self._move
        plan = self._planner.plan(
            pool.view.workers,
            self._answers.addresses,
            now=time.monotonic(),
            wall=time.time(),
            moving={move.candidate.worker_id: move.added} if move is not None else None,
        )
        for repin in plan.repins:
            pool._workers.repin(repin.worker_id, repin.address)
        if plan.reconnecting and self._answers.failure_resolve_due(time.monotonic()):
            self._start_resolution()  # a connection cannot reconnect: is the answer stale?
        if plan.move is not None and self._move is None:
            added = pool._workers.add(plan.move.address, replacement=True)
            self._move = _Move(plan.move, added, time.monotonic() + self._move_limit)
        return plan.wake_in

    async def _advance(self, move: _Move) -> None:
        pool, candidate = self._pool, move.candidate
        state = self._state_of(move.added)
        if state == "ready":
            self._move = None
            self._planner.moved(candidate.address)
            if candidate.worker_id not in pool._workers.workers:
                # The worker it was to replace is gone (scaled down): the
                # pool must not grow, so the replacement goes too.
                await pool._workers.stop([move.added])
                return
            pool._workers.replacements.discard(move.added)  # one of the pool's from now on
            await pool._workers.stop([candidate.worker_id])
            telemetry.emit(
                telemetry.channel_refreshed,
                pool.name,
                {"age": candidate.age},
                {
                    "pool_name": pool.name,
                    "worker_id": candidate.worker_id,
                    "address": candidate.address,
                    "reason": candidate.reason,
                },
            )
            return
        if state == "backoff" or time.monotonic() >= move.deadline:
            _log.warning(
                "pool %r: a replacement on %s %s; keeping %s",
                pool.name,
                candidate.address,
                "failed to connect" if state == "backoff" else "was not ready in time",
                candidate.worker_id,
            )
            self._move = None
            await pool._workers.stop([move.added])
            self._planner.avoid(candidate.address, time.monotonic())

    def _state_of(self, worker_id: str) -> str | None:
        for worker in self._pool.view.workers:
            if worker.worker_id == worker_id:
                return worker.state
        return None
