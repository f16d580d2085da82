"""The driver-neutral harness: one synchronous API over a sync or an asyncio pool.

A scenario holds a :class:`Driver` and never asks which kind it is. What the
two kinds of pool legitimately do differently (a blocking call against an
awaited one, ``grpcpool.x(name)`` against ``await grpcpool.aio.x(name)``, sync
against ``grpc.aio`` interceptors) is hidden here; what they do differently
in what a user sees is what the scenarios are there to find.

- :class:`tests.behaviour.sync_driver.SyncDriver` starts each pool under a
  ``Supervisor`` of its own with ``max_restarts=0``, so that, as with an
  asyncio pool (which has no parent), a pool whose workers crash past its
  restart intensity ends instead of being restarted by a parent.
- :class:`tests.behaviour.aio_driver.AioDriver` runs an event loop on a
  thread of its own and each operation as a coroutine on it
  (``asyncio.run_coroutine_threadsafe``, with a timeout).

Every blocking method has a timeout; :meth:`Driver.close` stops every pool
either driver started, then joins whatever thread the driver started.
"""

from __future__ import annotations

import abc
import concurrent.futures
import time
import traceback
from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar

import pytest

from grpcpool import Config, PoolStatus
from grpcpool.core import ReadyConnection
from grpcpool.errors import PoolNotFoundError

T = TypeVar("T")

#: The kinds of pool every scenario runs on (the ``driver`` fixture's parameters).
DRIVERS = ("sync", "asyncio")
#: Seconds a blocking harness operation may take beyond its own timeout.
SLACK = 5.0


class HarnessTimeout(AssertionError):
    """A harness operation did not finish in time (a hang, not a pool timeout)."""


def detach_traceback(error: BaseException) -> None:
    """Drops the tracebacks of ``error`` and its causes, keeping their text as ``driver_traceback``.

    pytest keeps a failed scenario's exception, and with it every frame it
    went through: an asyncio pool's frames (a picker's closure over the
    ready channels, say) would keep its ``grpc.aio`` channels, and grpc.aio's
    poller thread with them, alive after the driver closed, and the leak
    check would blame the scenario for them. The report still shows where
    the scenario got the error; the text of the rest is kept on the error
    (not as a note: ``pytest.raises(match=...)`` would search it).
    """
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if current.__traceback__ is not None:
            text = "".join(traceback.format_tb(current.__traceback__))
            current.driver_traceback = text  # type: ignore[attr-defined]
            current.__traceback__ = None
        current = current.__cause__ or current.__context__


class Pending(Generic[T]):
    """A call (or wait) under way: ``result(timeout)`` gives its answer or raises its error.

    Args:
        future: Where the answer comes.
        detach: Raise errors without the frames they went through (see
            :func:`detach_traceback`), and let go of the future then (an
            asyncio future keeps its error's frames too): for what ran on an
            asyncio pool's loop.
    """

    def __init__(self, future: concurrent.futures.Future[T], *, detach: bool = False) -> None:
        self._future: concurrent.futures.Future[T] | None = future
        self._detach = detach
        self._error: BaseException | None = None
        self._value: T | None = None

    def done(self) -> bool:
        """True once it has finished, either way."""
        return self._future is None or self._future.done()

    def wait(self, timeout: float) -> bool:
        """Waits up to ``timeout`` seconds for it to finish; True if it has."""
        if self._future is not None:
            concurrent.futures.wait([self._future], timeout)
        return self.done()

    def cancel(self) -> None:
        """Cancels it if it has not finished."""
        if self._future is not None:
            self._future.cancel()

    def result(self, timeout: float) -> T:
        """Its answer, waiting up to ``timeout`` seconds.

        Raises:
            HarnessTimeout: Not finished within ``timeout``.
            BaseException: What the call or wait raised.
        """
        if self._future is None:
            if self._error is not None:
                raise self._error
            return self._value  # type: ignore[return-value]  # settled with its answer
        try:
            return self._future.result(timeout)
        except concurrent.futures.TimeoutError:
            if not self._future.done():
                raise HarnessTimeout(f"not finished within {timeout}s") from None
            error = self._future.exception()
        except BaseException as raised:
            error = raised
        assert error is not None
        if self._detach:
            detach_traceback(error)
            self._future, self._error = None, error
        raise error

    def settle(self) -> None:
        """Keeps the outcome and lets go of the future (its driver has closed).

        A scenario that failed may still hold this; what it holds then is
        the answer or the (detached) error, not the frames and objects of a
        pool that is gone.
        """
        future, self._future = self._future, None
        if future is None:
            return
        if not future.done() or future.cancelled():
            self._error = HarnessTimeout("not finished when the driver closed")
        elif (error := future.exception()) is not None:
            detach_traceback(error)
            self._error = error
        else:
            self._value = future.result()


