"""A stateful test: random sequences of scaling, crashes and server restarts.

Hypothesis drives a real pool against a real server; a simple model tracks
what the pool should look like, and invariants check the pool against it
after every step. ``derandomize`` keeps the sequences the same on every run,
so CI sees a stable set of scenarios.
"""

from __future__ import annotations

import contextlib
from typing import Any

import pykka
import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

import grpcpool
from grpcpool import Config, PoolSpec, Supervisor
from grpcpool.errors import NotConnectedError
from tests.servers import EchoServer
from tests.waiting import wait_until

pytestmark = pytest.mark.slow

MAX_SIZE = 6
POOL = "stateful"


def live_workers() -> list[pykka.ActorRef[Any]]:
    return [r for r in pykka.ActorRegistry.get_by_class(grpcpool.ChannelWorker) if r.is_alive()]


class PoolMachine(RuleBasedStateMachine):
    """The model is the expected size and whether the server is up."""

    def __init__(self) -> None:
        super().__init__()
        self.server = EchoServer()
        self.port = self.server.port
        self.server_up = True
        self.expected = 2
        config = Config.new(
            endpoint={"type": "local", "host": "127.0.0.1", "port": self.port},
            pool={"size": self.expected, "max_size": MAX_SIZE},
            connection={
                "backoff_min": 0.02,
                "backoff_max": 0.1,
                "max_reconnect_attempts": 1000,
                "drain_timeout": 0.0,
            },
        )
        self.supervisor = Supervisor.start(
            children=[PoolSpec(config, name=POOL)], max_restarts=100, max_seconds=1.0
        )
        grpcpool.await_ready(POOL, timeout=5, min_ready=self.expected)

    @rule(count=st.integers(min_value=1, max_value=3))
    def scale_up(self, count: int) -> None:
        if self.expected + count > MAX_SIZE:
            with pytest.raises(ValueError):
                grpcpool.scale_up(POOL, count)
        else:
            self.expected = grpcpool.scale_up(POOL, count)

    @rule(count=st.integers(min_value=1, max_value=3))
    def scale_down(self, count: int) -> None:
        if self.expected - count < 1:
            with pytest.raises(ValueError):
                grpcpool.scale_down(POOL, count)
        else:
            self.expected = grpcpool.scale_down(POOL, count)

    @rule(size=st.integers(min_value=1, max_value=MAX_SIZE))
    def resize(self, size: int) -> None:
        self.expected = grpcpool.resize(POOL, size)
        assert self.expected == size

    @rule(victim=st.integers(min_value=0, max_value=MAX_SIZE - 1))
    def crash_a_worker(self, victim: int) -> None:
        workers = live_workers()
        with contextlib.suppress(pykka.ActorDeadError):
            workers[victim % len(workers)].tell("crash")
        assert wait_until(lambda: len(live_workers()) == self.expected, timeout=5)

    @precondition(lambda self: self.server_up)
    @rule()
    def stop_server(self) -> None:
        self.server.stop()
        self.server_up = False
        assert wait_until(lambda: grpcpool.status(POOL).current_size == 0, timeout=2)

    @precondition(lambda self: not self.server_up)
    @rule()
    def start_server(self) -> None:
        self.server = EchoServer(port=self.port)
        self.server_up = True
        grpcpool.await_ready(POOL, timeout=5, min_ready=self.expected)

    @rule()
    def get_channel(self) -> None:
        entry = grpcpool.api.lookup(POOL)
        before = entry.view.channels
        try:
            channel = grpcpool.get_channel(POOL)
        except NotConnectedError:
            assert len(before) == 0 or len(entry.view.channels) == 0
        else:
            # Handed out from the view as it was just before or just after.
            assert channel in before or channel in entry.view.channels

    @invariant()
    def expected_size_matches_the_model(self) -> None:
        assert grpcpool.status(POOL).expected_size == self.expected

    @invariant()
    def workers_converge_to_expected_and_none_leak(self) -> None:
        assert wait_until(lambda: len(live_workers()) == self.expected, timeout=5)
        assert wait_until(lambda: len(grpcpool.status(POOL).workers) == self.expected, timeout=5)

    @invariant()
    def snapshot_holds_only_ready_workers_channels(self) -> None:
        view = grpcpool.api.lookup(POOL).view
        ready = sum(1 for w in view.workers if w.state == "ready")
        # One view: its channels are exactly its ready workers' channels.
        assert len(view.channels) == ready <= self.expected
        if self.server_up:
            grpcpool.await_ready(POOL, timeout=5, min_ready=self.expected)

    @invariant()
    def status_word_is_consistent(self) -> None:
        status = grpcpool.status(POOL)
        if status.current_size == 0:
            assert status.status == "down"
        elif status.current_size >= status.expected_size:
            assert status.status == "healthy"
        else:
            assert status.status == "degraded"

    def teardown(self) -> None:
        self.supervisor.stop()
        self.server.stop()


TestPoolMachine = PoolMachine.TestCase
TestPoolMachine.settings = settings(
    max_examples=12, stateful_step_count=10, deadline=None, derandomize=True
)
