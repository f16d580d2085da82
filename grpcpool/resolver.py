"""Resolvers: how a pool learns the addresses behind its endpoint's host.

A pool with many backends pins each connection to one address and spreads
its connections evenly over them, so it needs the list of addresses, not
just a host name for grpc to resolve on its own. A *resolver* is any
callable ``(host, port) -> ["ip:port", "[v6]:port", ...]``;
:func:`system_resolver` asks the operating system (every A and AAAA answer),
and :func:`static_resolver` returns a fixed replica list.

An address is always an IP literal with a port: the pool connects to exactly
these, so a host name in an answer would be resolved again by grpc, maybe to
another replica, and the spread would no longer be what the pool planned.
Every answer, from a built-in or a custom resolver, goes through
:func:`normalize`, which checks that shape and removes duplicates. Addresses
come out in canonical form (``"[::1]:80"``, not ``"[0::1]:080"``), so two
spellings of one replica count as one.

Error messages name an entry by its index and say what is wrong with it,
without quoting it: a resolver's answer is user data of unknown shape, and a
misplaced token or password must not end up in a log.

A resolver may also *push* (:class:`PushResolver`): an object with
``watch(host, port, on_change) -> handle`` that calls ``on_change(addresses)``
whenever the set changes, from any thread, until ``handle.close()``. A pool
follows it instead of polling; :class:`grpcpool.etcd.EtcdResolver` (also
importable from here) follows a prefix of etcd in grpc-go's endpoints format.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

from grpcpool._push import (
    AddressSet,
    AsyncPushResolver,
    PushResolver,
    WatchHandle,
    is_async_form,
    is_push,
)
from grpcpool.errors import GrpcPoolError, shorten

if TYPE_CHECKING:
    from grpcpool.etcd import EtcdResolver

__all__ = [
    "AddressSet",
    "AsyncPushResolver",
    "EtcdResolver",
    "PushResolver",
    "ResolveError",
    "Resolver",
    "StaticResolver",
    "WatchHandle",
    "address_host",
    "is_async_form",
    "is_push",
    "normalize",
    "normalize_pushed",
    "static_resolver",
    "system_resolver",
]

Resolver = Callable[[str, int], Sequence[str]]
"""``(host, port) -> addresses``, each ``"ip:port"`` or ``"[v6]:port"``."""

_ADDRESS_SHAPE = "write 'ip:port' or '[ipv6]:port'"


class ResolveError(GrpcPoolError, OSError):
    """A host could not be resolved, or a resolver's answer is unusable.

    It is an ``OSError`` because a failed lookup is one (``socket.gaierror``
    is the usual cause, kept as ``__cause__``), so code that already catches
    network errors catches this too.

    Attributes:
        host: The host that was looked up, when the error is about a lookup.
    """

    def __init__(self, problem: str, *, host: str | None = None) -> None:
        self.host = host
        super().__init__(problem)


def _join(ip: ipaddress.IPv4Address | ipaddress.IPv6Address, port: int) -> str:
    """The address grpc expects: ``1.2.3.4:80`` or ``[::1]:80``."""
    if ip.version == 6:
        return f"[{ip}]:{port}"
    return f"{ip}:{port}"


def _ip_literal(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """``host`` as an IP address if it is one (``"::1"`` or ``"[::1]"``), else None."""
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def _check_port(port: object) -> int:
    if isinstance(port, bool) or not isinstance(port, int):
        raise ValueError(f"port must be an int in 1..65535, not a {type(port).__name__}")
    if not 1 <= port <= 65535:
        raise ValueError(f"port must be in 1..65535, not {port}")
    return port


def system_resolver(host: str, port: int) -> tuple[str, ...]:
    """Every IPv4 and IPv6 address the operating system gives for ``host``.

    Asks ``socket.getaddrinfo`` (so ``/etc/hosts``, DNS and whatever else the
    system is configured with), keeps the order it answered in and drops
    duplicates. An IP literal is returned as it is, formatted, without a
    lookup. An IPv6 link-local address keeps its ``%scope``, which grpc
    accepts in a target.

    Args:
        host: A host name or an IP literal (``"::1"`` or ``"[::1]"``).
        port: The port every address gets, 1..65535.

    Returns:
        ``("1.2.3.4:443", "[2001:db8::1]:443", ...)``, never empty.

    Raises:
        ResolveError: The lookup failed or found no IPv4 or IPv6 address.
        ValueError: ``port`` is not an int in 1..65535.
    """
    port = _check_port(port)
    literal = _ip_literal(host)
    if literal is not None:
        return (_join(literal, port),)
    shown = shorten(repr(host), 120)
    try:
        answers = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as error:
        # UnicodeError: a label the IDNA codec refuses (empty, over 63 characters).
        cause = shorten(str(error) or type(error).__name__, 160)
        raise ResolveError(f"cannot resolve host {shown}: {cause}", host=host) from error
    found: dict[str, None] = {}
    for family, _type, _proto, _name, sockaddr in answers:
        if family in (socket.AF_INET, socket.AF_INET6):
            ip = _ip_literal(str(sockaddr[0]))
            if ip is not None:
                found[_join(ip, port)] = None
    if not found:
        raise ResolveError(
            f"cannot resolve host {shown}: the system gave no IPv4 or IPv6 address", host=host
        )
    return tuple(found)


def _address_problem(entry: object) -> tuple[str | None, str]:
    """``(None, canonical address)`` for a good entry, else ``(problem, "")``.

    The problem names what is wrong, never the entry's text.
    """
    if not isinstance(entry, str):
        return f"is a {'None' if entry is None else type(entry).__name__}, not a str", ""
    if not entry:
        return "is empty", ""
    if entry != entry.strip():
        return "has leading or trailing whitespace", ""
    if entry.startswith("["):
        host, bracket, port = entry[1:].partition("]:")
        if not bracket:
            return f"has no ']:port' after its '[ipv6' part; {_ADDRESS_SHAPE}", ""
        try:
            ip: ipaddress.IPv4Address | ipaddress.IPv6Address = ipaddress.IPv6Address(host)
        except ValueError:
            return "has no IPv6 address inside its brackets", ""
    else:
        host, colon, port = entry.rpartition(":")
        if not colon:
            return f"has no ':port'; {_ADDRESS_SHAPE}", ""
        if ":" in host:
            return "looks like an IPv6 address without brackets; write '[ipv6]:port'", ""
        try:
            ip = ipaddress.IPv4Address(host)
        except ValueError:
            return (
                "has no IPv4 address before its port (host names are not accepted: "
                f"the pool connects to exactly these addresses); {_ADDRESS_SHAPE}",
                "",
            )
    if not (port.isascii() and port.isdigit() and len(port) <= 5 and 1 <= int(port) <= 65535):
        return "has a port that is not a number in 1..65535", ""
    return None, _join(ip, int(port))


class StaticResolver:
    """A resolver that always answers the same addresses, whatever the host.

    Built by :func:`static_resolver`; two with the same addresses are equal,
    so configurations holding them compare equal.

    Attributes:
        addresses: The checked addresses, canonical and without duplicates.
    """

    __slots__ = ("addresses",)

    def __init__(self, addresses: Iterable[str]) -> None:
        if isinstance(addresses, str | bytes):
            raise ValueError(
                "static_resolver takes a list of 'ip:port' strings, not a single "
                f"{type(addresses).__name__}; wrap one address in a list"
            )
        found: dict[str, None] = {}
        for index, entry in enumerate(addresses):
            problem, address = _address_problem(entry)
            if problem is not None:
                raise ValueError(f"static_resolver: address [{index}] {problem}")
            found[address] = None
        if not found:
            raise ValueError("static_resolver: no addresses; give at least one 'ip:port'")
        self.addresses: tuple[str, ...] = tuple(found)

    def __call__(self, host: str, port: int) -> tuple[str, ...]:
        return self.addresses

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, StaticResolver):
            return NotImplemented
        return self.addresses == other.addresses

    def __hash__(self) -> int:
        return hash(self.addresses)

    def __repr__(self) -> str:
        count = len(self.addresses)
        return f"<StaticResolver {count} address{'' if count == 1 else 'es'}>"


def static_resolver(addresses: Iterable[str]) -> StaticResolver:
    """A resolver for a fixed replica list.

    For replicas behind one name that DNS does not list one by one::

        endpoint={"host": "kv.internal", "port": 443,
                  "resolver": grpcpool.static_resolver(["10.0.0.1:443", "10.0.0.2:443"])}

    The host and port the pool passes are ignored; TLS still checks the
    server's certificate against ``host``.

    Args:
        addresses: ``"ipv4:port"`` or ``"[ipv6]:port"`` strings, port
            1..65535. Host names are refused: the pool connects to exactly
            these addresses. Duplicates are dropped.

    Raises:
        ValueError: An entry is malformed (named by its index), or there is none.
    """
    return StaticResolver(addresses)


def normalize(answer: object, resolver_name: str) -> tuple[str, ...]:
    """Checks what a resolver answered and returns it canonical, without duplicates.

    Args:
        answer: What the resolver returned; must be a sequence (not a
            string) of ``"ip:port"`` or ``"[v6]:port"`` strings.
        resolver_name: Named in the error, e.g. ``"system_resolver"``.

    Returns:
        The addresses in the order given, never empty.

    Raises:
        ResolveError: The answer is not such a sequence, is empty, or has a
            bad entry (named by its index).
    """
    what = f"resolver {shorten(resolver_name, 80)}"
    if isinstance(answer, str | bytes | bytearray) or not isinstance(answer, Sequence):
        kind = "None" if answer is None else type(answer).__name__
        raise ResolveError(f"{what} returned a {kind}; it must return a list of 'ip:port' strings")
    try:
        entries = list(answer)
    except Exception as error:
        raise ResolveError(
            f"{what} returned a {type(answer).__name__} that raised "
            f"{type(error).__name__} when read"
        ) from error
    found: dict[str, None] = {}
    for index, entry in enumerate(entries):
        problem, address = _address_problem(entry)
        if problem is not None:
            raise ResolveError(f"{what}: address [{index}] {problem}")
        found[address] = None
    if not found:
        raise ResolveError(f"{what} returned no addresses")
    return tuple(found)


def normalize_pushed(answer: object, resolver_name: str) -> tuple[str, ...]:
    """:func:`normalize` for a pushed set, which may be empty (the registry has none).

    Raises:
        ResolveError: The set is not a sequence of good addresses.
    """
    if isinstance(answer, Sequence) and not isinstance(answer, str | bytes) and len(answer) == 0:
        return ()
    return normalize(answer, resolver_name)


def address_host(address: str) -> str:
    """The IP of an address: ``"1.2.3.4:80"`` -> ``"1.2.3.4"``, ``"[::1]:80"`` -> ``"::1"``."""
    if address.startswith("["):
        return address[1 : address.index("]")]
    return address.rpartition(":")[0]


def __getattr__(name: str) -> Any:
    # EtcdResolver runs a pool of its own, so it lives above the public API
    # (grpcpool.etcd); it is offered here too, loaded on first use.
    if name == "EtcdResolver":
        from importlib import import_module

        return import_module("grpcpool.etcd").EtcdResolver
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
