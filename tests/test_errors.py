"""Tests for grpcpool.errors: the exception hierarchy, messages and attributes."""

from __future__ import annotations

import grpc
import pytest

import grpcpool
from grpcpool import errors
from grpcpool.errors import (
    ConfigError,
    GrpcPoolError,
    NotConnectedError,
    PoolCallError,
    PoolNotFoundError,
    PoolSizeError,
    PoolTimeoutError,
    StrategyError,
    shorten,
)


@pytest.mark.parametrize(
    ("cls", "bases"),
    [
        (ConfigError, (GrpcPoolError, ValueError)),
        (NotConnectedError, (GrpcPoolError,)),
        (PoolNotFoundError, (NotConnectedError, GrpcPoolError, LookupError)),
        (PoolTimeoutError, (GrpcPoolError, TimeoutError)),
        (PoolSizeError, (GrpcPoolError, ValueError)),
        (PoolCallError, (NotConnectedError, grpc.RpcError, grpc.Call, grpc.Future)),
        (GrpcPoolError, (Exception,)),
    ],
)
def test_hierarchy(cls: type[Exception], bases: tuple[type[Exception], ...]) -> None:
    """Each error derives from GrpcPoolError and from the matching built-in exception."""
    for base in bases:
        assert issubclass(cls, base), f"{cls.__name__} is not a {base.__name__}"


def test_not_connected_is_not_a_lookup_error() -> None:
    """Only PoolNotFoundError is a LookupError; a pool without channels is not."""
    assert not issubclass(NotConnectedError, LookupError)
    assert not issubclass(PoolTimeoutError, NotConnectedError)


def test_config_error_is_caught_as_value_error() -> None:
    """ConfigError can be caught with a plain `except ValueError`."""
    with pytest.raises(ValueError, match=r"^endpoint\.port: "):
        raise ConfigError("endpoint.port", "must be >= 1")


def test_pool_not_found_is_caught_as_not_connected() -> None:
    """`except NotConnectedError` also catches an unknown pool, as in Elixir."""
    with pytest.raises(NotConnectedError) as info:
        raise PoolNotFoundError("orders")
    assert isinstance(info.value, LookupError)
    assert info.value.pool_name == "orders"


def test_pool_timeout_is_caught_as_timeout_error() -> None:
    """PoolTimeoutError can be caught with the built-in TimeoutError."""
    with pytest.raises(TimeoutError):
        raise PoolTimeoutError("orders", "not ready after 1.0s")


def test_config_error_key_and_message() -> None:
    """ConfigError keeps the dotted key and puts it in front of the problem."""
    error = ConfigError("pool.size", "must be >= 1, got 0")
    assert error.key == "pool.size"
    assert str(error) == "pool.size: must be >= 1, got 0"


def test_not_connected_names_pool_with_default_detail() -> None:
    """NotConnectedError names the pool and says there is no ready channel by default."""
    error = NotConnectedError("billing")
    assert error.pool_name == "billing"
    assert "'billing'" in str(error)
    assert "no ready channel" in str(error)


def test_not_connected_custom_detail() -> None:
    """NotConnectedError uses the given detail instead of the default one."""
    error = NotConnectedError("billing", "pool is stopping")
    assert str(error) == "pool 'billing': pool is stopping"


def test_pool_not_found_message() -> None:
    """PoolNotFoundError names the pool and says no pool of that name runs."""
    error = PoolNotFoundError("ghost")
    assert error.pool_name == "ghost"
    assert str(error) == "pool 'ghost': no pool of this name is running"


def test_pool_timeout_message() -> None:
    """PoolTimeoutError names the pool and keeps the detail."""
    error = PoolTimeoutError("search", "1 of 3 ready after 2.0s")
    assert error.pool_name == "search"
    assert str(error) == "pool 'search': 1 of 3 ready after 2.0s"


def test_pool_name_is_repr_quoted() -> None:
    """An odd pool name is quoted with repr so it stays readable in the message."""
    error = PoolNotFoundError("a b")
    assert "'a b'" in str(error)


def test_errors_are_re_exported() -> None:
    """Every error class is importable from the top-level grpcpool package."""
    for name in errors.__all__:
        assert getattr(grpcpool, name) is getattr(errors, name)
    assert set(errors.__all__) == {
        "ConfigError",
        "GrpcPoolError",
        "NotConnectedError",
        "PoolCallError",
        "PoolNotFoundError",
        "PoolSizeError",
        "PoolTimeoutError",
        "StrategyError",
    }


