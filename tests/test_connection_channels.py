"""PoolChannels: opening, watching, retiring and closing a pool's channels.

Against real loopback servers. The process-wide count of open channels is
what the leak check reads, so every path here must bring it back to zero.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import grpc
import pytest

from grpcpool.config import Config
from grpcpool.connection import (
    Connection,
    PoolChannels,
    channel_credentials,
    channel_options,
    open_channel_count,
)
from grpcpool.core import Close
from tests.pools import loopback_config
from tests.servers import EchoServer, EchoStub
from tests.waiting import wait_for

READY = grpc.ChannelConnectivity.READY
WAIT = 10.0


class States:
    """A connectivity callback that lets a test wait for READY."""

    def __init__(self) -> None:
        self.states: list[grpc.ChannelConnectivity] = []
        self.ready = threading.Event()
        self._lock = threading.Lock()

    def __call__(self, state: grpc.ChannelConnectivity) -> None:
        with self._lock:
            self.states.append(state)
        if state is READY:
            self.ready.set()

    def snapshot(self) -> list[grpc.ChannelConnectivity]:
        with self._lock:
            return list(self.states)


def open_ready(channels: PoolChannels) -> tuple[Connection, States]:
    """Opens a channel and waits until its watch reports READY."""
    states = States()
    connection = channels.open(states)
    assert states.ready.wait(WAIT), f"never ready: {states.snapshot()}"
    return connection, states


class Recording(grpc.UnaryUnaryClientInterceptor):  # type: ignore[misc]
    """Records the methods of the unary calls that pass through it."""

    def __init__(self) -> None:
        self.methods: list[str] = []

    def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        self.methods.append(details.method)
        return continuation(details, request)


def test_open_watches_the_channel_and_close_is_final(echo_server: EchoServer) -> None:
    """open() counts the channel and its watch reports READY; close() uncounts it,
    stops the watch and may be repeated."""
    channels = PoolChannels(loopback_config(echo_server.port))
    connection, _states = open_ready(channels)
    assert open_channel_count() == 1
    assert connection.channel is connection.raw
    assert EchoStub(connection.channel).Unary(b"hi", timeout=WAIT) == b"hi"
    channels.close(connection)
    assert open_channel_count() == 0
    assert connection.watch.cancelled
    channels.close(connection)
    assert open_channel_count() == 0


def test_handed_out_channel_goes_through_the_interceptors(echo_server: EchoServer) -> None:
    """With endpoint.interceptors the handed-out channel wraps the raw one, and
    calls on it pass through them."""
    interceptor = Recording()
    config = Config.new(
        endpoint={
            "type": "local",
            "host": "127.0.0.1",
            "port": echo_server.port,
            "interceptors": (interceptor,),
        }
    )
    channels = PoolChannels(config)
    connection, _ = open_ready(channels)
    try:
        assert connection.channel is not connection.raw
        assert EchoStub(connection.channel).Unary(b"x", timeout=WAIT) == b"x"
        assert interceptor.methods == ["/test.Echo/Unary"]
    finally:
        channels.close(connection)


def test_open_leaks_nothing_when_wrapping_fails(echo_server: EchoServer) -> None:
    """An interceptor grpc refuses makes open() raise, with the channel it made closed.

    Config refuses such interceptors at construction; one is slipped past it
    here so that the channel module's own clean-up is what is tested."""
    config = Config.new(endpoint={"type": "local", "host": "127.0.0.1", "port": echo_server.port})
    object.__setattr__(config.endpoint, "interceptors", (object(),))
    with pytest.raises(TypeError, match="interceptor"):
        PoolChannels(config).open(States())
    assert open_channel_count() == 0


def test_retired_idle_channel_closes_before_retire_returns(echo_server: EchoServer) -> None:
    """With no counted call on it, a retired channel is closed at once, however long
    the drain timeout."""
    channels = PoolChannels(loopback_config(echo_server.port, drain_timeout=30.0))
    connection, _ = open_ready(channels)
    channels.retire(connection)
    assert connection.watch.cancelled
    assert open_channel_count() == 0
    assert connection.ledger.closed


