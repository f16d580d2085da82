"""Pool names: unknown names, taken names (also across the two kinds), bad names, bad configs."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

import grpcpool
import grpcpool.aio
from grpcpool.errors import ConfigError, PoolNotFoundError
from tests.behaviour.backends import Backends
from tests.behaviour.harness import Driver


def every_use(driver: Driver, name: str) -> list[Callable[[], Any]]:
    """Every way this driver's API asks for pool ``name``."""
    return [
        lambda: driver.get_channel(name),
        lambda: driver.status(name),
        lambda: driver.await_ready(timeout=0.2, name=name),
        lambda: driver.scale_up(1, name),
        lambda: driver.scale_down(1, name),
        lambda: driver.resize(2, name),
    ]


def test_an_unknown_name_is_not_found_everywhere_and_stopping_it_is_no_error(
    driver: Driver,
) -> None:
    """get_channel, status, await_ready and scaling of a name no pool holds raise
    PoolNotFoundError naming it, saying no such pool runs; stop is a no-op."""
    for use in every_use(driver, "nobody"):
        with pytest.raises(PoolNotFoundError, match="'nobody'") as raised:
            use()
        assert raised.value.reason is None and raised.value.running is None
        assert "no pool of this name is running" in str(raised.value)
    driver.stop("nobody")


def test_a_taken_name_is_a_config_error_and_the_first_pool_keeps_working(
    driver: Driver, backends: Backends
) -> None:
    """A second pool under a running pool's name is refused with ConfigError on
    pool.name naming it; the first pool keeps its workers and answers."""
    backends.one()
    name = driver.start(backends.config(2), "taken")
    driver.await_ready(min_ready=2)
    with pytest.raises(ConfigError, match="'taken'") as refused:
        driver.start(backends.config(3), "taken")
    assert refused.value.key == "pool.name"
    status = driver.status(name)
    assert (status.expected_size, status.current_size) == (2, 2)
    assert driver.call(name=name) == b"x"


def test_a_name_is_one_pool_across_both_kinds(driver: Driver, backends: Backends) -> None:
    """A pool of the other kind cannot take a running pool's name: ConfigError on
    pool.name saying which kind holds it; the running pool is untouched."""
    backends.one()
    name = driver.start(backends.config(2), "shared")
    driver.await_ready(min_ready=2)
    holder = "a sync pool" if driver.kind == "sync" else "an asyncio pool"
    with pytest.raises(ConfigError, match=holder) as refused:
        driver.other.start(backends.config(2), name)
    assert refused.value.key == "pool.name"
    assert driver.status(name).current_size == 2
    assert driver.call(name=name) == b"x"


def test_asking_the_other_kind_s_api_says_which_kind_runs_the_name(
    driver: Driver, backends: Backends
) -> None:
    """The other kind's API asked about this pool raises PoolNotFoundError saying which
    kind runs it (.running), never "no pool of this name"; its stop refuses to do
    nothing silently; status answers from both APIs alike."""
    backends.one()
    name = driver.start(backends.config(2), "mine")
    driver.await_ready(min_ready=2)
    other = driver.other
    for use in (lambda: other.get_channel(name), lambda: other.scale_up(1, name)):
        with pytest.raises(PoolNotFoundError) as raised:
            use()
        assert raised.value.running == driver.kind
    with pytest.raises(PoolNotFoundError):
        other.stop(name)
    assert driver.running(name)
    assert grpcpool.status(name) == grpcpool.aio.status(name)
    assert other.status(name).pool_name == name


def test_a_stopped_pool_s_name_is_free_for_either_kind(driver: Driver, backends: Backends) -> None:
    """Once a pool stops its name can be taken by a pool of the other kind, which then
    serves under it."""
    backends.one()
    name = driver.start(backends.config(1), "handed-on")
    driver.await_ready()
    driver.stop(name)
    driver.other.start(backends.config(1), name)
    driver.other.await_ready(name=name)
    assert driver.other.call(name=name) == b"x"


def test_two_pools_of_one_kind_each_reach_their_own_backend(
    driver: Driver, backends: Backends
) -> None:
    """Two named pools side by side route every call to their own backend."""
    first, second = backends.start(2)
    driver.start(backends.config(2, endpoint={"host": first.host}), "one")
    driver.start(backends.config(2, endpoint={"host": second.host}), "two")
    driver.await_ready(min_ready=2, name="one")
    driver.await_ready(min_ready=2, name="two")
    for _ in range(5):
        driver.call(name="one")
    for _ in range(3):
        driver.call(name="two")
    assert (first.calls, second.calls) == (5, 3)


@pytest.mark.parametrize("bad", ["", "x" * 129, 42], ids=["empty", "too-long", "not-a-str"])
def test_a_bad_pool_name_is_refused_naming_the_key(
    driver: Driver, backends: Backends, bad: Any
) -> None:
    """A pool name that is not a str of 1 to 128 characters is refused at start with
    ConfigError on pool.name; nothing starts."""
    backends.one()
    with pytest.raises(ConfigError) as refused:
        driver.start(backends.config(1), bad)
    assert refused.value.key == "pool.name"


def test_something_that_is_not_a_config_is_refused(driver: Driver) -> None:
    """Starting a pool from a dict instead of a grpcpool.Config raises TypeError and
    leaves the name free."""
    config: Any = {"endpoint": {"host": "127.0.0.2", "port": 1}}
    with pytest.raises(TypeError, match="Config"):
        driver.start(config, "untyped")
    assert not driver.running("untyped")


def test_a_pool_without_a_name_is_named_by_its_config(driver: Driver, backends: Backends) -> None:
    """Started without a name, a pool takes config.pool.name; without that, "default"."""
    backends.one()
    named = driver.start(backends.config(1, pool={"name": "from-config"}), None)
    assert named == "from-config"
    unnamed = driver.start(backends.config(1), None)
    assert unnamed == "default"
    driver.await_ready(name="from-config")
    driver.await_ready(name="default")
    assert driver.status("default").pool_name == "default"
