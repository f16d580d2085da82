"""The fault-injection proxy itself, with plain sockets and with a real grpcio server."""

from __future__ import annotations

import selectors
import socket
import threading
import time
from collections.abc import Iterator

import grpc
import pytest

from tests.faultproxy import FaultProxy
from tests.pools import free_port
from tests.servers import EchoServer, EchoStub
from tests.waiting import wait_until

# Quick reconnects so a channel recovers within a test's couple of seconds.
CHANNEL_OPTIONS = (
    ("grpc.use_local_subchannel_pool", 1),
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 200),
)


class TcpEchoServer:
    """A TCP echo server on 127.0.0.1, one selector thread, recording what arrives."""

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.setblocking(False)
        self.port: int = self._listener.getsockname()[1]
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._listener, selectors.EVENT_READ)
        self._lock = threading.Lock()
        self._accepted = 0
        self._arrivals: list[tuple[float, bytes]] = []
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="tcp-echo", daemon=True)
        self._thread.start()

    @property
    def accepted(self) -> int:
        with self._lock:
            return self._accepted

    @property
    def received(self) -> bytes:
        with self._lock:
            return b"".join(data for _, data in self._arrivals)

    def arrivals(self) -> list[tuple[float, bytes]]:
        """(time.monotonic() of arrival, bytes) for every chunk received."""
        with self._lock:
            return list(self._arrivals)

    def _serve(self) -> None:
        while not self._stopping.is_set():
            for key, _ in self._selector.select(timeout=0.05):
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                if sock is self._listener:
                    try:
                        conn, _ = sock.accept()
                    except BlockingIOError:
                        continue
                    conn.settimeout(2.0)
                    self._selector.register(conn, selectors.EVENT_READ)
                    with self._lock:
                        self._accepted += 1
                    continue
                try:
                    data = sock.recv(65536)
                    if data:
                        with self._lock:
                            self._arrivals.append((time.monotonic(), data))
                        sock.sendall(data)
                        continue
                except OSError:
                    pass
                self._selector.unregister(sock)
                sock.close()

    def close(self) -> None:
        self._stopping.set()
        self._thread.join(5)
        for key in list(self._selector.get_map().values()):
            assert isinstance(key.fileobj, socket.socket)
            key.fileobj.close()
        self._selector.close()


@pytest.fixture
def tcp_echo() -> Iterator[TcpEchoServer]:
    server = TcpEchoServer()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def proxy(tcp_echo: TcpEchoServer) -> Iterator[FaultProxy]:
    with FaultProxy(tcp_echo.port) as started:
        yield started


@pytest.fixture
def grpc_proxy(plain_server: EchoServer) -> Iterator[FaultProxy]:
    with FaultProxy(plain_server.port) as started:
        yield started


@pytest.fixture
def channel(grpc_proxy: FaultProxy) -> Iterator[grpc.Channel]:
    """A READY channel to the echo server through the proxy, with its own connection."""
    ch = grpc.insecure_channel(grpc_proxy.address, options=CHANNEL_OPTIONS)
    try:
        grpc.channel_ready_future(ch).result(timeout=5)
        yield ch
    finally:
        ch.close()


class Connectivity:
    """Records a channel's connectivity states; unsubscribes on close."""

    def __init__(self, ch: grpc.Channel) -> None:
        self._channel = ch
        self._lock = threading.Lock()
        self._states: list[grpc.ChannelConnectivity] = []
        ch.subscribe(self._record, try_to_connect=False)

    def _record(self, state: grpc.ChannelConnectivity) -> None:
        with self._lock:
            self._states.append(state)

    @property
    def states(self) -> list[grpc.ChannelConnectivity]:
        with self._lock:
            return list(self._states)

    def close(self) -> None:
        self._channel.unsubscribe(self._record)


def connect(proxy: FaultProxy) -> socket.socket:
    return socket.create_connection(("127.0.0.1", proxy.port), timeout=2.0)


def assert_reset_on_connect(proxy: FaultProxy) -> None:
    """A new connection is accepted, then reset: the client sees ECONNRESET.

    The RST can beat the client's own check of its handshake, so the error
    comes from connect() or from the first recv().
    """
    with pytest.raises(ConnectionResetError), connect(proxy) as sock:
        sock.recv(16)


def recv_exactly(sock: socket.socket, size: int) -> bytes:
    data = bytearray()
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise EOFError(f"closed after {len(data)} of {size} bytes")
        data += chunk
    return bytes(data)


