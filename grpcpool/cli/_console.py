"""Console output shared by ``python -m grpcpool demo`` and ``probe``.

Telemetry receivers run on actor threads while the main thread narrates, so
every line goes through one :class:`Console`, whose lock keeps lines whole.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterable, Sequence
from typing import Any, TextIO

from grpcpool import telemetry
from grpcpool._status import PoolStatus

__all__ = ["Console", "format_duration", "format_event", "shorten", "status_table", "table"]

_PREFIX = telemetry.PREFIX + "."


class Console:
    """Writes whole lines from any thread, optionally stamped with the time since start.

    Args:
        stream: Where lines go; ``sys.stdout`` when ``None``.
        clock: Stamp lines with seconds since the console was made.
    """

    def __init__(self, stream: TextIO | None = None, *, clock: bool = False) -> None:
        self._stream = stream if stream is not None else sys.stdout
        self._lock = threading.Lock()
        self._clock = clock
        self.started = time.monotonic()

    def elapsed(self) -> float:
        """Seconds since the console was made."""
        return time.monotonic() - self.started

    def line(self, text: str = "") -> None:
        """Writes ``text`` (which may span lines), each line stamped if the console has a clock."""
        stamp = f"{self.elapsed():6.2f}s  " if self._clock else ""
        indent = " " * len(stamp)
        lines = text.split("\n")
        rendered = "\n".join(
            (stamp if n == 0 else indent) + part if part else "" for n, part in enumerate(lines)
        )
        with self._lock:
            self._stream.write(rendered + "\n")
            self._stream.flush()


# Measurements that are durations in seconds (section 4 of the spec): shown
# as ``0.06 ms`` or ``1.25 s``, never as the raw float a receiver gets.
_SECONDS = frozenset({"duration", "age", "ejection_time", "ejected_for"})


def format_duration(seconds: float) -> str:
    """``0.06 ms`` under a millisecond, ``3.2 ms`` under a second, ``1.25 s`` above."""
    if seconds < 0.001:
        return f"{seconds * 1000:.2f} ms"
    if seconds < 1.0:
        return f"{seconds * 1000:.1f} ms"
    return f"{seconds:.2f} s"


def _format_value(key: str, value: Any) -> str:
    """One measurement or metadata value as a person reads it."""
    if isinstance(value, float):
        return format_duration(value) if key in _SECONDS else f"{value:.3g}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(str(item) for item in value) + "]"
    return str(value)


def shorten(text: str, limit: int = 60) -> str:
    """``text``, or its last ``limit`` characters from a word boundary.

    grpc error texts nest their causes and end with the most specific one
    ("...: Connection refused"), so the tail is the part worth keeping.
    """
    if len(text) <= limit:
        return text
    tail = text[-limit:]
    _, space, rest = tail.partition(" ")
    return "..." + (rest if space and rest else tail)


def format_event(name: str, measurements: dict[str, Any], metadata: dict[str, Any]) -> str:
    """One telemetry event as a short human-readable line.

    Args:
        name: The full signal name, e.g. the prefix plus ``channel.connected``.
        measurements: The event's measurements.
        metadata: The event's metadata.
    """
    short = name.removeprefix(_PREFIX)
    who = metadata.get("worker_id") or metadata.get("pool_name") or metadata.get("supervisor", "")
    m, d = measurements, metadata
    if short == "channel.connected":
        detail = f"connected in {format_duration(m['duration'])}"
    elif short == "channel.connection_failed":
        detail = f"{shorten(d['error'])} (after {format_duration(m['duration'])})"
    elif short == "channel.connection_down":
        detail = f"reason={d['reason']}"
    elif short == "channel.disconnected":
        detail = f"reason={d['reason']}, was up {format_duration(m['duration'])}"
    elif short == "channel.released":
        detail = f"let go by the pool, was up {format_duration(m['duration'])}"
    elif short == "channel.reconnect_scheduled":
        detail = f"retry in {m['delay_ms']} ms (attempt {m['attempt']})"
    elif short == "channel.ping":
        detail = f"{d['result']} in {format_duration(m['duration'])}"
    elif short == "pool.init":
        detail = f"{m['pool_size']} workers -> {d['endpoint']}"
    elif short in ("pool.scale_up", "pool.scale_down"):
        done = m.get("succeeded", m.get("terminated"))
        detail = (
            f"requested {m['requested']}, done {done}, new size {m['new_size']}, "
            f"in {_format_value('duration', m.get('duration'))}"
        )
    elif short == "supervisor.child_restarted":
        detail = f"{d['child_id']} restarted ({d['reason']})"
    elif short == "pool.resolved":
        detail = (
            f"{m['addresses']} address{'es' if m['addresses'] != 1 else ''} "
            f"in {format_duration(m['duration'])}"
        )
        changes = [
            f"{key} {_format_value(key, d[key])}" for key in ("added", "removed") if d.get(key)
        ]
        if changes:
            detail += f" ({'; '.join(changes)})"
    elif short == "channel.refreshed":
        detail = (
            f"{d['reason']}: replaced after {_format_value('age', m['age'])} ready, "
            f"now on {d['address']}"
        )
    else:
        detail = ", ".join(
            f"{k}={_format_value(k, v)}" for k, v in {**m, **d}.items() if k != "pool_name"
        )
    return f"{short:<29} {who:<9} {detail}"


def table(headers: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """A plain-text table with columns as wide as their widest cell."""
    body = [list(headers), *(list(row) for row in rows)]
    widths = [max(len(row[i]) for row in body) for i in range(len(headers))]
    lines = [
        "  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip() for row in body
    ]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


def status_table(status: PoolStatus, now: float | None = None) -> str:
    """A pool's workers as a table, with the pool's summary line above it."""
    now = time.time() if now is None else now
    rows = [
        (
            worker.worker_id,
            worker.state,
            f"{max(0.0, now - worker.since):.1f} s",
            str(worker.reconnect_attempt),
            worker.peer or "-",
            shorten(worker.last_error, 40) if worker.last_error else "-",
        )
        for worker in status.workers
    ]
    summary = (
        f"pool {status.pool_name!r}: {status.status}, "
        f"{status.current_size} of {status.expected_size} ready"
    )
    headers = ("worker", "state", "for", "attempts", "peer", "last error")
    return summary + "\n" + table(headers, rows)
