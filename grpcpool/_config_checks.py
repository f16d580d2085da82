"""Validation helpers for the config sections; each names the offending key."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping
from typing import Any

import grpc
import grpc.aio

from grpcpool._tls import (
    CERTIFICATE_MARK,
    PRIVATE_KEY_MARK,
    TLSOptions,
    plaintext_kind,
    read_tls_file,
)
from grpcpool._tls_pair import check_client_pair
from grpcpool.errors import ConfigError, shorten

# Elixir-style file keys accepted in an ``ssl`` mapping, and the field each fills.
_TLS_FILE_KEYS = {
    "cacertfile": "root_certificates",
    "keyfile": "private_key",
    "certfile": "certificate_chain",
}
_TLS_BYTES_KEYS = ("root_certificates", "private_key", "certificate_chain")


# The endpoint type that refuses plaintext, compared after strip() and
# casefold() so that "Production " or GRPCPOOL_TYPE=PRODUCTION count too.
PRODUCTION_TYPE = "production"
_PLAINTEXT_HOWTO = (
    "for plaintext (a local server, an emulator, a private network) set "
    "endpoint.type='local', or any type other than 'production'"
)


def kind(value: Any) -> str:
    """What a rejected value is, by type only.

    Error messages name the key and this, never the value: a value of
    unknown shape may be a token or a password put in the wrong place.
    """
    return "None" if value is None else type(value).__name__


def is_production(endpoint_type: str) -> bool:
    """Whether ``endpoint.type`` names production, ignoring case and spaces."""
    return endpoint_type.strip().casefold() == PRODUCTION_TYPE


def check_production_transport(ssl: TLSOptions | None, credentials: Any) -> None:
    """Refuses plaintext to a production endpoint.

    ``endpoint.type`` defaults to production, so a forgotten ``ssl`` is
    refused rather than meaning plaintext to a remote host. Credentials win
    over ``ssl`` when a channel is built, so plaintext credentials are refused
    even with ``ssl`` set.
    """
    if credentials is not None:
        plaintext = plaintext_kind(credentials)
        if plaintext is not None:
            raise ConfigError(
                "endpoint.credentials",
                f"{plaintext} is plaintext, refused for a production endpoint (the "
                "connection and any call credentials, such as tokens, would go "
                "unencrypted); use TLS credentials, e.g. grpc.ssl_channel_credentials() "
                f"composed with your call credentials, or ssl=True; {_PLAINTEXT_HOWTO}",
            )
        return
    if ssl is None:
        raise ConfigError(
            "endpoint.ssl",
            "plaintext to a production endpoint is refused, and endpoint.type is "
            "'production' unless set; pass ssl=True for TLS with the system roots, "
            "an ssl mapping or TLSOptions for other roots or a client certificate, "
            f"or TLS credentials; {_PLAINTEXT_HOWTO}",
        )


def check_keys(section: str, values: Mapping[str, Any], allowed: frozenset[str]) -> None:
    for key in values:
        if key not in allowed:
            known = ", ".join(sorted(allowed))
            if not isinstance(key, str):
                raise ConfigError(section, f"keys must be str, got {kind(key)} (known: {known})")
            raise ConfigError(f"{section}.{shorten(key, 100)}", f"unknown key (known: {known})")


def check_int(key: str, value: Any, *, minimum: int, maximum: int | None = None) -> None:
    # bool is an int subclass, but True is never a meaningful size or port.
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(key, f"must be an int, got {kind(value)}")
    if value < minimum:
        raise ConfigError(key, f"must be >= {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise ConfigError(key, f"must be <= {maximum}, got {value}")


def check_float(
    key: str,
    value: Any,
    *,
    minimum: float = 0.0,
    strict: bool = False,
    maximum: float | None = None,
) -> None:
    """Checks a number of seconds; ``maximum`` catches milliseconds typed as seconds."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(key, f"must be a number of seconds, got {kind(value)}")
    try:
        float(value)
    except OverflowError:  # an int too large for a float: math.isnan would raise
        raise ConfigError(key, "must be finite, got an int too large for a float") from None
    if math.isnan(value) or math.isinf(value):
        raise ConfigError(key, f"must be finite, got {value}")
    if strict and value <= minimum:
        raise ConfigError(key, f"must be > {minimum}, got {value}")
    if value < minimum:
        raise ConfigError(key, f"must be >= {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise ConfigError(
            key,
            f"must be <= {maximum:g} seconds ({_duration(maximum)}), got {value:g}; "
            "times are seconds, not milliseconds",
        )


