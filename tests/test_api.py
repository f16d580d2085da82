"""The module API and PoolProxy beyond the happy path: waits, stops, interpreter exit."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from typing import Any

import pykka
import pytest

import grpcpool
from grpcpool import PoolSpec, Supervisor
from grpcpool.actors._entry import attach, claim, release
from grpcpool.api import lookup
from grpcpool.core._view import empty_view
from grpcpool.errors import (
    NotConnectedError,
    PoolNotFoundError,
)
from tests.pools import free_port, loopback_config, start_pool
from tests.servers import EchoServer
from tests.waiting import has_waiters, wait_for


def test_a_process_that_never_stops_its_pools_still_exits(echo_server: EchoServer) -> None:
    """Pools left running at interpreter exit are stopped, so the process ends."""
    script = f"""
import grpcpool
from grpcpool import Config, PoolSpec, Supervisor
config = Config.local(host="127.0.0.1", port={echo_server.port}, pool_size=2)
grpcpool.start(config, name="left-running")
Supervisor.start(children=[PoolSpec(config, name="also-left")])
grpcpool.await_ready("left-running", timeout=5, min_ready=2)
grpcpool.await_ready("also-left", timeout=5, min_ready=2)
print("done")
"""
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, "GRPC_VERBOSITY": "ERROR"},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "done"


def test_pools_left_running_are_stopped_not_dropped_at_exit(echo_server: EchoServer) -> None:
    """Pool actors run on daemon threads, yet pools left running are stopped in order
    when the main thread ends: by the time atexit handlers run, every actor has
    stopped and every channel is closed."""
    script = f"""
import atexit
import pykka
import grpcpool
from grpcpool import Config, PoolSpec, Supervisor
from grpcpool.connection._channel import open_channel_count

def report():
    print("at exit:", len(pykka.ActorRegistry.get_all()), "actors,",
          open_channel_count(), "channels", flush=True)

atexit.register(report)
config = Config.local(host="127.0.0.1", port={echo_server.port}, pool_size=2)
grpcpool.start(config, name="left-running")
Supervisor.start(children=[PoolSpec(config, name="also-left")])
grpcpool.await_ready("left-running", timeout=5, min_ready=2)
grpcpool.await_ready("also-left", timeout=5, min_ready=2)
print("open:", open_channel_count(), "channels", flush=True)
"""
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, "GRPC_VERBOSITY": "ERROR"},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["open: 4 channels", "at exit: 0 actors, 0 channels"]


def test_await_ready_ends_when_the_pool_is_stopped_for_good(
    supervisors: list[pykka.ActorRef[Any]],
) -> None:
    """A waiter on a pool that is stopped (not restarted) gets PoolNotFoundError at once."""
    supervisors.append(
        Supervisor.start(children=[PoolSpec(loopback_config(free_port()), name="vanishing")])
    )
    outcome: list[BaseException] = []

    def wait() -> None:
        try:
            grpcpool.await_ready("vanishing", timeout=30)
        except BaseException as error:  # recorded for the assertion below
            outcome.append(error)

    entry = lookup("vanishing")
    waiter = threading.Thread(target=wait)
    waiter.start()
    wait_for(lambda: has_waiters(entry.changed))  # the waiter is blocked in await_ready
    stopped = time.monotonic()
    grpcpool.stop("vanishing")
    waiter.join(10)
    assert not waiter.is_alive()
    assert time.monotonic() - stopped < 5
    assert len(outcome) == 1 and isinstance(outcome[0], PoolNotFoundError)


def test_proxy_await_ready_honours_the_get_timeout(
    supervisors: list[pykka.ActorRef[Any]],
) -> None:
    """await_ready(timeout=30).get(timeout=0.2) raises pykka.Timeout after about 0.2 s."""
    proxy = start_pool(supervisors, loopback_config(free_port()), "slowpoke")
    future = proxy.await_ready(timeout=30)
    started = time.monotonic()
    with pytest.raises(pykka.Timeout):
        future.get(timeout=0.2)
    assert time.monotonic() - started < 5
    with pytest.raises(pykka.Timeout):  # not cached: the caller may wait again
        future.get(timeout=0.1)
    with pytest.raises(ValueError, match="finite"):
        proxy.await_ready(timeout=float("inf")).get()
    with pytest.raises(ValueError, match="finite"):
        grpcpool.await_ready("slowpoke", timeout=float("nan"))


def test_stop_reaches_a_crashed_pool_awaiting_its_restart() -> None:
    """stop(name) on a crashed pool still in the table asks its parent and removes it."""
    parent = Supervisor.start()
    owner = Supervisor.start()
    entry = claim(
        "crashed",
        loopback_config(free_port()),
        token=object(),
        parent=parent,
        child_id="pool:crashed",
    )
    try:
        attach(entry, owner)
        owner.stop()
        # As a crashed PoolSupervisor's registry leaves it: nothing handed out.
        entry.publish(empty_view("crashed", 2, "restarting"))
        assert lookup("crashed") is entry
        with pytest.raises(NotConnectedError, match="restarting"):
            grpcpool.get_channel("crashed")
        grpcpool.stop("crashed")
        with pytest.raises(PoolNotFoundError):
            grpcpool.get_channel("crashed")
        assert entry.ended is not None
    finally:
        parent.stop()
        release(entry, "test over")
