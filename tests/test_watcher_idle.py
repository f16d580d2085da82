"""The watcher at rest: it sweeps rarely once all is quiet, and still hears a drop at once.

Real grpcio channels watched with their target (as a pool watches its
channels), against servers in this process and in a child process.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import grpc
import pytest

from grpcpool.connection import _sockets, start_check, watch
from grpcpool.connection._pace import IDLE_PERIOD, MIN_PERIOD
from grpcpool.connection._watch import Watch
from grpcpool.connection._watcher import Watcher, get_watcher
from tests.pools import free_port
from tests.servers import EchoProcess, EchoServer
from tests.waiting import wait_for

READY = grpc.ChannelConnectivity.READY
WAIT = 10.0
# A drop must be heard well before the idle sweep (IDLE_PERIOD) would see it.
HEARD_WITHIN = IDLE_PERIOD / 2


class Follower:
    """A connectivity callback that notes when its channel last left READY."""

    def __init__(self) -> None:
        self.states: list[grpc.ChannelConnectivity] = []
        self.left_ready_at: float | None = None
        self._changed = threading.Condition()

    def __call__(self, state: grpc.ChannelConnectivity) -> None:
        with self._changed:
            if self.states and self.states[-1] is READY and state is not READY:
                self.left_ready_at = time.monotonic()
            self.states.append(state)
            self._changed.notify_all()

    def wait_ready(self) -> None:
        with self._changed:
            if not self._changed.wait_for(lambda: READY in self.states, WAIT):
                raise AssertionError(f"never READY: {self.states}")

    def wait_left(self) -> float:
        """Waits until the channel left READY; returns when that was seen."""
        with self._changed:
            if not self._changed.wait_for(lambda: self.left_ready_at is not None, WAIT):
                raise AssertionError(f"never left READY: {self.states}")
            assert self.left_ready_at is not None
            return self.left_ready_at


@pytest.fixture
def watched() -> Iterator[Callable[[int, int], list[Follower]]]:
    """Opens ``n`` channels to a port and watches them with their target, as a pool does."""
    channels: list[grpc.Channel] = []
    handles: list[Watch] = []

    def make(port: int, n: int) -> list[Follower]:
        followers = []
        for _ in range(n):
            target = f"127.0.0.1:{port}"
            channel = grpc.insecure_channel(
                target, options=(("grpc.use_local_subchannel_pool", 1),)
            )
            follower = Follower()
            channels.append(channel)
            handles.append(watch(channel, follower, target=target))
            followers.append(follower)
        for follower in followers:
            follower.wait_ready()
        return followers

    yield make
    for handle in handles:
        handle.cancel()
    for channel in channels:
        channel.close()


def wait_idle(watcher: Watcher) -> None:
    """Waits until the watcher sweeps at its idle pace."""
    if watcher.hints is None:
        pytest.skip("the kernel's hang-up news is not available here")
    wait_for(lambda: watcher.idle and watcher.period == IDLE_PERIOD, WAIT)


def test_quiet_ready_channels_are_swept_at_the_idle_pace(
    echo_server: EchoServer, watched: Callable[[int, int], list[Follower]]
) -> None:
    """Once every channel is READY and its connection held, the sweeps slow down to
    one per IDLE_PERIOD."""
    watched(echo_server.port, 4)
    watcher = get_watcher()
    wait_idle(watcher)
    assert watcher.hints is not None
    assert watcher.hints.held(echo_server.port) >= 4
    sweeps = watcher.sweeps
    time.sleep(IDLE_PERIOD / 2)  # the pace is the point: nothing to wait for
    assert watcher.sweeps - sweeps <= 1


def test_a_killed_server_is_heard_at_once_while_idle(
    watched: Callable[[int, int], list[Follower]],
) -> None:
    """A server process killed under idle channels: each channel's callback hears it
    left READY long before the next idle sweep was due."""
    server = EchoProcess()
    try:
        followers = watched(server.port, 4)
        watcher = get_watcher()
        wait_idle(watcher)
        assert watcher.hints is not None
        hangups = watcher.hints.hangups
        killed = time.monotonic()
        server.kill()
        seen = [follower.wait_left() - killed for follower in followers]
    finally:
        server.kill()
    assert max(seen) < HEARD_WITHIN, seen
    assert watcher.hints.hangups >= hangups + 4


def test_a_server_stopping_gracefully_is_heard_at_once_while_idle(
    watched: Callable[[int, int], list[Follower]],
) -> None:
    """A server that stops with a grace period sends GOAWAY and grpcio lets the
    connections go: heard at once, as a crash is."""
    server = EchoServer(with_health=False)
    try:
        followers = watched(server.port, 4)
        watcher = get_watcher()
        wait_idle(watcher)
        assert watcher.hints is not None
        hangups = watcher.hints.hangups
        stopped = time.monotonic()
        server.stop(1.0)
        seen = [follower.wait_left() - stopped for follower in followers]
    finally:
        server.stop()
    assert max(seen) < HEARD_WITHIN, seen
    assert watcher.hints.hangups >= hangups + 4


def test_a_closed_channels_connection_is_let_go(
    echo_server: EchoServer, watched: Callable[[int, int], list[Follower]]
) -> None:
    """Closing a watched channel (after cancelling its watch) lets its held connection
    go: the duplicate never keeps a connection its owner closed."""
    watched(echo_server.port, 2)
    watcher = get_watcher()
    wait_idle(watcher)
    hints = watcher.hints
    assert hints is not None
    target = f"127.0.0.1:{echo_server.port}"
    channel = grpc.insecure_channel(target, options=(("grpc.use_local_subchannel_pool", 1),))
    follower = Follower()
    handle = watch(channel, follower, target=target)
    try:
        follower.wait_ready()
        wait_for(lambda: hints.held(echo_server.port) >= 3, WAIT)
    finally:
        handle.cancel()
        channel.close()
    wait_for(lambda: hints.held(echo_server.port) == 2, WAIT)


def test_channels_watched_without_a_target_keep_the_pace_fast(
    echo_server: EchoServer,
) -> None:
    """A channel whose port the watcher does not know cannot be heard hanging up, so
    the watcher keeps sweeping it at the shortest period."""
    channel = grpc.insecure_channel(f"127.0.0.1:{echo_server.port}")
    follower = Follower()
    handle = watch(channel, follower)
    watcher = get_watcher()
    try:
        follower.wait_ready()
        start = watcher.sweeps
        wait_for(lambda: watcher.sweeps >= start + 20, WAIT)
        assert watcher.period == MIN_PERIOD
        assert not watcher.idle
    finally:
        handle.cancel()
        channel.close()


def test_without_the_kernels_news_the_watcher_keeps_sweeping_fast(
    echo_server: EchoServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where there is no epoll or /proc (not Linux), ready channels with a target are
    still swept at the shortest period: drops are noticed as fast as before."""
    monkeypatch.setattr(_sockets, "_FD_DIR", "/nonexistent/fd")
    watcher = Watcher()  # a watcher of the test's own, made without hints
    assert watcher.hints is None
    target = f"127.0.0.1:{echo_server.port}"
    channel = grpc.insecure_channel(target)
    follower = Follower()
    handle = watcher.watch(channel, follower, True, target)
    try:
        follower.wait_ready()
        start = watcher.sweeps
        wait_for(lambda: watcher.sweeps >= start + 20, WAIT)
        assert watcher.period == MIN_PERIOD
        assert not watcher.idle
    finally:
        handle.cancel()
        channel.close()
    wait_for(lambda: watcher.watching == 0, WAIT)


