"""The asyncio pool's balancing task: follow the resolver, keep the spread, refresh by age.

What the sync pool's Balancer actor does, as one task on the pool's loop: it
asks the resolver again every ``endpoint.resolve_interval`` and whenever a
connection cannot reconnect, and replaces connections one at a time, as the
shared :class:`~grpcpool.pools._planner.Planner` decides (an uneven spread,
an address gone or failing, a connection past ``connection.max_age``). A
replacement worker starts on the target address; once it is ready the
replaced worker stops and its channel drains, so capacity never drops.

A static resolver or an IP literal is asked on the loop (there is nothing to
wait for); any other resolver runs in the loop's default executor, since a
lookup may block.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import threading
import time
from typing import TYPE_CHECKING, Any

from grpcpool import telemetry
from grpcpool.actors._resolution import START_RESOLVE_WAIT, Answers, resolve
from grpcpool.aio._registry import wait_event
from grpcpool.config import Config
from grpcpool.pools._planner import Candidate, Planner
from grpcpool.resolver import StaticResolver

if TYPE_CHECKING:
    from grpcpool.aio._pool import Pool

__all__ = ["Balancer", "first_addresses", "resolves_inline"]

_log = logging.getLogger(__name__)

# The longest pause between two looks at connection ages (with max_age).
AGE_POLL = 1.0
# At most one resolution per this many seconds because connections fail.
FAILURE_RESOLVE_GAP = 1.0


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


class Balancer:
    """Keeps one asyncio pool spread over its addresses and refreshed by age.

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
        self._answers = Answers(pool.name, pool.config.endpoint.target)
        self._start_answer = addresses
        self._took = took
        self._inline = inline
        self._interval = pool.config.endpoint.resolve_interval
        self._planner = Planner(connection.max_age, max(connection.backoff_max, 5.0))
        self._move_limit = connection.connect_timeout + connection.ping_timeout + 1.0
        self._wake = asyncio.Event()
        self._resolve_soon = False
        self._last_failure_resolve = -FAILURE_RESOLVE_GAP

    def poke(self) -> None:
        """The pool's workers changed (scaled): look at the spread again."""
        self._wake.set()

    async def run(self) -> None:
        """Runs until cancelled (the pool stops)."""
        name = self._pool.name
        pool_thread = threading.get_ident()

        def on_reconnect(sender: str, **_: Any) -> None:
            # This pool's workers emit on its loop's thread; a sync pool of the
            # same name emits from its actors' threads: not ours.
            if threading.get_ident() != pool_thread:
                return
            now = time.monotonic()
            if now - self._last_failure_resolve >= FAILURE_RESOLVE_GAP:
                self._last_failure_resolve = now
                self._resolve_soon = True
                self._wake.set()

        telemetry.channel_reconnect_scheduled.connect(on_reconnect, sender=name, weak=False)
        try:
            if self._start_answer:
                self._answers.take(self._start_answer, None, self._took)
            else:
                await self._resolve()
            next_resolve = None if self._interval is None else time.monotonic() + self._interval
            while True:
                await self._keep_even()
                if self._resolve_soon or (
                    next_resolve is not None and time.monotonic() >= next_resolve
                ):
                    self._resolve_soon = False
                    await self._resolve()
                    if self._interval is not None:
                        next_resolve = time.monotonic() + self._interval
                    continue
                await self._sleep(next_resolve)
        finally:
            telemetry.channel_reconnect_scheduled.disconnect(on_reconnect)

    async def _sleep(self, next_resolve: float | None) -> None:
        waits = []
        if next_resolve is not None:
            waits.append(next_resolve - time.monotonic())
        due = self._planner.next_refresh()
        if due is not None:
            waits.append(due - time.time())
        elif self._pool.config.connection.max_age is not None:
            waits.append(AGE_POLL)
        timeout = max(0.0, min(waits)) if waits else None
        self._wake.clear()
        await wait_event(self._wake, timeout)

    # --- resolution -------------------------------------------------------------------

    async def _resolve(self) -> None:
        config = self._pool.config
        if self._inline:
            addresses, error, took = resolve(config)
        else:
            loop = asyncio.get_running_loop()
            addresses, error, took = await loop.run_in_executor(None, resolve, config)
        self._answers.take(addresses, error, took)

    # --- moves ----------------------------------------------------------------------------

    async def _keep_even(self) -> None:
        """Makes the replacements the planner asks for, one at a time, until none is due."""
        while self._answers.addresses:
            candidate = self._planner.next(
                self._pool.view.workers,
                self._answers.addresses,
                now=time.monotonic(),
                wall=time.time(),
            )
            if candidate is None or not await self._move(candidate):
                return

    async def _move(self, move: Candidate) -> bool:
        pool = self._pool
        added = pool._workers.add(move.address, replacement=True)
        deadline = time.monotonic() + self._move_limit
        while (state := self._state_of(added)) != "ready":
            left = deadline - time.monotonic()
            if state == "backoff" or left <= 0:
                _log.warning(
                    "pool %r: a replacement on %s %s; keeping %s",
                    pool.name,
                    move.address,
                    "failed to connect" if state == "backoff" else "was not ready in time",
                    move.worker_id,
                )
                await pool._workers.stop([added])
                self._planner.avoid(move.address, time.monotonic())
                return False
            await pool.wait_changed(left)
        pool._workers.replacements.discard(added)  # one of the pool's from now on
        await pool._workers.stop([move.worker_id])
        telemetry.emit(
            telemetry.channel_refreshed,
            pool.name,
            {"age": move.age},
            {
                "pool_name": pool.name,
                "worker_id": move.worker_id,
                "address": move.address,
                "reason": move.reason,
            },
        )
        return True

    def _state_of(self, worker_id: str) -> str | None:
        for worker in self._pool.view.workers:
            if worker.worker_id == worker_id:
                return worker.state
        return None
