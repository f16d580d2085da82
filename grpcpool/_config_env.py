"""Reading a :class:`~grpcpool.config.Config` from environment variables.

Variable names are the prefix, an underscore, and the key in upper case.
Endpoint keys take no section name, pool keys take ``POOL_``, connection keys
take none::

    GRPCPOOL_HOST=api.example.com  GRPCPOOL_PORT=443  GRPCPOOL_TYPE=production
    GRPCPOOL_SSL=true  GRPCPOOL_CACERTFILE=/etc/ca.pem  GRPCPOOL_SERVER_HOSTNAME=api
    GRPCPOOL_POOL_SIZE=8  GRPCPOOL_POOL_NAME=api  GRPCPOOL_POOL_STRATEGY=random
    GRPCPOOL_PING_INTERVAL=25  GRPCPOOL_PING_INTERVAL=none  GRPCPOOL_BACKOFF_MAX=30

A variable with the prefix that names no key is an error, so a typo does not
silently fall back to a default.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any

from grpcpool.errors import ConfigError, shorten

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})
_NONE = frozenset({"", "none", "null"})


def _parse_int(text: str) -> int:
    return int(text)


def _parse_float(text: str) -> float:
    return float(text)


def _parse_optional_float(text: str) -> float | None:
    return None if text.strip().lower() in _NONE else float(text)


def _parse_bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ValueError(f"expected one of {sorted(_TRUE | _FALSE)}")


def _parse_str(text: str) -> str:
    return text


# variable suffix -> (section, key, parser); ssl file keys go into endpoint.ssl.
_VARIABLES: dict[str, tuple[str, str, Callable[[str], Any]]] = {
    "HOST": ("endpoint", "host", _parse_str),
    "PORT": ("endpoint", "port", _parse_int),
    "TYPE": ("endpoint", "type", _parse_str),
    "SSL": ("endpoint", "ssl", _parse_bool),
    "CACERTFILE": ("ssl", "cacertfile", _parse_str),
    "CERTFILE": ("ssl", "certfile", _parse_str),
    "KEYFILE": ("ssl", "keyfile", _parse_str),
    "SERVER_HOSTNAME": ("ssl", "server_hostname", _parse_str),
    "RESOLVE_INTERVAL": ("endpoint", "resolve_interval", _parse_optional_float),
    "RESOLVE_TIMEOUT": ("endpoint", "resolve_timeout", _parse_float),
    "POOL_SIZE": ("pool", "size", _parse_int),
    "POOL_MAX_SIZE": ("pool", "max_size", _parse_int),
    "POOL_NAME": ("pool", "name", _parse_str),
    "POOL_STRATEGY": ("pool", "strategy", _parse_str),
    "POOL_TELEMETRY_INTERVAL": ("pool", "telemetry_interval", _parse_float),
    "POOL_TELEMETRY_SAMPLE_RATE": ("pool", "telemetry_sample_rate", _parse_int),
    "KEEPALIVE": ("connection", "keepalive", _parse_optional_float),
    "KEEPALIVE_TIMEOUT": ("connection", "keepalive_timeout", _parse_float),
    "KEEPALIVE_WITHOUT_CALLS": ("connection", "keepalive_without_calls", _parse_bool),
    "PING_INTERVAL": ("connection", "ping_interval", _parse_optional_float),
    "PING_TIMEOUT": ("connection", "ping_timeout", _parse_float),
    "HEALTH_CHECK": ("connection", "health_check", _parse_bool),
    "HEALTH_SERVICE": ("connection", "health_service", _parse_str),
    "CONNECT_TIMEOUT": ("connection", "connect_timeout", _parse_float),
    "DRAIN_TIMEOUT": ("connection", "drain_timeout", _parse_float),
    "SUPPRESS_CONNECTION_ERRORS": ("connection", "suppress_connection_errors", _parse_bool),
    "BACKOFF_MIN": ("connection", "backoff_min", _parse_float),
    "BACKOFF_MAX": ("connection", "backoff_max", _parse_float),
    "MAX_RECONNECT_ATTEMPTS": ("connection", "max_reconnect_attempts", _parse_int),
    "MAX_AGE": ("connection", "max_age", _parse_optional_float),
}


_EXPECTED: dict[Callable[[str], Any], str] = {
    _parse_int: "an int",
    _parse_float: "a number of seconds",
    _parse_optional_float: "a number of seconds, or none",
    _parse_bool: "one of " + ", ".join(sorted(_TRUE | _FALSE)),
}


def mapping_from_env(prefix: str, environ: Mapping[str, str] | None) -> dict[str, Any]:
    """Collects the prefixed variables into a ``Config.from_mapping`` mapping.

    Raises:
        ConfigError: A variable is unknown or its value does not parse; the
            message names the variable and the config key.
    """
    if not isinstance(prefix, str) or not prefix:
        raise ConfigError("prefix", f"must be a non-empty str, got {type(prefix).__name__}")
    env = os.environ if environ is None else environ
    if not isinstance(env, Mapping):
        raise ConfigError("environ", f"must be a mapping of str to str, got {type(env).__name__}")
    start = f"{prefix}_"
    sections: dict[str, dict[str, Any]] = {"endpoint": {}, "pool": {}, "connection": {}}
    ssl_files: dict[str, Any] = {}
    for variable, text in env.items():
        if not isinstance(variable, str) or not variable.startswith(start):
            continue
        suffix = variable[len(start) :]
        if suffix not in _VARIABLES:
            raise ConfigError(
                shorten(variable, 100),
                f"unknown variable (known suffixes: {', '.join(_VARIABLES)})",
            )
        section, key, parse = _VARIABLES[suffix]
        if not isinstance(text, str):
            # A real environment holds only strings; a hand-made mapping may not.
            raise ConfigError(
                variable, f"must be a str, as in os.environ, got {type(text).__name__}"
            )
        try:
            value = parse(text)
        except ValueError:
            name = f"endpoint.ssl.{key}" if section == "ssl" else f"{section}.{key}"
            # Not the text: a value of unknown shape may be a secret set in
            # the wrong variable, and int()/float() errors quote it.
            expected = _EXPECTED.get(parse, "a valid value")
            raise ConfigError(name, f"{variable} does not parse: expected {expected}") from None
        if section == "ssl":
            ssl_files[key] = value
        else:
            sections[section][key] = value
    if ssl_files:
        if sections["endpoint"].get("ssl") is False:
            raise ConfigError("endpoint.ssl", f"{start}SSL is false but TLS files are given")
        sections["endpoint"]["ssl"] = ssl_files
    if "host" not in sections["endpoint"]:
        raise ConfigError("endpoint.host", f"is required: set {start}HOST")
    if "port" not in sections["endpoint"]:
        raise ConfigError("endpoint.port", f"is required: set {start}PORT")
    return {name: values for name, values in sections.items() if values or name == "endpoint"}
