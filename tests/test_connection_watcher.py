"""The process's connectivity watcher, against real loopback channels and servers.

One thread checks every watched channel; these tests pin what a watch's owner
relies on: the first state and every change arrive, nothing arrives after a
cancel, the thread exists only while something is watched, and a pause (the
fork hook's) holds the thread out of grpcio until resumed.
"""

from __future__ import annotations

import itertools
import logging
import threading
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import pytest

from grpcpool.connection import _watch, watch
from grpcpool.connection._watcher import MIN_PERIOD, get_watcher
from tests.servers import EchoServer
from tests.waiting import wait_for

READY = grpc.ChannelConnectivity.READY
IDLE = grpc.ChannelConnectivity.IDLE
WAIT = 10.0


class Recorder:
    """A connectivity callback that records states and lets a test wait for one."""

    def __init__(self) -> None:
        self.states: list[grpc.ChannelConnectivity] = []
        self.threads: set[str] = set()
        self._changed = threading.Condition()

    def __call__(self, state: grpc.ChannelConnectivity) -> None:
        with self._changed:
            self.states.append(state)
            self.threads.add(threading.current_thread().name)
            self._changed.notify_all()

    def wait(self, predicate: Callable[[list[grpc.ChannelConnectivity]], bool]) -> None:
        """Waits until ``predicate(states)`` holds; fails the test after WAIT seconds."""
        with self._changed:
            if not self._changed.wait_for(lambda: predicate(self.states), WAIT):
                raise AssertionError(f"states {self.states} never matched")

    def wait_ready(self) -> None:
        self.wait(lambda states: READY in states)

    def snapshot(self) -> list[grpc.ChannelConnectivity]:
        with self._changed:
            return list(self.states)


@pytest.fixture
def channels() -> Iterator[Callable[[int], grpc.Channel]]:
    """Makes plaintext channels to a port; closes them all afterwards."""
    made: list[grpc.Channel] = []

    def make(port: int) -> grpc.Channel:
        channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        made.append(channel)
        return channel

    yield make
    for channel in made:
        channel.close()


def watcher_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "grpcpool-watcher"]


def test_callback_sees_first_state_then_ready(
    echo_server: EchoServer, channels: Callable[[int], grpc.Channel]
) -> None:
    """A new channel is reported IDLE first, then (asked to connect) READY, on the
    watcher thread."""
    recorder = Recorder()
    handle = watch(channels(echo_server.port), recorder)
    try:
        recorder.wait_ready()
    finally:
        handle.cancel()
    states = recorder.snapshot()
    assert states[0] is IDLE
    assert states[-1] is READY
    assert all(a is not b for a, b in itertools.pairwise(states))  # changes only
    assert recorder.threads == {"grpcpool-watcher"}


def test_without_try_to_connect_the_channel_stays_idle(
    echo_server: EchoServer, channels: Callable[[int], grpc.Channel]
) -> None:
    """try_to_connect=False only watches: the channel stays IDLE while another one,
    watched with it, connects."""
    idle, connecting = Recorder(), Recorder()
    quiet = watch(channels(echo_server.port), idle, try_to_connect=False)
    loud = watch(channels(echo_server.port), connecting)
    try:
        connecting.wait_ready()
        idle.wait(lambda states: states == [IDLE])
        assert get_watcher().sweeps >= 1
    finally:
        quiet.cancel()
        loud.cancel()
    assert idle.snapshot() == [IDLE]


def test_server_stop_is_noticed(channels: Callable[[int], grpc.Channel]) -> None:
    """Once the server stops, every ready channel's callback hears that it left READY."""
    server = EchoServer(with_health=False)
    recorders = [Recorder() for _ in range(4)]
    handles = [watch(channels(server.port), recorder) for recorder in recorders]
    try:
        for recorder in recorders:
            recorder.wait_ready()
        server.stop(None)
        for recorder in recorders:
            recorder.wait(lambda states: states[-1] is not READY)
    finally:
        for handle in handles:
            handle.cancel()
        server.stop()


