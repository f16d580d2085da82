"""``endpoint.interceptors``: sync interceptors for a sync pool, ``grpc.aio`` ones for an asyncio pool.

The driver hands out interceptors of its own kind (:meth:`Driver.interceptors`)
and :attr:`Driver.other` those of the other kind, so each scenario is the same
for both: the interceptors the pool takes, and the ones it must refuse.
"""

from __future__ import annotations

from collections import Counter

import pytest

from grpcpool.errors import ConfigError
from tests.behaviour.backends import Backends
from tests.behaviour.harness import Driver
from tests.test_interceptors import HEADER

HEALTH_CHECK = "/grpc.health.v1.Health/Check"


def test_interceptors_see_every_call_kind_through_the_pool_channel(
    driver: Driver, backends: Backends
) -> None:
    """Unary, unary-stream, stream-unary and stream-stream calls through the pool channel
    each pass the configured interceptors once, and reach the server with the header
    they add."""
    backend = backends.one()
    seen: Counter[str] = Counter()
    driver.start(backends.config(2, endpoint={"interceptors": driver.interceptors(seen)}))
    driver.await_ready(min_ready=2)
    stub = driver.stub()
    assert stub.unary(b"u") == b"u"
    assert stub.repeat(b"r") == [b"r"] * 3
    assert stub.join([b"j", b"j"]) == b"jj"
    assert stub.chat([b"c"]) == [b"c"]
    methods = ("Unary", "Repeat", "Join", "Chat")
    assert {m: seen[f"/test.Echo/{m}"] for m in methods} == dict.fromkeys(methods, 1)
    assert backend.metadata and all(HEADER in metadata for metadata in backend.metadata)


def test_interceptors_also_wrap_the_channels_get_channel_hands_out(
    driver: Driver, backends: Backends
) -> None:
    """A call on a channel from get_channel passes the configured interceptors too: they
    wrap each of the pool's channels, not only the pool channel."""
    backend = backends.one()
    seen: Counter[str] = Counter()
    driver.start(backends.config(2, endpoint={"interceptors": driver.interceptors(seen)}))
    driver.await_ready(min_ready=2)
    assert driver.call_raw(b"raw") == b"raw"
    assert seen["/test.Echo/Unary"] == 1
    assert HEADER in backend.metadata[-1]


def test_health_checks_pass_through_the_interceptors(driver: Driver, backends: Backends) -> None:
    """The health check that gates each connection goes through the interceptors: two
    connections, at least two Health/Check calls seen."""
    backends.one()
    seen: Counter[str] = Counter()
    driver.start(backends.config(2, endpoint={"interceptors": driver.interceptors(seen)}))
    driver.await_ready(min_ready=2)
    assert seen[HEALTH_CHECK] >= 2


def test_interceptors_of_the_other_kind_are_refused_naming_the_key(
    driver: Driver, backends: Backends
) -> None:
    """A pool given the other kind's interceptors (grpc.aio ones for a sync pool, sync ones
    for an asyncio pool) refuses to start with a ConfigError on endpoint.interceptors,
    and leaves nothing running under its name."""
    backends.one()
    wrong = driver.other.interceptors(Counter())
    config = backends.config(2, endpoint={"interceptors": wrong})
    with pytest.raises(ConfigError) as refused:
        driver.start(config, "refused")
    assert refused.value.key == "endpoint.interceptors"
    assert not driver.running("refused")
