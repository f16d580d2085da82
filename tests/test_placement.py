"""Where a pool's connections go when backends fail, heal and restart, and when the resolver
hangs: sync and asyncio pools against real servers on 127.0.0.2 to .4, one port.

* A backend that heals serves again within seconds with default settings
  (the address is tried again after a short backoff, not after a resolution).
* Rolling restarts under ``max_age``: one backend always up, so only calls in
  flight on a killed backend fail, and never for want of a ready connection.
* A resolver that hangs is abandoned after ``endpoint.resolve_timeout`` with
  a WARNING and ``status().resolver_error``; the pool keeps its answer.
* A move's replacement never makes the pool grow past its size.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import pykka
import pytest

import grpcpool
from grpcpool import Config
from grpcpool.aio import Pool
from grpcpool.api import lookup
from grpcpool.errors import PoolCallError
from tests.chaos import Recording, last_address
from tests.pools import free_port, start_pool
from tests.servers import EchoProcess, EchoServer
from tests.waiting import wait_for

HOSTS = ("127.0.0.2", "127.0.0.3", "127.0.0.4")
# A backend counts as healthy this long after it listens again.
HEALTHY_FOR = 1.0
ECHO = "/test.Echo/Unary"


class Backends:
    """Echo servers on HOSTS sharing one port; each can be killed and started again."""

    def __init__(self, count: int, *, processes: bool = False) -> None:
        self.port = free_port()
        self.hosts = HOSTS[:count]
        # In their own processes, the servers do not share the GIL with the
        # client (an asyncio pool's loop is one busy thread).
        self._server_of: Callable[..., Any] = EchoProcess if processes else EchoServer
        self.servers = [self._server_of(self.port, host=host) for host in self.hosts]
        self.addresses = [f"{host}:{self.port}" for host in self.hosts]
        # Address -> (began, done) of each kill: calls the server accepts
        # while it is being stopped are cut too.
        self.killed_at: dict[str, list[tuple[float, float]]] = {a: [] for a in self.addresses}

    def kill(self, index: int, noticed: Callable[[str], bool] | None = None) -> None:
        """Kills a server; the kill lasts until ``noticed(address)`` says the client saw it.

        A call the client writes on a connection whose reset it has not read
        yet may have been sent, so the pool may not send it again; such calls
        fail with the kill.
        """
        address = self.addresses[index]
        began = time.monotonic()
        server = self.servers[index]
        server.kill()
        server.stop()
        if noticed is not None:
            wait_for(lambda: noticed(address), timeout=10)
        self.killed_at[address].append((began, time.monotonic()))

    def restart(self, index: int) -> float:
        self.servers[index] = self._server_of(self.port, host=self.hosts[index])
        restarted = time.monotonic()
        spans = self.killed_at[self.addresses[index]]
        if spans:  # the backend was down from its kill until now
            spans[-1] = (spans[-1][0], restarted)
        return restarted

    def close(self) -> None:
        for server in self.servers:
            server.stop()


@pytest.fixture
def three() -> Iterator[Backends]:
    backends = Backends(3)
    try:
        yield backends
    finally:
        backends.close()


@pytest.fixture
def two() -> Iterator[Backends]:
    backends = Backends(2)
    try:
        yield backends
    finally:
        backends.close()


@pytest.fixture
def two_processes() -> Iterator[Backends]:
    backends = Backends(2, processes=True)
    try:
        yield backends
    finally:
        backends.close()


def config_over(backends: Backends, size: int, **sections: Any) -> Config:
    endpoint = {
        "type": "local",
        "host": "kv.test",
        "port": backends.port,
        "resolver": grpcpool.static_resolver(backends.addresses),
        **sections.pop("endpoint", {}),
    }
    return Config.new(endpoint=endpoint, pool={"size": size, **sections.pop("pool", {})}, **sections)


def ready_on(status: grpcpool.PoolStatus, address: str) -> int:
    return sum(1 for w in status.workers if w.state == "ready" and w.address == address)


def pause(seconds: float) -> None:
    """Lets a scenario run for ``seconds`` (a fault's length, not a wait for a result)."""
    threading.Event().wait(seconds)


# --- a backend that heals ------------------------------------------------------------------


def test_a_healed_backend_serves_again_within_seconds_with_default_settings(
    supervisors: list[pykka.ActorRef[Any]], three: Backends
) -> None:
    """Default settings, one of three backends down for 4 s: its connections move to the
    others at once (full size again), and after its restart it holds connections again well
    within 10 s, without waiting for a resolution."""
    start_pool(supervisors, config_over(three, 6), "heal")
    grpcpool.await_ready("heal", timeout=15, min_ready=6)
    dead = three.addresses[1]
    three.kill(1)
    wait_for(
        lambda: (s := grpcpool.status("heal")).current_size == 6 and ready_on(s, dead) == 0,
        timeout=10,
    )
    pause(4.0)
    restarted = three.restart(1)
    wait_for(lambda: ready_on(grpcpool.status("heal"), dead) >= 1, timeout=15)
    took = time.monotonic() - restarted
    assert took <= 10.0, f"the healed backend waited {took:.1f}s for a connection"
    wait_for(lambda: ready_on(grpcpool.status("heal"), dead) == 2, timeout=15)


@pytest.mark.asyncio
async def test_a_healed_backend_serves_again_within_seconds_in_an_asyncio_pool(
    three: Backends,
) -> None:
    """The same with an asyncio pool."""
    async with Pool(config_over(three, 6), name="heal-aio") as pool:
        await pool.await_ready(timeout=15, min_ready=6)
        dead = three.addresses[1]
        three.kill(1)
        await _until(
            pool, lambda: pool.status().current_size == 6 and ready_on(pool.status(), dead) == 0
        )
        await asyncio.sleep(4.0)  # the backend stays down this long
        restarted = three.restart(1)
        await _until(pool, lambda: ready_on(pool.status(), dead) >= 1, timeout=15)
        took = time.monotonic() - restarted
        assert took <= 10.0, f"the healed backend waited {took:.1f}s for a connection"


async def _until(pool: Pool, predicate: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        left = deadline - time.monotonic()
        assert left > 0, "timed out"
        await pool.wait_changed(min(left, 0.1))


# --- rolling restarts under max_age ------------------------------------------------------------


def _only_in_flight_failed(
    failures: list[tuple[float, float, str | None, bool]], backends: Backends
) -> None:
    """Each failure was on a backend that was down (from its kill until it listened again)
    within a second before the call or while it ran; calls that found no ready connection
    span at most 0.5 s in all (100 ms steps)."""
    no_ready = {int(start * 10) for start, _, _, none_ready in failures if none_ready}
    assert len(no_ready) <= 5, f"no ready connection for {len(no_ready) / 10:.1f}s"
    for start, end, address, none_ready in failures:
        if none_ready:
            continue
        assert address is not None
        # Faulted: from its kill until it listens again, and healthy only a
        # second after that (the chaos test's rule).
        assert any(
            start - HEALTHY_FOR <= restarted and began <= end
            for began, restarted in backends.killed_at[address]
        ), f"a call on {address} failed while its backend had been healthy for a second"


def _rolling(backends: Backends, rounds: int, status: Callable[[], grpcpool.PoolStatus]) -> None:
    for turn in range(rounds):
        index = turn % 2
        backends.kill(index, lambda address: ready_on(status(), address) == 0)
        pause(1.0)
        backends.restart(index)
        pause(3.0)


def test_rolling_restarts_under_max_age_fail_only_calls_in_flight(
    supervisors: list[pykka.ActorRef[Any]], two: Backends
) -> None:
    """Two backends restarted in turn while max_age (1 s) refreshes every connection: the
    pool is almost never without a ready connection, and no call fails on a backend that
    had been healthy for a second."""
    config = config_over(
        two,
        4,
        pool={"strategy": Recording()},
        connection={"max_age": 1.0, "backoff_min": 0.2, "backoff_max": 1.0, "ping_timeout": 1.0},
    )
    start_pool(supervisors, config, "rolling")
    grpcpool.await_ready("rolling", timeout=15, min_ready=4)
    call = grpcpool.channel("rolling").unary_unary(ECHO)
    failures: list[tuple[float, float, str | None, bool]] = []
    calls = [0]
    stop = threading.Event()

    def caller() -> None:
        while not stop.is_set():
            last_address.set(None)
            start = time.monotonic()
            try:
                call(b"x", timeout=2.0)
                calls[0] += 1
            except grpc.RpcError as error:
                no_ready = isinstance(error, PoolCallError)
                failures.append((start, time.monotonic(), last_address.get(), no_ready))

    threads = [threading.Thread(target=caller) for _ in range(4)]
    for thread in threads:
        thread.start()
    try:
        _rolling(two, 4, lambda: grpcpool.status("rolling"))
    finally:
        stop.set()
        for thread in threads:
            thread.join(10)
    assert calls[0] > 500
    _only_in_flight_failed(failures, two)
    assert lookup("rolling").view.expected_size == 4


@pytest.mark.asyncio
async def test_rolling_restarts_under_max_age_fail_only_calls_in_flight_in_an_asyncio_pool(
    two_processes: Backends,
) -> None:
    """The same with an asyncio pool."""
    config = config_over(
        two_processes,
        4,
        pool={"strategy": Recording()},
        connection={"max_age": 1.0, "backoff_min": 0.2, "backoff_max": 1.0, "ping_timeout": 1.0},
    )
    failures: list[tuple[float, float, str | None, bool]] = []
    calls = [0]
    stopping = asyncio.Event()
    async with Pool(config, name="rolling-aio") as pool:
        await pool.await_ready(timeout=15, min_ready=4)
        call = pool.channel().unary_unary(ECHO)

        async def caller() -> None:
            while not stopping.is_set():
                last_address.set(None)
                start = time.monotonic()
                try:
                    await call(b"x", timeout=2.0)
                    calls[0] += 1
                except grpc.RpcError as error:
                    no_ready = isinstance(error, PoolCallError)
                    failures.append((start, time.monotonic(), last_address.get(), no_ready))

        tasks = [asyncio.create_task(caller()) for _ in range(4)]
        try:
            await asyncio.to_thread(_rolling, two_processes, 4, pool.status)
        finally:
            stopping.set()
            await asyncio.wait(tasks, timeout=10)
        assert pool.status().expected_size == 4
    assert calls[0] > 500
    _only_in_flight_failed(failures, two_processes)


# --- a resolver that hangs ---------------------------------------------------------------------


class Hanging:
    """Answers at first, then hangs until released (a DNS server that went silent)."""

    def __init__(self, addresses: list[str]) -> None:
        self.addresses = addresses
        self.hang = threading.Event()
        self.release = threading.Event()
        self.calls = 0

    def __call__(self, host: str, port: int) -> list[str]:
        self.calls += 1
        if self.hang.is_set():
            self.release.wait(30)
        return list(self.addresses)


def test_a_resolver_that_hangs_is_abandoned_with_a_warning_and_a_status_field(
    supervisors: list[pykka.ActorRef[Any]], two: Backends, caplog: pytest.LogCaptureFixture
) -> None:
    """A resolution past endpoint.resolve_timeout is abandoned: one WARNING, the reason in
    status().resolver_error, the pool keeps serving on its last answer; once the resolver
    answers again the field clears."""
    caplog.set_level(logging.WARNING, logger="grpcpool")
    resolver = Hanging(two.addresses)
    config = config_over(
        two, 2, endpoint={"resolver": resolver, "resolve_interval": 0.2, "resolve_timeout": 0.3}
    )
    start_pool(supervisors, config, "hangs")
    try:
        grpcpool.await_ready("hangs", timeout=15, min_ready=2)
        resolver.hang.set()
        wait_for(lambda: grpcpool.status("hangs").resolver_error is not None, timeout=10)
        problem = grpcpool.status("hangs").resolver_error
        assert problem is not None and "endpoint.resolve_timeout" in problem
        assert sum("endpoint.resolve_timeout" in r.getMessage() for r in caplog.records) == 1
        assert grpcpool.status("hangs").current_size == 2
        grpcpool.channel("hangs").unary_unary(ECHO)(b"x", timeout=5)
        resolver.hang.clear()
        resolver.release.set()
        wait_for(lambda: grpcpool.status("hangs").resolver_error is None, timeout=10)
    finally:
        resolver.release.set()


@pytest.mark.asyncio
async def test_a_resolver_that_hangs_is_abandoned_in_an_asyncio_pool(
    two: Backends, caplog: pytest.LogCaptureFixture
) -> None:
    """The same with an asyncio pool."""
    caplog.set_level(logging.WARNING, logger="grpcpool")
    resolver = Hanging(two.addresses)
    config = config_over(
        two, 2, endpoint={"resolver": resolver, "resolve_interval": 0.2, "resolve_timeout": 0.3}
    )
    try:
        async with Pool(config, name="hangs-aio") as pool:
            await pool.await_ready(timeout=15, min_ready=2)
            resolver.hang.set()
            await _until(pool, lambda: pool.status().resolver_error is not None)
            problem = pool.status().resolver_error
            assert problem is not None and "endpoint.resolve_timeout" in problem
            assert sum("endpoint.resolve_timeout" in r.getMessage() for r in caplog.records) == 1
            assert pool.status().current_size == 2
            resolver.hang.clear()
            resolver.release.set()
            await _until(pool, lambda: pool.status().resolver_error is None)
    finally:
        resolver.release.set()


@pytest.mark.asyncio
async def test_an_asyncio_pool_whose_first_resolution_fails_keeps_asking_its_own_resolver(
    two: Backends,
) -> None:
    """No usable first answer: the workers wait (never host:port), status says why, and the
    first good answer places them."""
    answers: list[Any] = [RuntimeError("registry down")]

    def resolver(host: str, port: int) -> list[str]:
        answer = answers[-1]
        if isinstance(answer, Exception):
            raise answer
        return list(answer)

    config = config_over(
        two, 2, endpoint={"resolver": resolver, "resolve_interval": None, "host": "127.0.0.2"}
    )
    async with Pool(config, name="first-fails-aio") as pool:
        await _until(pool, lambda: pool.status().resolver_error is not None)
        status = pool.status()
        assert status.current_size == 0
        assert all(w.address is None and w.state == "backoff" for w in status.workers)
        assert "registry down" in (status.resolver_error or "")
        answers.append(two.addresses)
        await pool.await_ready(timeout=15, min_ready=2)
        assert {w.address for w in pool.status().workers} <= set(two.addresses)


# --- a move never grows the pool ---------------------------------------------------------------


def test_a_replacement_for_a_worker_already_gone_is_stopped_not_kept(
    supervisors: list[pykka.ActorRef[Any]], two: Backends
) -> None:
    """A move whose replaced worker left meanwhile (scaled down, or itself a given-up
    replacement) ends with its replacement stopped: the pool keeps its size."""
    start_pool(supervisors, config_over(two, 2), "no-growth")
    grpcpool.await_ready("no-growth", timeout=15, min_ready=2)
    owner = lookup("no-growth").owner
    assert owner is not None
    proxy: Any = owner.proxy()
    added = proxy.add_pinned_worker(two.addresses[0]).get(timeout=10)
    proxy.retire_worker("worker-404", added).get(timeout=10)  # no such worker any more
    wait_for(lambda: len(grpcpool.status("no-growth").workers) == 2, timeout=10)
    status = grpcpool.status("no-growth")
    assert status.expected_size == 2
    assert added not in {w.worker_id for w in status.workers}


# --- callers that retry at once ---------------------------------------------------------------


@pytest.mark.asyncio
async def test_an_asyncio_caller_retrying_at_once_does_not_starve_the_loop() -> None:
    """With nothing ready, a caller that retries a failed call at once, never yielding itself,
    still lets the loop run other tasks (the pool's own among them) between its calls."""
    config = Config.new(endpoint={"type": "local", "host": "127.0.0.1", "port": free_port()})
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    async with Pool(config, name="spin-aio") as pool:
        call = pool.channel().unary_unary(ECHO)
        other = asyncio.create_task(ticker())
        try:
            for _ in range(200):
                with pytest.raises(grpc.RpcError):
                    await call(b"x", timeout=1.0)
        finally:
            other.cancel()
            await asyncio.gather(other, return_exceptions=True)
    assert ticks >= 100
