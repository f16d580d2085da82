"""Checking a host name given in the config: ``endpoint.host``, ``endpoint.ssl.server_hostname``."""

from __future__ import annotations

from typing import Any

from grpcpool.errors import ConfigError, shorten

__all__ = ["check_host"]


def check_host(key: str, host: Any, *, quote: bool = True) -> None:
    """Refuses a host that carries a scheme, user info or port, saying what to write.

    The target is built as ``host:port``, so ``"127.0.0.1:9090"`` would become
    ``[127.0.0.1:9090]:9090``; TLS checks a name, which holds no port either.
    IPv6 literals (``"::1"``, ``"[::1]"``) are hosts. The user info part is
    never quoted: it may hold a password. With ``quote=False`` nothing of the
    value is quoted (``server_hostname`` stays out of reprs too, so its
    errors do not show it either).
    """
    if not isinstance(host, str) or not host.strip():
        raise ConfigError(key, "is required (a non-empty string)")
    if "@" in host:
        raise ConfigError(
            key,
            "must not hold user info ('user:password@'): give the host name alone and "
            "authenticate with endpoint.credentials",
        )
    if "://" in host:
        scheme, _, rest = host.partition("://")
        if not quote:
            raise ConfigError(
                key, "must not hold a scheme ('...://'): give the name alone; TLS is endpoint.ssl"
            )
        name, port = _split_port(rest.split("/")[0])
        hint = f"host={shorten(name, 100)!r}" if name else "the host name alone"
        if port:
            hint += ", " + _port_text(port)
        raise ConfigError(
            key,
            f"must not hold a scheme ({shorten(scheme, 20)!r}://): write {hint}; "
            "TLS is endpoint.ssl",
        )
    if any(char.isspace() or char in "/?#" for char in host):
        raise ConfigError(key, "must be a host name or IP address (no spaces, '/', '?' or '#')")
    if host.startswith("["):
        inner, bracket, port = host[1:].partition("]")
        if not bracket or not inner:
            raise ConfigError(key, "has an unclosed '[': write an IPv6 literal as '::1'")
        if port:
            raise ConfigError(key, _port_hint(inner, port.removeprefix(":"), quote))
        return
    if "]" in host:
        raise ConfigError(key, "has a ']' without '['")
    if host.count(":") == 1:  # IPv6 literals have at least two
        name, _, port = host.partition(":")
        raise ConfigError(key, _port_hint(name, port, quote))


def _split_port(text: str) -> tuple[str, str]:
    """``text`` as (host, port), the port "" when there is none."""
    if text.startswith("["):
        inner, _, port = text[1:].partition("]")
        return inner, port.removeprefix(":")
    if text.count(":") == 1:
        name, _, port = text.partition(":")
        return name, port
    return text, ""


def _port_text(port: str) -> str:
    return f"port={int(port)}" if port.isdigit() and len(port) <= 5 else "the port as port"


def _port_hint(name: str, port: str, quote: bool) -> str:
    if not quote:
        return "must not hold a port: give the name alone (the port is endpoint.port)"
    return f"must not hold a port: write host={shorten(name, 100)!r}, {_port_text(port)}"
