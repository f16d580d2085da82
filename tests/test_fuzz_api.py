"""Fuzzing the public API: only documented exceptions, and only ready channels.

Every function that takes a pool name gets arbitrary names (text of any
length, bytes, numbers, None, containers, unhashable ones); the scaling
functions and ``await_ready`` get arbitrary counts and timeouts too. What may
come out is documented: a :class:`~grpcpool.GrpcPoolError` subclass (a count
the pool cannot take is a ``PoolSizeError``), ``TypeError`` for a count that
is not an int, ``min_ready`` included (``check_count`` in
grpcpool/core/_sizes.py), and ``ValueError`` for a bad ``timeout``. Custom
strategies answer with arbitrary objects on
a real pool: a caller gets one of the pool's ready channels or a
:class:`~grpcpool.StrategyError`, nothing else.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import grpc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import grpcpool
from grpcpool import GrpcPoolError, PoolSpec, StrategyError, Supervisor
from grpcpool.api import lookup
from tests.pools import loopback_config
from tests.servers import EchoServer, EchoStub

FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
RUNNING = "fuzz-running"
MAX_SIZE = 3


class _Opaque:
    """An object with nothing to offer: str and == raise, no hash."""

    def __repr__(self) -> str:
        return "<opaque>"

    def __str__(self) -> str:
        raise RuntimeError("str fails")

    def __eq__(self, other: object) -> bool:
        raise RuntimeError("eq fails")

    __hash__ = None  # type: ignore[assignment]


class _BadIndex:
    """Claims to be an integer but its __index__ raises or lies."""

    def __init__(self, result: Any) -> None:
        self.result = result

    def __index__(self) -> int:
        if isinstance(self.result, BaseException):
            raise self.result
        return self.result  # type: ignore[no-any-return]


NAMES = st.one_of(
    st.text(max_size=40),
    st.integers(min_value=0, max_value=3000).map(lambda n: "n" * n),
    st.just("x" * 1_000_000),
    st.binary(max_size=10),
    st.integers(),
    st.floats(),
    st.none(),
    st.booleans(),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
    st.tuples(st.text(max_size=3)),
    st.sets(st.integers(), max_size=2),
    st.builds(_Opaque),
)
COUNTS = st.one_of(
    st.integers(min_value=-3, max_value=MAX_SIZE + 2),
    st.integers(),
    st.floats(),
    st.booleans(),
    st.none(),
    st.text(max_size=5),
    st.fractions(),
    st.complex_numbers(),
    st.builds(_Opaque),
    st.builds(_BadIndex, st.integers(-2, 5)),
)
TIMEOUTS = st.one_of(
    st.floats(min_value=0.0, max_value=0.02),
    st.floats(),
    st.integers(min_value=-5, max_value=0),
    st.integers(min_value=2**1024, max_value=2**1100),  # too large for a float
    st.none(),
    st.booleans(),
    st.text(max_size=3),
)
MIN_READY = st.one_of(st.integers(min_value=-3, max_value=MAX_SIZE + 1), COUNTS)


def _documented(error: BaseException, *, counts: bool) -> bool:
    """Whether ``error`` is one the API documents (counts: TypeError/ValueError too)."""
    if isinstance(error, GrpcPoolError):
        return True
    return counts and type(error) in (TypeError, ValueError)


def _call(action: Callable[[], Any], *, counts: bool) -> Any:
    try:
        return action()
    except BaseException as error:
        assert _documented(error, counts=counts), f"undocumented {type(error).__name__}: {error}"
        return error


def _name_actions(name: Any) -> list[Callable[[], Any]]:
    proxy: Callable[[], grpcpool.PoolProxy] = lambda: grpcpool.PoolProxy(name)  # noqa: E731
    return [
        lambda: grpcpool.pool(name),
        lambda: grpcpool.get_channel(name),
        lambda: grpcpool.status(name),
        lambda: grpcpool.stop(name),
        lambda: repr(proxy()),
        lambda: proxy().get_channel().get(timeout=5),
        lambda: proxy().status().get(timeout=5),
        lambda: proxy().stub(EchoStub).get(timeout=5),
        lambda: proxy().stop().get(timeout=5),
    ]


def _count_actions(name: Any, count: Any) -> list[Callable[[], Any]]:
    return [
        lambda: grpcpool.scale_up(name, count),
        lambda: grpcpool.scale_down(name, count),
        lambda: grpcpool.resize(name, count),
        lambda: grpcpool.PoolProxy(name).scale_up(count).get(timeout=5),
        lambda: grpcpool.PoolProxy(name).scale_down(count).get(timeout=5),
        lambda: grpcpool.PoolProxy(name).resize(count).get(timeout=5),
    ]


def _wait_actions(name: Any, timeout: Any, min_ready: Any) -> list[Callable[[], Any]]:
    return [
        lambda: grpcpool.await_ready(name, timeout=timeout, min_ready=min_ready),
        lambda: grpcpool.PoolProxy(name).await_ready(timeout, min_ready).get(timeout=5),
    ]


def _valid_wait(timeout: Any, min_ready: Any) -> bool:
    valid_timeout = timeout is None or (
        isinstance(timeout, int | float)
        and not isinstance(timeout, bool)
        and timeout >= 0
        and timeout < 2**1024  # an int too large for a float is no timeout
        and math.isfinite(timeout)
    )
    return valid_timeout and type(min_ready) is int and min_ready >= 1


@FUZZ
@given(name=NAMES, count=COUNTS, timeout=TIMEOUTS, min_ready=MIN_READY)
def test_name_taking_functions_with_no_such_pool(
    name: Any, count: Any, timeout: Any, min_ready: Any
) -> None:
    """With no pool running, every entry point raises only documented errors."""
    for action in _name_actions(name):
        _call(action, counts=False)
    for action in _count_actions(name, count):
        _call(action, counts=True)
    if isinstance(timeout, float) and timeout > 1.0:
        timeout = 1.0  # a valid wait on a missing pool ends at once; never block long
    for action in _wait_actions(name, timeout, min_ready):
        _call(action, counts=True)


def test_name_taking_functions_beside_a_running_pool(
    plain_server: EchoServer, supervisors: list[Any]
) -> None:
    """Beside a running pool, arbitrary names and counts leave it running and sized 1..max."""
    config = loopback_config(plain_server.port, size=1, pool={"max_size": MAX_SIZE})
    supervisors.append(Supervisor.start(children=[PoolSpec(config, name=RUNNING)]))
    grpcpool.await_ready(RUNNING, timeout=10)

    @FUZZ
    @given(name=NAMES, count=COUNTS, timeout=TIMEOUTS, min_ready=MIN_READY)
    def check(name: Any, count: Any, timeout: Any, min_ready: Any) -> None:
        if not (isinstance(name, str) and name == RUNNING):  # it is not to be stopped
            for action in _name_actions(name):
                _call(action, counts=False)
        for action in _count_actions(RUNNING, count):
            result = _call(action, counts=True)
            if not isinstance(result, BaseException):
                assert type(result) is int and 1 <= result <= MAX_SIZE
        if not _valid_wait(timeout, min_ready) or (timeout is not None and timeout <= 0.02):
            for action in _wait_actions(RUNNING, timeout, min_ready):
                _call(action, counts=True)
        assert grpcpool.status(RUNNING).expected_size in range(1, MAX_SIZE + 1)

    check()
    grpcpool.resize(RUNNING, 1)
    grpcpool.await_ready(RUNNING, timeout=10)
    EchoStub(grpcpool.get_channel(RUNNING)).Unary(b"still here", timeout=5)


# --- custom strategies ----------------------------------------------------------


class Scripted:
    """A select(count) strategy that answers whatever the test sets."""

    def __init__(self) -> None:
        self.answer: Any = 0

    def select(self, count: int) -> Any:
        if isinstance(self.answer, BaseException):
            raise self.answer
        if callable(self.answer) and not isinstance(self.answer, type):
            return self.answer(count)
        return self.answer


class ScriptedPicker:
    """A picker(items) strategy whose picker answers whatever the test sets."""

    def __init__(self) -> None:
        self.answer: Any = None
        self.items: tuple[Any, ...] = ()

    def picker(self, items: tuple[Any, ...]) -> Callable[[], Any]:
        self.items = items

        def pick() -> Any:
            answer = self.answer
            if isinstance(answer, BaseException):
                raise answer
            if isinstance(answer, int) and not isinstance(answer, bool) and 0 <= answer < 8:
                return self.items[answer % len(self.items)]  # a real ready channel
            return answer

        return pick


ERRORS = st.sampled_from(
    [
        RuntimeError("strategy bug"),
        ValueError("no"),
        TypeError("bad"),
        KeyError("k"),
        ZeroDivisionError(),
        StrategyError("nested", "a strategy raising grpcpool's own error"),
        grpcpool.NotConnectedError("other"),
        RecursionError(),
    ]
)
ANSWERS = st.one_of(
    st.sampled_from([0, 1, 2]),  # the right answers, so that the happy path is fuzzed too
    st.integers(),
    st.integers(min_value=-4, max_value=4),
    st.floats(),
    st.booleans(),
    st.none(),
    st.text(max_size=5),
    st.binary(max_size=5),
    st.lists(st.integers(), max_size=2),
    st.builds(_Opaque),
    st.builds(_BadIndex, st.one_of(st.integers(-3, 5), ERRORS)),
    ERRORS,
    st.builds(lambda: slice(0, 1)),
)


def _ready_channels(name: str) -> tuple[grpc.Channel, ...]:
    return lookup(name).view.channels


def _get_checked(name: str) -> None:
    """get_channel gives one of the ready channels, or a StrategyError; nothing else."""
    for get in (
        lambda: grpcpool.get_channel(name),
        lambda: grpcpool.PoolProxy(name).get_channel().get(timeout=5),
    ):
        try:
            channel = get()
        except StrategyError:
            continue
        except BaseException as error:
            pytest.fail(f"get_channel raised {type(error).__name__}: {error}")
        assert any(channel is ready for ready in _ready_channels(name)), (
            f"a custom strategy handed out {type(channel).__name__}, not a ready channel"
        )


def _start_custom(
    server: EchoServer, supervisors: list[Any], name: str, strategy: Any, size: int = 3
) -> None:
    config = loopback_config(server.port, size=size, pool={"strategy": strategy})
    supervisors.append(Supervisor.start(children=[PoolSpec(config, name=name)]))
    grpcpool.await_ready(name, timeout=10, min_ready=size)


def test_select_strategy_answers_never_leak_out(
    plain_server: EchoServer, supervisors: list[Any]
) -> None:
    """Whatever select(count) returns or raises, a caller gets a ready channel or StrategyError."""
    strategy = Scripted()
    _start_custom(plain_server, supervisors, "fuzz-select", strategy)

    @FUZZ
    @given(answer=st.one_of(ANSWERS, st.builds(lambda: lambda count: count - 1)))
    def check(answer: Any) -> None:
        strategy.answer = answer
        _get_checked("fuzz-select")

    check()
    strategy.answer = 1
    assert grpcpool.get_channel("fuzz-select") is _ready_channels("fuzz-select")[1]


def test_picker_strategy_answers_never_leak_out(
    plain_server: EchoServer, supervisors: list[Any]
) -> None:
    """Whatever a custom picker returns or raises, a caller gets a ready channel or
    StrategyError: a channel of another pool or a closed channel is refused too."""
    strategy = ScriptedPicker()
    _start_custom(plain_server, supervisors, "fuzz-picker", strategy)
    _start_custom(plain_server, supervisors, "fuzz-other", "round_robin", size=1)
    foreign = grpc.insecure_channel(f"127.0.0.1:{plain_server.port}")
    foreign.close()
    strangers = st.sampled_from(
        [foreign, grpcpool.get_channel("fuzz-other"), grpcpool.get_channel("fuzz-other")]
    )

    @FUZZ
    @given(answer=st.one_of(ANSWERS, strangers))
    def check(answer: Any) -> None:
        strategy.answer = answer
        _get_checked("fuzz-picker")

    check()
    strategy.answer = 2
    assert grpcpool.get_channel("fuzz-picker") is _ready_channels("fuzz-picker")[2]
