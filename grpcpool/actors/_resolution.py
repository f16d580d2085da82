"""Running a pool's resolver: bounded, off the actors' threads, answers checked.

A resolver is user code or a system call that may block for seconds (a DNS
timeout), so it never runs on an actor's thread: the Balancer runs it on a
short-lived thread and hears the answer as a message, and a starting pool
waits for it at most :data:`START_RESOLVE_WAIT`.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Sequence

from grpcpool.config import Config
from grpcpool.errors import shorten
from grpcpool.pools._spread import targets
from grpcpool.resolver import normalize, system_resolver

__all__ = ["START_RESOLVE_WAIT", "initial_addresses", "resolve", "resolve_within"]

# How long a pool's start waits for its first resolution before starting its
# workers unpinned (on host:port); the Balancer moves them once it hears.
START_RESOLVE_WAIT = 1.0


def _resolver_of(config: Config) -> Callable[[str, int], Sequence[str]]:
    return config.endpoint.resolver or system_resolver


def resolve(config: Config) -> tuple[tuple[str, ...] | None, str | None, float]:
    """Runs the pool's resolver: (addresses, None, seconds) or (None, why not, seconds)."""
    endpoint = config.endpoint
    resolver = _resolver_of(config)
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
    result: list[tuple[tuple[str, ...] | None, float]] = []
    done = threading.Event()

    def run() -> None:
        addresses, _, duration = resolve(config)
        result.append((addresses, duration))
        done.set()

    threading.Thread(target=run, name="grpcpool-resolve", daemon=True).start()
    return result[0] if done.wait(timeout) else (None, timeout)


def initial_addresses(addresses: Sequence[str] | None, size: int) -> list[str | None]:
    """Where a starting pool's ``size`` workers connect: spread evenly, interleaved."""
    if not addresses:
        return [None] * size
    counts = targets(addresses, size, {}, random.Random())
    order: list[str | None] = []
    while len(order) < size:
        for address in addresses:
            if counts.get(address, 0) > 0:
                counts[address] -= 1
                order.append(address)
    return order