def _duration(seconds: float) -> str:
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size and seconds % size == 0:
            count = int(seconds // size)
            return f"{count} {unit}{'s' if count != 1 else ''}"
    return f"{seconds:g} s"


def check_optional_float(
    key: str, value: Any, *, strict: bool = False, maximum: float | None = None
) -> None:
    if value is not None:
        check_float(key, value, strict=strict, maximum=maximum)


def check_bool(key: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise ConfigError(key, f"must be True or False, got {kind(value)}")


def normalize_tls(key: str, value: Any) -> TLSOptions | None:
    """Turns the accepted forms of ``endpoint.ssl`` into :class:`TLSOptions`.

    ``None``/``False``: plaintext. ``True`` or an empty mapping: system roots.
    A mapping may hold PEM bytes (``root_certificates``, ``private_key``,
    ``certificate_chain``), file paths in the Elixir names (``cacertfile``,
    ``keyfile``, ``certfile``) and ``server_hostname``.
    """
    if value is None or value is False:
        return None
    if value is True:
        return TLSOptions()
    if isinstance(value, TLSOptions):
        return value
    if not isinstance(value, Mapping):
        raise ConfigError(
            key, f"must be True, a TLSOptions or a mapping, got {type(value).__name__}"
        )
    allowed = frozenset({*_TLS_BYTES_KEYS, *_TLS_FILE_KEYS, "server_hostname"})
    check_keys(key, value, allowed)
    fields: dict[str, Any] = {}
    # Field -> the key it was given as, for errors about the client pair.
    given: dict[str, str] = {}
    for name in _TLS_BYTES_KEYS:
        if value.get(name) is not None:
            fields[name] = _pem(f"{key}.{name}", value[name])
            given[name] = f"{key}.{name}"
    for file_key, name in _TLS_FILE_KEYS.items():
        if value.get(file_key) is not None:
            if name in fields:
                raise ConfigError(
                    f"{key}.{file_key}", f"and {key}.{name} both given: pass one of them"
                )
            mark = PRIVATE_KEY_MARK if file_key == "keyfile" else CERTIFICATE_MARK
            fields[name] = read_tls_file(f"{key}.{file_key}", value[file_key], mark)
            given[name] = f"{key}.{file_key}"
    hostname = value.get("server_hostname")
    if hostname is not None and not isinstance(hostname, str):
        raise ConfigError(f"{key}.server_hostname", "must be a string")
    if ("private_key" in fields) != ("certificate_chain" in fields):
        raise ConfigError(key, "a client key and certificate chain go together")
    pair = ("private_key", "certificate_chain")
    if "private_key" in fields and any(given[name] != f"{key}.{name}" for name in pair):
        # TLSOptions checks the pair too, naming its own fields; a pair
        # from files is checked first so that the error names the files' keys.
        check_client_pair(
            fields["private_key"],
            fields["certificate_chain"],
            given["private_key"],
            given["certificate_chain"],
        )
    return TLSOptions(**fields, server_hostname=hostname)


def _pem(key: str, value: Any) -> bytes:
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, bytes):
        return value
    raise ConfigError(key, "must be PEM bytes or str")


# grpcio passes an int channel argument as a C int.
_C_INT_MAX = 2**31 - 1
# Interceptors for sync grpc channels (grpcpool pools) and for grpc.aio
# channels (grpcpool.aio pools): grpcio has two families, and a channel of
# one kind cannot use the other's.
_SYNC_INTERCEPTORS = (
    grpc.UnaryUnaryClientInterceptor,
    grpc.UnaryStreamClientInterceptor,
    grpc.StreamUnaryClientInterceptor,
    grpc.StreamStreamClientInterceptor,
)
_AIO_INTERCEPTORS = (grpc.aio.ClientInterceptor,)
_INTERCEPTOR_TYPES = _SYNC_INTERCEPTORS + _AIO_INTERCEPTORS


def normalize_options(key: str, value: Any) -> tuple[tuple[str, int | str | bytes], ...]:
    """``endpoint.options`` as (name, value) pairs grpcio accepts.

    A mapping gives its items. Values are ints from 0 to 2**31 - 1, strings
    or bytes, as grpcio takes them; anything else would fail only when the
    pool starts, with no key named.
    """
    if value is None:
        return ()
    if isinstance(value, Mapping):
        value = list(value.items())
    if isinstance(value, str | bytes) or not isinstance(value, Iterable):
        raise ConfigError(
            key, f"must be (name, value) pairs or a mapping, got {type(value).__name__}"
        )
    options: list[tuple[str, int | str | bytes]] = []
    for option in value:
        if not isinstance(option, tuple | list) or len(option) != 2:
            raise ConfigError(key, f"expected (name, value) pairs, got {type(option).__name__}")
        name, item = option
        if not isinstance(name, str) or not name:
            raise ConfigError(
                key, f"an option name must be a non-empty str, got {type(name).__name__}"
            )
        label = f"{key}[{shorten(name, 100)!r}]"
        if isinstance(item, int):
            if not 0 <= item <= _C_INT_MAX:
                raise ConfigError(label, f"must be an int from 0 to {_C_INT_MAX}, got {item}")
        elif not isinstance(item, str | bytes):
            raise ConfigError(label, f"must be an int, str or bytes, got {type(item).__name__}")
        options.append((name, item))
    return tuple(options)


def normalize_interceptors(key: str, value: Any) -> tuple[Any, ...]:
    """``endpoint.interceptors`` as a tuple of grpc client interceptors."""
    if value is None:
        return ()
    if isinstance(value, _INTERCEPTOR_TYPES):
        value = (value,)
    if isinstance(value, str | bytes | Mapping) or not isinstance(value, Iterable):
        raise ConfigError(key, f"must be a sequence of interceptors, got {type(value).__name__}")
    interceptors = tuple(value)
    for interceptor in interceptors:
        if not isinstance(interceptor, _INTERCEPTOR_TYPES):
            raise ConfigError(
                key,
                "each must be a grpc client interceptor (grpc.UnaryUnaryClientInterceptor, "
                "UnaryStreamClientInterceptor, StreamUnaryClientInterceptor or "
                "StreamStreamClientInterceptor, or their grpc.aio namesakes), "
                f"got {type(interceptor).__name__}",
            )
    aio = [isinstance(interceptor, _AIO_INTERCEPTORS) for interceptor in interceptors]
    if any(aio) and not all(aio):
        raise ConfigError(
            key,
            "mixes sync grpc and grpc.aio interceptors; a pool's channels are of one kind: "
            "sync interceptors for grpcpool pools, grpc.aio ones for grpcpool.aio pools",
        )
    return interceptors


def aio_interceptors(interceptors: tuple[Any, ...]) -> bool:
    """True if ``interceptors`` (as :func:`normalize_interceptors` left them) are grpc.aio's."""
    return bool(interceptors) and isinstance(interceptors[0], _AIO_INTERCEPTORS)


# The longest pool name: names appear in errors, logs, events and actor names,
# which must stay readable and bounded.
MAX_POOL_NAME_LENGTH = 128


def check_pool_name(key: str, name: Any) -> None:
    """Refuses a pool name that is not a str of 1 to :data:`MAX_POOL_NAME_LENGTH` characters.

    Names are looked up in a dict, so an unhashable one would otherwise be a
    bare ``TypeError``; the message gives the type and length, never the name.
    """
    if not isinstance(name, str) or not name:
        raise ConfigError(key, f"must be a non-empty str, got {kind(name)}")
    if len(name) > MAX_POOL_NAME_LENGTH:
        raise ConfigError(
            key, f"must be at most {MAX_POOL_NAME_LENGTH} characters, got {len(name)}"
        )


def field_names(cls: type) -> frozenset[str]:
    """The field names of a config section's dataclass (the keys it accepts)."""
    return frozenset(f.name for f in dataclasses.fields(cls))
