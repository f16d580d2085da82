"""A pool over many backends: spread, following the resolver, refreshing by age, TLS.

Against real grpcio servers sharing one port on several loopback addresses
(127.0.0.1, 127.0.0.2, ... are all loopback on Linux), with a resolver the
test controls (:class:`Answer`), :func:`grpcpool.static_resolver` or the
system's. Each server counts the calls it served, so a spread is seen where
the calls land, not only in ``status()``. Calls go through
:func:`grpcpool.channel`, as user code makes them.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from typing import Any

import grpc
import pykka
import pytest

import grpcpool
from grpcpool import Config, ConfigError, PoolTimeoutError, WorkerStatus
from tests.certs import Pem, make_ca, make_server_cert
from tests.events import EventLog
from tests.pools import start_pool
from tests.servers import EchoServer, EchoStub
from tests.waiting import wait_for, wait_until

# Quick reconnects, so that a test waits on the pool rather than on its backoff.
QUICK: dict[str, Any] = {"backoff_min": 0.05, "backoff_max": 0.5, "connect_timeout": 2.0}
HOSTS = ("127.0.0.1", "127.0.0.2", "127.0.0.3", "127.0.0.4")
RESOLVED = "pool.resolved"
REFRESHED = "channel.refreshed"
WARNING_TEXT = "keeping the last good answer"


class Answer:
    """A resolver whose answer the test sets: a list, an exception, or garbage.

    Thread-safe: the pool calls it on its own threads while the test changes it.

    Attributes:
        calls: How many times the pool asked.
    """

    def __init__(self, addresses: Sequence[str]) -> None:
        self._lock = threading.Lock()
        self._addresses = list(addresses)
        self._error: Exception | None = None
        self._garbage: list[object] = []
        self.calls = 0

    def __call__(self, host: str, port: int) -> object:
        with self._lock:
            self.calls += 1
            if self._error is not None:
                raise self._error
            if self._garbage:
                return self._garbage[self.calls % len(self._garbage)]
            return list(self._addresses)

    def answer(self, addresses: Sequence[str]) -> None:
        """Answers ``addresses`` from now on (and stops failing)."""
        with self._lock:
            self._addresses = list(addresses)
            self._error = None
            self._garbage = []

    def fail(self, error: Exception) -> None:
        """Raises ``error`` from now on."""
        with self._lock:
            self._error = error

    def garbage(self, answers: Sequence[object]) -> None:
        """Returns these (malformed) answers in turn from now on."""
        with self._lock:
            self._garbage = list(answers)


class Callers:
    """Threads calling through ``grpcpool.channel(name)`` until stopped, and a sampler.

    The sampler reads ``status().current_size`` every few milliseconds: a
    measurement of the lowest ready count while the callers ran, bounded by
    ``limit`` seconds.

    Attributes:
        ok: Calls that succeeded.
        failures: One line per failed call (code and details).
        min_ready: The lowest ready count sampled.
    """

    def __init__(self, name: str, count: int, *, limit: float = 30.0) -> None:
        self.name = name
        self.ok = 0
        self.failures: list[str] = []
        self.min_ready: int | None = None
        self.samples = 0
        self._limit = limit
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._call, name=f"caller-{i}") for i in range(count)
        ]
        self._threads.append(threading.Thread(target=self._sample, name="ready-sampler"))

    def __enter__(self) -> Callers:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(10)

    def _call(self) -> None:
        channel = grpcpool.channel(self.name)
        stub = EchoStub(channel)
        deadline = time.monotonic() + self._limit
        try:
            while not self._stop.is_set() and time.monotonic() < deadline:
                try:
                    stub.Unary(b"ping", timeout=5)
                except grpc.RpcError as error:
                    with self._lock:
                        self.failures.append(f"{error.code()}: {error.details()}")
                else:
                    with self._lock:
                        self.ok += 1
        finally:
            channel.close()

    def _sample(self) -> None:
        deadline = time.monotonic() + self._limit
        while not self._stop.wait(0.005) and time.monotonic() < deadline:
            ready = grpcpool.status(self.name).current_size
            self.samples += 1
            self.min_ready = ready if self.min_ready is None else min(self.min_ready, ready)


# --- helpers -------------------------------------------------------------------------


@pytest.fixture
def backends() -> Iterator[list[EchoServer]]:
    """Four echo servers on 127.0.0.1 .. 127.0.0.4, all on the same port."""
    servers = [EchoServer(host=HOSTS[0])]
    try:
        servers.extend(EchoServer(servers[0].port, host=host) for host in HOSTS[1:])
        yield servers
    finally:
        for server in servers:
            server.stop()


def addresses(servers: Sequence[EchoServer]) -> list[str]:
    return [f"{server.host}:{server.port}" for server in servers]


def many_config(
    port: int,
    size: int,
    resolver: Any,
    *,
    host: str = "kv.test",
    resolve_interval: float | None = 0.3,
    endpoint: dict[str, Any] | None = None,
    **connection: Any,
) -> Config:
    """A pool of ``size`` on ``host:port`` with ``resolver``, quick reconnects."""
    return Config.new(
        endpoint={
            "type": "local",
            "host": host,
            "port": port,
            "resolver": resolver,
            "resolve_interval": resolve_interval,
            **(endpoint or {}),
        },
        pool={"size": size},
        connection={**QUICK, **connection},
    )


def workers(name: str) -> tuple[WorkerStatus, ...]:
    return grpcpool.status(name).workers


def spread(name: str) -> Counter[str | None]:
    """How many ready workers each address has."""
    return Counter(w.address for w in workers(name) if w.state == "ready")


def settled(name: str, size: int) -> bool:
    """All ``size`` workers ready, and no replacement under way."""
    found = workers(name)
    return len(found) == size and all(w.state == "ready" for w in found)


def is_even(counts: Counter[str | None], over: Sequence[str], size: int) -> bool:
    """Every address of ``over`` holds size // n or size // n + 1 ready workers, no other does."""
    if set(counts) != set(over) or sum(counts.values()) != size:
        return False
    return max(counts.values()) - min(counts.values()) <= 1


