"""An in-process registry that pushes, for the push-resolver scenarios.

:class:`Registry` is a :class:`grpcpool.resolver.PushResolver` the scenario
drives: :meth:`Registry.set` pushes the new set to every open watch at once,
on the scenario's thread (a real registry's client pushes from a thread of
its own; the pool must take a set from any thread). :meth:`Registry.break_watches`
makes every open watch fail, as a lost registry connection would.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence

from grpcpool.resolver import AddressSet

OnChange = Callable[[Sequence[str] | BaseException], None]


class _Handle:
    def __init__(self, registry: Registry, number: int) -> None:
        self._registry = registry
        self._number = number
        self.state = "watching"

    def close(self) -> None:
        self._registry.forget(self._number)
        self.state = "closed"


class Registry:
    """A push resolver whose set the scenario changes.

    Attributes:
        opened: Watches started so far.
        refuse: When set, ``watch`` raises it (a registry out of reach).
        allow_empty: Read by the pool: follow an empty set.
    """

    def __init__(self, addresses: Sequence[str], *, allow_empty: bool = False) -> None:
        self._lock = threading.Lock()
        self._addresses = list(addresses)
        self._watches: dict[int, OnChange] = {}
        self._revision = 1
        self.opened = 0
        self.refuse: Exception | None = None
        self.allow_empty = allow_empty

    def watch(self, host: str, port: int, on_change: OnChange) -> _Handle:
        with self._lock:
            if self.refuse is not None:
                raise self.refuse
            self.opened += 1
            number = self.opened
            self._watches[number] = on_change
            current = AddressSet(self._addresses, self._revision)
        on_change(current)
        return _Handle(self, number)

    def forget(self, number: int) -> None:
        with self._lock:
            self._watches.pop(number, None)

    @property
    def open_watches(self) -> int:
        with self._lock:
            return len(self._watches)

    def set(self, addresses: Sequence[str]) -> None:
        """Pushes ``addresses`` (a new revision) to every open watch."""
        with self._lock:
            self._addresses = list(addresses)
            self._revision += 1
            pushed = AddressSet(self._addresses, self._revision)
            callbacks = list(self._watches.values())
        for on_change in callbacks:
            on_change(pushed)

    def push_raw(self, answer: object) -> None:
        """Pushes ``answer`` as it is (not a list of addresses, say) to every open watch."""
        with self._lock:
            callbacks = list(self._watches.values())
        for on_change in callbacks:
            on_change(answer)  # type: ignore[arg-type]

    def break_watches(self, error: Exception) -> None:
        """Every open watch fails with ``error`` (and is forgotten)."""
        with self._lock:
            callbacks = list(self._watches.values())
            self._watches.clear()
        for on_change in callbacks:
            on_change(error)
