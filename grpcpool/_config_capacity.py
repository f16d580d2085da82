"""The capacity keys of ``pool``: calls per connection and the queue of calls waiting.

``pool.max_calls_per_connection`` caps the calls the pool channel runs on one
connection at a time (None: no cap); when every ready connection is at its
cap a call waits in a FIFO queue of at most ``pool.max_queued_calls`` calls.
A connection whose server refuses a stream (HTTP/2 ``REFUSED_STREAM``) lowers
its own cap whether or not the key is set. The rules are in
:mod:`grpcpool.core._capacity`; the defaults and bounds live here, beside
their check, which :func:`~grpcpool._config_sections.check_pool` calls.
"""

from __future__ import annotations

from typing import Any

from grpcpool._config_checks import check_int

__all__ = [
    "DEFAULT_MAX_CALLS_PER_CONNECTION",
    "DEFAULT_MAX_QUEUED_CALLS",
    "MAX_MAX_CALLS_PER_CONNECTION",
    "MAX_MAX_QUEUED_CALLS",
    "MAX_REFUSED_REROUTES",
    "check_capacity",
]

#: ``pool.max_calls_per_connection``: no cap (a server's own limit still
#: lowers a connection's cap when it refuses a stream).
DEFAULT_MAX_CALLS_PER_CONNECTION: int | None = None
#: ``pool.max_queued_calls``: calls that may wait for a free slot at once.
DEFAULT_MAX_QUEUED_CALLS = 10_000
#: Upper bounds that catch a typo: HTTP/2 counts streams in 31 bits, and a
#: queue of millions of waiting calls is a leak, not a queue.
MAX_MAX_CALLS_PER_CONNECTION = 2**31 - 1
MAX_MAX_QUEUED_CALLS = 1_000_000
#: How many times one call refused by its server (it never reached a
#: handler) is routed again before the refusal is raised: each refusal
#: lowers a connection's cap, so a call refused this often meets servers
#: that refuse whatever the pool does (other clients fill them).
MAX_REFUSED_REROUTES = 10


def check_capacity(pool: Any) -> None:
    """Checks ``pool.max_calls_per_connection`` and ``pool.max_queued_calls``.

    Raises:
        ConfigError: Naming the key: not an int (or None, for the cap), or out
            of its bounds.
    """
    if pool.max_calls_per_connection is not None:
        check_int(
            "pool.max_calls_per_connection",
            pool.max_calls_per_connection,
            minimum=1,
            maximum=MAX_MAX_CALLS_PER_CONNECTION,
        )
    check_int(
        "pool.max_queued_calls", pool.max_queued_calls, minimum=0, maximum=MAX_MAX_QUEUED_CALLS
    )
