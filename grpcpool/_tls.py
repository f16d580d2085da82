"""TLS options for an endpoint."""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass

import grpc

from grpcpool._hosts import check_host
from grpcpool._tls_pair import check_client_pair
from grpcpool.errors import ConfigError, shorten

__all__ = ["TLSOptions", "plaintext_kind"]

# grpcio's credential objects are opaque. A grpc.ChannelCredentials holds the
# real credentials, a grpc._cython.cygrpc object, in the private attribute
# ``_credentials``; that object's class says what kind it is. These names are
# grpcio's, pinned by tests/test_grpcio_credentials_contract.py, which fails
# loudly when an upgrade renames them.
_PLAINTEXT_KINDS = {
    "InsecureChannelCredentials": "grpc.experimental.insecure_channel_credentials()",
    "LocalChannelCredentials": "grpc.local_channel_credentials()",
}
# Kinds that wrap other channel credentials: composite (channel credentials
# plus call credentials such as an access token) and xDS (its fallback is
# what the channel uses when the control plane sends no security config).
_WRAPPERS = {
    "CompositeChannelCredentials": ("_channel_credentials", "grpc.composite_channel_credentials()"),
    "XDSChannelCredentials": ("_fallback_credentials", "grpc.xds_channel_credentials()"),
}
# Wrappers nest only as deep as a user writes them; a bound keeps a cycle
# in a hand-made object from looping.
_MAX_DEPTH = 16


@dataclass(frozen=True, repr=False)
class TLSOptions:
    """What a TLS channel trusts and presents.

    Attributes:
        root_certificates: PEM roots to verify the server against; ``None``
            means the system roots.
        private_key: PEM client key, for mutual TLS.
        certificate_chain: PEM client certificate chain, for mutual TLS.
        server_hostname: The name to verify in the server certificate when it
            differs from the host connected to (an IP, say); calls carry it as
            their ``:authority`` too, as grpcio does with
            ``grpc.ssl_target_name_override``. Checked like ``endpoint.host``.
    """

    root_certificates: bytes | None = None
    private_key: bytes | None = None
    certificate_chain: bytes | None = None
    server_hostname: str | None = None

    def __post_init__(self) -> None:
        # Checked here so that a wrong file or value fails when the config is
        # built, not at the first connection attempt with no key named.
        check_pem("endpoint.ssl.root_certificates", self.root_certificates, CERTIFICATE_MARK)
        check_pem("endpoint.ssl.certificate_chain", self.certificate_chain, CERTIFICATE_MARK)
        check_pem("endpoint.ssl.private_key", self.private_key, PRIVATE_KEY_MARK)
        if (self.private_key is None) != (self.certificate_chain is None):
            raise ConfigError("endpoint.ssl", "a client key and certificate chain go together")
        if self.private_key is not None and self.certificate_chain is not None:
            check_client_pair(
                self.private_key,
                self.certificate_chain,
                "endpoint.ssl.private_key",
                "endpoint.ssl.certificate_chain",
            )
        hostname = self.server_hostname
        if hostname is not None:
            if not isinstance(hostname, str) or not hostname.strip():
                raise ConfigError(
                    "endpoint.ssl.server_hostname", "must be a non-empty string, or None"
                )
            # A name as endpoint.host takes it: a password or port in it would
            # otherwise reach grpc and every call's :authority.
            check_host("endpoint.ssl.server_hostname", hostname, quote=False)

    def channel_credentials(self) -> grpc.ChannelCredentials:
        return grpc.ssl_channel_credentials(
            root_certificates=self.root_certificates,
            private_key=self.private_key,
            certificate_chain=self.certificate_chain,
        )

    def __repr__(self) -> str:
        # Never show key material in logs or reprs.
        parts = [
            "roots=" + ("custom" if self.root_certificates else "system"),
            "client_cert=" + ("yes" if self.certificate_chain else "no"),
        ]
        if self.server_hostname is not None:
            # Only whether it is set: a name in the wrong field may be a secret.
            parts.append("server_hostname=set")
        return f"TLSOptions({', '.join(parts)})"


