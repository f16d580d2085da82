"""The exceptions grpcpool raises.

There is one base class, :class:`GrpcPoolError`, so that callers can catch
everything this library raises in one clause. Each subclass also derives from
the built-in exception a Python user would reach for first (``ValueError`` for
bad configuration, ``LookupError`` for an unknown pool, ``TimeoutError`` for a
timeout), so code written against the standard exceptions keeps working.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NoReturn

import grpc

__all__ = [
    "ConfigError",
    "GrpcPoolError",
    "NotConnectedError",
    "PoolCallError",
    "PoolNotFoundError",
    "PoolSizeError",
    "PoolTimeoutError",
    "StrategyError",
]

# The longest piece of outside text (a grpc error, a stop reason, a repr) an
# error message quotes; see shorten().
MESSAGE_PART_LIMIT = 200


def shorten(text: str, limit: int = MESSAGE_PART_LIMIT) -> str:
    """``text``, or its head and tail joined by `` ... `` within ``limit`` characters.

    grpc error texts start with the status ("unavailable: ...") and end with
    the most specific cause ("... Connection refused"); the middle is nested
    context. Keeping both ends keeps a message readable and bounded.
    """
    if len(text) <= limit:
        return text
    if limit < 12:
        return text[:limit]  # no room for both ends
    keep = limit - 5
    head, tail = text[: keep // 3], text[len(text) - (keep - keep // 3) :]
    # Cut at word boundaries when one is near, so no word is left half.
    cut = head.rfind(" ")
    if cut > len(head) // 2:
        head = head[:cut]
    cut = tail.find(" ")
    if 0 <= cut < len(tail) // 2:
        tail = tail[cut + 1 :]
    return f"{head} ... {tail}"


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
        last_error: The most recent connection error of the pool's workers
            (grpc's text, shortened), when one is known; the message quotes
            it too, so the cause is seen without a ``status()`` call.
    """

    def __init__(
        self, pool_name: str, detail: str = "no ready channel", *, last_error: str | None = None
    ) -> None:
        self.pool_name = pool_name
        self.last_error = last_error
        super().__init__(f"pool {pool_name!r}: {detail}")


if TYPE_CHECKING:
    _Future = grpc.Future[Any]  # generic in the type stubs only
else:
    _Future = grpc.Future


class PoolCallError(NotConnectedError, grpc.RpcError, grpc.Call, _Future):
    """A call through the pool channel found no ready connection.

    It fails the way a grpc call fails, so ordinary retry code catches it:
    it is a ``grpc.RpcError`` and a ``grpc.Call`` with code ``UNAVAILABLE``
    (or ``DEADLINE_EXCEEDED`` when a ``wait_for_ready`` call's timeout ran
    out waiting for one) and details naming the pool and its last error.
    It is also a :class:`NotConnectedError`, so code written against
    ``get_channel`` catches it too. A ``future()`` or a streaming call
    returns it as the call object: its ``result()``, ``exception()`` and
    iteration give this error, as a grpc call that failed before it started.
    """

    def __init__(
        self,
        pool_name: str,
        detail: str,
        *,
        code: grpc.StatusCode = grpc.StatusCode.UNAVAILABLE,
        last_error: str | None = None,
    ) -> None:
        super().__init__(pool_name, detail, last_error=last_error)
        self._code = code
        self._details = str(self.args[0])

    @classmethod
    def of(
        cls, error: NotConnectedError, code: grpc.StatusCode = grpc.StatusCode.UNAVAILABLE
    ) -> PoolCallError:
        """``error`` (why no connection is ready) as a failed call, with the same message."""
        failed = cls(error.pool_name, "", code=code, last_error=error.last_error)
        failed.args = error.args
        failed._details = str(error)
        return failed

    # grpc.Call
    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details

    def initial_metadata(self) -> tuple[()]:
        return ()

    def trailing_metadata(self) -> tuple[()]:
        return ()

    def is_active(self) -> bool:
        return False

    def time_remaining(self) -> float:
        return 0.0  # the call has ended

    def add_callback(self, callback: Callable[[], None]) -> bool:
        return False  # the call has ended: grpc's answer for a finished RPC

    # grpc.Future
    def cancel(self) -> bool:
        return False

    def cancelled(self) -> bool:
        return False

    def running(self) -> bool:
        return False

    def done(self) -> bool:
        return True

    def result(self, timeout: float | None = None) -> NoReturn:
        raise self

    def exception(self, timeout: float | None = None) -> PoolCallError:
        return self

    def traceback(self, timeout: float | None = None) -> Any:
        return self.__traceback__

    def add_done_callback(self, fn: Callable[[Any], None]) -> None:
        fn(self)

    # a response stream that ends before its first message
    def __iter__(self) -> PoolCallError:
        return self

    def __next__(self) -> NoReturn:
        raise self


