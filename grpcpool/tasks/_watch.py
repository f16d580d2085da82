"""An asyncio pool's push resolver's watch, in either form.

A :class:`~grpcpool.resolver.PushResolver` (``watch(host, port, on_change)``)
may call ``on_change`` from any thread, the loop's included: each set is
handed to the loop with ``call_soon_threadsafe``. An
:class:`~grpcpool.resolver.AsyncPushResolver` (``watch(host, port)``, an
async iterator) is read by a task of the pool. Either way the balancing task
hears :class:`Pushed` and :class:`WatchFailed` events carrying the watch's
number, and the rules drop those of a watch closed since.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

from grpcpool._resolving import Pushed, check_pushed, watch
from grpcpool.config import Config
from grpcpool.core import _balancing_types as rules
from grpcpool.errors import shorten
from grpcpool.resolver import WatchHandle, is_async_form

__all__ = ["LoopWatch"]

_log = logging.getLogger(__name__)


class LoopWatch:
    """The pool's one watch at a time: started by number, closed when replaced or at stop.

    Args:
        config: The pool's configuration (its ``endpoint.resolver`` pushes).
        deliver: Takes each event on the loop (the balancer's inbox).
    """

    def __init__(self, config: Config, deliver: Callable[[rules.Event], None]) -> None:
        self._config = config
        self._deliver = deliver
        self._handle: WatchHandle | None = None
        self._reader: asyncio.Task[None] | None = None
        self.number = 0

    def start(self, number: int) -> None:
        """Closes the current watch, if any, and starts watch ``number``."""
        self.close()
        self.number = number
        resolver: Any = self._config.endpoint.resolver
        endpoint = self._config.endpoint
        loop = asyncio.get_running_loop()
        if is_async_form(resolver):
            sets = resolver.watch(endpoint.host, endpoint.port)
            self._reader = loop.create_task(self._read(number, sets), name="grpcpool-watch")
            return

        def on_set(pushed: Pushed) -> None:
            with contextlib.suppress(RuntimeError):  # the loop has closed: the pool is gone
                loop.call_soon_threadsafe(self._deliver, rules.Pushed(number, *pushed))

        def on_failed(error: str) -> None:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._failed, number, error)

        self._handle = watch(self._config, on_set, on_failed)

    @property
    def handle(self) -> object | None:
        """The open watch: the resolver's handle, or the task reading its iterator."""
        return self._handle if self._handle is not None else self._reader

    def _failed(self, number: int, error: str) -> None:
        if number == self.number:
            self.close()
        self._deliver(rules.WatchFailed(number, error))

    async def _read(self, number: int, sets: AsyncIterator[Sequence[str]]) -> None:
        resolver = self._config.endpoint.resolver
        try:
            async for answer in sets:
                self._deliver(rules.Pushed(number, *check_pushed(answer, resolver)))
            error = "the watch ended"
        except asyncio.CancelledError:
            raise
        except Exception as failure:  # a user resolver may raise anything
            error = f"{type(failure).__name__}: {shorten(str(failure))}"
        finally:
            closing = getattr(sets, "aclose", None)
            if callable(closing):
                with contextlib.suppress(Exception):
                    await closing()
        self._reader = None
        self._deliver(rules.WatchFailed(number, error))

    def close(self) -> None:
        """Ends the current watch (its later news is dropped by number)."""
        handle, self._handle = self._handle, None
        reader, self._reader = self._reader, None
        if reader is not None:
            reader.cancel()
        if handle is not None:
            try:
                handle.close()
            except Exception as error:  # a user resolver's close may raise anything
                _log.warning("closing the resolver's watch failed: %r", error)