def test_child_start_error_is_exported_from_the_top_level() -> None:
    """ChildStartError, which Supervisor.start, start_child and grpcpool.start raise,
    can be caught as grpcpool.ChildStartError and is listed in grpcpool.__all__."""
    from grpcpool.supervisor import ChildStartError

    assert grpcpool.ChildStartError is ChildStartError
    assert "ChildStartError" in grpcpool.__all__
    assert issubclass(ChildStartError, GrpcPoolError)
    error = ChildStartError("pool:a", "OSError: boom")
    assert error.child_id == "pool:a"
    assert str(error) == "child 'pool:a' failed to start: OSError: boom"


def test_strategy_error_names_the_strategy_and_is_a_grpcpool_error() -> None:
    """StrategyError is a GrpcPoolError (not a LookupError or IndexError) and names the
    strategy first."""
    error = StrategyError("Sharded", "select(3) returned 3, not an int in range(3)")
    assert isinstance(error, GrpcPoolError)
    assert not isinstance(error, LookupError | NotConnectedError)
    assert error.strategy == "Sharded"
    assert str(error) == "strategy Sharded: select(3) returned 3, not an int in range(3)"


def test_pool_not_found_of_a_pool_that_was_shut_down_says_so() -> None:
    """With a reason, PoolNotFoundError says the pool was shut down and why; it is still
    a NotConnectedError and a LookupError, and keeps the reason."""
    error = PoolNotFoundError("kv", "supervisor gave up")
    assert str(error) == "pool 'kv' was shut down: supervisor gave up"
    assert error.reason == "supervisor gave up"
    assert error.pool_name == "kv"
    assert isinstance(error, NotConnectedError) and isinstance(error, LookupError)
    assert PoolNotFoundError("kv").reason is None


def test_a_long_shut_down_reason_is_shortened() -> None:
    """A reason of thousands of characters gives a message of about 200."""
    error = PoolNotFoundError("kv", "exited: " + "x" * 5000 + " the end")
    assert len(str(error)) < 240
    assert str(error).startswith("pool 'kv' was shut down: exited: ")
    assert str(error).endswith("the end")


def test_not_connected_and_timeout_carry_the_last_error() -> None:
    """NotConnectedError and PoolTimeoutError keep the workers' last error, None by default."""
    assert NotConnectedError("kv").last_error is None
    assert PoolTimeoutError("kv", "0 of 1 ready").last_error is None
    refused = "unavailable: Connection refused"
    assert NotConnectedError("kv", "down", last_error=refused).last_error == refused
    assert PoolTimeoutError("kv", "0 of 1 ready", last_error=refused).last_error == refused


def test_shorten_keeps_both_ends_within_the_limit() -> None:
    """shorten leaves short text alone and cuts long text to its head and tail, at word
    boundaries, within the limit."""
    assert shorten("unavailable: refused") == "unavailable: refused"
    text = "unavailable: failed to connect; " + "nested context " * 40 + "Connection refused"
    short = shorten(text, 100)
    assert len(short) <= 100
    assert short.startswith("unavailable: ")
    assert short.endswith("Connection refused")
    assert " ... " in short
    assert shorten("abcdefghijklmnop", 5) == "abcde"


def test_a_pool_call_error_is_a_finished_failed_grpc_call() -> None:
    """PoolCallError answers as a grpc call that failed before it started: its code and
    details, no metadata, done, result() raising it, iteration raising it."""
    cause = NotConnectedError("kv", "no ready channel", last_error="connection refused")
    error = PoolCallError.of(cause)

    assert (error.code(), error.details()) == (grpc.StatusCode.UNAVAILABLE, str(cause))
    assert str(error) == str(cause) and error.last_error == "connection refused"
    assert (error.initial_metadata(), error.trailing_metadata()) == ((), ())
    assert error.done() and not error.running() and not error.cancelled()
    assert not error.cancel() and not error.is_active() and error.exception() is error
    with pytest.raises(PoolCallError):
        error.result()
    with pytest.raises(PoolCallError):
        next(iter(error))
    called: list[object] = []
    error.add_done_callback(called.append)
    assert called == [error]
    late = PoolCallError.of(cause, grpc.StatusCode.DEADLINE_EXCEEDED)
    assert late.code() is grpc.StatusCode.DEADLINE_EXCEEDED