def call_n(name: str, count: int) -> None:
    channel = grpcpool.channel(name)
    try:
        stub = EchoStub(channel)
        for i in range(count):
            assert stub.Unary(b"n%d" % i, timeout=5) == b"n%d" % i
    finally:
        channel.close()


def calls_of(servers: Sequence[EchoServer]) -> list[int]:
    return [server.calls for server in servers]


# --- spreading --------------------------------------------------------------------------


def test_pool_of_nine_spreads_three_per_address_and_calls_follow(
    backends: list[EchoServer], supervisors: list[pykka.ActorRef[Any]]
) -> None:
    """Nine connections over three resolved addresses sit 3/3/3, and 90 calls land 30/30/30."""
    three = backends[:3]
    answer = Answer(addresses(three))
    start_pool(supervisors, many_config(three[0].port, 9, answer), "spread")
    grpcpool.await_ready("spread", timeout=10, min_ready=9)
    assert spread("spread") == Counter({a: 3 for a in addresses(three)})
    assert all(w.peer == w.address for w in workers("spread"))
    before = calls_of(three)
    call_n("spread", 90)
    served = [after - was for after, was in zip(calls_of(three), before, strict=True)]
    assert served == [30, 30, 30]
    assert backends[3].calls == 0
    # Each server saw its calls from three connections (three client ports).
    for server in three:
        assert len(set(server.peers)) == 3


def test_static_resolver_spreads_evenly_and_a_small_pool_uses_distinct_addresses(
    backends: list[EchoServer], supervisors: list[pykka.ActorRef[Any]]
) -> None:
    """static_resolver gives the 3/3/3 spread; a pool of 2 over 4 addresses uses 2 of them."""
    three = backends[:3]
    port = three[0].port
    start_pool(
        supervisors,
        many_config(port, 9, grpcpool.static_resolver(addresses(three))),
        "static",
    )
    grpcpool.await_ready("static", timeout=10, min_ready=9)
    assert spread("static") == Counter({a: 3 for a in addresses(three)})
    before = calls_of(three)
    call_n("static", 90)
    assert [a - b for a, b in zip(calls_of(three), before, strict=True)] == [30, 30, 30]

    start_pool(
        supervisors,
        many_config(port, 2, grpcpool.static_resolver(addresses(backends))),
        "small",
    )
    grpcpool.await_ready("small", timeout=10, min_ready=2)
    used = spread("small")
    assert len(used) == 2
    assert set(used) <= set(addresses(backends))
    assert sorted(used.values()) == [1, 1]