def test_a_failed_health_check_hurries_the_watcher(
    echo_server: EchoServer, watched: Callable[[int, int], list[Follower]]
) -> None:
    """A health check that fails is news the kernel does not give (a server going
    away gracefully under running calls): the idle watcher sweeps fast again."""
    watched(echo_server.port, 2)
    watcher = get_watcher()
    wait_idle(watcher)
    nowhere = grpc.insecure_channel(f"127.0.0.1:{free_port()}")
    done = threading.Event()
    try:
        before = watcher.sweeps
        start_check(nowhere, "", 5.0, lambda call: done.set())
        assert done.wait(WAIT)
        # Idle, at most one sweep would come in this time; hurried, several.
        wait_for(lambda: watcher.sweeps >= before + 3, IDLE_PERIOD * 0.9)
    finally:
        nowhere.close()


def test_a_server_without_the_health_service_does_not_hurry_the_watcher(
    plain_server: EchoServer, watched: Callable[[int, int], list[Follower]]
) -> None:
    """A check answered UNIMPLEMENTED is a live server's answer, not connection
    trouble: the idle watcher stays idle (else every ping would hurry it)."""
    watched(plain_server.port, 2)
    watcher = get_watcher()
    wait_idle(watcher)
    channel = grpc.insecure_channel(f"127.0.0.1:{plain_server.port}")
    done = threading.Event()
    try:
        start_check(channel, "", 5.0, lambda call: done.set())
        assert done.wait(WAIT)
        before = watcher.sweeps
        time.sleep(IDLE_PERIOD * 0.9)  # the pace is the point: nothing to wait for
        assert watcher.sweeps - before <= 1
        assert watcher.idle
    finally:
        channel.close()
