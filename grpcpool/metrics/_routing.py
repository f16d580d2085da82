"""The bridge's part for routing around bad backends: ejections, panic and hedged calls.

:class:`~grpcpool.metrics._instruments.Bridge` hands these receivers the
``pool.ejected``, ``pool.unejected``, ``pool.panic`` and ``call.hedged``
events and the same :class:`~grpcpool.metrics._instruments.Sink`, so both
exporters publish them alike.

Ejected units (backend addresses, or connections when a pool has one
address) are counted, never labelled: an address as a label would make a
series per backend. The ejection reason and the hedged method are labels:
the reason is one of two words (anything else is ``"other"``), and the
methods are the few full names the application listed in
``pool.hedging.methods`` (a value not shaped like one is ``"other"``).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import blinker

from grpcpool import telemetry
from grpcpool._process import fork_safe_lock
from grpcpool.metrics._catalog import (
    CALL_HEDGE_WINS,
    CALL_HEDGED_ATTEMPTS,
    EJECTION_REASONS,
    POOL_EJECTED_UNITS,
    POOL_EJECTIONS,
    POOL_PANIC,
)

if TYPE_CHECKING:
    from grpcpool.metrics._instruments import Sink

__all__ = ["RoutingMeasures"]

# A full method name as grpc sends it (/package.Service/Method), of a sane length.
_METHOD = re.compile(r"/[^/\s]{1,100}/[^/\s]{1,100}")

Receiver = Callable[..., None]


def _method(value: Any) -> str:
    return value if isinstance(value, str) and _METHOD.fullmatch(value) else "other"


def _unit(metadata: dict[str, Any]) -> str:
    """The ejected unit's key: its worker id when a connection is the unit (its address is
    then the pool's one address, shared by every connection), else its address."""
    return str(metadata.get("worker_id") or metadata.get("address"))


class RoutingMeasures:
    """Turns ejection, panic and hedging events into measurements in a sink.

    Args:
        sink: Where the measurements go (the bridge's).
        closed: Whether the bridge was closed: later events are ignored.
    """

    def __init__(self, sink: Sink, closed: Callable[[], bool]) -> None:
        self._sink = sink
        self._closed = closed
        self._lock = fork_safe_lock(self)
        # The units each pool has out of rotation now.
        self._ejected: dict[str, set[str]] = {}
        # Pools whose panic gauge was ever set.
        self._panicked: set[str] = set()

    def receivers(self) -> list[tuple[blinker.NamedSignal, Receiver]]:
        """The signals this part listens to, with its receiver for each."""
        return [
            (telemetry.pool_ejected, self._on_ejected),
            (telemetry.pool_unejected, self._on_unejected),
            (telemetry.pool_panic, self._on_panic),
            (telemetry.call_hedged, self._on_hedged),
        ]

    def pool_started(self, pool: str) -> None:
        """A pool of that name (re)started: nothing of it is ejected, it is not in panic."""
        with self._lock:
            if self._closed():
                return
            labels = {"pool": pool}
            if self._ejected.pop(pool, None) is not None:
                self._sink.set(POOL_EJECTED_UNITS, 0, labels)
            if pool in self._panicked:
                self._sink.set(POOL_PANIC, 0, labels)

    def _on_ejected(self, sender: str, *, metadata: dict[str, Any], **_: Any) -> None:
        pool = str(sender)
        reason = metadata.get("reason")
        label = reason if isinstance(reason, str) and reason in EJECTION_REASONS else "other"
        with self._lock:
            if self._closed():
                return
            ejected = self._ejected.setdefault(pool, set())
            ejected.add(_unit(metadata))
            # Gauge first: a reader that sees the ejection counted sees the unit out too.
            self._sink.set(POOL_EJECTED_UNITS, len(ejected), {"pool": pool})
            self._sink.add(POOL_EJECTIONS, 1, {"pool": pool, "reason": label})

    def _on_unejected(self, sender: str, *, metadata: dict[str, Any], **_: Any) -> None:
        pool = str(sender)
        with self._lock:
            if self._closed():
                return
            ejected = self._ejected.setdefault(pool, set())
            ejected.discard(_unit(metadata))
            self._sink.set(POOL_EJECTED_UNITS, len(ejected), {"pool": pool})

    def _on_panic(self, sender: str, *, measurements: dict[str, Any], **_: Any) -> None:
        pool = str(sender)
        active = measurements.get("active")
        with self._lock:
            if self._closed():
                return
            self._panicked.add(pool)
            self._sink.set(POOL_PANIC, 1 if active else 0, {"pool": pool})

    def _on_hedged(
        self, sender: str, *, measurements: dict[str, Any], metadata: dict[str, Any]
    ) -> None:
        if self._closed():
            return
        labels = {"pool": str(sender), "method": _method(metadata.get("method"))}
        attempts = measurements.get("attempts")
        if isinstance(attempts, int) and not isinstance(attempts, bool) and attempts > 1:
            self._sink.add(CALL_HEDGED_ATTEMPTS, attempts - 1, labels)
        won = measurements.get("won")
        if isinstance(won, int) and not isinstance(won, bool) and won >= 1:
            self._sink.add(CALL_HEDGE_WINS, 1, labels)
