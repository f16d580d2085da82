"""Which ``get_channel`` calls ``pool.get_channel`` reports (pure), for both kinds of pool.

``pool.telemetry_sample_rate`` is 1 (every call), N (one call in N) or 0
(none). The hot path asks only when the signal has receivers, so a pool
nobody listens to pays one attribute read.
"""

from __future__ import annotations

import itertools

from grpcpool import telemetry
from grpcpool.connection._machine_types import Emit
from grpcpool.core._view import PoolView

__all__ = ["GetChannelSampler", "get_channel_signal"]


class GetChannelSampler:
    """Counts ``get_channel`` calls and says which ones the sample rate reports."""

    __slots__ = ("_calls", "_rate")

    def __init__(self, rate: int) -> None:
        self._rate = rate
        self._calls = itertools.count()

    def counts(self) -> bool:
        """True if this call is reported (``next`` on a count is atomic under the GIL)."""
        rate = self._rate
        return rate == 1 or (rate > 1 and next(self._calls) % rate == 0)


def get_channel_signal(view: PoolView) -> Emit:
    """``pool.get_channel`` for a call made on ``view``: how many channels were ready."""
    return Emit(telemetry.pool_get_channel.name, {}, {"available_channels": len(view.channels)})
