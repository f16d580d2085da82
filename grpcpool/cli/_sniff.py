"""Which protocol does an endpoint speak: TLS, or something else (plaintext HTTP/2)?

A probe that used the wrong one sees only grpc's generic failure ("Socket
closed" for plaintext to a TLS server, "WRONG_VERSION_NUMBER" for TLS to a
plaintext one), which does not say what to change. After such a failure the
probe opens one more TCP connection and starts a TLS handshake: a server
that completes it, or answers with a TLS alert, speaks TLS; one that answers
with bytes that are not a TLS record does not. The handshake only tells the
protocol apart, so it verifies nothing and sends nothing after it.
"""

from __future__ import annotations

import socket
import ssl

__all__ = ["speaks_tls", "tls_hint"]


def speaks_tls(host: str, port: int, timeout: float) -> bool | None:
    """True if ``host:port`` speaks TLS, False if it answers otherwise, None if unknown.

    Unknown: nothing listens, the connection times out, or the server closes
    it without a word (some servers do that to either protocol).
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    # Telling protocols apart, not trusting the peer: nothing is sent after
    # the handshake, and its certificate is not looked at.
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.set_alpn_protocols(["h2"])
    try:
        with (
            socket.create_connection((host, port), timeout=timeout) as raw,
            context.wrap_socket(raw, server_hostname=host),
        ):
            return True
    except (ssl.SSLEOFError, ssl.SSLZeroReturnError):
        return None
    except ssl.SSLError as error:
        # An alert is TLS refusing us (a client certificate required, no
        # common version): still TLS. Anything else was not a TLS record.
        return "ALERT" in str(error.reason or "").upper()
    except OSError:
        return None


def tls_hint(host: str, port: int, *, tls: bool, timeout: float) -> str | None:
    """What to change, if the probe used the protocol the endpoint does not speak."""
    speaks = speaks_tls(host, port, timeout)
    if speaks is True and not tls:
        return "the endpoint speaks TLS: try --tls (and --ca FILE for a private CA)"
    if speaks is False and tls:
        return "the endpoint does not speak TLS: drop --tls (and --ca)"
    return None
