"""``await_ready``'s argument checks and its wait, shared by the module function and the proxy.

The wait is on the pool's entry, which is the same object across restarts
of the pool, so one wait follows the pool through a crash and its restart;
it is woken by the pool's state changes, not by polling. A wait that could
only time out (more ready channels than the pool has workers) fails at once.
"""

from __future__ import annotations

import math
from typing import Any

from grpcpool.api._table import lookup
from grpcpool.core._sizes import check_min_ready
from grpcpool.core._view import unready_cause
from grpcpool.errors import PoolNotFoundError, PoolSizeError, PoolTimeoutError

__all__ = ["check_wait", "wait_ready"]


def check_wait(name: str, timeout: Any, min_ready: Any) -> None:
    """Checks ``await_ready``'s arguments before any lookup or wait.

    Raises:
        ValueError: ``timeout`` is not None or a finite number >= 0, or
            ``min_ready`` is not an int.
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
    if isinstance(min_ready, bool) or not isinstance(min_ready, int):
        raise ValueError(f"min_ready must be an int >= 1, got {type(min_ready).__name__}")
    if min_ready < 1:
        raise PoolSizeError(name, f"min_ready must be >= 1, got {min_ready}")


def _finite(number: float) -> bool:
    # An int too large for a float is not a usable timeout either
    # (math.isfinite would raise OverflowError on it).
    try:
        return math.isfinite(number)
    except OverflowError:
        return False


def wait_ready(name: str, timeout: float | None, min_ready: int) -> None:
    """Waits until ``min_ready`` channels of pool ``name`` are ready.

    Raises:
        PoolNotFoundError: No such pool, or it ended for good while waiting.
        PoolSizeError: ``min_ready`` is over the pool's size (at once).
        PoolTimeoutError: Not ready within ``timeout`` seconds, saying why.
    """
    entry = lookup(name)
    check_min_ready(name, min_ready, entry.view.expected_size)
    if entry.wait_ready(min_ready, timeout):
        return
    if entry.ended is not None:
        raise PoolNotFoundError(name, entry.ended)  # stopped for good while we waited
    view = entry.view
    detail = f"{len(view.channels)} of {min_ready} required channels ready after {timeout}s"
    cause, last_error = unready_cause(view.workers)
    if cause is not None:
        detail = f"{detail} ({cause})"
    raise PoolTimeoutError(name, detail, last_error=last_error)
