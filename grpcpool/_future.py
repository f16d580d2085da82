"""Futures for answers that need no actor round trip.

``PoolProxy.get_channel()`` answers from the pool's view in the caller's thread,
but returns a pykka future like every other proxy method. pykka's
``ThreadingFuture`` takes a condition variable and a result record to hand
back a value that is already known; :class:`ResolvedFuture` holds it in a
plain field instead.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import pykka

__all__ = ["LazyFuture", "ResolvedFuture"]

T = TypeVar("T")


class ResolvedFuture(pykka.Future[T]):
    """A future whose value (or exception) is known when it is made."""

    __slots__ = ("_error", "_value")

    def __init__(self, value: Any = None, error: BaseException | None = None) -> None:
        # pykka's combinators (map, filter, ...) make an empty instance of the
        # same class and give it a get hook; Future.__init__ supports that.
        super().__init__()
        self._value = value
        self._error = error

    def get(self, *, timeout: float | None = None) -> T:
        if self._get_hook is not None:
            return super().get(timeout=timeout)
        if self._error is not None:
            raise self._error
        value: T = self._value
        return value

    def set(self, value: Any = None) -> None:
        raise RuntimeError("a ResolvedFuture is already resolved")

    def set_exception(self, exc_info: Any = None) -> None:
        raise RuntimeError("a ResolvedFuture is already resolved")

    def __repr__(self) -> str:
        return f"<ResolvedFuture {'error' if self._error is not None else 'value'}>"


class LazyFuture(pykka.Future[T]):
    """A future that computes its value in the caller's thread on ``get``.

    Used for waits (``await_ready``): the wait happens when, and as long as,
    the caller asks for the result. The outcome (value or exception) is kept,
    so a second ``get`` returns or raises at once.
    """

    def __init__(self, compute: Callable[[float | None], T] | None = None) -> None:
        super().__init__()
        self._error: BaseException | None = None
        if compute is not None:
            self.set_get_hook(compute)

    def get(self, *, timeout: float | None = None) -> T:
        # pykka keeps a hook's value but not its exception; keep both, so a
        # second get() of a wait that failed fails at once, like any future.
        if self._error is not None:
            raise self._error
        try:
            return super().get(timeout=timeout)
        except pykka.Timeout:
            raise  # the caller's own bound ran out; a later get() may wait again
        except Exception as error:
            self._error = error
            raise
