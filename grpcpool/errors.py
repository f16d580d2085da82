"""The exceptions grpcpool raises.

There is one base class, :class:`GrpcPoolError`, so that callers can catch
everything this library raises in one clause. Each subclass also derives from
the built-in exception a Python user would reach for first (``ValueError`` for
bad configuration, ``LookupError`` for an unknown pool, ``TimeoutError`` for a
timeout), so code written against the standard exceptions keeps working.
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "GrpcPoolError",
    "NotConnectedError",
    "PoolNotFoundError",
    "PoolTimeoutError",
]


class GrpcPoolError(Exception):
    """Base class of every exception raised by grpcpool."""


class ConfigError(GrpcPoolError, ValueError):
    """A configuration value is missing or invalid.

    Attributes:
        key: The dotted name of the offending key, e.g. ``"endpoint.port"``.
    """

    def __init__(self, key: str, problem: str) -> None:
        self.key = key
        super().__init__(f"{key}: {problem}")


class NotConnectedError(GrpcPoolError):
    """The pool has no ready channel to hand out.

    Attributes:
        pool_name: The pool that was asked.
    """

    def __init__(self, pool_name: str, detail: str = "no ready channel") -> None:
        self.pool_name = pool_name
        super().__init__(f"pool {pool_name!r}: {detail}")


class PoolNotFoundError(NotConnectedError, LookupError):
    """No pool of that name is running.

    It derives from :class:`NotConnectedError` so that ``except
    NotConnectedError`` also covers a pool that was never started, as in the
    Elixir original.
    """

    def __init__(self, pool_name: str) -> None:
        super().__init__(pool_name, "no pool of this name is running")


class PoolTimeoutError(GrpcPoolError, TimeoutError):
    """Waiting on a pool took longer than the caller allowed.

    Attributes:
        pool_name: The pool that was waited on.
    """

    def __init__(self, pool_name: str, detail: str) -> None:
        self.pool_name = pool_name
        super().__init__(f"pool {pool_name!r}: {detail}")
