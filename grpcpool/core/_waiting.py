"""The rules of ``await_ready``, shared by the sync API and the asyncio pool (pure).

Either kind of pool waits its own way (the sync API on the pool entry's
condition, the asyncio pool on an event of its loop), but what the wait
means is decided here: which arguments it takes, when it is over, and what
it raises when it is over without enough ready channels. So ``await_ready``
says the same words of the same pool state in both.
"""

from __future__ import annotations

import math
from typing import Any

from grpcpool.core._sizes import check_count
from grpcpool.core._view import PoolView, unready_cause
from grpcpool.errors import GrpcPoolError, PoolNotFoundError, PoolTimeoutError

__all__ = ["check_wait", "wait_failed", "wait_met", "wait_over"]


def check_wait(name: str, timeout: Any, min_ready: Any) -> None:
    """Checks ``await_ready``'s arguments (either kind of pool) before any lookup or wait.

    Raises:
        ValueError: ``timeout`` is not None or a finite number >= 0.
        TypeError: ``min_ready`` is not an int (or is a bool), as for every
            count the API takes.
        PoolSizeError: ``min_ready`` is below 1.
    """
    if timeout is not None and (
        isinstance(timeout, bool)
        or not isinstance(timeout, int | float)
        or not _finite(timeout)
        or timeout < 0
    ):
        # Numbers are shown; anything else by its type only (it may be a secret).
        shown = repr(timeout) if isinstance(timeout, int | float) else type(timeout).__name__
        raise ValueError(f"timeout must be None or a finite number >= 0, got {shown}")
    check_count(name, "min_ready", min_ready)


def _finite(number: float) -> bool:
    # An int too large for a float is not a usable timeout either
    # (math.isfinite would raise OverflowError on it).
    try:
        return math.isfinite(number)
    except OverflowError:
        return False


def wait_met(view: PoolView, min_ready: int, ended: str | None) -> bool:
    """The wait succeeded: the pool runs on and ``view`` has ``min_ready`` ready channels."""
    return ended is None and len(view.channels) >= min_ready


def wait_over(view: PoolView, min_ready: int, ended: str | None) -> bool:
    """Nothing more to wait for: the wait succeeded, or the pool ended (``ended``: why)."""
    return ended is not None or len(view.channels) >= min_ready


def wait_failed(
    name: str, view: PoolView, min_ready: int, timeout: float | None, ended: str | None
) -> GrpcPoolError:
    """The error of a wait that is over without :func:`wait_met` (or whose time ran out).

    Returns:
        :class:`PoolNotFoundError` when the pool ended meanwhile; otherwise
        :class:`PoolTimeoutError` saying how many channels were ready, and
        why the others were not (see :func:`~grpcpool.core._view.unready_cause`).
    """
    if ended is not None:
        return PoolNotFoundError(name, ended)
    detail = f"{len(view.channels)} of {min_ready} required channels ready after {timeout}s"
    cause, last_error = unready_cause(view.workers)
    if cause is not None:
        detail = f"{detail} ({cause})"
    return PoolTimeoutError(name, detail, last_error=last_error)
