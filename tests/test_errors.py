"""Tests for grpcpool.errors: the exception hierarchy, messages and attributes."""

from __future__ import annotations

import pytest

import grpcpool
from grpcpool import errors
from grpcpool.errors import (
    ConfigError,
    GrpcPoolError,
    NotConnectedError,
    PoolNotFoundError,
    PoolTimeoutError,
)


@pytest.mark.parametrize(
    ("cls", "bases"),
    [
        (ConfigError, (GrpcPoolError, ValueError)),
        (NotConnectedError, (GrpcPoolError,)),
        (PoolNotFoundError, (NotConnectedError, GrpcPoolError, LookupError)),
        (PoolTimeoutError, (GrpcPoolError, TimeoutError)),
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
        "PoolNotFoundError",
        "PoolTimeoutError",
    }
