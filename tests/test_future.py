"""Tests for grpcpool._future: ResolvedFuture and LazyFuture as pykka futures."""

from __future__ import annotations

import threading

import pykka
import pytest

from grpcpool._future import LazyFuture, ResolvedFuture


def test_resolved_future_returns_its_value_at_once() -> None:
    """ResolvedFuture.get returns the value it was made with, with or without a timeout."""
    value = object()
    future: ResolvedFuture[object] = ResolvedFuture(value)

    assert future.get() is value
    assert future.get(timeout=0) is value
    assert isinstance(future, pykka.Future)


def test_resolved_future_raises_its_exception_on_every_get() -> None:
    """ResolvedFuture made with an error raises that very exception from each get."""
    error = LookupError("no such pool")
    future: ResolvedFuture[int] = ResolvedFuture(error=error)

    for _ in range(2):
        with pytest.raises(LookupError) as caught:
            future.get(timeout=1)
        assert caught.value is error


def test_resolved_future_works_with_pykka_combinators() -> None:
    """map, filter, join, reduce and pykka.get_all work on ResolvedFutures."""
    assert ResolvedFuture(2).map(lambda x: x * 10).get() == 20
    assert list(ResolvedFuture([1, 5, 10]).filter(lambda x: x > 3).get()) == [5, 10]
    assert list(ResolvedFuture("a").join(ResolvedFuture("b")).get()) == ["a", "b"]
    assert ResolvedFuture([1, 2, 3]).reduce(lambda a, b: a + b).get() == 6

    pending: pykka.ThreadingFuture[int] = pykka.ThreadingFuture()
    threading.Timer(0.05, pending.set, args=(3,)).start()
    assert pykka.get_all([ResolvedFuture(1), ResolvedFuture(2), pending], timeout=5) == [1, 2, 3]


def test_resolved_future_error_propagates_through_combinators() -> None:
    """A combinator over a failed ResolvedFuture raises the original error from get."""
    error = ValueError("bad")
    failed: ResolvedFuture[int] = ResolvedFuture(error=error)
    calls: list[int] = []

    def record(value: int) -> int:
        calls.append(value)
        return value

    mapped = failed.map(record)
    with pytest.raises(ValueError) as caught:
        mapped.get(timeout=1)
    assert caught.value is error
    assert calls == []
    with pytest.raises(ValueError):
        pykka.get_all([ResolvedFuture(1), failed], timeout=1)


def test_resolved_future_cannot_be_set_again() -> None:
    """set and set_exception on a ResolvedFuture raise and leave its value alone."""
    future: ResolvedFuture[int] = ResolvedFuture(1)

    with pytest.raises(RuntimeError, match="already resolved"):
        future.set(2)
    with pytest.raises(RuntimeError, match="already resolved"):
        future.set_exception((ValueError, ValueError("x"), None))
    assert future.get() == 1


def test_lazy_future_computes_once_on_first_get_with_its_timeout() -> None:
    """LazyFuture runs its computation only when get is called, once, with get's timeout."""
    timeouts: list[float | None] = []

    def compute(timeout: float | None) -> str:
        timeouts.append(timeout)
        return "done"

    future = LazyFuture(compute)
    assert timeouts == []

    assert future.get(timeout=2.5) == "done"
    assert future.get(timeout=7.0) == "done"
    assert future.map(str.upper).get() == "DONE"
    assert timeouts == [2.5]


def test_lazy_future_combinator_computes_the_source_once() -> None:
    """A map over a LazyFuture triggers the computation, and the source keeps the result."""
    calls: list[float | None] = []

    def compute(timeout: float | None) -> int:
        calls.append(timeout)
        return 21

    future = LazyFuture(compute)
    doubled = future.map(lambda x: x * 2)
    assert calls == []

    assert doubled.get(timeout=1.0) == 42
    assert future.get() == 21
    assert pykka.get_all([future, doubled]) == [21, 42]
    assert calls == [1.0]