def test_system_resolver_connects_to_what_localhost_resolves_to(
    supervisors: list[pykka.ActorRef[Any]],
) -> None:
    """Host "localhost" with the default resolver reaches a server on 127.0.0.1; workers sit on
    the addresses getaddrinfo gives, and on [::1] too (with a server there) if it is listed."""
    server = EchoServer(host="127.0.0.1")
    v6: EchoServer | None = None
    try:
        port = server.port
        listed = {
            info[4][0]
            for info in socket.getaddrinfo("localhost", port, type=socket.SOCK_STREAM)
            if info[0] in (socket.AF_INET, socket.AF_INET6)
        }
        assert "127.0.0.1" in listed
        served = {f"127.0.0.1:{port}"}
        if "::1" in listed:
            try:
                v6 = EchoServer(port, host="[::1]")
            except RuntimeError:
                pytest.skip("localhost resolves to ::1 too, but no server can bind [::1] here")
            served.add(f"[::1]:{port}")
        unserved = listed - {"127.0.0.1", "::1"}
        if unserved:
            pytest.skip(f"localhost also resolves to {sorted(unserved)}, which no server serves")
        config = Config.new(
            endpoint={"type": "local", "host": "localhost", "port": port},
            pool={"size": 4},
            connection=QUICK,
        )
        assert config.endpoint.resolver is None
        start_pool(supervisors, config, "localhost")
        grpcpool.await_ready("localhost", timeout=10, min_ready=4)
        wait_for(lambda: set(spread("localhost")) == served, timeout=10)
        assert sum(spread("localhost").values()) == 4
        assert {w.address for w in workers("localhost")} == set(
            grpcpool.system_resolver("localhost", port)
        )
        call_n("localhost", 8)
        assert server.calls + (v6.calls if v6 is not None else 0) == 8
        if v6 is not None:
            assert spread("localhost") == Counter({a: 2 for a in served})
            assert server.calls == 4 and v6.calls == 4
    finally:
        for pool_supervisor in reversed(supervisors):
            pool_supervisor.stop()
        supervisors.clear()
        if v6 is not None:
            v6.stop()
        server.stop()


# --- following the resolver --------------------------------------------------------------


def test_new_address_gets_connections_without_a_failed_call_or_lost_capacity(
    backends: list[EchoServer], supervisors: list[pykka.ActorRef[Any]], events: EventLog
) -> None:
    """A 4th address in the answer: resolved(added=[it]), rebalance refreshes, an even spread
    with the 4th serving, while 4 callers see no failure and the ready count never dips."""
    answer = Answer(addresses(backends[:3]))
    start_pool(supervisors, many_config(backends[0].port, 9, answer), "grow")
    grpcpool.await_ready("grow", timeout=10, min_ready=9)
    fourth = addresses(backends)[3]
    with Callers("grow", 4) as callers:
        wait_for(lambda: callers.ok >= 20, timeout=10)
        answer.answer(addresses(backends))
        wait_for(lambda: any(m["added"] == [fourth] for _, _, m in events.of(RESOLVED)), 10)
        wait_for(
            lambda: settled("grow", 9) and is_even(spread("grow"), addresses(backends), 9),
            timeout=20,
        )
        wait_for(lambda: backends[3].calls >= 10, timeout=10)
    assert callers.failures == []
    assert callers.ok > 0
    assert callers.samples > 0
    assert callers.min_ready is not None and callers.min_ready >= 9
    added = [m for _, _, m in events.of(RESOLVED) if m["added"] == [fourth]]
    assert len(added) == 1 and added[0]["removed"] == []
    rebalances = [m for _, _, m in events.of(REFRESHED) if m["reason"] == "rebalance"]
    assert len(rebalances) >= 2
    assert all(m["pool_name"] == "grow" for m in rebalances)
    assert {m["address"] for m in rebalances} == {fourth}
    assert spread("grow")[fourth] == 2


