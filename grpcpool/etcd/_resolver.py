"""EtcdResolver: a push resolver that follows a prefix of etcd in grpc-go's naming format."""

from __future__ import annotations

import itertools
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import grpc

from grpcpool._config_timings import ETCD_RETRY_MAX, ETCD_RETRY_MIN
from grpcpool._tls import TLSOptions
from grpcpool.config import Config
from grpcpool.etcd._follow import EtcdWatch
from grpcpool.etcd._format import key_range
from grpcpool.resolver import StaticResolver, address_host, static_resolver, system_resolver

__all__ = ["EtcdResolver"]

_numbers = itertools.count(1)


def _split(endpoint: object, index: int) -> tuple[str, int, bool]:
    """``(host, port, https)`` of one etcd endpoint (``ip:port``, ``host:port``, or a URL)."""
    if not isinstance(endpoint, str) or not endpoint.strip():
        raise ValueError(f"EtcdResolver: endpoints[{index}] must be a 'host:port' string")
    text, https = endpoint.strip(), False
    for scheme in ("http://", "https://"):
        if text.startswith(scheme):
            text, https = text[len(scheme) :].rstrip("/"), scheme == "https://"
    host, colon, port = text.rpartition(":")
    if not colon or not port.isdigit() or not 1 <= int(port) <= 65535 or not host:
        raise ValueError(
            f"EtcdResolver: endpoints[{index}] must be 'host:port' with a port in 1..65535 "
            "(etcd's client port is usually 2379)"
        )
    return host.strip("[]"), int(port), https


class EtcdResolver:
    """Follows ``prefix`` in etcd and pushes the addresses registered under it.

    A push resolver (:class:`grpcpool.resolver.PushResolver`) for
    ``endpoint.resolver``: the pool hears a backend put into etcd, or
    deleted from it, as soon as etcd tells, with no polling. Keys and values
    are grpc-go's ``endpoints.Manager`` format (one key per endpoint under
    ``<prefix>/``, value ``{"Op":0,"Addr":"ip:port","Metadata":...}``); a
    plain ``ip:port`` value works too. ``prefix`` is a directory:
    ``services/echo`` follows ``services/echo/...``, not
    ``services/echo-canary/...``.

    It reaches etcd through a grpcpool pool of its own, one connection per
    endpoint, so a member that goes down is passed over and the watch
    resumes on another from the last revision it saw::

        endpoint={"host": "echo.internal", "port": 50051,
                  "resolver": EtcdResolver(["10.0.0.1:2379", "10.0.0.2:2379"],
                                           prefix="services/echo")}

    Args:
        endpoints: etcd members' client addresses (``ip:port``, ``host:port``
            or ``http(s)://host:port``); a host name is resolved once, here.
        prefix: The directory of keys to follow (grpc-go's target).
        user: etcd user for etcd's authentication (with ``password``).
        password: That user's password.
        ssl: TLS to etcd: ``True`` (system roots), a :class:`grpcpool.TLSOptions`
            (CA, client certificate and key, server name) or a mapping of its
            fields; ``https://`` endpoints imply ``True``.
        credentials: A ``grpc.ChannelCredentials`` instead of ``ssl``.
        allow_empty: Follow an empty registry (the pool then has no address
            to connect to). By default an empty set keeps the last non-empty
            one, with a WARNING: a registry emptied by mistake must not take
            every backend away.

    Raises:
        ValueError: An argument is malformed (named, with the fix).
    """

    def __init__(
        self,
        endpoints: Iterable[str] = ("127.0.0.1:2379",),
        prefix: str = "",
        *,
        user: str | None = None,
        password: str | None = None,
        ssl: bool | TLSOptions | Mapping[str, Any] | None = None,
        credentials: grpc.ChannelCredentials | None = None,
        allow_empty: bool = False,
    ) -> None:
        if isinstance(endpoints, str | bytes):
            raise ValueError("EtcdResolver: endpoints is a list of 'host:port'; wrap one in a list")
        split = [_split(endpoint, index) for index, endpoint in enumerate(endpoints)]
        if not split:
            raise ValueError("EtcdResolver: endpoints is empty; give at least one 'host:port'")
        if not isinstance(prefix, str):
            raise ValueError(f"EtcdResolver: prefix must be a str, got {type(prefix).__name__}")
        self.key_range = key_range(prefix)
        if (user is None) != (password is None):
            raise ValueError("EtcdResolver: give user and password together, or neither")
        self.prefix = prefix.rstrip("/")
        self.user = user
        self.password = password
        self.allow_empty = bool(allow_empty)
        self._host, self._port = split[0][0], split[0][1]
        self._ssl: Any = True if ssl is None and any(https for _, _, https in split) else ssl
        self._credentials = credentials
        addresses = [a for host, port, _ in split for a in system_resolver(host, port)]
        self._members: StaticResolver = static_resolver(addresses)
        self._watches: weakref.WeakSet[EtcdWatch] = weakref.WeakSet()
        self.pool_config()  # checks ssl and credentials now, not at the first watch

    def pool_config(self) -> Config:
        """The config of the pool a watch reaches etcd through: one connection per member."""
        secure = self._ssl is not None or self._credentials is not None
        return Config.new(
            endpoint={
                "host": self._host,
                "port": self._port,
                "type": "production" if secure else "local",
                "ssl": self._ssl,
                "credentials": self._credentials,
                "resolver": self._members,
                "resolve_interval": None,
            },
            pool={"size": len(self._members.addresses)},
            connection={"backoff_min": ETCD_RETRY_MIN, "backoff_max": ETCD_RETRY_MAX},
        )

    @property
    def members(self) -> tuple[str, ...]:
        """The etcd members' addresses, as the resolver's own pool connects to them."""
        return self._members.addresses

    def watch(
        self, host: str, port: int, on_change: Callable[[Sequence[str] | BaseException], None]
    ) -> EtcdWatch:
        """Starts following the prefix (``host`` and ``port`` are not needed: the prefix
        names the service); ``on_change`` hears every set, from the watch's thread."""
        handle = EtcdWatch(self, f"grpcpool-etcd-{next(_numbers)}", on_change)
        self._watches.add(handle)
        return handle

    @property
    def watches(self) -> tuple[EtcdWatch, ...]:
        """The watches open now (their state, revision, and the pool each reaches etcd by)."""
        return tuple(w for w in list(self._watches) if w.state != "closed")

    def __repr__(self) -> str:
        members = ", ".join(address_host(a) for a in self._members.addresses)
        return f"<EtcdResolver {self.prefix!r} on {members}>"
