"""Tests for grpcpool.resolver: the system and static resolvers, and answer checks.

Lookups go no further than the machine's own resolver: IP literals,
``localhost``, and a name under ``.invalid``, which never resolves. The
order and de-duplication of getaddrinfo's answers are pinned with a stand-in
for ``socket.getaddrinfo``.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterator, Sequence
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from grpcpool.errors import GrpcPoolError
from grpcpool.resolver import (
    ResolveError,
    StaticResolver,
    address_host,
    normalize,
    static_resolver,
    system_resolver,
)

# Stands for a secret put where an address belongs; no message may quote it.
SECRET = "hunter2-token"


def no_lookup(*args: Any, **kwargs: Any) -> Any:
    raise AssertionError("getaddrinfo was called")


def answers(*entries: tuple[socket.AddressFamily, str]) -> list[Any]:
    """What getaddrinfo returns for ``(family, ip)`` pairs, port 80."""
    result: list[Any] = []
    for family, ip in entries:
        sockaddr = (ip, 80) if family == socket.AF_INET else (ip, 80, 0, 0)
        result.append((family, socket.SOCK_STREAM, 6, "", sockaddr))
    return result


def test_ipv4_literal_is_returned_without_lookup(monkeypatch: pytest.MonkeyPatch) -> None:
    """An IPv4 literal host answers itself with the port, and getaddrinfo is not called."""
    monkeypatch.setattr(socket, "getaddrinfo", no_lookup)
    assert system_resolver("127.0.0.1", 8080) == ("127.0.0.1:8080",)


def test_ipv6_literal_is_bracketed(monkeypatch: pytest.MonkeyPatch) -> None:
    """An IPv6 literal host, bare or bracketed, answers "[v6]:port" without a lookup."""
    monkeypatch.setattr(socket, "getaddrinfo", no_lookup)
    assert system_resolver("::1", 443) == ("[::1]:443",)
    assert system_resolver("[::1]", 443) == ("[::1]:443",)
    assert system_resolver("fe80::1%eth0", 443) == ("[fe80::1%eth0]:443",)


def test_localhost_resolves_to_loopback() -> None:
    """localhost gives 127.0.0.1:port, and [::1]:port too when the system lists ::1."""
    port = 50051
    found = system_resolver("localhost", port)
    assert "127.0.0.1:50051" in found
    system = {info[4][0] for info in socket.getaddrinfo("localhost", port, type=socket.SOCK_STREAM)}
    if "::1" in system:
        assert "[::1]:50051" in found
    assert len(set(found)) == len(found)


def test_unresolvable_host_raises_resolve_error_naming_it() -> None:
    """A name under .invalid fails with a ResolveError (an OSError) naming the host."""
    with pytest.raises(ResolveError) as caught:
        system_resolver("no-such-host.invalid", 443)
    error = caught.value
    assert isinstance(error, OSError)
    assert isinstance(error, GrpcPoolError)
    assert "no-such-host.invalid" in str(error)
    assert error.host == "no-such-host.invalid"
    assert isinstance(error.__cause__, OSError)


def test_host_the_idna_codec_refuses_is_a_resolve_error() -> None:
    """A label longer than 63 characters fails as a ResolveError, not a UnicodeError."""
    with pytest.raises(ResolveError, match="cannot resolve host"):
        system_resolver("a" * 64 + ".invalid", 443)


def test_answers_keep_order_and_drop_duplicates(monkeypatch: pytest.MonkeyPatch) -> None:
    """getaddrinfo's A and AAAA answers come back in its order, each once, IPv6 bracketed."""
    given = answers(
        (socket.AF_INET6, "2001:db8::1"),
        (socket.AF_INET, "10.0.0.2"),
        (socket.AF_INET6, "2001:db8::1"),
        (socket.AF_INET, "10.0.0.1"),
        (socket.AF_INET, "10.0.0.2"),
    )
    monkeypatch.setattr(socket, "getaddrinfo", lambda *args, **kwargs: given)
    assert system_resolver("kv.internal", 80) == (
        "[2001:db8::1]:80",
        "10.0.0.2:80",
        "10.0.0.1:80",
    )


def test_lookup_with_no_ip_answer_is_a_resolve_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """A lookup that gives no IPv4 or IPv6 address raises ResolveError naming the host."""
    monkeypatch.setattr(socket, "getaddrinfo", lambda *args, **kwargs: [])
    with pytest.raises(ResolveError, match=r"'kv\.internal'.*no IPv4 or IPv6"):
        system_resolver("kv.internal", 80)


@pytest.mark.parametrize("port", [0, 65536, -1, True, "443", None])
def test_system_resolver_refuses_bad_ports(port: Any) -> None:
    """A port that is not an int in 1..65535 is a ValueError, before any lookup."""
    with pytest.raises(ValueError, match=r"1\.\.65535"):
        system_resolver("127.0.0.1", port)


def test_static_resolver_answers_its_addresses_whatever_asked() -> None:
    """A static resolver returns its checked addresses, in order, for any host and port."""
    resolver = static_resolver(["10.0.0.1:443", "[2001:db8::2]:443", "10.0.0.3:8443"])
    expected = ("10.0.0.1:443", "[2001:db8::2]:443", "10.0.0.3:8443")
    assert resolver("kv.internal", 443) == expected
    assert resolver("other", 1) == expected
    assert isinstance(resolver, StaticResolver)
    assert repr(resolver) == "<StaticResolver 3 addresses>"
    assert repr(static_resolver(["10.0.0.1:1"])) == "<StaticResolver 1 address>"


