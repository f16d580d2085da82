"""Hearing from the kernel that a watched connection hung up (Linux).

grpcio gives no way for one thread to wait for state changes of many sync
channels: ``watch_connectivity_state`` blocks its caller on the channel's own
completion queue, so waiting would take a thread per channel. But each
connection is a TCP socket of this process, and the kernel tells an epoll
instance the moment a socket's peer closes or resets it, or grpcio shuts it
down (``EPOLLRDHUP``, ``EPOLLHUP``, ``EPOLLERR``). Data arriving does not
count (``EPOLLIN`` is not asked for), so busy connections wake nobody.

The watcher cannot register grpcio's own descriptor: when grpcio lets a
connection go (say on the GOAWAY of a server stopping gracefully) it shuts the
socket down and closes the descriptor at once, and the kernel drops an epoll
registration, event and all, with the last descriptor of its socket. So
:class:`SocketHints` holds a duplicate of each descriptor. grpcio shuts its
sockets down before closing them, so the duplicate hears the hang-up, and the
watcher lets the duplicate go at once (pinned by tests/test_grpcio_contract.py).
A socket closed without a shutdown (another library's connection to the same
port, say) would be kept open by its duplicate: :meth:`SocketHints.audit`
lets go of duplicates whose original descriptor has gone.

Sockets are found in ``/proc/self/fd``: every socket not seen before whose
peer is on a watched port is duplicated and registered. Nothing here calls
grpcio. Where any of this is missing (not Linux), :meth:`SocketHints.create`
returns None and the watcher keeps sweeping fast, as it did before.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import resource
import select
import socket
import threading
from collections import Counter
from collections.abc import Callable, Collection, Mapping
from typing import NamedTuple

__all__ = ["Sleeper", "SocketHints", "target_port"]

_log = logging.getLogger(__name__)

_FD_DIR = "/proc/self/fd"
_SOCKET_LINK = "socket:["
# What a held socket is registered for; EPOLLHUP and EPOLLERR are always
# reported. One shot: the duplicate is let go after its first event anyway.
_HANG_UP = getattr(select, "EPOLLRDHUP", 0) | getattr(select, "EPOLLONESHOT", 0)
_TCP = (socket.AF_INET, socket.AF_INET6)

# Seconds between two looks for new connections in /proc/self/fd after a
# watched channel became READY (or a held one hung up: grpcio may have made
# another) ...
LOOK_INTERVAL = 0.1
# ... and while some ready channel's connection is not held (it may be one no
# look can find, a proxy's say: not too often, then).
SHORTFALL_LOOK_INTERVAL = 5.0
# Seconds between two audits of the held duplicates while idle.
AUDIT_INTERVAL = 10.0


class _Held(NamedTuple):
    original: int  # the descriptor number it was duplicated from
    link: str  # "socket:[inode]", what /proc/self/fd/<original> read
    port: int  # the peer's port


class SocketHints:
    """An epoll instance holding duplicates of the process's connections to watched ports.

    Used by the watcher thread only, except :meth:`wake` (any thread). The
    epoll instance and the wake-up eventfd live as long as the watcher (the
    process); the duplicates only while the watcher thread runs (the
    thread lets them go with :meth:`let_go_all` when it ends).

    Attributes:
        hangups: How many held connections have hung up so far.
    """

    def __init__(self) -> None:
        self._epoll = select.epoll()
        try:
            self._wakeup = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
            self._epoll.register(self._wakeup, select.EPOLLIN)
        except BaseException:
            self._epoll.close()
            raise
        # Guards _closed against wake() racing close(): a write to a closed
        # (and maybe reused) descriptor number would land in someone's file.
        # (The watcher's instance is closed only in a forked child.)
        self._lock = threading.Lock()
        self._closed = False
        self._held: dict[int, _Held] = {}  # duplicate -> what it holds
        self._links: set[str] = set()  # links of the sockets held
        self._ports: Counter[int] = Counter()  # sockets held, by peer port
        # Sockets looked at and not held (peer on another port): not again.
        self._foreign: set[str] = set()
        # A process near its descriptor limit must not run out because of us.
        self._room = resource.getrlimit(resource.RLIMIT_NOFILE)[0] // 2
        # When to look for new connections next (inf: no need), and last did.
        self._look_at = math.inf
        self._looked_at = -math.inf
        self._audit_at = 0.0
        self.hangups = 0

    @classmethod
    def create(cls) -> SocketHints | None:
        """A new instance, or None where the kernel or Python lacks what it needs."""
        if not (hasattr(select, "epoll") and hasattr(os, "eventfd") and _HANG_UP):
            return None
        if not os.path.isdir(_FD_DIR):
            return None
        try:
            return cls()
        except OSError as error:
            _log.warning("cannot listen for connection hang-ups (%s); sweeping instead", error)
            return None

    # --- any thread ------------------------------------------------------------------

    def wake(self) -> None:
        """Ends a :meth:`wait` under way (or the next one) early."""
        with self._lock:
            if not self._closed:
                os.eventfd_write(self._wakeup, 1)

    # --- the watcher thread --------------------------------------------------------------

    def wait(self, timeout: float) -> bool:
        """Waits up to ``timeout`` seconds for a hang-up or a :meth:`wake`.

        Returns:
            True if a held connection hung up (its duplicate is let go).
        """
        hung_up = False
        for fd, _ in self._epoll.poll(timeout):
            if fd == self._wakeup:
                # Already read if one wake was reported twice.
                with contextlib.suppress(BlockingIOError):
                    os.eventfd_read(self._wakeup)
            elif fd in self._held:
                self._let_go(fd)
                self.hangups += 1
                hung_up = True
        return hung_up

    def look_soon(self, interval: float = LOOK_INTERVAL) -> None:
        """Asks for a :meth:`scan` ``interval`` seconds after the last one, at the latest."""
        self._look_at = min(self._look_at, self._looked_at + interval)

    def look_if_due(self, now: float, ports: Callable[[], Collection[int]]) -> None:
        """Scans for connections to ``ports()`` if a look asked for is due."""
        if now < self._look_at:
            return
        self._look_at, self._looked_at = math.inf, now
        wanted = ports()
        if wanted:
            self.scan(wanted)

    def hold_all(self, ready: Mapping[int, int]) -> bool:
        """Whether as many connections are held per port as ``ready`` counts channels.

        If not, a look is asked for (some connection was not found yet).
        """
        if all(self._ports[port] >= count for port, count in ready.items()):
            return True
        self.look_soon(SHORTFALL_LOOK_INTERVAL)
        return False

    def audit_if_due(self, now: float) -> None:
        """:meth:`audit`, at most once per :data:`AUDIT_INTERVAL`."""
        if now >= self._audit_at:
            self._audit_at = now + AUDIT_INTERVAL
            self.audit()

    def held(self, port: int) -> int:
        """How many connections to ``port`` are held (would be heard hanging up)."""
        return self._ports[port]

    def scan(self, ports: Collection[int]) -> int:
        """Holds every connection of this process to one of ``ports`` not held yet.

        Returns:
            How many connections it newly holds.
        """
        try:
            names = os.listdir(_FD_DIR)
        except OSError:
            return 0
        room = self._room - len(names)
        if room <= 0:
            return 0
        seen: set[str] = set()
        added = 0
        for name in names:
            fd = int(name)
            if fd in self._held or fd == self._wakeup:
                continue
            link = _link(fd)
            if link is None or not link.startswith(_SOCKET_LINK):
                continue
            seen.add(link)
            if link in self._links or link in self._foreign or room <= 0:
                continue
            if self._hold(fd, link, ports):
                added += 1
                room -= 1
        self._foreign &= seen  # closed sockets' numbers may come back
        return added

    def audit(self) -> None:
        """Lets go of every duplicate whose original descriptor was closed.

        grpcio shuts a socket down before closing it, which :meth:`wait` hears;
        this is for a socket someone closed without a shutdown, which the
        duplicate alone would keep open.
        """
        for fd, held in list(self._held.items()):
            if _link(held.original) != held.link:
                self._let_go(fd)

    def let_go_all(self) -> None:
        """Lets go of every duplicate (the watcher thread is ending)."""
        for fd in list(self._held):
            self._let_go(fd)
        self._foreign.clear()

    def close(self) -> None:
        """Closes every descriptor of this instance; :meth:`wake` does nothing after. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        for fd in self._held:
            _close(fd)
        self._held.clear()
        self._links.clear()
        self._ports.clear()
        self._epoll.close()
        _close(self._wakeup)

    def after_fork_in_child(self) -> None:
        """Closes a forked child's copy of the parent's instance.

        Only one thread exists in the child and the lock may have been
        copied held, so it is replaced first.
        """
        self._lock = threading.Lock()
        self.close()

    @property
    def holding(self) -> int:
        """How many connections are held."""
        return len(self._held)

    def __repr__(self) -> str:
        return f"<SocketHints holding {len(self._held)} hangups={self.hangups}>"

    # --- inside -------------------------------------------------------------------------

    def _hold(self, fd: int, link: str, ports: Collection[int]) -> bool:
        try:
            duplicate = os.dup(fd)
        except OSError:
            return False
        try:
            port = _peer_port(duplicate, link)
        except OSError:
            # Not connected (yet), or gone meanwhile: look again next time.
            _close(duplicate)
            return False
        if port is None or port not in ports:
            self._foreign.add(link)
            _close(duplicate)
            return False
        try:
            self._epoll.register(duplicate, _HANG_UP)
        except OSError:
            _close(duplicate)
            return False
        self._held[duplicate] = _Held(fd, link, port)
        self._links.add(link)
        self._ports[port] += 1
        return True

    def _let_go(self, fd: int) -> None:
        held = self._held.pop(fd)
        self._links.discard(held.link)
        self._ports[held.port] -= 1
        if self._ports[held.port] <= 0:
            del self._ports[held.port]
        # Unregister first: the registration belongs to the socket, which
        # may outlive this descriptor, and would otherwise report later
        # events under a number the process may have reused.
        with contextlib.suppress(OSError):
            self._epoll.unregister(fd)
        _close(fd)


