"""The PoolSupervisor's bookkeeping through the public supervision API.

A pool's workers are dynamic children of its PoolSupervisor (a
DynamicSupervisor), and the pool's entry is stable across restarts: these
tests drive both through public calls against a real server.
"""

from __future__ import annotations

import contextlib
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
from grpcpool.actors._balancer import Balancer
from grpcpool.api import lookup
from grpcpool.core._balancing_types import ReplacedGone
from grpcpool.errors import PoolNotFoundError
from tests.events import EventLog
from tests.pools import free_port, loopback_config, start_pool
from tests.servers import EchoServer
from tests.waiting import wait_until


def live_workers() -> list[pykka.ActorRef[Any]]:
    """Every ChannelWorker actor still alive in the process."""
    return [r for r in pykka.ActorRegistry.get_by_class(grpcpool.ChannelWorker) if r.is_alive()]


def crash_workers_until(done: Any, timeout: float) -> None:
    """Tells every live worker a message it does not understand until ``done()``."""
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, "condition not reached"
        for ref in live_workers():
            with contextlib.suppress(pykka.ActorDeadError):
                ref.tell("crash")
        time.sleep(0.02)  # pacing: each round lets the restarts happen


def supervised_workers(owner: pykka.ActorRef[Any]) -> set[str]:
    """URNs of the workers the pool's supervisor lists as its children."""
    return {
        ref.actor_urn
        for child, ref, _ in owner.proxy().which_children().get(timeout=10)
        if child.startswith("worker-") and ref is not None
    }


def test_terminating_a_worker_through_the_public_api_keeps_the_books(
    echo_server: EchoServer, supervisors: list[pykka.ActorRef[Any]]
) -> None:
    """terminate_child("worker-2") on a pool's supervisor lowers the expected size,
    takes its channel out of rotation, leaves no worker unsupervised, and a later
    scale_down stops the right ones."""
    start_pool(supervisors, loopback_config(echo_server.port, size=3), "books")
    grpcpool.await_ready("books", timeout=5, min_ready=3)
    entry = lookup("books")
    owner = entry.owner
    assert owner is not None
    first, _second, third = entry.view.channels  # in worker start order

    owner.proxy().terminate_child("worker-2").get(timeout=10)

    status = grpcpool.status("books")
    assert status.expected_size == 2
    assert wait_until(lambda: len(live_workers()) == 2, timeout=5)
    assert {ref.actor_urn for ref in live_workers()} == supervised_workers(owner)
    assert wait_until(
        lambda: {w.worker_id for w in grpcpool.status("books").workers} == {"worker-1", "worker-3"},
        timeout=5,
    )
    assert wait_until(lambda: entry.view.channels == (first, third), timeout=5)
    assert {grpcpool.get_channel("books") for _ in range(20)} == {first, third}
    assert grpcpool.status("books").status == "healthy"

    assert grpcpool.scale_down("books", 1) == 1
    assert wait_until(lambda: len(live_workers()) == 1, timeout=5)
    assert {ref.actor_urn for ref in live_workers()} == supervised_workers(owner)
    children = [child for child, _, _ in owner.proxy().which_children().get(timeout=10)]
    assert children == ["registry", "worker-1", "telemetry", "balancer"]
    assert wait_until(lambda: entry.view.channels == (first,), timeout=5)
    assert {grpcpool.get_channel("books") for _ in range(10)} == {first}
    with pytest.raises(ValueError, match="at least 1"):
        grpcpool.scale_down("books", 1)