def test_retired_channel_closes_when_its_last_counted_call_ends() -> None:
    """A retired channel with calls counted on its ledger stays open while they run
    (they succeed) and is closed soon after the last one ends, well before its drain."""
    with EchoServer(with_health=False, delay=0.3) as server:
        channels = PoolChannels(loopback_config(server.port, drain_timeout=30.0))
        connection, _ = open_ready(channels)
        ledger = connection.ledger
        assert ledger.started("first") and ledger.started("second")
        calls = [EchoStub(connection.channel).Unary.future(b"slow", timeout=WAIT) for _ in "ab"]
        channels.retire(connection)
        assert open_channel_count() == 1
        assert not ledger.started("late")  # refused: it left the pool
        assert ledger.ended("late") is None
        assert [call.result(timeout=WAIT) for call in calls] == [b"slow", b"slow"]
        assert ledger.ended("first") is None
        assert open_channel_count() == 1
        ended_at = time.monotonic()
        effect = ledger.ended("second")
        assert effect is Close.NOW
        connection.on_last_call()  # what the ReadyConnection does with that effect
        wait_for(lambda: open_channel_count() == 0, WAIT)
        assert time.monotonic() - ended_at < 1.0


def test_channel_handed_out_raw_drains_for_the_whole_drain_timeout() -> None:
    """A retired channel handed out raw (calls on it are not counted) is closed only
    drain_timeout after it left, so a raw call under way completes."""
    with EchoServer(with_health=False, delay=0.3) as server:
        channels = PoolChannels(loopback_config(server.port, drain_timeout=1.0))
        connection, _states = open_ready(channels)
        call = EchoStub(connection.channel).Unary.future(b"slow", timeout=WAIT)
        retired_at = time.monotonic()
        channels.retire(connection, handed_out=True)
        assert connection.watch.cancelled
        assert open_channel_count() == 1
        assert call.result(timeout=WAIT) == b"slow"
        wait_for(lambda: open_channel_count() == 0, WAIT)
        assert time.monotonic() - retired_at >= 1.0
        channels.retire(connection)  # already closed: nothing to do
        assert open_channel_count() == 0


def test_the_drain_end_cuts_a_counted_call_still_running() -> None:
    """drain_timeout stays the upper bound: a counted call still running when the drain
    ends is cut (CANCELLED) and the channel is closed."""
    with EchoServer(with_health=False, delay=2.0) as server:
        channels = PoolChannels(loopback_config(server.port, drain_timeout=0.3))
        connection, _ = open_ready(channels)
        assert connection.ledger.started("slow")
        call = EchoStub(connection.channel).Unary.future(b"slow", timeout=WAIT)
        channels.retire(connection)
        assert open_channel_count() == 1
        with pytest.raises(grpc.RpcError) as cut:
            call.result(timeout=WAIT)
        assert cut.value.code() is grpc.StatusCode.CANCELLED
        assert open_channel_count() == 0
        assert connection.ledger.ended("slow") is None  # closed already: nothing more to do


def test_retire_without_drain_time_closes_at_once(echo_server: EchoServer) -> None:
    """With drain_timeout 0 a retired channel is closed before retire() returns, even
    with a counted call on it."""
    channels = PoolChannels(loopback_config(echo_server.port, drain_timeout=0))
    connection, _ = open_ready(channels)
    assert connection.ledger.started("call")
    channels.retire(connection)
    assert open_channel_count() == 0


def test_close_all_waits_only_for_counted_calls(echo_server: EchoServer) -> None:
    """After close_all() (the pool stopped) a channel kept for raw hand-outs is closed
    now, one holding a counted call closes when that call ends, and a channel retired
    later is held by its counted calls only."""
    channels = PoolChannels(loopback_config(echo_server.port, drain_timeout=30.0))
    raw, _ = open_ready(channels)
    counted, _ = open_ready(channels)
    later, _ = open_ready(channels)
    assert counted.ledger.started("call")
    channels.retire(raw, handed_out=True)
    channels.retire(counted)
    assert open_channel_count() == 3
    channels.close_all()
    assert open_channel_count() == 2
    channels.retire(later, handed_out=True)
    assert open_channel_count() == 1
    assert counted.ledger.ended("call") is Close.NOW
    counted.on_last_call()
    wait_for(lambda: open_channel_count() == 0, WAIT)
    channels.close_all()  # idempotent


def test_closing_a_retired_channel_closes_it_now(echo_server: EchoServer) -> None:
    """close() of a channel already retired does not wait for its drain time."""
    channels = PoolChannels(loopback_config(echo_server.port, drain_timeout=30.0))
    connection, _ = open_ready(channels)
    channels.retire(connection, handed_out=True)
    channels.retire(connection, handed_out=True)  # twice: still one pending close
    assert open_channel_count() == 1
    channels.close(connection)
    assert open_channel_count() == 0