def test_vanished_address_loses_its_connections_before_its_server_stops(
    backends: list[EchoServer], supervisors: list[pykka.ActorRef[Any]], events: EventLog
) -> None:
    """An address gone from the answer: its connections move to the others while its server
    still serves, no call fails, and only then is the server stopped."""
    three = backends[:3]
    answer = Answer(addresses(three))
    start_pool(supervisors, many_config(three[0].port, 6, answer), "shrink")
    grpcpool.await_ready("shrink", timeout=10, min_ready=6)
    gone, kept = addresses(three)[2], addresses(three)[:2]
    with Callers("shrink", 4) as callers:
        wait_for(lambda: three[2].calls >= 10, timeout=10)
        at_change = three[2].calls
        answer.answer(kept)
        # Still serving (it was only dropped from the answer) while its workers move.
        wait_for(lambda: three[2].calls > at_change, timeout=10)
        wait_for(lambda: any(m["removed"] == [gone] for _, _, m in events.of(RESOLVED)), 10)
        wait_for(
            lambda: settled("shrink", 6) and spread("shrink") == Counter({a: 3 for a in kept}),
            timeout=20,
        )
        assert all(w.address != gone for w in workers("shrink"))
        calls_before = [s.calls for s in three[:2]]
        wait_for(lambda: all(s.calls > c for s, c in zip(three[:2], calls_before, strict=True)))
    assert callers.failures == []
    assert callers.min_ready is not None and callers.min_ready >= 6
    moved = [m for _, _, m in events.of(REFRESHED) if m["reason"] == "rebalance"]
    assert len(moved) == 2
    assert {m["address"] for m in moved} <= set(kept)
    # Nothing goes to the vanished address any more; now its server can go.
    served_by_gone = three[2].calls
    call_n("shrink", 12)
    assert three[2].calls == served_by_gone
    three[2].stop()
    call_n("shrink", 12)
    assert settled("shrink", 6)


