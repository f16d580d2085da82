"""The bridge's part for call capacity: calls waiting for a slot, and how long they waited.

:class:`~grpcpool.metrics._instruments.Bridge` hands these receivers the
``pool.status`` reports (their ``queued``: the gauge, sampled each
``pool.telemetry_interval`` as calls in flight are) and the ``call.queued``
events (one per call that waited: the histogram), and the same
:class:`~grpcpool.metrics._instruments.Sink`, so both exporters publish them
alike. Only the pool is a label: how a wait ended is not.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import blinker

from grpcpool import telemetry
from grpcpool.metrics._catalog import CALL_QUEUE_WAIT, POOL_CALLS_QUEUED

if TYPE_CHECKING:
    from grpcpool.metrics._instruments import Sink

__all__ = ["CapacityMeasures"]

Receiver = Callable[..., None]


class CapacityMeasures:
    """Turns ``pool.status``'s ``queued`` and ``call.queued`` into measurements in a sink.

    Args:
        sink: Where the measurements go (the bridge's).
        closed: Whether the bridge was closed: later events are ignored.
    """

    def __init__(self, sink: Sink, closed: Callable[[], bool]) -> None:
        self._sink = sink
        self._closed = closed

    def receivers(self) -> list[tuple[blinker.NamedSignal, Receiver]]:
        """The signals this part listens to, with its receiver for each."""
        return [
            (telemetry.pool_status, self._on_status),
            (telemetry.call_queued, self._on_queued),
        ]

    def _on_status(self, sender: str, *, measurements: dict[str, Any], **_: Any) -> None:
        queued = measurements.get("queued")
        if not isinstance(queued, int) or isinstance(queued, bool):
            return
        if not self._closed():
            self._sink.set(POOL_CALLS_QUEUED, queued, {"pool": str(sender)})

    def _on_queued(self, sender: str, *, measurements: dict[str, Any], **_: Any) -> None:
        waited = measurements.get("duration")
        if self._closed() or not isinstance(waited, int | float) or isinstance(waited, bool):
            return
        self._sink.record(CALL_QUEUE_WAIT, max(0.0, float(waited)), {"pool": str(sender)})
