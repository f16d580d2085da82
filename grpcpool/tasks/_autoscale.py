"""Autoscaling an asyncio pool (``pool.autoscale``): a task on the pool's loop.

The rules are :mod:`grpcpool.core._autoscale`'s, shared with the sync pool's
Autoscaler actor; this task is their driver. It looks at the pool's load
``AUTOSCALE_SAMPLES`` times an interval, steps the rules, and carries each
step out through the pool's ``resize`` (so a removed connection drains),
then announces ``pool.autoscaled``. A step decided from a size that changed
before it ran (a user's resize) is dropped: the next look decides afresh.

A pool's call queue, when it is the load source, calls
:meth:`Autoscaler.call_waiting` (its ``on_wait``) when a call starts waiting:
the pool grows at once, not at the next look.
"""

from __future__ import annotations

import asyncio
import logging

from grpcpool._config_capacity import AUTOSCALE_SAMPLES
from grpcpool.connection._announce import announce_pool
from grpcpool.core._autoscale import (
    LoadSource,
    Step,
    Window,
    autoscaled,
    grow_step,
    look,
)
from grpcpool.tasks._parts import AutoscaleLinks
from grpcpool.tasks._registry import wait_event

__all__ = ["Autoscaler", "start_autoscaling"]

_log = logging.getLogger(__name__)


class Autoscaler:
    """Moves one asyncio pool's size with its load; :meth:`run` is its task.

    Args:
        links: What it may use of its pool.
        load: Where the load is read: the pool's capacity (calls in flight
            plus queued).

    Attributes:
        load: Where it reads the load; :func:`start_autoscaling` sets its
            ``on_wait`` to :meth:`call_waiting`.
        task: Its task, once started.
    """

    def __init__(self, links: AutoscaleLinks, load: LoadSource) -> None:
        assert links.settings is not None, "for an autoscaled pool only"
        self._settings = links.settings
        self._links = links
        self.load = load
        self._window = Window()
        self._waiting = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    def call_waiting(self) -> None:
        """A call started waiting for a connection: grow now if the rules allow (loop only)."""
        self._waiting.set()

    async def run(self) -> None:
        """Looks every ``interval / AUTOSCALE_SAMPLES`` seconds until cancelled."""
        links, settings = self._links, self._settings
        every = settings.interval / AUTOSCALE_SAMPLES
        loop = asyncio.get_running_loop()
        due = loop.time() + every
        while True:
            await wait_event(self._waiting, max(0.0, due - loop.time()))
            if self._waiting.is_set():
                self._waiting.clear()
                queued = self.load.queued
                step = grow_step(self._window, settings, links.registry.view, queued)
            else:
                due = loop.time() + every
                load = self.load
                self._window, step = look(
                    self._window,
                    settings,
                    links.registry.view,
                    load=load.take_peak(),
                    queued=load.queued,
                )
            if step is not None:
                await self._carry_out(step)

    async def _carry_out(self, step: Step) -> None:
        links = self._links
        if links.registry.view.expected_size != step.from_size:
            return
        try:
            new_size = await links.resize(step.to_size)
        except Exception:  # one failed step must not end autoscaling
            _log.exception("autoscaling pool %r to %d failed", links.name, step.to_size)
            return
        announce_pool(autoscaled(step, new_size), links.name, _log)


def start_autoscaling(links: AutoscaleLinks, load: LoadSource) -> Autoscaler | None:
    """Starts the pool's autoscaling task on the running loop (its ``task``); None for a pool
    of fixed size."""
    if links.settings is None:
        return None
    scaler = Autoscaler(links, load)
    scaler.load.on_wait = scaler.call_waiting
    scaler.task = asyncio.get_running_loop().create_task(scaler.run(), name="grpcpool-autoscale")
    return scaler