def test_static_resolver_is_canonical_and_deduplicated() -> None:
    """Two spellings of one address count once, in canonical form; equal lists compare equal."""
    resolver = static_resolver(
        iter(["[0:0::1]:0443", "[::1]:443", "10.0.0.1:80", "10.0.0.1:80", "[fe80::1%eth0]:80"])
    )
    assert resolver.addresses == ("[::1]:443", "10.0.0.1:80", "[fe80::1%eth0]:80")
    assert resolver == static_resolver(["[::1]:443", "10.0.0.1:80", "[fe80::1%eth0]:80"])
    assert hash(resolver) == hash(
        static_resolver(["[::1]:443", "10.0.0.1:80", "[fe80::1%eth0]:80"])
    )
    assert resolver != static_resolver(["[::1]:443"])


BAD_ENTRIES = [
    (None, "is a None, not a str"),
    (443, "is a int, not a str"),
    (b"10.0.0.1:443", "is a bytes, not a str"),
    ("", "is empty"),
    (f" {SECRET}:443", "whitespace"),
    (SECRET, "no ':port'"),
    (f"{SECRET}:443", "host names are not accepted"),
    ("10.0.0.1", "no ':port'"),
    ("010.0.0.1:443", "no IPv4 address"),
    ("::1:443", "without brackets"),
    (f"[{SECRET}]:443", "no IPv6 address inside its brackets"),
    (f"[::1]{SECRET}", "no ']:port'"),
    ("[10.0.0.1]:443", "no IPv6 address"),
    ("10.0.0.1:0", "port that is not a number in 1..65535"),
    ("10.0.0.1:65536", "1..65535"),
    ("10.0.0.1:+443", "1..65535"),
    ("10.0.0.1: 443", "1..65535"),
    ("10.0.0.1:\u0664\u0664\u0663", "1..65535"),
    ("10.0.0.1:", "1..65535"),
    ("[::1]:000443", "1..65535"),
    (f"10.0.0.1:{SECRET}", "1..65535"),
]


@pytest.mark.parametrize(("entry", "problem"), BAD_ENTRIES)
def test_static_resolver_names_bad_entry_by_index(entry: Any, problem: str) -> None:
    """A bad entry is a ValueError naming its index and the problem, never its text."""
    with pytest.raises(ValueError) as caught:
        static_resolver(["10.0.0.9:443", entry])
    message = str(caught.value)
    assert "address [1]" in message
    assert problem in message
    assert SECRET not in message


def test_static_resolver_refuses_a_single_string_and_an_empty_list() -> None:
    """One string (not a list of them) and an empty list are ValueErrors saying what to give."""
    with pytest.raises(ValueError, match="not a single str") as caught:
        static_resolver(f"10.0.0.1:443,{SECRET}")
    assert SECRET not in str(caught.value)
    with pytest.raises(ValueError, match="no addresses"):
        static_resolver([])


def test_normalize_returns_canonical_addresses_once() -> None:
    """normalize accepts a list or tuple, keeps the order, drops duplicates, canonicalises."""
    answer = ["10.0.0.2:80", "[::1]:80", "10.0.0.2:80", "[0::1]:80"]
    assert normalize(answer, "mine") == ("10.0.0.2:80", "[::1]:80")
    assert normalize(("10.0.0.1:1",), "mine") == ("10.0.0.1:1",)


class Broken(Sequence[str]):
    """A sequence that fails when read."""

    def __len__(self) -> int:
        return 1

    def __getitem__(self, index: Any) -> Any:
        raise RuntimeError(SECRET)

    def __iter__(self) -> Iterator[str]:
        raise RuntimeError(SECRET)


@pytest.mark.parametrize(
    ("answer", "problem"),
    [
        (f"10.0.0.1:443 {SECRET}", "returned a str;"),
        (b"10.0.0.1:443", "returned a bytes;"),
        (None, "returned a None;"),
        ({"10.0.0.1:443"}, "returned a set;"),
        ({"10.0.0.1:443": SECRET}, "returned a dict;"),
        (iter(["10.0.0.1:443"]), "returned a list_iterator;"),
        ([], "returned no addresses"),
        (Broken(), "returned a Broken that raised RuntimeError when read"),
        (["10.0.0.1:443", f"{SECRET}:443"], "address [1] has no IPv4 address"),
        (["10.0.0.1:443", 7], "address [1] is a int"),
    ],
)
def test_normalize_describes_a_bad_answer(answer: object, problem: str) -> None:
    """A non-sequence, empty or malformed answer is a ResolveError naming the resolver and problem."""
    with pytest.raises(ResolveError) as caught:
        normalize(answer, "dns_srv")
    message = str(caught.value)
    assert message.startswith("resolver dns_srv")
    assert problem in message
    assert SECRET not in message
    assert caught.value.host is None


def test_address_host_strips_port_and_brackets() -> None:
    """address_host gives the bare IP of an IPv4 or IPv6 address."""
    assert address_host("1.2.3.4:80") == "1.2.3.4"
    assert address_host("[::1]:80") == "::1"
    assert address_host("[fe80::1%eth0]:443") == "fe80::1%eth0"


@settings(max_examples=200, deadline=None)
@given(
    ip=st.ip_addresses(),
    port=st.integers(min_value=1, max_value=65535),
)
def test_any_ip_and_port_round_trips(
    ip: ipaddress.IPv4Address | ipaddress.IPv6Address, port: int
) -> None:
    """Any IP literal resolves to one address that normalize keeps and address_host undoes."""
    (address,) = system_resolver(str(ip), port)
    assert normalize([address, address], "system_resolver") == (address,)
    assert ipaddress.ip_address(address_host(address)) == ip
    assert address.endswith(f":{port}")