def test_count_is_process_wide(echo_server: EchoServer) -> None:
    """open_channel_count() adds up the channels of every PoolChannels."""
    pools = [PoolChannels(loopback_config(echo_server.port)) for _ in range(2)]
    connections = [(pool, pool.open(States())) for pool in pools for _ in range(2)]
    assert open_channel_count() == 4
    for pool, connection in connections:
        pool.close(connection)
    assert open_channel_count() == 0


def test_server_loss_reaches_the_owner() -> None:
    """After the server stops, the owner's callback hears the channel left READY."""
    server = EchoServer(with_health=False)
    channels = PoolChannels(loopback_config(server.port))
    left = threading.Event()
    ready = threading.Event()

    def on_state(state: grpc.ChannelConnectivity) -> None:
        if state is READY:
            ready.set()
        elif ready.is_set():
            left.set()

    connection = channels.open(on_state)
    try:
        assert ready.wait(WAIT)
        server.stop(None)
        assert left.wait(WAIT)
    finally:
        channels.close(connection)
        server.stop()


@pytest.mark.parametrize(
    "make",
    [
        lambda port: loopback_config(port, keepalive=2.5),
        lambda port: Config.local(host="127.0.0.1", port=port),
    ],
    ids=["keepalive", "defaults"],
)
def test_config_methods_delegate_to_the_connection_package(make: Callable[[int], Config]) -> None:
    """Config.channel_options() and channel_credentials() give what the connection
    package builds."""
    config = make(9)
    assert config.channel_options() == channel_options(config)
    assert config.channel_credentials() is channel_credentials(config) is None


def test_a_pinned_channel_speaks_as_the_configured_host() -> None:
    """A channel pinned to a resolved IP keeps host:port as its authority and, with TLS,
    checks the certificate against the host; an unpinned channel needs neither; a
    configured server_hostname still wins."""
    plain = Config.new(endpoint={"type": "local", "host": "kv.internal", "port": 7000})
    tls = Config.new(endpoint={"host": "kv.internal", "port": 7000, "ssl": True})
    named = Config.new(
        endpoint={"host": "kv.internal", "port": 7000, "ssl": {"server_hostname": "kv.test"}}
    )

    assert "grpc.default_authority" not in dict(channel_options(plain))
    pinned = dict(channel_options(plain, "10.0.0.7:7000"))
    assert pinned["grpc.default_authority"] == "kv.internal:7000"
    assert "grpc.ssl_target_name_override" not in pinned
    pinned_tls = dict(channel_options(tls, "10.0.0.7:7000"))
    assert pinned_tls["grpc.default_authority"] == "kv.internal:7000"
    assert pinned_tls["grpc.ssl_target_name_override"] == "kv.internal"
    assert dict(channel_options(named, "10.0.0.7:7000"))["grpc.ssl_target_name_override"] == (
        "kv.test"
    )


def test_a_name_for_tls_to_check_is_the_authority_too() -> None:
    """ssl.server_hostname, or grpc.ssl_target_name_override in endpoint.options, is the
    :authority too, pinned or not, as on a plain grpcio channel with that override;
    grpc.default_authority in endpoint.options wins, and plaintext gets no authority."""

    def options(address: str | None = None, **endpoint: Any) -> dict[str, Any]:
        config = Config.new(endpoint={"host": "10.0.0.7", "port": 7000, **endpoint})
        return dict(channel_options(config, address))

    named = {"ssl": {"server_hostname": "kv.test"}}
    for address in (None, "10.0.0.7:7000"):
        chosen = options(address, **named)
        assert chosen["grpc.ssl_target_name_override"] == "kv.test"
        assert chosen["grpc.default_authority"] == "kv.test"
        overridden = options(address, ssl=True, options={"grpc.ssl_target_name_override": "o"})
        assert overridden["grpc.default_authority"] == "o"
    both = options(
        "10.0.0.7:7000",
        ssl={"server_hostname": "kv.test"},
        options={"grpc.ssl_target_name_override": "o.test"},
    )
    assert both["grpc.ssl_target_name_override"] == both["grpc.default_authority"] == "o.test"
    mine = options("10.0.0.7:7000", **named, options={"grpc.default_authority": "mine:1"})
    assert mine["grpc.default_authority"] == "mine:1"
    assert mine["grpc.ssl_target_name_override"] == "kv.test"
    ipv6 = options(ssl={"server_hostname": "[::1]"})
    assert ipv6["grpc.ssl_target_name_override"] == "::1"
    assert ipv6["grpc.default_authority"] == "[::1]"
    plaintext = options(type="local", options={"grpc.ssl_target_name_override": "o"})
    assert "grpc.default_authority" not in plaintext
    assert "grpc.default_authority" not in options(ssl=True)
