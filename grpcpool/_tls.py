"""TLS options for an endpoint."""

from __future__ import annotations

from dataclasses import dataclass

import grpc

__all__ = ["TLSOptions"]


@dataclass(frozen=True, repr=False)
class TLSOptions:
    """What a TLS channel trusts and presents.

    Attributes:
        root_certificates: PEM roots to verify the server against; ``None``
            means the system roots.
        private_key: PEM client key, for mutual TLS.
        certificate_chain: PEM client certificate chain, for mutual TLS.
        server_hostname: The name to verify in the server certificate when it
            differs from the host connected to.
    """

    root_certificates: bytes | None = None
    private_key: bytes | None = None
    certificate_chain: bytes | None = None
    server_hostname: str | None = None

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
        if self.server_hostname:
            parts.append(f"server_hostname={self.server_hostname!r}")
        return f"TLSOptions({', '.join(parts)})"
