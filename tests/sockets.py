"""The TCP connections a server on this machine holds, read from ``/proc/net``.

What a pool's client closes shows up on the server's side as a socket that
leaves ESTABLISHED; reading the kernel's table counts the server's real
connections without touching the server or the client. Linux only, like
the rest of the suite's loopback addresses.
"""

from __future__ import annotations

import ipaddress
import socket
import struct

__all__ = ["server_peers"]

_ESTABLISHED = "01"
_TABLES = ("/proc/net/tcp", "/proc/net/tcp6")


def _address(field: str) -> tuple[str, int]:
    """``0100007F:1F90`` (or its IPv6 form) as ``("127.0.0.1", 8080)``."""
    hex_ip, hex_port = field.split(":")
    raw = bytes.fromhex(hex_ip)
    # The kernel prints each 32-bit word in host byte order.
    words = struct.unpack(f"={len(raw) // 4}I", raw)
    packed = struct.pack(f"!{len(words)}I", *words)
    ip = ipaddress.ip_address(packed)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return str(ip), int(hex_port, 16)


def server_peers(host: str, port: int) -> set[int]:
    """The client ports of the established connections a server on ``host:port`` holds.

    A dual-stack server lists its IPv4 clients in ``tcp6`` as mapped
    addresses; both tables are read.
    """
    wanted = (socket.inet_ntoa(socket.inet_aton(host)), port)
    peers: set[int] = set()
    for table in _TABLES:
        try:
            with open(table, encoding="ascii") as lines:
                next(lines)
                for line in lines:
                    fields = line.split()
                    if fields[3] == _ESTABLISHED and _address(fields[1]) == wanted:
                        peers.add(_address(fields[2])[1])
        except FileNotFoundError:  # no IPv6 in this kernel
            continue
    return peers