def test_a_process_that_terminated_a_worker_by_hand_exits_after_stopping(
    echo_server: EchoServer,
) -> None:
    """After terminate_child("worker-2") and scale_down, sup.stop() leaves no actor
    and no open channel behind, and the process exits."""
    script = f"""
import pykka
import grpcpool
from grpcpool import Config, PoolSpec, Supervisor
from grpcpool.connection._channel import open_channel_count
from grpcpool.actors._balancer import Balancer
from grpcpool.api import lookup
from grpcpool.core._balancing_types import ReplacedGone
config = Config.local(host="127.0.0.1", port={echo_server.port}, pool_size=3)
sup = Supervisor.start(children=[PoolSpec(config, name="books")])
grpcpool.await_ready("books", timeout=5, min_ready=3)
lookup("books").owner.proxy().terminate_child("worker-2").get(timeout=10)
print("size", grpcpool.scale_down("books", 1))
sup.stop(timeout=30)
print("left", len(pykka.ActorRegistry.get_all()), "actors", open_channel_count(), "channels")
"""
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, "GRPC_VERBOSITY": "ERROR"},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["size 1", "left 0 actors 0 channels"]


def test_a_pool_supervisor_that_gives_up_states_the_limit_it_applied(
    echo_server: EchoServer,
    events: EventLog,
    supervisors: list[pykka.ActorRef[Any]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A pool supervisor allows max_restarts plus one restart per worker; when its
    workers crash more often it gives up, and its message states that sum, not
    max_restarts alone: in its telemetry event, its log and its parent's log."""
    config = loopback_config(echo_server.port, size=2)
    supervisors.append(
        Supervisor.start(children=[PoolSpec(config, name="limited")], max_restarts=5)
    )
    grpcpool.await_ready("limited", timeout=5, min_ready=2)
    entry = lookup("limited")

    crash_workers_until(lambda: events.of("supervisor.shutdown"), timeout=10)

    (shutdown,) = events.of("supervisor.shutdown")
    sender, measurements, metadata = shutdown
    assert sender == "pool:limited"
    assert measurements["restarts"] == 6
    reason = metadata["reason"]
    assert reason.startswith(
        "pool:limited: 6 restarts within 5.0s (max 5 = 3 + 2 workers); last: child 'worker-"
    )
    assert wait_until(lambda: entry.owner is not None and entry.owner.is_alive(), timeout=5)
    grpcpool.await_ready("limited", timeout=5, min_ready=2)
    logged = [r.getMessage() for r in caplog.records]
    assert f"{reason}; shutting down" in logged
    assert any(
        "child 'pool:limited' ended (RestartIntensityError: " in line
        and "(max 5 = 3 + 2 workers)" in line
        for line in logged
    )


def test_a_pool_restarted_after_a_crash_keeps_its_entry_and_its_scaled_size(
    echo_server: EchoServer, events: EventLog, supervisors: list[pykka.ActorRef[Any]]
) -> None:
    """A pool scaled from 2 to 4 whose supervisor crashes (worker crash loop) comes
    back under the same entry with 4 workers, and a waiter follows it through."""
    config = loopback_config(echo_server.port, size=2)
    supervisors.append(Supervisor.start(children=[PoolSpec(config, name="kept")], max_restarts=5))
    grpcpool.await_ready("kept", timeout=5, min_ready=2)
    assert grpcpool.scale_up("kept", 2) == 4
    grpcpool.await_ready("kept", timeout=5, min_ready=4)
    entry, first_owner = lookup("kept"), lookup("kept").owner

    crash_workers_until(lambda: events.of("supervisor.shutdown"), timeout=10)
    assert wait_until(
        lambda: any(
            md["child_id"] == "pool:kept" for _, _, md in events.of("supervisor.child_restarted")
        ),
        timeout=5,
    )

    grpcpool.await_ready("kept", timeout=5, min_ready=4)
    assert lookup("kept") is entry
    assert entry.owner is not first_owner
    assert grpcpool.status("kept").expected_size == 4
    assert wait_until(lambda: len(live_workers()) == 4, timeout=5)
    restarted_init = [m for _, m, md in events.of("pool.init") if md["pool_name"] == "kept"]
    assert [m["pool_size"] for m in restarted_init][-1] == 4


def test_a_pool_its_parent_gives_up_on_ends_and_wakes_its_waiters(events: EventLog) -> None:
    """When the parent supervisor gives up instead of restarting a crashed pool, the
    pool's entry ends: lookups fail and an await_ready waiter gets PoolNotFoundError
    at once, not at its timeout."""
    # Nothing listens there: the waiter's channel never comes.
    config = loopback_config(free_port(), size=1)
    sup = Supervisor.start(children=[PoolSpec(config, name="given-up")], max_restarts=0)
    try:
        outcome: list[BaseException] = []
        waiting = threading.Event()

        def wait() -> None:
            waiting.set()
            try:
                grpcpool.await_ready("given-up", timeout=60, min_ready=1)
            except BaseException as error:  # recorded for the assertions below
                outcome.append(error)

        waiter = threading.Thread(target=wait, name="test-waiter")
        waiter.start()
        assert waiting.wait(5)
        started = time.monotonic()
        crash_workers_until(lambda: not sup.is_alive(), timeout=10)
        waiter.join(10)
        assert not waiter.is_alive()
        assert time.monotonic() - started < 10
        assert len(outcome) == 1 and isinstance(outcome[0], PoolNotFoundError)
        with pytest.raises(PoolNotFoundError):
            lookup("given-up")
    finally:
        sup.stop()


def test_scaling_during_a_move_leaves_the_replacement_alone(
    echo_server: EchoServer, supervisors: list[pykka.ActorRef[Any]]
) -> None:
    """A worker the Balancer started to replace another is not counted by scaling and not
    the newest to stop: scale_down stops one of the pool's own workers, the size is what
    the caller asked for, and retiring the replaced worker makes the replacement one of
    the pool's."""
    start_pool(supervisors, loopback_config(echo_server.port, size=3), "moving")
    grpcpool.await_ready("moving", timeout=5, min_ready=3)
    owner = lookup("moving").owner
    assert owner is not None
    proxy = owner.proxy()
    replacement = proxy.add_pinned_worker(f"127.0.0.1:{echo_server.port}").get(timeout=10)

    assert grpcpool.scale_down("moving", 1) == 2

    children = [child for child, _, _ in proxy.which_children().get(timeout=10)]
    assert replacement in children
    assert len([c for c in children if c.startswith("worker-")]) == 3
    proxy.retire_worker("worker-1", replacement).get(timeout=10)
    assert grpcpool.status("moving").expected_size == 2
    assert wait_until(lambda: len(grpcpool.status("moving").workers) == 2, timeout=5)


def test_a_restarted_balancer_stops_the_replacements_left_by_the_one_that_crashed(
    echo_server: EchoServer, supervisors: list[pykka.ActorRef[Any]], events: EventLog
) -> None:
    """The moves of a Balancer end with it: the one the PoolSupervisor starts in its place
    stops every replacement left, so the pool keeps the size it was given."""
    start_pool(supervisors, loopback_config(echo_server.port, size=2), "crashing-balancer")
    grpcpool.await_ready("crashing-balancer", timeout=5, min_ready=2)
    owner = lookup("crashing-balancer").owner
    assert owner is not None
    replacement = owner.proxy().add_pinned_worker(f"127.0.0.1:{echo_server.port}").get(timeout=10)
    assert wait_until(lambda: len(grpcpool.status("crashing-balancer").workers) == 3, timeout=5)

    [balancer] = [r for r in pykka.ActorRegistry.get_by_class(Balancer) if r.is_alive()]
    balancer.tell(ReplacedGone(["not", "a", "worker", "id"]))  # type: ignore[arg-type]
    assert wait_until(lambda: events.of("supervisor.child_restarted"), timeout=5)
    assert events.of("supervisor.child_restarted")[0][2]["child_id"] == "balancer"

    def left() -> bool:
        return [w.worker_id for w in grpcpool.status("crashing-balancer").workers] == [
            "worker-1",
            "worker-2",
        ]

    assert wait_until(left, timeout=5)
    status = grpcpool.status("crashing-balancer")
    assert status.expected_size == 2 and replacement not in {w.worker_id for w in status.workers}
