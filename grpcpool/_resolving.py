"""Running a pool's resolver: bounded, answers checked, errors as text.

A resolver is user code or a system call that may block for seconds (a DNS
timeout), so no driver runs it on a thread or loop that serves the pool: the
sync Balancer runs :func:`resolve` on a short-lived thread and hears the answer
as a message, the asyncio balancer in the loop's executor, and a starting
pool waits for :func:`resolve_within` at most ``START_RESOLVE_WAIT``. What an
answer means is :class:`grpcpool.core._resolution.Answers`', and when a
resolution is abandoned the balancer's rules say
(:mod:`grpcpool.core._balancing`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence

from grpcpool.config import Config
from grpcpool.errors import shorten
from grpcpool.resolver import normalize, system_resolver

__all__ = ["resolve", "resolve_within"]


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
