"""``await_ready``'s wait for a sync pool, shared by the module function and the proxy.

The wait is on the pool's entry, which is the same object across restarts
of the pool, so one wait follows the pool through a crash and its restart;
it is woken by the pool's state changes, not by polling. What the wait means
(its argument checks, when it is over, what it raises) is the asyncio pool's
too: :mod:`grpcpool.core._waiting`.
"""

from __future__ import annotations

from grpcpool.api._table import lookup
from grpcpool.core._sizes import check_min_ready
from grpcpool.core._waiting import check_wait, wait_failed

__all__ = ["check_wait", "wait_ready"]


def wait_ready(name: str, timeout: float | None, min_ready: int) -> None:
    """Waits until ``min_ready`` channels of pool ``name`` are ready.

    Raises:
        PoolNotFoundError: No such pool, or it ended for good while waiting.
        PoolSizeError: ``min_ready`` is over the pool's size (at once: such
            a wait could only time out).
        PoolTimeoutError: Not ready within ``timeout`` seconds, saying why.
    """
    entry = lookup(name)
    check_min_ready(name, min_ready, entry.view.expected_size)
    if not entry.wait_ready(min_ready, timeout):
        raise wait_failed(name, entry.view, min_ready, timeout, entry.ended)
