"""Carrying out a worker machine's effects: one dispatch, whatever drives the machine.

The sync ``ChannelWorker`` actor and the asyncio worker task differ in how
they open and watch channels, keep time and reach the pool's records, not in
which effect means what. Each implements :class:`WorkerDriver`, one method per
kind of effect, and hands the machine's effects to :func:`carry_out`, so a new
kind of effect is a type error in both drivers until both carry it out.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol, assert_never

from grpcpool.connection._machine_types import (
    CancelTimers,
    Effect,
    Emit,
    Event,
    Log,
    OpenChannel,
    ReleaseChannel,
    Report,
    Schedule,
    StartCheck,
    WatchChannel,
)

__all__ = ["WorkerDriver", "carry_out"]


class WorkerDriver(Protocol):
    """What a driver of the worker machine does, one method per kind of effect."""

    def open_channel(self, generation: int) -> None:
        """Opens the worker's channel and watches it under ``generation``."""

    def watch_channel(self, generation: int) -> None:
        """Watches the same channel again under a new ``generation``."""

    def release_channel(self, *, drain: bool) -> None:
        """Lets go of the channel: retired (``drain``) or closed now."""

    def start_check(self, generation: int, timeout: float) -> None:
        """Starts a health check on the channel of ``generation``."""

    def schedule(self, delay: float, event: Event) -> None:
        """Hands ``event`` back to the machine after ``delay`` seconds."""

    def cancel_timers(self) -> None:
        """Cancels every event scheduled and not yet handed back."""

    def report(self, effect: Report) -> None:
        """Tells the pool's records the worker's new state."""

    def announce(self, effect: Emit | Log) -> None:
        """Sends the signal or writes the log line (``connection._announce``)."""


def carry_out(driver: WorkerDriver, effects: Iterable[Effect]) -> None:
    """Carries out ``effects`` in order, each by the driver's method for its kind."""
    for effect in effects:
        match effect:
            case OpenChannel():
                driver.open_channel(effect.generation)
            case WatchChannel():
                driver.watch_channel(effect.generation)
            case ReleaseChannel():
                driver.release_channel(drain=effect.drain)
            case StartCheck():
                driver.start_check(effect.generation, effect.timeout)
            case Schedule():
                driver.schedule(effect.delay, effect.event)
            case CancelTimers():
                driver.cancel_timers()
            case Report():
                driver.report(effect)
            case Emit() | Log():
                driver.announce(effect)
            case _:
                assert_never(effect)