def test_failing_resolver_keeps_the_last_good_answer_and_warns_once(
    backends: list[EchoServer],
    supervisors: list[pykka.ActorRef[Any]],
    events: EventLog,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A resolver that starts raising: the spread stays, calls work, one WARNING "keeping the
    last good answer"; once it answers again, pool.resolved fires again."""
    caplog.set_level(logging.INFO, logger="grpcpool")
    three = backends[:3]
    answer = Answer(addresses(three))
    start_pool(supervisors, many_config(three[0].port, 6, answer, resolve_interval=0.2), "flaky")
    grpcpool.await_ready("flaky", timeout=10, min_ready=6)
    wait_for(lambda: len(events.of(RESOLVED)) >= 1, timeout=10)
    before = spread("flaky")
    assert before == Counter({a: 2 for a in addresses(three)})

    def warnings() -> list[logging.LogRecord]:
        return [
            r
            for r in caplog.records
            if r.levelno == logging.WARNING and WARNING_TEXT in r.getMessage()
        ]

    answer.fail(OSError("name server unreachable"))
    wait_for(lambda: len(warnings()) >= 1, timeout=10)
    resolved_while_failing = len(events.of(RESOLVED))
    asked = answer.calls
    wait_for(lambda: answer.calls >= asked + 3, timeout=10)
    assert len(events.of(RESOLVED)) == resolved_while_failing
    assert len(warnings()) == 1
    assert "OSError: name server unreachable" in warnings()[0].getMessage()
    assert spread("flaky") == before
    assert settled("flaky", 6)
    call_n("flaky", 12)

    answer.answer(addresses(three))
    wait_for(lambda: len(events.of(RESOLVED)) > resolved_while_failing, timeout=10)
    _, measurements, metadata = events.of(RESOLVED)[-1]
    assert measurements["addresses"] == 3
    assert metadata["added"] == [] and metadata["removed"] == []
    assert len(warnings()) == 1
    assert any("resolving works again" in r.getMessage() for r in caplog.records)
    assert spread("flaky") == before


def test_without_interval_only_a_failing_connection_triggers_resolution(
    backends: list[EchoServer], supervisors: list[pykka.ActorRef[Any]], events: EventLog
) -> None:
    """resolve_interval=None: the start's resolution is reported once (every address added)
    and nothing follows on a timer; a killed server makes its worker reconnect, and that
    triggers one resolution, seen as pool.resolved."""
    two = backends[:2]
    answer = Answer(addresses(two))
    config = many_config(two[0].port, 4, answer, resolve_interval=None)
    start_pool(supervisors, config, "quiet")
    grpcpool.await_ready("quiet", timeout=10, min_ready=4)
    wait_for(lambda: events.of(RESOLVED), timeout=5)
    _, measurements, metadata = events.of(RESOLVED)[0]
    assert measurements["addresses"] == 2
    assert metadata["added"] == sorted(addresses(two)) and metadata["removed"] == []
    assert not wait_until(lambda: len(events.of(RESOLVED)) > 1, timeout=1.2)
    assert answer.calls == 1

    two[1].kill()
    wait_for(lambda: len(events.of(RESOLVED)) > 1, timeout=10)
    _, measurements, metadata = events.of(RESOLVED)[1]
    assert measurements["addresses"] == 2
    assert metadata["pool_name"] == "quiet"
    assert metadata["added"] == [] and metadata["removed"] == []
    assert events.of("channel.reconnect_scheduled")
    assert answer.calls >= 2
    # At most one resolution per second however many workers reconnect.
    assert len(events.of(RESOLVED)) <= 3


def test_max_age_refreshes_each_connection_without_lost_calls(
    backends: list[EchoServer], supervisors: list[pykka.ActorRef[Any]], events: EventLog
) -> None:
    """max_age 1.0: connections are replaced at about 1 s of age (reason "max_age") while 8
    callers run for 3 s, with no failed call and never fewer than 4 ready."""
    two = backends[:2]
    config = many_config(
        two[0].port,
        4,
        grpcpool.static_resolver(addresses(two)),
        resolve_interval=None,
        max_age=1.0,
        drain_timeout=0.5,
    )
    start_pool(supervisors, config, "aging")
    grpcpool.await_ready("aging", timeout=10, min_ready=4)
    with Callers("aging", 8, limit=10) as callers:
        assert not wait_until(lambda: callers.failures, timeout=3.0)
    assert callers.failures == []
    assert callers.ok > 0
    assert callers.min_ready is not None and callers.min_ready >= 4
    refreshed = [(m, md) for _, m, md in events.of(REFRESHED)]
    assert refreshed, "no connection was refreshed"
    assert all(md["reason"] == "max_age" for _, md in refreshed)
    ages = [m["age"] for m, _ in refreshed]
    # Never early: no connection is refreshed before 0.9 * max_age.
    assert all(age >= 0.9 for age in ages), ages
    # On time for several workers. The balancer makes one move at a time, so
    # connections that became ready together queue behind each other: the
    # last of the four starting ones may wait for three moves (each a connect
    # and a health check, slow on a busy machine); allow up to a second each.
    on_time = {md["worker_id"] for m, md in refreshed if m["age"] <= 1.5}
    assert len(on_time) >= 2, ages
    assert all(age <= 1.1 + (4 - 1) * 1.0 for age in ages), ages
    assert len({md["worker_id"] for _, md in refreshed}) >= 4, ages
    assert {md["address"] for _, md in refreshed} <= set(addresses(two))


# --- TLS -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def authority() -> tuple[Pem, Pem]:
    """A CA and a server certificate it signed for localhost (and 127.0.0.1, not 127.0.0.2)."""
    ca, ca_key = make_ca()
    return ca, make_server_cert(ca, ca_key)


def test_tls_checks_the_certificate_against_the_host_not_the_address(
    authority: tuple[Pem, Pem], supervisors: list[pykka.ActorRef[Any]]
) -> None:
    """A TLS server on 127.0.0.2 with a certificate for "localhost": host "localhost" resolved to
    127.0.0.2 connects; host "kv.test" on the same address never gets ready (verification is on)."""
    ca, server_pem = authority
    credentials = grpc.ssl_server_credentials([(server_pem.private_key, server_pem.certificate)])
    server = EchoServer(host="127.0.0.2", credentials=credentials)
    try:
        resolver = grpcpool.static_resolver([f"127.0.0.2:{server.port}"])
        ssl = {"ssl": {"root_certificates": ca.certificate}}
        start_pool(
            supervisors,
            many_config(server.port, 2, resolver, host="localhost", endpoint=ssl),
            "tls-right",
        )
        grpcpool.await_ready("tls-right", timeout=10, min_ready=2)
        assert {w.address for w in workers("tls-right")} == {f"127.0.0.2:{server.port}"}
        call_n("tls-right", 4)
        assert server.calls == 4

        start_pool(
            supervisors,
            many_config(server.port, 2, resolver, host="kv.test", endpoint=ssl),
            "tls-wrong",
        )
        with pytest.raises(PoolTimeoutError):
            grpcpool.await_ready("tls-wrong", timeout=3, min_ready=1)
        assert grpcpool.status("tls-wrong").current_size == 0
        wrong = workers("tls-wrong")
        assert {w.address for w in wrong} == {f"127.0.0.2:{server.port}"}
        assert any("Hostname Verification" in (w.last_error or "") for w in wrong), wrong
        assert server.calls == 4
    finally:
        for pool_supervisor in reversed(supervisors):
            pool_supervisor.stop()
        supervisors.clear()
        server.stop()


# --- configuration ---------------------------------------------------------------------------


def test_bad_resolver_settings_are_config_errors_naming_the_key() -> None:
    """A resolver that is not callable, a resolve_interval <= 0 or too large, and a max_age
    under 0.5 s are ConfigErrors naming their key."""
    endpoint = {"type": "local", "host": "kv.test", "port": 443}
    with pytest.raises(ConfigError) as caught:
        Config.new(endpoint={**endpoint, "resolver": ["10.0.0.1:443"]})
    assert caught.value.key == "endpoint.resolver"
    assert "endpoint.resolver" in str(caught.value)
    for interval in (0, 0.0, -1.0, 1e9, float("inf")):
        with pytest.raises(ConfigError) as caught:
            Config.new(endpoint={**endpoint, "resolve_interval": interval})
        assert caught.value.key == "endpoint.resolve_interval", interval
    with pytest.raises(ConfigError) as caught:
        Config.new(endpoint=endpoint, connection={"max_age": 0.1})
    assert caught.value.key == "connection.max_age"
    assert "connection.max_age" in str(caught.value)


GARBAGE: list[object] = ["not-an-address", [5], ""]


def test_garbage_answers_keep_the_last_good_answer(
    backends: list[EchoServer],
    supervisors: list[pykka.ActorRef[Any]],
    events: EventLog,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A resolver that turns to garbage ("not-an-address", [5], "") leaves the pool on its last
    good answer, serving calls, with one warning and nothing raised into callers."""
    caplog.set_level(logging.WARNING, logger="grpcpool")
    two = backends[:2]
    answer = Answer(addresses(two))
    start_pool(supervisors, many_config(two[0].port, 4, answer, resolve_interval=0.2), "junk")
    grpcpool.await_ready("junk", timeout=10, min_ready=4)
    before = spread("junk")
    assert before == Counter({a: 2 for a in addresses(two)})
    answer.garbage(GARBAGE)
    wait_for(lambda: any(WARNING_TEXT in r.getMessage() for r in caplog.records), 10)
    resolved = len(events.of(RESOLVED))
    asked = answer.calls
    wait_for(lambda: answer.calls >= asked + len(GARBAGE), timeout=10)
    call_n("junk", 8)
    assert len(events.of(RESOLVED)) == resolved
    assert spread("junk") == before and settled("junk", 4)
    assert sum(WARNING_TEXT in r.getMessage() for r in caplog.records) == 1


def test_garbage_from_the_start_keeps_asking_the_pools_own_resolver(
    supervisors: list[pykka.ActorRef[Any]], caplog: pytest.LogCaptureFixture
) -> None:
    """A resolver that answers nothing usable from the start: the pool never falls back to
    host:port (another resolver), says why in status and the log, keeps asking its own
    resolver, and connects to its first good answer."""
    caplog.set_level(logging.WARNING, logger="grpcpool")
    server = EchoServer(host="127.0.0.2")
    try:
        answer = Answer([])
        answer.garbage(GARBAGE)
        # host:port itself would work: the pool must not use it.
        config = many_config(server.port, 2, answer, host="127.0.0.2", resolve_interval=None)
        start_pool(supervisors, config, "junk-start")
        wait_for(lambda: answer.calls >= 3, timeout=10)  # asked again, with backoff
        status = grpcpool.status("junk-start")
        assert status.current_size == 0 and server.calls == 0
        assert status.resolver_error is not None and "ResolveError" in status.resolver_error
        assert all(w.address is None and w.state == "backoff" for w in status.workers)
        assert any("no address to connect to yet" in r.getMessage() for r in caplog.records)
        answer.answer([f"127.0.0.2:{server.port}"])
        grpcpool.await_ready("junk-start", timeout=15, min_ready=2)
        assert {w.address for w in workers("junk-start")} == {f"127.0.0.2:{server.port}"}
        assert grpcpool.status("junk-start").resolver_error is None
        call_n("junk-start", 6)
        assert server.calls == 6
    finally:
        for pool_supervisor in reversed(supervisors):
            pool_supervisor.stop()
        supervisors.clear()
        server.stop()
