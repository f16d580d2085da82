"""``pool.autoscale``: its defaults, what it settles from the rest of ``pool``, its errors."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from grpcpool import Config
from grpcpool._config_capacity import (
    DEFAULT_AUTOSCALE_HIGH_CALLS,
    DEFAULT_AUTOSCALE_INTERVAL,
    DEFAULT_AUTOSCALE_MAX_STEP,
    normalize_autoscale,
    start_size,
)
from grpcpool.config import Autoscale
from grpcpool.errors import ConfigError

ENDPOINT = {"type": "local", "host": "127.0.0.1", "port": 50051}


def pool(**keys: Any) -> Any:
    """The pool section of a config built from ``keys``."""
    return Config.new(ENDPOINT, keys).pool


def test_autoscale_is_off_by_default_and_an_empty_mapping_takes_the_defaults() -> None:
    """Without the key a pool has a fixed size; {} autoscales between 1 and pool.max_size,
    growing above 25 calls per connection and shrinking below 1, every second, 2 at most."""
    assert pool().autoscale is None
    settings = pool(autoscale={}, max_size=64).autoscale
    assert settings == Autoscale(
        min_size=1, max_size=64, low_calls=1, high_calls=25, interval=1.0, max_step=2
    )
    assert (DEFAULT_AUTOSCALE_HIGH_CALLS, DEFAULT_AUTOSCALE_INTERVAL) == (25, 1.0)
    assert DEFAULT_AUTOSCALE_MAX_STEP == 2
    assert settings.bounds == (1, 64) and settings.calls == (1, 25)


def test_an_autoscale_value_is_taken_as_it_is_with_its_gaps_filled() -> None:
    """An Autoscale passed as the value keeps its fields; the ones left None get the pool's."""
    given = Autoscale(min_size=2, max_size=8, low_calls=3, high_calls=10, interval=0.5)
    assert pool(autoscale=given).autoscale == given
    filled = pool(autoscale=Autoscale(min_size=2), max_size=12).autoscale
    assert (filled.max_size, filled.high_calls) == (12, 25)


def test_high_calls_defaults_to_the_pools_cap_of_calls_per_connection() -> None:
    """With a cap of calls per connection (pool.max_calls_per_connection, from the call
    queue) high_calls defaults to it; without one, to 25."""
    assert normalize_autoscale({}, 16, max_calls_per_connection=8) == Autoscale(
        1, 16, 1, 8, 1.0, 2
    )
    assert normalize_autoscale({}, 16).high_calls == 25  # type: ignore[union-attr]
    assert normalize_autoscale(None, 16) is None


BAD: list[tuple[dict[str, Any], dict[str, Any], str, str]] = [
    ({"min_size": 5, "max_size": 4}, {}, "pool.autoscale.max_size", "below"),
    ({"max_size": 20}, {"max_size": 16}, "pool.autoscale.max_size", "over pool.max_size"),
    ({"min_size": 20}, {"max_size": 16}, "pool.autoscale.min_size", "over pool.max_size"),
    ({"low_calls": 5, "high_calls": 4}, {}, "pool.autoscale.high_calls", "below"),
    ({"low_calls": 30}, {}, "pool.autoscale.low_calls", "high_calls"),
    ({"interval": 0}, {}, "pool.autoscale.interval", ">= 0.05"),
    ({"interval": -1.0}, {}, "pool.autoscale.interval", ">= 0.05"),
    ({"interval": 1000.0 * 60 * 60}, {}, "pool.autoscale.interval", "milliseconds"),
    ({"interval": float("nan")}, {}, "pool.autoscale.interval", "finite"),
    ({"max_step": 0}, {}, "pool.autoscale.max_step", ">= 1"),
    ({"min_size": 0}, {}, "pool.autoscale.min_size", ">= 1"),
    ({"min_size": 2.0}, {}, "pool.autoscale.min_size", "int"),
    ({"high_calls": True}, {}, "pool.autoscale.high_calls", "int"),
    ({"low_calls": 0}, {}, "pool.autoscale.low_calls", ">= 1"),
    ({"max": 4}, {}, "pool.autoscale.max", "unknown key"),
]


@pytest.mark.parametrize(("autoscale", "rest", "key", "words"), BAD)
def test_a_bad_autoscale_is_a_config_error_naming_the_key(
    autoscale: dict[str, Any], rest: dict[str, Any], key: str, words: str
) -> None:
    """min_size over max_size, max_size (or min_size) over pool.max_size, low_calls over
    high_calls (or its default), a non-positive interval or max_step, a wrong type or an
    unknown key: a ConfigError naming the dotted key."""
    with pytest.raises(ConfigError, match=words) as raised:
        pool(autoscale=autoscale, **rest)
    assert raised.value.key == key


def test_autoscale_must_be_none_a_mapping_or_an_autoscale() -> None:
    """Anything else (a number, a list) is a ConfigError on pool.autoscale."""
    for value in (3, [1, 4], "on"):
        with pytest.raises(ConfigError, match="mapping") as raised:
            pool(autoscale=value)
        assert raised.value.key == "pool.autoscale"


def test_an_autoscaled_pool_starts_at_its_size_clamped_into_the_range() -> None:
    """pool.size within [min_size, max_size] is where the pool starts; outside it, the
    nearer end; a pool of fixed size starts at pool.size."""
    settings = pool(autoscale={"min_size": 2, "max_size": 6}).autoscale
    assert [start_size(size, settings) for size in (1, 2, 4, 6, 9)] == [2, 2, 4, 6, 6]
    assert start_size(9, None) == 9


def test_replacing_pool_max_size_checks_autoscale_again() -> None:
    """dataclasses.replace of the pool section runs the checks again: a max_size below the
    autoscale range's is refused."""
    section = pool(autoscale={"max_size": 8}, size=2)
    with pytest.raises(ConfigError) as raised:
        dataclasses.replace(section, max_size=4)
    assert raised.value.key == "pool.autoscale.max_size"
