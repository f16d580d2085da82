"""Recording grpcpool's telemetry events in tests."""

from __future__ import annotations

import threading
from collections import defaultdict
from typing import Any

import blinker

from grpcpool import telemetry


class EventLog:
    """Records every telemetry event: name -> list of (sender, measurements, metadata).

    Receivers run on whichever thread emits; the record is kept under a
    condition that also wakes whoever waits for an event.
    """

    def __init__(self) -> None:
        self.events: dict[str, list[tuple[str, dict[str, Any], dict[str, Any]]]] = defaultdict(list)
        self._lock = threading.Condition()
        self._receivers: list[tuple[blinker.NamedSignal, Any]] = []
        for name in telemetry.EVENTS:
            signal = blinker.signal(name)

            def receive(
                sender: str,
                *,
                measurements: dict[str, Any],
                metadata: dict[str, Any],
                _name: str = name,
            ) -> None:
                with self._lock:
                    self.events[_name].append((sender, dict(measurements), dict(metadata)))
                    self._lock.notify_all()

            signal.connect(receive, weak=False)
            self._receivers.append((signal, receive))

    def of(self, short_name: str) -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
        """Events named ``grpc_connection_pool.<short_name>`` so far."""
        with self._lock:
            return list(self.events[f"grpc_connection_pool.{short_name}"])

    def close(self) -> None:
        """Disconnects every receiver. Idempotent."""
        for signal, receiver in self._receivers:
            signal.disconnect(receiver)
        self._receivers.clear()