class Stub(abc.ABC):
    """The echo service (``tests.servers``) on one channel, called synchronously.

    Built once on the pool channel (or on a ``get_channel`` channel) and
    kept; each method makes one call of that kind and returns its answer,
    raising what the call raised (a ``grpc.RpcError``, ``PoolCallError``...).
    """

    @abc.abstractmethod
    def unary(self, payload: bytes = b"x", *, timeout: float = 5.0, **options: Any) -> bytes:
        """A unary call (``options``: ``wait_for_ready``, ``metadata``, ...)."""

    @abc.abstractmethod
    def begin(
        self, payload: bytes = b"x", *, timeout: float = 10.0, **options: Any
    ) -> Pending[bytes]:
        """Starts a unary call without waiting; ``result(timeout)`` gives its answer."""

    @abc.abstractmethod
    def repeat(self, payload: bytes, *, timeout: float = 5.0) -> list[bytes]:
        """A unary-stream call: the server answers ``payload`` three times."""

    @abc.abstractmethod
    def join(self, payloads: Sequence[bytes], *, timeout: float = 5.0) -> bytes:
        """A stream-unary call: the server answers the requests joined."""

    @abc.abstractmethod
    def chat(self, payloads: Sequence[bytes], *, timeout: float = 5.0) -> list[bytes]:
        """A stream-stream call: the server echoes each request."""


