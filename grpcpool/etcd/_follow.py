"""One watch of an etcd prefix: read it, follow it, resume it; on a thread of its own.

The watch reads the prefix (KV/Range) and follows it (Watch/Watch from the
read's revision + 1, so no change between the two is lost). When the stream
is lost (a member down, etcd restarting) it is opened again after a short
backoff (``ETCD_RETRY_MIN`` .. ``ETCD_RETRY_MAX``) from the last revision
seen + 1, on whichever member answers: the pool it calls through spreads its
connections over every endpoint given. A start revision etcd has compacted
away means the prefix is read afresh. With a user, a token is asked for
(Auth/Authenticate) and asked again when etcd no longer accepts it.

After each change the whole set of registered addresses is pushed, with the
revision it reflects. An entry that is not an ``ip:port`` (a host name, say)
is left out, with one WARNING per key.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

import grpc

from grpcpool._config_timings import ETCD_CALL_TIMEOUT, ETCD_RETRY_MAX, ETCD_RETRY_MIN
from grpcpool.actors import PoolSpec
from grpcpool.api import _pools
from grpcpool.backoff import Backoff
from grpcpool.errors import shorten
from grpcpool.etcd import etcd_pb2 as pb
from grpcpool.etcd import etcd_pb2_grpc as rpc
from grpcpool.etcd._format import address_of
from grpcpool.resolver import AddressSet, ResolveError, normalize
from grpcpool.supervisor import Supervisor

if TYPE_CHECKING:
    from grpcpool.etcd._resolver import EtcdResolver

__all__ = ["EtcdWatch"]

_log = logging.getLogger("grpcpool.etcd")

# How long close() waits for the watch's thread (and its pool) to end.
CLOSE_WAIT = 10.0

OnChange = Callable[[Sequence[str] | BaseException], None]


class _Compacted(Exception):
    """The revision to resume from is compacted away: read the prefix afresh."""


class _Canceled(Exception):
    """etcd canceled the watch (its reason is the message): open it again."""


class EtcdWatch:
    """A running watch of an :class:`EtcdResolver`'s prefix; :meth:`close` ends it.

    Attributes:
        state: ``"connecting"`` (before the first read), ``"watching"``,
            ``"reconnecting"`` (the stream is lost; the last set stands) or
            ``"closed"``.
        revision: The etcd revision the last pushed set reflects (None before).
        problem: Why the last stream or call failed (None while watching).
        pool_name: The grpcpool pool it reaches etcd through (one connection
            per member; the watch stream is in flight on one of them).
    """

    def __init__(self, resolver: EtcdResolver, pool_name: str, on_change: OnChange) -> None:
        self._resolver = resolver
        self.pool_name = pool_name
        self._on_change = on_change
        self.state = "connecting"
        self.revision: int | None = None
        self.problem: str | None = None
        self._closed = threading.Event()
        self._lock = threading.Lock()
        self._call: Any = None
        self._stream_done: threading.Event | None = None
        self._keys: dict[bytes, str | None] = {}
        self._warned: set[bytes] = set()
        self._token: str | None = None
        self._backoff = Backoff(ETCD_RETRY_MIN, ETCD_RETRY_MAX)
        self._thread = threading.Thread(target=self._run, name="grpcpool-etcd-watch", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Ends the watch, its stream and its pool; waits for them (bounded). Idempotent."""
        self._closed.set()
        with self._lock:
            call, done = self._call, self._stream_done
        if done is not None:
            done.set()
        if call is not None:
            call.cancel()
        if threading.current_thread() is not self._thread:
            self._thread.join(CLOSE_WAIT)
        self.state = "closed"

    def __repr__(self) -> str:
        return f"<EtcdWatch {self._resolver.prefix!r} {self.state} revision={self.revision}>"

    # --- the thread ---------------------------------------------------------------------

    def _run(self) -> None:
        # The pool runs under a supervisor of its own, not the process-wide
        # default: the watch is closed while the pool that follows it stops,
        # maybe under that default supervisor, which must not be asked then.
        try:
            spec = PoolSpec(self._resolver.pool_config(), self.pool_name)
            supervisor = Supervisor.start(children=[spec], name=self.pool_name)
        except Exception as error:  # the pool's config is ours; a name clash is the user's
            self._on_change(error)
            return
        try:
            self._follow_until_closed()
        except Exception as error:  # a bug or a pool gone: the pool starts a new watch
            if not self._closed.is_set():
                _log.exception("etcd watch of %r ended", self._resolver.prefix)
                self.state = "closed"
                self._on_change(error)
        finally:
            with contextlib.suppress(Exception):
                supervisor.stop()

    def _follow_until_closed(self) -> None:
        channel = _pools.channel(self.pool_name)
        kv, watch = rpc.KVStub(channel), rpc.WatchStub(channel)
        fresh = True
        while not self._closed.is_set():
            try:
                if fresh:
                    self._read(kv)
                    fresh = False
                self._stream(watch)
                why = "etcd ended the watch stream"
            except _Compacted:
                fresh, why = True, "the revision to resume from is compacted"
            except _Canceled as error:
                why = f"etcd canceled the watch: {shorten(str(error))}"
            except grpc.RpcError as error:
                if self._closed.is_set():
                    return
                if error.code() == grpc.StatusCode.UNAUTHENTICATED:
                    self._token = None
                why = f"{error.code().name}: {shorten(str(error.details()))}"
            if self._closed.is_set():
                return
            if self.problem is None:
                _log.info("etcd watch of %r: %s; trying again", self._resolver.prefix, why)
            self.problem = why
            self.state = "connecting" if self.revision is None else "reconnecting"
            delay, self._backoff = self._backoff.fail()
            self._closed.wait(delay)

    def _metadata(self) -> tuple[tuple[str, str], ...]:
        resolver = self._resolver
        if resolver.user is None:
            return ()
        if self._token is None:
            auth = rpc.AuthStub(_pools.channel(self.pool_name))
            reply = auth.Authenticate(
                pb.AuthenticateRequest(name=resolver.user, password=resolver.password or ""),
                timeout=ETCD_CALL_TIMEOUT,
                wait_for_ready=True,
            )
            self._token = reply.token
        return (("token", self._token),)

    def _read(self, kv: rpc.KVStub) -> None:
        key, end = self._resolver.key_range
        reply = kv.Range(
            pb.RangeRequest(key=key, range_end=end),
            timeout=ETCD_CALL_TIMEOUT,
            wait_for_ready=True,
            metadata=self._metadata(),
        )
        self._keys = {item.key: address_of(item.value) for item in reply.kvs}
        self._push(reply.header.revision)

    def _stream(self, watch: rpc.WatchStub) -> None:
        key, end = self._resolver.key_range
        start = (self.revision or 0) + 1
        create = pb.WatchCreateRequest(
            key=key, range_end=end, start_revision=start, progress_notify=True
        )
        done = threading.Event()

        def requests() -> Iterator[pb.WatchRequest]:
            yield pb.WatchRequest(create_request=create)
            done.wait()  # the stream stays open until it ends or the watch closes

        # etcd's "require leader": a member cut off from its cluster ends the
        # stream (instead of going quiet), so the watch moves to another.
        metadata = (*self._metadata(), ("hasleader", "true"))
        call = watch.Watch(requests(), metadata=metadata)
        with self._lock:
            self._call, self._stream_done = call, done
        if self._closed.is_set():
            call.cancel()
        try:
            for response in call:
                self._take(response)
        finally:
            done.set()
            call.cancel()
            with self._lock:
                self._call, self._stream_done = None, None

    def _take(self, response: pb.WatchResponse) -> None:
        if response.compact_revision:
            raise _Compacted()
        if response.canceled:
            raise _Canceled(response.cancel_reason or "no reason given")
        if response.created:
            self._backoff = self._backoff.succeed()
            self.state, self.problem = "watching", None
            return
        if not response.events:
            # A progress notice: the set is current as of its revision (every
            # later event is newer), so a resume may start after it.
            if response.header.revision and self.revision is not None:
                self.revision = max(self.revision, response.header.revision)
            return
        for event in response.events:
            if event.type == pb.Event.DELETE:
                self._keys.pop(event.kv.key, None)
            else:
                self._keys[event.kv.key] = address_of(event.kv.value)
        self._push(max(event.kv.mod_revision for event in response.events))

    def _push(self, revision: int) -> None:
        found: dict[str, None] = {}
        for key in sorted(self._keys):
            address = self._keys[key]
            if address is None:
                continue
            try:
                [checked] = normalize([address], "EtcdResolver")
            except ResolveError as error:
                if key not in self._warned:
                    self._warned.add(key)
                    _log.warning("etcd key %r is left out: %s", key.decode(errors="replace"), error)
                continue
            found[checked] = None
        self.revision = revision
        if self.state != "watching" and self.problem is None:
            self.state = "watching"
        try:
            self._on_change(AddressSet(found, revision))
        except Exception:  # the pool's callback; it must not end the watch
            _log.exception("etcd watch of %r: on_change raised", self._resolver.prefix)