def test_no_callback_after_cancel(channels: Callable[[int], grpc.Channel]) -> None:
    """A cancelled watch hears nothing of a later change that a live watch of the
    same server hears."""
    server = EchoServer(with_health=False)
    cancelled, witness = Recorder(), Recorder()
    handle = watch(channels(server.port), cancelled)
    other = watch(channels(server.port), witness)
    try:
        cancelled.wait_ready()
        witness.wait_ready()
        handle.cancel()
        assert handle.cancelled
        seen = cancelled.snapshot()
        server.stop(None)
        witness.wait(lambda states: states[-1] is not READY)
        handle.cancel()  # idempotent
        assert cancelled.snapshot() == seen
    finally:
        other.cancel()
        server.stop()


def test_callback_may_cancel_its_own_watch(
    echo_server: EchoServer, channels: Callable[[int], grpc.Channel]
) -> None:
    """A callback that cancels its watch (on the watcher thread) neither deadlocks nor
    is called again."""
    witness = Recorder()
    calls: list[grpc.ChannelConnectivity] = []
    holder: list[Any] = []
    registered = threading.Event()

    def once(state: grpc.ChannelConnectivity) -> None:
        calls.append(state)
        registered.wait(WAIT)
        holder[0].cancel()

    holder.append(watch(channels(echo_server.port), once))
    registered.set()
    other = watch(channels(echo_server.port), witness)
    try:
        witness.wait_ready()  # the watcher swept on after the callback returned
        wait_for(lambda: holder[0].cancelled, WAIT)
        assert calls == [IDLE]
    finally:
        other.cancel()


def test_cancel_waits_for_a_running_callback(
    echo_server: EchoServer, channels: Callable[[int], grpc.Channel]
) -> None:
    """cancel() from another thread returns only once a callback under way has
    finished, so nothing runs after it returns."""
    entered, release, cancel_returned = threading.Event(), threading.Event(), threading.Event()
    finished: list[bool] = []

    def slow(state: grpc.ChannelConnectivity) -> None:
        if entered.is_set():
            return
        entered.set()
        release.wait(WAIT)
        finished.append(True)

    handle = watch(channels(echo_server.port), slow)

    def cancel() -> None:
        handle.cancel()
        cancel_returned.set()

    canceller = threading.Thread(target=cancel, name="test-canceller")
    try:
        assert entered.wait(WAIT)
        canceller.start()
        assert not cancel_returned.wait(0.2)
        release.set()
        assert cancel_returned.wait(WAIT)
        assert finished == [True]
    finally:
        release.set()
        handle.cancel()
        if canceller.is_alive():
            canceller.join(WAIT)


def test_thread_runs_only_while_something_is_watched(
    echo_server: EchoServer, channels: Callable[[int], grpc.Channel]
) -> None:
    """The watcher thread ends when the last watch is cancelled and a new one is
    started by the next watch."""
    first = Recorder()
    handle = watch(channels(echo_server.port), first)
    first.wait_ready()
    assert len(watcher_threads()) == 1
    handle.cancel()
    wait_for(lambda: not watcher_threads(), WAIT)
    again = Recorder()
    handle = watch(channels(echo_server.port), again)
    try:
        again.wait_ready()
        assert len(watcher_threads()) == 1
    finally:
        handle.cancel()
    wait_for(lambda: not watcher_threads(), WAIT)


def test_pause_holds_checks_until_resume(
    echo_server: EchoServer, channels: Callable[[int], grpc.Channel]
) -> None:
    """While paused (as for a fork) the thread checks nothing, not even a new watch;
    resume lets it go on."""
    watcher = get_watcher()
    running, fresh = Recorder(), Recorder()
    first = watch(channels(echo_server.port), running)
    second = None
    try:
        running.wait_ready()
        watcher.pause()
        try:
            sweeps = watcher.sweeps
            second = watch(channels(echo_server.port), fresh)
            assert second is not None
            with fresh._changed:
                assert not fresh._changed.wait_for(lambda: bool(fresh.states), 0.2)
            assert watcher.sweeps == sweeps
        finally:
            watcher.resume()
        fresh.wait_ready()
    finally:
        first.cancel()
        if second is not None:
            second.cancel()