class Sleeper:
    """What the watcher thread sleeps on where the kernel cannot tell of hang-ups."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def wake(self) -> None:
        """Ends a :meth:`wait` under way (or the next one) early."""
        self._event.set()

    def wait(self, timeout: float) -> bool:
        """Waits up to ``timeout`` seconds for a :meth:`wake`; never hears a hang-up."""
        self._event.wait(timeout)
        self._event.clear()  # the watcher looks at everything after any wake-up
        return False


def target_port(target: str) -> int | None:
    """The TCP port a channel opened with ``target`` connects to, if one port is certain.

    ``host:port``, ``[v6]:port``, ``dns:///host:port`` and
    ``ipv4:``/``ipv6:`` with one address name it; a Unix socket, several
    addresses or a target without a port do not (None).

    >>> target_port("dns:///example.com:443"), target_port("[::1]:50051")
    (443, 50051)
    >>> target_port("unix:/tmp/socket") is None
    True
    """
    rest = target
    if "://" in rest:
        rest = rest.split("://", 1)[1].split("/", 1)[-1]
    elif rest.startswith(("dns:", "ipv4:", "ipv6:")):
        rest = rest.split(":", 1)[1]
    elif rest.startswith("unix"):
        return None
    if "," in rest or ":" not in rest:
        return None
    host, _, port = rest.rpartition(":")
    if host.count(":") and not (host.startswith("[") and host.endswith("]")):
        return None  # a bare IPv6 address: its last group is no port
    if not port.isdigit() or not 0 < int(port) < 65536:
        return None
    return int(port)


def _link(fd: int) -> str | None:
    try:
        return os.readlink(f"{_FD_DIR}/{fd}")
    except OSError:
        return None


def _peer_port(duplicate: int, link: str) -> int | None:
    """The peer's port of a connected TCP socket, or None for any other socket.

    Raises:
        OSError: Not connected, or ``duplicate`` is not the socket ``link``
            names (its original number was closed and reused meanwhile).
    """
    if _link(duplicate) != link:
        raise OSError("descriptor reused meanwhile")
    sock = socket.socket(fileno=duplicate)
    try:
        if sock.family not in _TCP or sock.type != socket.SOCK_STREAM:
            return None
        peer = sock.getpeername()
    finally:
        sock.detach()  # the duplicate stays open; its owner closes it
    return int(peer[1])


def _close(fd: int) -> None:
    with contextlib.suppress(OSError):
        os.close(fd)