def echo(sock: socket.socket, payload: bytes) -> bytes:
    sock.sendall(payload)
    return recv_exactly(sock, len(payload))


# --- pass through -----------------------------------------------------------------


def test_pass_through_echoes_bytes_and_counts_them(
    proxy: FaultProxy, tcp_echo: TcpEchoServer
) -> None:
    """Pass mode forwards both directions and counts connections and bytes."""
    assert proxy.mode == "pass"
    assert proxy.port != tcp_echo.port
    with connect(proxy) as sock:
        assert echo(sock, b"hello") == b"hello"
        assert echo(sock, b"x" * 100_000) == b"x" * 100_000
        assert proxy.connections_accepted == 1
        assert proxy.active_connections == 1
        assert wait_until(lambda: proxy.bytes_down == 100_005, timeout=2)
        assert proxy.bytes_up == 100_005
    assert wait_until(lambda: proxy.active_connections == 0, timeout=2)
    assert proxy.connections_accepted == 1


def test_pass_through_carries_a_grpc_call(
    grpc_proxy: FaultProxy, plain_server: EchoServer, channel: grpc.Channel
) -> None:
    """A gRPC call through the proxy reaches the server and returns."""
    assert EchoStub(channel).Unary(b"ping", timeout=2) == b"ping"
    assert plain_server.calls == 1
    assert plain_server.peers[0] != f"ipv4:127.0.0.1:{grpc_proxy.port}"
    assert grpc_proxy.connections_accepted == 1
    assert grpc_proxy.bytes_up > 0
    assert grpc_proxy.bytes_down > 0


# --- latency ----------------------------------------------------------------------


def test_latency_delays_each_direction_by_its_own_amount(
    proxy: FaultProxy, tcp_echo: TcpEchoServer
) -> None:
    """latency(up=0.3, down=0.15) delays the trip to the target 0.3 s and back 0.15 s."""
    with connect(proxy) as sock:
        echo(sock, b"warm")  # the upstream connection is made
        proxy.latency(up=0.3, down=0.15)
        assert proxy.mode == "latency"
        sent = time.monotonic()
        assert echo(sock, b"delayed") == b"delayed"
        back = time.monotonic()
        arrived = tcp_echo.arrivals()[-1][0]
    assert 0.28 <= arrived - sent < 1.0
    assert 0.13 <= back - arrived < 1.0


