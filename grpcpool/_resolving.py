"""Running a pool's resolver: bounded, answers checked, errors as text.

A resolver is user code or a system call that may block for seconds (a DNS
timeout), so no driver runs it on a thread or loop that serves the pool: the
sync Balancer runs :func:`resolve` on a short-lived thread and hears the answer
as a message, the asyncio balancer in the loop's executor, and a starting
pool waits for :func:`resolve_within` at most ``START_RESOLVE_WAIT``. What an
answer means is :class:`grpcpool.core._resolution.Answers`', and when a
resolution is abandoned the balancer's rules say
(:mod:`grpcpool.core._balancing`).

A resolver that pushes (``watch``) is not run but followed: :func:`watch`
starts its watch and turns each pushed set into checked addresses (or why it
is unusable) for the driver to hand to the rules. A push resolver that is not
also callable gives no answer at a pool's start: the workers wait for its
first set.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from grpcpool._status import PoolStatus
from grpcpool.config import Config
from grpcpool.errors import shorten
from grpcpool.resolver import (
    ResolveError,
    WatchHandle,
    is_async_form,
    is_push,
    normalize,
    normalize_pushed,
    system_resolver,
)

__all__ = [
    "NOT_ASKED",
    "Pushed",
    "check_pushed",
    "resolve",
    "resolve_within",
    "watch",
    "with_watch",
]

# Why a push-only resolver gives no answer when asked.
NOT_ASKED = "the resolver only pushes; its watch gives the addresses"

# A pushed set as the rules take it: (addresses, None, revision) or (None, why not, None).
Pushed = tuple[tuple[str, ...] | None, str | None, int | None]


def _resolver_of(config: Config) -> Any:
    return config.endpoint.resolver or system_resolver


def with_watch(status: PoolStatus, config: Config, handle: object) -> PoolStatus:
    """``status`` with the push resolver's watch state and revision (unchanged otherwise).

    The handle's own ``state`` and ``revision`` are shown when it has them
    (:class:`grpcpool.etcd.EtcdResolver`'s do); without a handle (a failed
    watch waiting to start again) the state is ``"reconnecting"``.
    """
    if not is_push(config.endpoint.resolver):
        return status
    if handle is None:
        state = "reconnecting" if status.resolver_error else "connecting"
        return replace(status, resolver_state=state)
    shown = getattr(handle, "state", None)
    revision = getattr(handle, "revision", None)
    return replace(
        status,
        resolver_state=shown if isinstance(shown, str) else "watching",
        resolver_revision=revision if isinstance(revision, int) else None,
    )


def check_pushed(answer: object, resolver: object) -> Pushed:
    """A pushed set, checked: ``(addresses, None, revision)`` or ``(None, why, None)``."""
    try:
        addresses = normalize_pushed(answer, _name_of(resolver))
    except ResolveError as error:
        return None, str(error), None
    revision = getattr(answer, "revision", None)
    return addresses, None, revision if isinstance(revision, int) else None


def watch(
    config: Config, on_set: Callable[[Pushed], None], on_failed: Callable[[str], None]
) -> WatchHandle | None:
    """Starts the pool's push resolver's watch (callback form).

    Each set it pushes reaches ``on_set`` checked; an exception it pushes, or
    one ``watch`` raises, reaches ``on_failed`` as text (then None is
    returned: there is nothing to close). Both may be called from any thread.
    """
    resolver = _resolver_of(config)
    endpoint = config.endpoint
    if is_async_form(resolver):
        on_failed(
            "endpoint.resolver's watch(host, port) is an async iterator: it serves asyncio "
            "pools only; give a sync pool watch(host, port, on_change)"
        )
        return None

    def on_change(answer: Sequence[str] | BaseException) -> None:
        if isinstance(answer, BaseException):
            on_failed(f"{type(answer).__name__}: {shorten(str(answer))}")
        else:
            on_set(check_pushed(answer, resolver))

    try:
        handle: WatchHandle = resolver.watch(endpoint.host, endpoint.port, on_change)
    except Exception as error:  # a user resolver may raise anything
        on_failed(f"{type(error).__name__}: {shorten(str(error))}")
        return None
    return handle


def resolve(config: Config) -> tuple[tuple[str, ...] | None, str | None, float]:
    """Runs the pool's resolver: (addresses, None, seconds) or (None, why not, seconds)."""
    endpoint = config.endpoint
    resolver = _resolver_of(config)
    if not callable(resolver):
        return None, NOT_ASKED, 0.0
    started = time.monotonic()
    try:
        answer = normalize(resolver(endpoint.host, endpoint.port), _name_of(resolver))
    except Exception as error:  # a user resolver may raise anything
        return None, f"{type(error).__name__}: {shorten(str(error))}", time.monotonic() - started
    return answer, None, time.monotonic() - started


def _name_of(resolver: object) -> str:
    return getattr(resolver, "__qualname__", None) or type(resolver).__name__


def resolve_within(config: Config, timeout: float) -> tuple[tuple[str, ...] | None, float]:
    """The pool's addresses if its resolver answers within ``timeout`` seconds (else None),
    and how long the resolver took (or ``timeout``).

    The resolver runs on a daemon thread, so a slow one delays a pool's start
    by ``timeout`` at most and is then left to finish on its own.
    """
    if not callable(_resolver_of(config)):
        return None, 0.0  # a push-only resolver: its watch gives the first set
    result: list[tuple[tuple[str, ...] | None, float]] = []
    done = threading.Event()

    def run() -> None:
        addresses, _, duration = resolve(config)
        result.append((addresses, duration))
        done.set()

    threading.Thread(target=run, name="grpcpool-resolve", daemon=True).start()
    return result[0] if done.wait(timeout) else (None, timeout)