def test_closing_the_channel_drops_the_watch(
    echo_server: EchoServer, channels: Callable[[int], grpc.Channel]
) -> None:
    """A channel closed while watched ends its watch quietly: no further callback."""
    recorder = Recorder()
    channel = channels(echo_server.port)
    handle = watch(channel, recorder)
    recorder.wait_ready()
    seen = recorder.snapshot()
    channel.close()
    wait_for(lambda: handle.cancelled, WAIT)
    assert recorder.snapshot() == seen
    assert get_watcher().watching == 0
    handle.cancel()


def test_callback_exception_is_logged_and_watching_goes_on(
    echo_server: EchoServer,
    channels: Callable[[int], grpc.Channel],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A callback that raises is logged; it still hears the next change and the
    thread survives."""
    recorder = Recorder()

    def failing_first(state: grpc.ChannelConnectivity) -> None:
        recorder(state)
        if state is IDLE:
            raise RuntimeError("callback bug")

    with caplog.at_level(logging.ERROR, logger="grpcpool.connection._watch"):
        handle = watch(channels(echo_server.port), failing_first)
        try:
            recorder.wait_ready()
        finally:
            handle.cancel()
    assert "connectivity callback" in caplog.text
    assert "callback bug" in caplog.text


def test_a_few_channels_are_swept_at_the_shortest_period(
    echo_server: EchoServer, channels: Callable[[int], grpc.Channel]
) -> None:
    """With a handful of channels whose hang-ups the watcher cannot hear (watched
    without a target) sweeping is cheap, so the period stays at its minimum (a drop
    is noticed within milliseconds)."""
    recorders = [Recorder() for _ in range(8)]
    handles = [watch(channels(echo_server.port), recorder) for recorder in recorders]
    watcher = get_watcher()
    try:
        for recorder in recorders:
            recorder.wait_ready()
        start = watcher.sweeps
        wait_for(lambda: watcher.sweeps >= start + 3, WAIT)
        assert watcher.period == MIN_PERIOD
    finally:
        for handle in handles:
            handle.cancel()


class SubscribeOnly:
    """A real channel seen through an object that lacks grpcio's private check, as a
    future grpcio without it would look: only subscribe and unsubscribe."""

    def __init__(self, channel: grpc.Channel) -> None:
        self.channel = channel

    def subscribe(self, callback: Any, try_to_connect: bool = False) -> None:
        self.channel.subscribe(callback, try_to_connect=try_to_connect)

    def unsubscribe(self, callback: Any) -> None:
        self.channel.unsubscribe(callback)


def test_without_the_private_check_the_watch_subscribes(
    channels: Callable[[int], grpc.Channel],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A channel without check_connectivity_state is watched through grpcio's
    subscription, with one warning; cancel unsubscribes."""
    monkeypatch.setattr(_watch, "_fallback_warned", False)
    server = EchoServer(with_health=False)
    channel = channels(server.port)
    recorder, witness = Recorder(), Recorder()
    with caplog.at_level(logging.WARNING, logger="grpcpool.connection._watch"):
        handle = watch(SubscribeOnly(channel), recorder)
        other = watch(SubscribeOnly(channel), witness)
    try:
        assert caplog.text.count("falling back to Channel.subscribe") == 1
        assert get_watcher().watching == 0
        recorder.wait_ready()
        witness.wait_ready()
        assert "grpcpool-watcher" not in recorder.threads
        handle.cancel()
        seen = recorder.snapshot()
        server.stop(None)
        witness.wait(lambda states: states[-1] is not READY)
        assert recorder.snapshot() == seen
    finally:
        handle.cancel()
        other.cancel()
        server.stop()
        # grpcio's poll thread ends on its own within 0.2 s once nothing is
        # subscribed; closing the channel under it would kill it noisily.
        state = getattr(channel, "_connectivity_state", None)
        wait_for(lambda: not getattr(state, "polling", False), WAIT)
