"""The asyncio pool's balancing task: follow the resolver, keep the spread, refresh by age.

What the sync pool's Balancer actor does, as one task on the pool's loop,
driving the same rules (:mod:`grpcpool.core._balancing`): it asks the
resolver again every ``endpoint.resolve_interval`` and whenever a connection
cannot reconnect (abandoning a resolution that outlasts
``endpoint.resolve_timeout``); workers that serve nothing are repinned to
live addresses at once, and ready ones are replaced one at a time (an uneven
spread, an address gone, a connection past ``connection.max_age``). A
replacement worker starts on the target address; once it is ready the
replaced worker stops and its channel drains, so capacity never drops.

The task waits on one :class:`asyncio.Event`: set when a worker's state
changes (the pool pokes it) and when a resolution answers; otherwise it
sleeps until the one wake-up the rules ask for. It never polls. The task is
not restarted if it fails (nothing supervises it), so the rules' "a starting
balancer drops the replacements left" finds none here; it is carried out
all the same.

A static resolver or an IP literal is asked on the loop (there is nothing to
wait for); any other resolver runs in the loop's default executor, since a
lookup may block. A resolver that pushes is followed through one watch
(:mod:`grpcpool.tasks._watch`), whose sets come in as events.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import logging
import time

from grpcpool._resolving import resolve
from grpcpool.config import Config
from grpcpool.connection._announce import announce_pool
from grpcpool.connection._machine_types import Emit, Log
from grpcpool.core import _balancing_types as rules
from grpcpool.core._balancing import step
from grpcpool.core._resolution import START_RESOLVE_WAIT
from grpcpool.resolver import StaticResolver, is_push
from grpcpool.tasks._parts import BalancerLinks
from grpcpool.tasks._registry import wait_event
from grpcpool.tasks._watch import LoopWatch

__all__ = ["Balancer", "first_addresses", "resolves_inline"]

_log = logging.getLogger(__name__)

_Lookup = asyncio.Future[tuple[tuple[str, ...] | None, str | None, float]]


def resolves_inline(config: Config) -> bool:
    """True if the pool's resolver needs no lookup: a static list, or the system's for an IP."""
    resolver = config.endpoint.resolver
    if isinstance(resolver, StaticResolver) or (is_push(resolver) and not callable(resolver)):
        return True  # a push-only resolver is not asked: its watch gives the first set
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
    """Keeps one asyncio pool spread over its live addresses and refreshed by age.

    Args:
        pool: What it may use of the pool (same loop).
        addresses: The answer the pool started with, if any.
        took: How long that answer took (seconds).
        inline: The resolver needs no lookup (a static list or an IP literal).

    Attributes:
        resolver_error: Why the last resolution failed (None once one
            answers); the pool's status says it.
    """

    def __init__(
        self, pool: BalancerLinks, addresses: tuple[str, ...] | None, took: float, *, inline: bool
    ) -> None:
        self._pool = pool
        self.resolver_error: str | None = None
        self._addresses = addresses
        self._took = took
        self._inline = inline
        self._state = rules.new_state(rules.BalancerSettings.of(pool.config))
        self._wake = asyncio.Event()
        self._poked = False
        self._wake_at: float | None = None  # monotonic; the rules' one wake-up
        self._inbox: list[rules.Event] = []  # answers of resolutions, in order
        self._lookups: set[_Lookup] = set()
        self._watch = LoopWatch(pool.config, self._hear)

    @property
    def watch_handle(self) -> object | None:
        """A push resolver's current watch (its handle, or the task reading it), if open."""
        return self._watch.handle

    def poke(self) -> None:
        """The pool's workers changed (a state, or scaling): look again."""
        self._poked = True
        self._wake.set()

    async def run(self) -> None:
        """Runs until cancelled (the pool stops)."""
        try:
            await self._feed(rules.Started(self._addresses, self._took, self._pool.view().workers))
            while True:
                left = None if self._wake_at is None else self._wake_at - time.monotonic()
                await wait_event(self._wake, None if left is None else max(0.0, left))
                self._wake.clear()
                events, self._inbox = self._inbox, []
                for event in events:
                    await self._feed(event)
                poked, self._poked = self._poked, False
                workers = self._pool.view().workers
                if self._wake_at is not None and time.monotonic() >= self._wake_at:
                    await self._feed(rules.TimerDue(workers))
                elif poked:
                    await self._feed(rules.WorkersChanged(workers))
        finally:
            # A move's replacement stops with the pool's other workers.
            for lookup in self._lookups:
                lookup.cancel()
            self._watch.close()

    async def _feed(self, event: rules.Event) -> None:
        """Steps the rules with ``event`` and carries out their effects (and what they answer)."""
        events = [event]
        while events:
            self._state, effects = step(
                self._state, events.pop(0), now=time.monotonic(), wall=time.time()
            )
            for effect in effects:
                answer = await self._carry_out(effect)
                if answer is not None:
                    events.append(answer)

    async def _carry_out(self, effect: rules.Effect) -> rules.Event | None:
        workers = self._pool.workers
        match effect:
            case Emit() | Log():
                announce_pool(effect, self._pool.name, _log)
            case rules.Wake(delay):
                self._wake_at = None if delay is None else time.monotonic() + delay
            case rules.StartResolution(number):
                return self._resolve(number)
            case rules.StartWatch(number):
                self._watch.start(number)
            case rules.SetResolverError(problem):
                self.resolver_error = problem
            case rules.RepinWorker(worker_id, address):
                workers.repin(worker_id, address)
            case rules.StartReplacement(number, address, _):
                return rules.ReplacementStarted(number, workers.add(address, replacement=True))
            case rules.RetireWorker(worker_id, replacement):
                if worker_id not in workers.workers:
                    return rules.ReplacedGone(replacement)
                workers.replacements.discard(replacement)  # one of the pool's from now on
                await workers.stop([worker_id])
            case rules.StopReplacement(worker_id):
                await workers.stop([worker_id])
            case rules.DropReplacements():
                await workers.stop(list(workers.replacements))
        return None

    def _resolve(self, number: int) -> rules.Event | None:
        config = self._pool.config
        if self._inline:
            return rules.ResolutionDone(number, *resolve(config))  # nothing to wait for
        # Abandoned after endpoint.resolve_timeout: the executor's thread
        # finishes on its own and the rules drop its answer.
        lookup = asyncio.get_running_loop().run_in_executor(None, resolve, config)
        self._lookups.add(lookup)
        lookup.add_done_callback(functools.partial(self._answered, number))
        return None

    def _hear(self, event: rules.Event) -> None:
        """An event from the watch, on the loop: handled by the running task."""
        self._inbox.append(event)
        self._wake.set()

    def _answered(self, number: int, lookup: _Lookup) -> None:
        self._lookups.discard(lookup)
        if lookup.cancelled() or lookup.exception() is not None:
            return  # the pool stops; or the executor is gone (its time limit ends it)
        self._inbox.append(rules.ResolutionDone(number, *lookup.result()))
        self._wake.set()