def test_latency_keeps_byte_order_across_mode_switches(proxy: FaultProxy) -> None:
    """Chunks stay in order even when the delay shrinks while earlier ones are queued."""
    payload = b"".join(i.to_bytes(4, "big") for i in range(2000))
    with connect(proxy) as sock:
        echo(sock, b"warm")
        proxy.latency(up=0.3, down=0.1)
        for start in range(0, len(payload) // 2, 400):
            sock.sendall(payload[start : start + 400])
        proxy.latency(up=0.0, down=0.0)
        sock.sendall(payload[len(payload) // 2 :])
        assert recv_exactly(sock, len(payload)) == payload


def test_latency_slows_a_grpc_call(grpc_proxy: FaultProxy, channel: grpc.Channel) -> None:
    """A unary call takes at least up + down longer with latency on; pass_through undoes it."""
    stub = EchoStub(channel)
    stub.Unary(b"warm", timeout=2)
    grpc_proxy.latency(up=0.2, down=0.2)
    started = time.monotonic()
    assert stub.Unary(b"slow", timeout=3) == b"slow"
    assert 0.38 <= time.monotonic() - started < 1.5
    grpc_proxy.pass_through()
    started = time.monotonic()
    stub.Unary(b"fast", timeout=2)
    assert time.monotonic() - started < 0.3  # 0.4 s if the latency had stayed


# --- black hole -------------------------------------------------------------------


def test_black_hole_holds_bytes_and_keeps_the_socket_open(
    proxy: FaultProxy, tcp_echo: TcpEchoServer
) -> None:
    """Black hole forwards nothing, closes nothing, and delivers held bytes once healed."""
    with connect(proxy) as sock:
        echo(sock, b"warm")
        proxy.black_hole()
        assert proxy.mode == "black_hole"
        sock.sendall(b"held")
        sock.settimeout(0.5)
        with pytest.raises(TimeoutError):  # no data, no EOF, no reset
            sock.recv(16)
        assert tcp_echo.received == b"warm"
        assert proxy.active_connections == 1
        proxy.pass_through()
        sock.settimeout(2.0)
        assert recv_exactly(sock, 4) == b"held"
    assert tcp_echo.received == b"warmheld"


def test_black_hole_accepts_new_connections_but_does_not_reach_the_target(
    proxy: FaultProxy, tcp_echo: TcpEchoServer
) -> None:
    """A connection made during a black hole is accepted but reaches the target only after it."""
    proxy.black_hole()
    with connect(proxy) as sock:
        sock.sendall(b"early")
        assert wait_until(lambda: proxy.connections_accepted == 1, timeout=2)
        # Proving a negative: no event says "did not connect upstream", so give
        # a wrong upstream connect 0.3 s (many loopback connects) to show up.
        time.sleep(0.3)
        assert tcp_echo.accepted == 0
        proxy.pass_through()
        assert recv_exactly(sock, 5) == b"early"
    assert tcp_echo.accepted == 1


def test_black_hole_makes_a_grpc_call_miss_its_deadline(
    grpc_proxy: FaultProxy, plain_server: EchoServer, channel: grpc.Channel
) -> None:
    """A call with a 0.5 s deadline fails DEADLINE_EXCEEDED; the connection stays up and READY."""
    stub = EchoStub(channel)
    stub.Unary(b"warm", timeout=2)
    connectivity = Connectivity(channel)
    try:
        grpc_proxy.black_hole()
        started = time.monotonic()
        with pytest.raises(grpc.RpcError) as failure:
            stub.Unary(b"lost", timeout=0.5)
        assert failure.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        assert 0.45 <= time.monotonic() - started < 1.5
        assert grpc_proxy.active_connections == 1
        assert plain_server.calls == 1
        assert connectivity.states == [grpc.ChannelConnectivity.READY]
        # Healing: the same connection carries calls again.
        grpc_proxy.pass_through()
        assert stub.Unary(b"again", timeout=2) == b"again"
        assert grpc_proxy.connections_accepted == 1
        assert connectivity.states == [grpc.ChannelConnectivity.READY]
    finally:
        connectivity.close()


# --- reset ------------------------------------------------------------------------


def test_reset_rsts_current_and_new_connections(proxy: FaultProxy) -> None:
    """reset() gives every open connection ECONNRESET and keeps resetting new ones."""
    with connect(proxy) as first, connect(proxy) as second:
        echo(first, b"1")
        echo(second, b"2")
        proxy.reset()
        assert proxy.mode == "reset"
        for sock in (first, second):
            with pytest.raises(ConnectionResetError):
                sock.recv(16)
        assert proxy.active_connections == 0
    assert_reset_on_connect(proxy)
    assert proxy.connections_accepted == 3
    proxy.pass_through()
    with connect(proxy) as healed:
        assert echo(healed, b"ok") == b"ok"


def test_reset_fails_grpc_calls_unavailable_until_pass_through(
    grpc_proxy: FaultProxy, channel: grpc.Channel
) -> None:
    """After reset() calls fail UNAVAILABLE at once; after pass_through() the channel reconnects."""
    stub = EchoStub(channel)
    stub.Unary(b"warm", timeout=2)
    connectivity = Connectivity(channel)
    try:
        grpc_proxy.reset()
        assert wait_until(
            lambda: grpc.ChannelConnectivity.IDLE in connectivity.states, timeout=1
        ), connectivity.states
        started = time.monotonic()
        with pytest.raises(grpc.RpcError) as failure:
            stub.Unary(b"refused", timeout=2)
        assert failure.value.code() == grpc.StatusCode.UNAVAILABLE
        assert time.monotonic() - started < 1.0
        grpc_proxy.pass_through()
        assert stub.Unary(b"back", timeout=3, wait_for_ready=True) == b"back"
    finally:
        connectivity.close()
    assert connectivity.states[0] == grpc.ChannelConnectivity.READY
    assert connectivity.states[1] == grpc.ChannelConnectivity.IDLE
    assert connectivity.states[-1] == grpc.ChannelConnectivity.READY


def test_reset_fails_an_in_flight_grpc_call_unavailable(
    grpc_proxy: FaultProxy, plain_server: EchoServer, channel: grpc.Channel
) -> None:
    """A call waiting for its response when reset() comes fails UNAVAILABLE at once."""
    stub = EchoStub(channel)
    stub.Unary(b"warm", timeout=2)
    grpc_proxy.latency(down=2.0)  # hold the response back
    sent = grpc_proxy.bytes_up
    call = stub.Unary.future(b"in flight", timeout=5)
    assert wait_until(lambda: grpc_proxy.bytes_up > sent, timeout=1)  # the request is through
    assert wait_until(lambda: plain_server.calls == 2, timeout=1)
    assert not call.done()
    started = time.monotonic()
    grpc_proxy.reset()
    with pytest.raises(grpc.RpcError) as failure:
        call.result(timeout=2)
    assert failure.value.code() == grpc.StatusCode.UNAVAILABLE
    assert time.monotonic() - started < 0.5


# --- refuse -----------------------------------------------------------------------


def test_refuse_closes_the_listener_and_pass_through_reopens_the_same_port(
    proxy: FaultProxy,
) -> None:
    """refuse() makes connects fail ECONNREFUSED, leaves open ones alone; the port comes back."""
    port = proxy.port
    with connect(proxy) as existing:
        echo(existing, b"before")
        proxy.refuse()
        assert proxy.mode == "refuse"
        with pytest.raises(ConnectionRefusedError):
            connect(proxy)
        assert echo(existing, b"still") == b"still"
        proxy.pass_through()
        assert proxy.port == port
        with connect(proxy) as fresh:
            assert echo(fresh, b"again") == b"again"
    assert proxy.connections_accepted == 2


def test_refuse_fails_a_new_grpc_channel_unavailable(grpc_proxy: FaultProxy) -> None:
    """A new channel to a refusing proxy fails UNAVAILABLE; after pass_through it connects."""
    grpc_proxy.refuse()
    ch = grpc.insecure_channel(grpc_proxy.address, options=CHANNEL_OPTIONS)
    try:
        with pytest.raises(grpc.RpcError) as failure:
            EchoStub(ch).Unary(b"no", timeout=2)
        assert failure.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "refused" in str(failure.value.details()).lower()
        grpc_proxy.pass_through()
        assert EchoStub(ch).Unary(b"yes", timeout=3, wait_for_ready=True) == b"yes"
    finally:
        ch.close()


# --- lifecycle and edge cases -----------------------------------------------------


def test_stop_closes_connections_joins_the_thread_and_is_idempotent(
    tcp_echo: TcpEchoServer,
) -> None:
    """stop() closes every connection, ends the faultproxy thread, and may be called twice."""
    proxy = FaultProxy(tcp_echo.port).start()
    assert "faultproxy" in [thread.name for thread in threading.enumerate()]
    with connect(proxy) as sock:
        echo(sock, b"x")
        proxy.stop()
        proxy.stop()
        with pytest.raises((ConnectionResetError, EOFError)):
            recv_exactly(sock, 1)
    assert "faultproxy" not in [thread.name for thread in threading.enumerate()]
    with pytest.raises(RuntimeError):
        proxy.pass_through()
    with pytest.raises(RuntimeError):
        proxy.start()


def test_a_down_target_resets_the_client(tcp_echo: TcpEchoServer) -> None:
    """With nothing listening at the target, an accepted client connection is reset."""
    with FaultProxy(free_port()) as proxy:
        assert_reset_on_connect(proxy)
        assert proxy.connections_accepted == 1


def test_only_loopback_targets_and_sane_delays_are_accepted(proxy: FaultProxy) -> None:
    """Non-loopback or named targets and negative or infinite delays raise ValueError."""
    for host in ("10.0.0.1", "localhost", "0.0.0.0"):
        with pytest.raises(ValueError):
            FaultProxy(80, target_host=host)
    for delay in (-0.1, float("inf"), float("nan")):
        with pytest.raises(ValueError):
            proxy.latency(up=delay)
    assert proxy.mode == "pass"


def test_mode_switches_from_many_threads_leave_a_working_proxy(proxy: FaultProxy) -> None:
    """Concurrent mode switches from four threads are safe; pass_through() then works."""
    errors: list[BaseException] = []

    def switch(seed: int) -> None:
        try:
            for i in range(30):
                step = (seed + i) % 5
                if step == 0:
                    proxy.pass_through()
                elif step == 1:
                    proxy.latency(up=0.01, down=0.02)
                elif step == 2:
                    proxy.black_hole()
                elif step == 3:
                    proxy.reset()
                else:
                    proxy.refuse()
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=switch, args=(n,), name=f"switch-{n}") for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert errors == []
    proxy.pass_through()
    with connect(proxy) as sock:
        assert echo(sock, b"fine") == b"fine"