def plaintext_kind(credentials: grpc.ChannelCredentials) -> str | None:
    """Names the plaintext credentials inside ``credentials``, or ``None``.

    Insecure and local credentials send everything, call credentials
    included, unencrypted over TCP (grpcio's local credentials accept a TCP
    target), so they must not reach a production endpoint. Wrappers are
    unwrapped, so composite(local, access token) is found too. Credentials
    whose inside cannot be read count as not plaintext: they are what users
    build from ``ssl_channel_credentials`` and the like, and the contract test
    catches a grpcio that hides the inside.

    Returns:
        The grpc function that made the plaintext part, e.g.
        ``"grpc.local_channel_credentials()"``, or ``None``.
    """
    inner: object = getattr(credentials, "_credentials", None)
    outer = ""
    for _ in range(_MAX_DEPTH):
        name = type(inner).__name__
        if name in _PLAINTEXT_KINDS:
            return _PLAINTEXT_KINDS[name] + (f" inside {outer}" if outer else "")
        if name not in _WRAPPERS:
            return None
        attribute, maker = _WRAPPERS[name]
        outer = outer or maker
        inner = getattr(inner, attribute, None)
    return None


# What a PEM file must hold; checked by marker (only a client key and chain
# are parsed, by :mod:`grpcpool._tls_pair`): enough to catch a key given as
# the CA file, a DER file, or a path's text given as the PEM itself.
CERTIFICATE_MARK = b"-----BEGIN CERTIFICATE-----"
PRIVATE_KEY_MARK = b"PRIVATE KEY-----"
# The most a TLS file may hold; a CA bundle of every public root is ~250 KiB.
MAX_TLS_FILE_SIZE = 1024 * 1024


def check_pem(key: str, value: object, mark: bytes) -> None:
    """Refuses a value that is not PEM bytes holding ``mark`` (None passes)."""
    if value is None:
        return
    if not isinstance(value, bytes):
        raise ConfigError(key, f"must be PEM bytes, got {type(value).__name__}")
    if mark not in value:
        what = "a certificate" if mark == CERTIFICATE_MARK else "a private key"
        raise ConfigError(
            key, f"must be PEM holding {what} (no {mark.decode().strip('-')!r} block found)"
        )


def read_tls_file(key: str, path: object, mark: bytes) -> bytes:
    """The PEM text of the TLS file ``path`` given as ``key``.

    Only a regular file of at most :data:`MAX_TLS_FILE_SIZE` bytes is read: a
    FIFO would block the config forever and ``/dev/zero`` would fill memory.
    The file is opened non-blocking and checked with ``fstat``, so a file
    swapped for a FIFO after a check cannot block either.
    """
    if not isinstance(path, str | os.PathLike):
        raise ConfigError(key, f"must be a file path (str), got {type(path).__name__}")
    shown = shorten(repr(os.fspath(path)), 200)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except (OSError, ValueError) as error:
        reason = error.strerror if isinstance(error, OSError) else str(error)
        raise ConfigError(key, f"cannot read {shown}: {reason}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ConfigError(key, f"{shown} is not a regular file")
        if info.st_size > MAX_TLS_FILE_SIZE:
            raise ConfigError(
                key, f"{shown} is {info.st_size} bytes, over the {MAX_TLS_FILE_SIZE} allowed"
            )
        with os.fdopen(fd, "rb", closefd=False) as file:
            data = file.read(MAX_TLS_FILE_SIZE + 1)
    finally:
        os.close(fd)
    if len(data) > MAX_TLS_FILE_SIZE:
        raise ConfigError(key, f"{shown} is over the {MAX_TLS_FILE_SIZE} bytes allowed")
    check_pem(f"{key} ({shown})", data, mark)
    return data
