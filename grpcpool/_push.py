"""The push form of a resolver: the protocol a pool follows, and its checks.

A resolver may *push* instead of being asked: an object with
``watch(host, port, on_change) -> handle``
(:class:`PushResolver`), or, for asyncio pools, ``watch(host, port)`` as an
async iterator of sets (:class:`AsyncPushResolver`). Both are re-exported by
:mod:`grpcpool.resolver`, which documents resolvers as a whole.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from typing import Protocol, runtime_checkable

__all__ = [
    "AddressSet",
    "AsyncPushResolver",
    "PushResolver",
    "WatchHandle",
    "is_async_form",
    "is_push",
]


class AddressSet(tuple[str, ...]):
    """A pushed address set that says which registry revision it is (``revision``).

    A push resolver may hand ``on_change`` one of these instead of a plain
    list; the pool reports the revision in ``pool.resolved`` and its status.
    """

    revision: int | None

    def __new__(cls, addresses: Iterable[str], revision: int | None = None) -> AddressSet:
        made = super().__new__(cls, addresses)
        made.revision = revision
        return made


@runtime_checkable
class WatchHandle(Protocol):
    """What a push resolver's ``watch`` returns: ``close()`` ends the watch.

    A handle may also have a ``state`` attribute (``"watching"``,
    ``"reconnecting"``, ...) and a ``revision`` (the last one seen), which the
    pool's status shows.
    """

    def close(self) -> None: ...


@runtime_checkable
class PushResolver(Protocol):
    """A resolver that pushes: it calls ``on_change`` whenever the address set changes.

    ``watch`` must return at once (start a thread or a stream of its own) and
    call ``on_change(addresses)`` with the whole current set, first as soon as
    it knows it and then after each change, from any thread, until the handle
    is closed. A watch that has failed for good calls ``on_change(error)``
    with an exception: the pool closes the handle, keeps its last known
    addresses and starts a new watch after a backoff. An empty set keeps the
    last non-empty one (with a WARNING) unless the resolver has an
    ``allow_empty`` attribute that is true.
    """

    def watch(
        self, host: str, port: int, on_change: Callable[[Sequence[str] | BaseException], None]
    ) -> WatchHandle: ...


@runtime_checkable
class AsyncPushResolver(Protocol):
    """The asyncio form of :class:`PushResolver`, for asyncio pools only.

    ``watch(host, port)`` is an async iterator of address lists (each the
    whole current set); the iterator raising or ending is a failed watch
    (restarted with backoff), and the pool closes it (``aclose``) when it stops.
    """

    def watch(self, host: str, port: int) -> AsyncIterator[Sequence[str]]: ...


def is_async_form(resolver: object) -> bool:
    """True if ``resolver.watch`` takes (host, port) only: an async iterator of sets."""
    try:
        method = resolver.watch  # type: ignore[attr-defined]
        parameters = inspect.signature(method).parameters.values()
    except (TypeError, ValueError):
        return False
    positional = [
        p
        for p in parameters
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty
    ]
    return len(positional) == 2 and not any(p.kind is p.VAR_POSITIONAL for p in parameters)


def is_push(resolver: object) -> bool:
    """True if ``resolver`` pushes (has a callable ``watch``), in either form."""
    return callable(getattr(resolver, "watch", None))
