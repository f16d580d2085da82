"""A throwaway certificate authority for TLS tests, made with ``cryptography``."""

from __future__ import annotations

import datetime
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


@dataclass(frozen=True)
class Pem:
    """A certificate and its private key, PEM-encoded."""

    certificate: bytes
    private_key: bytes


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def make_ca(common_name: str = "grpcpool test CA") -> tuple[Pem, ec.EllipticCurvePrivateKey]:
    """A self-signed CA certificate, valid for a day."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return Pem(certificate.public_bytes(serialization.Encoding.PEM), _key_pem(key)), key


def make_server_cert(
    ca: Pem, ca_key: ec.EllipticCurvePrivateKey, names: Sequence[str] = ("localhost", "127.0.0.1")
) -> Pem:
    """A certificate for ``names`` (DNS names or IP addresses), signed by ``ca``.

    The certificate names exactly ``names`` in its subject alternative name
    (the first is also its common name), so a test can make one that a
    client connecting by IP does not accept without ``server_hostname``.
    """
    key = ec.generate_private_key(ec.SECP256R1())
    issuer = x509.load_pem_x509_certificate(ca.certificate).subject
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([_general_name(name) for name in names]),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    return Pem(certificate.public_bytes(serialization.Encoding.PEM), _key_pem(key))


def make_client_cert(ca: Pem, ca_key: ec.EllipticCurvePrivateKey) -> Pem:
    """A client certificate and its key, signed by ``ca``, for mutual TLS."""
    return make_server_cert(ca, ca_key, ("client.example.test",))


def _general_name(name: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)


def encrypt_key(private_key: bytes, password: bytes) -> bytes:
    """``private_key`` (PEM) encrypted with ``password``, as a passphrase-protected key file."""
    key = serialization.load_pem_private_key(private_key, password=None)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(password),
    )
