"""Validation helpers for the config sections; each names the offending key."""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from grpcpool._tls import TLSOptions
from grpcpool.errors import ConfigError

# Elixir-style file keys accepted in an ``ssl`` mapping, and the field each fills.
_TLS_FILE_KEYS = {
    "cacertfile": "root_certificates",
    "keyfile": "private_key",
    "certfile": "certificate_chain",
}
_TLS_BYTES_KEYS = ("root_certificates", "private_key", "certificate_chain")


def check_keys(section: str, values: Mapping[str, Any], allowed: frozenset[str]) -> None:
    for key in values:
        if key not in allowed:
            raise ConfigError(
                f"{section}.{key}", f"unknown key (known: {', '.join(sorted(allowed))})"
            )


def check_int(key: str, value: Any, *, minimum: int, maximum: int | None = None) -> None:
    # bool is an int subclass, but True is never a meaningful size or port.
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(key, f"must be an int, got {value!r}")
    if value < minimum:
        raise ConfigError(key, f"must be >= {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise ConfigError(key, f"must be <= {maximum}, got {value}")


def check_float(key: str, value: Any, *, minimum: float = 0.0, strict: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(key, f"must be a number of seconds, got {value!r}")
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


def check_optional_float(key: str, value: Any, *, strict: bool = False) -> None:
    if value is not None:
        check_float(key, value, strict=strict)


def check_bool(key: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise ConfigError(key, f"must be True or False, got {value!r}")


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
    for name in _TLS_BYTES_KEYS:
        if value.get(name) is not None:
            fields[name] = _pem(f"{key}.{name}", value[name])
    for file_key, name in _TLS_FILE_KEYS.items():
        if value.get(file_key) is not None:
            try:
                fields[name] = Path(value[file_key]).read_bytes()
            except OSError as error:
                raise ConfigError(f"{key}.{file_key}", f"cannot read: {error.strerror}") from None
    hostname = value.get("server_hostname")
    if hostname is not None and not isinstance(hostname, str):
        raise ConfigError(f"{key}.server_hostname", "must be a string")
    if ("private_key" in fields) != ("certificate_chain" in fields):
        raise ConfigError(key, "a client key and certificate chain go together")
    return TLSOptions(**fields, server_hostname=hostname)


def _pem(key: str, value: Any) -> bytes:
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, bytes):
        return value
    raise ConfigError(key, "must be PEM bytes or str")