class Driver(abc.ABC):
    """One kind of pool behind a synchronous API. ``name`` defaults to the last started pool."""

    kind: str

    def __init__(self) -> None:
        self.name = "default"
        self._other: Driver | None = None
        self._helpers: concurrent.futures.ThreadPoolExecutor | None = None

    # --- life -----------------------------------------------------------------------

    @abc.abstractmethod
    def start(self, config: Config, name: str | None = "behaviour") -> str:
        """Starts pool ``name``; returns once its workers started (not connected).

        With ``name=None`` the pool is named as the config says
        (``pool.name``, else ``"default"``); returns the name it got.
        """

    @abc.abstractmethod
    def stop(self, name: str | None = None) -> None:
        """Stops pool ``name`` for good (idempotent, as ``grpcpool.stop`` is)."""

    @property
    def other(self) -> Driver:
        """A driver of the other kind, closed with this one."""
        if self._other is None:
            self._other = make_driver("asyncio" if self.kind == "sync" else "sync")
        return self._other

    def close(self) -> None:
        """Stops every pool started through this driver (and :attr:`other`), then its threads.

        Idempotent.
        """
        try:
            if self._other is not None:
                self._other.close()
        finally:
            try:
                self._close()
            finally:
                if self._helpers is not None:
                    self._helpers.shutdown(wait=True, cancel_futures=True)

    def other_thread(self, function: Callable[[], T]) -> Pending[T]:
        """Runs ``function`` (a harness operation, say) on another thread; returns its future."""
        if self._helpers is None:
            self._helpers = concurrent.futures.ThreadPoolExecutor(
                max_workers=2, thread_name_prefix="behaviour-helper"
            )
        return Pending(self._helpers.submit(function))

    @abc.abstractmethod
    def _close(self) -> None: ...

    # --- calls --------------------------------------------------------------------------

    @abc.abstractmethod
    def stub(self, name: str | None = None) -> Stub:
        """The echo stub on the pool channel of ``name``, built once per pool and kept."""

    @abc.abstractmethod
    def new_stub(self, name: str | None = None) -> Stub:
        """A new echo stub on the pool channel of ``name`` (``grpcpool[.aio].channel``)."""

    @abc.abstractmethod
    def raw_stub(self, name: str | None = None) -> Stub:
        """An echo stub on one ready channel of ``name`` (``get_channel``)."""

    def call(self, payload: bytes = b"x", *, name: str | None = None, **options: Any) -> bytes:
        """One unary call through the pool channel."""
        return self.stub(name).unary(payload, **options)

    def call_raw(self, payload: bytes = b"x", *, name: str | None = None, **options: Any) -> bytes:
        """One unary call on a channel from ``get_channel``."""
        return self.raw_stub(name).unary(payload, **options)

    def begin(
        self, payload: bytes = b"x", *, name: str | None = None, **options: Any
    ) -> Pending[bytes]:
        """Starts a unary call through the pool channel; returns its future."""
        return self.stub(name).begin(payload, **options)

    @abc.abstractmethod
    def channel_ready(self, timeout: float, name: str | None = None) -> bool:
        """Waits up to ``timeout`` for the pool channel to be ready; True if it is.

        ``grpc.channel_ready_future(grpcpool.channel(name))`` for a sync pool,
        ``await pool.channel().channel_ready()`` for an asyncio one.
        """

    @abc.abstractmethod
    def get_channel(self, name: str | None = None) -> Any:
        """``get_channel(name)``: a ready channel (only to look at, not to call on)."""

    # --- state and control ----------------------------------------------------------------

    @abc.abstractmethod
    def connections(self, name: str | None = None) -> tuple[ReadyConnection, ...]:
        """The ready connections of the pool's current view (to read, e.g. their ``stats``)."""

    @abc.abstractmethod
    def status(self, name: str | None = None) -> PoolStatus:
        """``status(name)`` of this driver's API."""

    @abc.abstractmethod
    def await_ready(
        self, timeout: float | None = 5.0, min_ready: int = 1, name: str | None = None
    ) -> None:
        """``await_ready(name, timeout, min_ready)``."""

    @abc.abstractmethod
    def begin_await_ready(
        self, timeout: float = 5.0, min_ready: int = 1, name: str | None = None
    ) -> Pending[None]:
        """Starts ``await_ready`` without waiting for it."""

    @abc.abstractmethod
    def scale_up(self, count: Any, name: str | None = None) -> int:
        """``scale_up(name, count)``: the new expected size."""

    @abc.abstractmethod
    def scale_down(self, count: Any, name: str | None = None) -> int:
        """``scale_down(name, count)``: the new expected size."""

    @abc.abstractmethod
    def resize(self, target: Any, name: str | None = None) -> int:
        """``resize(name, target)``: the new expected size."""

    @abc.abstractmethod
    def crash_worker(self, worker_id: str, name: str | None = None) -> None:
        """Makes one worker of the pool crash (a bug, not an outage)."""

    @abc.abstractmethod
    def _wait_change(self, name: str, timeout: float) -> None:
        """Returns at the pool's next view change, or after ``timeout`` seconds."""

    def running(self, name: str | None = None) -> bool:
        """True while ``status(name)`` answers (the pool has not ended)."""
        try:
            self.status(name)
        except PoolNotFoundError:
            return False
        return True

    def wait_until(self, predicate: Callable[[], bool], timeout: float = 5.0) -> None:
        """Waits until ``predicate()`` holds, looking at each view change of the current
        pool and every 50 ms (for what no change announces). Fails after ``timeout``."""
        deadline = time.monotonic() + timeout
        while not predicate():
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"condition not met within {timeout}s")
            self._wait_change(self.name, min(left, 0.05))

    def wait_status(
        self,
        predicate: Callable[[PoolStatus], bool],
        timeout: float = 5.0,
        name: str | None = None,
    ) -> PoolStatus:
        """Waits until ``predicate(status)`` holds; woken by the pool's view changes.

        Also looks every 50 ms, for what no view change announces (calls in
        flight). Fails the scenario after ``timeout`` seconds.
        """
        name = name or self.name
        deadline = time.monotonic() + timeout
        while True:
            status = self.status(name)
            if predicate(status):
                return status
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"status never matched within {timeout}s: {status}")
            self._wait_change(name, min(left, 0.05))

    # --- interceptors of this driver's kind --------------------------------------------------

    @abc.abstractmethod
    def interceptors(self, seen: Any) -> list[Any]:
        """Interceptors of every call kind this kind of pool takes; each counts into ``seen``."""


def make_driver(kind: str) -> Driver:
    """A driver of ``kind``: ``"sync"`` or ``"asyncio"``."""
    if kind == "sync":
        from tests.behaviour.sync_driver import SyncDriver

        return SyncDriver()
    if kind == "asyncio":
        from tests.behaviour.aio_driver import AioDriver

        return AioDriver()
    raise ValueError(f"no driver {kind!r}")


def differs_on(kind: str, reason: str) -> pytest.MarkDecorator:
    """Runs the scenario on both drivers, expecting it to fail on ``kind`` only.

    A user-visible difference between the drivers is a bug of one of them;
    ``strict=True`` makes the mark go once it is fixed.
    """
    params = [
        pytest.param(name, marks=pytest.mark.xfail(strict=True, reason=reason))
        if name == kind
        else name
        for name in DRIVERS
    ]
    return pytest.mark.parametrize("driver", params, indirect=True)
