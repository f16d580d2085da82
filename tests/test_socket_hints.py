"""The kernel's hang-up news the watcher sleeps on, against real loopback TCP sockets.

Plain sockets stand in for grpcio's connections here (grpcio's own are in
tests/test_connection_watcher.py and tests/test_grpcio_contract.py): a
listener, clients connected to it, and the server's ends, so each test can
close any end the way it wants.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest

from grpcpool.connection import _sockets
from grpcpool.connection._sockets import SocketHints

WAIT = 5.0


class Loopback:
    """A listener on 127.0.0.1 and the connections made to it; all closed afterwards."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self._sockets: list[socket.socket] = [self.listener]

    def connect(self) -> tuple[socket.socket, socket.socket]:
        """A new connection: (client end, server end)."""
        client = socket.create_connection(("127.0.0.1", self.port), timeout=WAIT)
        server, _ = self.listener.accept()
        self._sockets += [client, server]
        return client, server

    def close(self) -> None:
        for sock in self._sockets:
            sock.close()


@pytest.fixture
def loopback() -> Iterator[Loopback]:
    """A listener to connect to; every socket of it closed afterwards."""
    made = Loopback()
    try:
        yield made
    finally:
        made.close()


@pytest.fixture
def hints() -> Iterator[SocketHints]:
    """A SocketHints of the test's own, closed afterwards."""
    made = SocketHints.create()
    if made is None:
        pytest.skip("no epoll, eventfd or /proc/self/fd here")
    try:
        yield made
    finally:
        made.close()


def heard(hints: SocketHints, timeout: float = WAIT) -> bool:
    """Waits until a held connection hangs up (True) or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        if hints.wait(left):
            return True
    return False


def test_connections_to_a_watched_port_are_held(hints: SocketHints, loopback: Loopback) -> None:
    """A scan holds every client end connected to the port, and only those: not the
    listener, not the server ends (whose peer is a client's port), not twice."""
    for _ in range(3):
        loopback.connect()
    assert hints.scan({loopback.port}) == 3
    assert hints.held(loopback.port) == 3
    assert hints.scan({loopback.port}) == 0  # already held
    assert hints.holding == 3


def test_connections_to_other_ports_are_left_alone(hints: SocketHints, loopback: Loopback) -> None:
    """Nothing is held for a port no connection goes to."""
    loopback.connect()
    assert hints.scan({1}) == 0  # tcpmux: nothing here connects to it
    assert hints.holding == 0


def test_a_peer_closing_is_heard_at_once(hints: SocketHints, loopback: Loopback) -> None:
    """The server closing its end wakes a wait with True; the duplicate is let go."""
    _, server = loopback.connect()
    loopback.connect()
    hints.scan({loopback.port})
    assert not hints.wait(0.05)  # nothing happened yet
    started = time.monotonic()
    server.close()
    assert heard(hints)
    assert time.monotonic() - started < 1.0  # the kernel's news, not a timeout
    assert hints.held(loopback.port) == 1
    assert hints.hangups == 1


def test_a_shutdown_by_the_owner_is_heard(hints: SocketHints, loopback: Loopback) -> None:
    """An owner that shuts its socket down and closes it (grpcio's way) is heard,
    even though its descriptor is gone by the time anyone looks."""
    client, _ = loopback.connect()
    hints.scan({loopback.port})
    client.shutdown(socket.SHUT_RDWR)
    client.close()
    assert heard(hints)
    assert hints.holding == 0


def test_a_socket_closed_without_a_shutdown_is_let_go_by_the_audit(
    hints: SocketHints, loopback: Loopback
) -> None:
    """A client end closed without a shutdown stays open while its duplicate is held
    (its server sees no end); the audit lets the duplicate go, and the server sees it."""
    client, server = loopback.connect()
    hints.scan({loopback.port})
    client.close()
    server.settimeout(0.2)
    with pytest.raises(TimeoutError):
        server.recv(1)  # still open: the duplicate holds it
    hints.audit()
    assert hints.holding == 0
    server.settimeout(WAIT)
    assert server.recv(1) == b""  # closed now


def test_wake_ends_a_wait_without_a_hang_up(hints: SocketHints) -> None:
    """wake() (a new watch, say) ends a wait early; the wait reports no hang-up."""
    hints.wake()
    started = time.monotonic()
    assert not hints.wait(WAIT)
    assert time.monotonic() - started < WAIT / 2


def test_letting_go_of_all_closes_every_duplicate(hints: SocketHints, loopback: Loopback) -> None:
    """let_go_all() (the watcher thread ending) lets every held connection go."""
    for _ in range(2):
        loopback.connect()
    hints.scan({loopback.port})
    hints.let_go_all()
    assert hints.holding == 0
    assert hints.held(loopback.port) == 0


def test_near_the_descriptor_limit_nothing_is_held(
    hints: SocketHints, loopback: Loopback, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A process near its descriptor limit gets no duplicates: they must never be
    what makes it run out."""
    loopback.connect()
    monkeypatch.setattr(hints, "_room", 0)
    assert hints.scan({loopback.port}) == 0


def test_without_proc_there_are_no_hints(monkeypatch: pytest.MonkeyPatch) -> None:
    """Where /proc/self/fd does not exist, create() gives None (the watcher then
    sweeps fast, as before)."""
    monkeypatch.setattr(_sockets, "_FD_DIR", "/nonexistent/fd")
    assert SocketHints.create() is None
