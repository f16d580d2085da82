"""Drains: an asyncio pool's channels, counted while open, closed when their last call ends.

The rule is the :class:`~grpcpool.core.CallLedger`'s, the sync pool's too: a
channel that leaves the pool closes once the last call counted on it (made
through ``pool.channel()``) has ended, at once if none runs, and at the
latest ``connection.drain_timeout`` after it left, which cuts what still
runs. This module only carries the ledger's answers out, on the loop.

A channel ``get_channel()`` handed out raw may carry calls no ledger counts.
As in the sync pool, once the pool has handed out any channel raw
(``raw_handed_out``, set by ``get_channel`` before it reads the view) a
retired channel is kept for the whole drain, closed with the drain as
``grace``: grpc.aio 1.85 and newer end that wait when the raw calls end;
older releases wait for calls they find among the loop's tasks, which may
be any. A pool that never handed a channel out closes without a grace, so
nothing but the ledger decides when.
"""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from collections.abc import Callable, Coroutine
from typing import Any

import grpc

from grpcpool.connection._calls import CallLedger, Close
from grpcpool.tasks._registry import wait_event

__all__ = ["Drains"]


class Drains:
    """Keeps an asyncio pool's open channels; closes retired ones when their ledgers say.

    Loop thread only.

    Args:
        drain_timeout: ``connection.drain_timeout``: the longest a retired
            channel stays open for its calls.
        spawn: Runs a closing coroutine as a task the pool's stop awaits.

    Attributes:
        raw_handed_out: The pool has handed out a channel raw
            (``get_channel``): calls nothing counts may run on its channels.
        open: The channels the pool's workers have open.
        closed_by_pool: Channels the pool closed (or is closing): a call they
            cut was cut by the pool, not lost with its connection.
    """

    def __init__(
        self, drain_timeout: float, spawn: Callable[[Coroutine[Any, Any, None]], None]
    ) -> None:
        self._timeout = drain_timeout
        self._spawn = spawn
        # Channels waiting for their last call, each with the event it sets.
        self._waiting: dict[grpc.aio.Channel, asyncio.Event] = {}
        self.raw_handed_out = False
        self.open: set[grpc.aio.Channel] = set()
        self.closed_by_pool: weakref.WeakSet[grpc.aio.Channel] = weakref.WeakSet()

    def opened(self, channel: grpc.aio.Channel) -> None:
        """A worker opened ``channel``."""
        self.open.add(channel)

    def forget(self, channel: grpc.aio.Channel) -> None:
        """``channel`` is closed by its worker directly (the loop is closing)."""
        self.open.discard(channel)

    def retire(self, channel: grpc.aio.Channel, ledger: CallLedger, *, drain: bool) -> None:
        """``channel`` left the pool: close it now, or when its last call ends.

        Without ``drain`` (or with a drain timeout of 0) it is closed now,
        cutting whatever runs on it.
        """
        self.open.discard(channel)
        self.closed_by_pool.add(channel)
        timeout = self._timeout
        draining = drain and timeout > 0
        effect = ledger.retire(handed_out=self.raw_handed_out) if draining else ledger.cut()
        if effect is Close.WHEN_LAST_ENDS:
            last_ended = asyncio.Event()
            self._waiting[channel] = last_ended
            self._spawn(self._close_after_last(channel, ledger, last_ended))
        elif effect is Close.AT_DRAIN_END:
            self._spawn(channel.close(grace=timeout))
        elif effect is Close.NOW:
            self._spawn(channel.close())

    def last_call_ended(self, channel: grpc.aio.Channel) -> None:
        """The ledger of the retired ``channel`` said its last call ended (in a done callback)."""
        last_ended = self._waiting.get(channel)
        if last_ended is not None:
            last_ended.set()

    async def _close_after_last(
        self, channel: grpc.aio.Channel, ledger: CallLedger, last_ended: asyncio.Event
    ) -> None:
        try:
            await wait_event(last_ended, self._timeout)
        except asyncio.CancelledError:  # the loop is closing: close before going
            ledger.cut()
            with contextlib.suppress(Exception):
                await channel.close()
            raise
        finally:
            self._waiting.pop(channel, None)
        if last_ended.is_set():
            await channel.close()
        else:
            ledger.cut()  # the drain ended: cut what still runs
            await channel.close()

    def __repr__(self) -> str:
        return f"<Drains open={len(self.open)} waiting={len(self._waiting)}>"