class PoolNotFoundError(NotConnectedError, LookupError):
    """No pool of that name is running (of the kind asked for).

    It derives from :class:`NotConnectedError` so that ``except
    NotConnectedError`` also covers a pool that was never started, as in the
    Elixir original. A pool that ran and ended for good says so, with the
    reason, rather than that no such pool exists: a caller of a stopped pool
    needs to know it was shut down, not suspect a typo in its name. Asking
    the sync API for an asyncio pool (or the reverse) says which kind runs
    under the name and where to ask instead: such a pool is running, and
    "no pool of this name" would send the caller looking for the wrong bug.

    Attributes:
        reason: Why the pool was shut down (``"terminated"``, ``"supervisor
            gave up"``, ...), or None for a name that has not run (or ended
            so long ago that the process no longer remembers it).
        running: ``"asyncio"`` or ``"sync"`` when a pool of the other kind
            holds the name; otherwise None.
    """

    def __init__(
        self, pool_name: str, reason: str | None = None, *, running: str | None = None
    ) -> None:
        super().__init__(pool_name, "no pool of this name is running")
        self.reason = reason
        self.running = running
        if running == "asyncio":
            self.args = (
                f"pool {pool_name!r} is an asyncio pool (grpcpool.aio.Pool), not a sync one: "
                "use grpcpool.aio's functions or the Pool itself, on its event loop",
            )
        elif running == "sync":
            self.args = (
                f"pool {pool_name!r} is a sync pool (grpcpool.start or a Supervisor), "
                "not an asyncio one: use grpcpool's functions",
            )
        elif reason is not None:
            self.args = (f"pool {pool_name!r} was shut down: {shorten(reason)}",)


class PoolSizeError(GrpcPoolError, ValueError):
    """A count or size the pool cannot take.

    Scaling below one worker, resizing to 0, a count below 1, a size over
    ``pool.max_size``, or waiting for more ready channels than the pool has
    workers (a wait that could only time out). Also a ``ValueError``, the
    built-in a caller passing a bad number reaches for; nothing changes.

    Attributes:
        pool_name: The pool that was asked.
    """

    def __init__(self, pool_name: str, problem: str) -> None:
        self.pool_name = pool_name
        super().__init__(f"pool {pool_name!r}: {problem}")


class PoolTimeoutError(GrpcPoolError, TimeoutError):
    """Waiting on a pool took longer than the caller allowed.

    Attributes:
        pool_name: The pool that was waited on.
        last_error: As for :class:`NotConnectedError`.
    """

    def __init__(self, pool_name: str, detail: str, *, last_error: str | None = None) -> None:
        self.pool_name = pool_name
        self.last_error = last_error
        super().__init__(f"pool {pool_name!r}: {detail}")


class StrategyError(GrpcPoolError):
    """A custom strategy failed to pick: it raised, or picked something it may not.

    Raised by ``get_channel`` (and from ``.get()`` on the proxy's future)
    instead of handing out a wrong object or leaking an ``IndexError`` from
    inside the pool. The original exception, if the strategy raised, is the
    ``__cause__``.

    Attributes:
        strategy: The strategy's class name.
    """

    def __init__(self, strategy: str, problem: str) -> None:
        self.strategy = strategy
        super().__init__(f"strategy {strategy}: {problem}")
