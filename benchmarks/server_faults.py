"""The faults a :mod:`benchmarks.server` child switches on and off while it runs.

Kept apart from the server so that the child's handlers stay short: each echo
and ``Where`` call asks :meth:`ServerFaults.enter` first, and the
``/bench.Stats/Fault`` method hands its command to :meth:`ServerFaults.command`.
"""

from __future__ import annotations

import json
import threading

import grpc

__all__ = ["ServerFaults"]


class ServerFaults:
    """The child's switchable faults and its call counts, shared by the handler threads."""

    def __init__(self, host: str, track_peers: bool) -> None:
        self._lock = threading.Lock()
        self._host = host
        self._track_peers = track_peers
        self._delay = 0.0
        self._failing = False
        self._stall_every = 0
        self._stall = 0.0
        self._seen = 0  # every call since the start: which one is the n-th
        self._calls = 0
        self._failed = 0
        self._peers: set[str] = set()

    def enter(self, context: grpc.ServicerContext) -> float:
        """Counts one echo or ``Where`` call: fails it at once, or returns its extra seconds."""
        peer = context.peer() if self._track_peers else ""
        with self._lock:
            self._seen += 1
            self._calls += 1
            if peer:
                self._peers.add(peer)
            failing = self._failing
            self._failed += failing
            delay = self._delay
            if self._stall_every and self._seen % self._stall_every == 0:
                delay += self._stall
        if failing:
            context.abort(
                grpc.StatusCode.UNAVAILABLE, f"{self._host} fails every call (benchmark fault)"
            )
        return delay

    def command(self, text: str) -> str:
        """Carries out one ``/bench.Stats/Fault`` command (see the module doc).

        Raises:
            ValueError: Not a command.
        """
        words = text.split()
        verb, values = (words[0], words[1:]) if words else ("", [])
        with self._lock:
            if verb == "count" and not values:
                answer = {"calls": self._calls, "failed": self._failed, "peers": len(self._peers)}
                self._calls = self._failed = 0
                self._peers.clear()
                return json.dumps(answer)
            if verb == "delay" and len(values) == 1:
                self._delay = float(values[0]) / 1000.0
            elif verb == "fail" and not values:
                self._failing = True
            elif verb == "stall" and len(values) == 2:
                self._stall_every, self._stall = int(values[0]), float(values[1]) / 1000.0
            elif verb == "heal" and not values:
                self._delay, self._failing, self._stall_every, self._stall = 0.0, False, 0, 0.0
            else:
                raise ValueError(f"not a fault command: {text!r}")
        return "ok"
