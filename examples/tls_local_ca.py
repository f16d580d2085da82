"""TLS with a private certificate authority.

The script makes a throwaway CA and a server certificate for 127.0.0.1 with
the ``cryptography`` package (in the ``test`` extras), serves the echo
service over TLS with it, and connects two pools:

- one that trusts the CA (its PEM file given as ``cacertfile``, the Elixir
  key name; ``root_certificates`` takes the PEM bytes instead): it connects
  and serves calls;
- one that trusts only the system roots, as ``Config.production`` does by
  default: every handshake fails, the pool never becomes ready, and its
  workers' ``last_error`` says why.

Run from the repository root::

    .venv/bin/python examples/tls_local_ca.py
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import tempfile
from pathlib import Path

# grpcio prints INFO lines on stderr (one per failed handshake) unless told
# otherwise; an application sets this before grpc is imported.
os.environ.setdefault("GRPC_VERBOSITY", "ERROR")

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

import grpcpool
from grpcpool import Config, PoolSpec, Supervisor
from grpcpool.cli.echo import EchoServer, say  # the demo's service, standing in for yours
from grpcpool.errors import PoolTimeoutError


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def make_certificates() -> tuple[bytes, bytes, bytes]:
    """A CA certificate, and a server certificate and key it signed for 127.0.0.1 (PEM)."""
    now = datetime.datetime.now(datetime.UTC)
    valid = {
        "not_valid_before": now - datetime.timedelta(minutes=5),
        "not_valid_after": now + datetime.timedelta(hours=1),
    }
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder(
            issuer_name=_name("grpcpool example CA"),
            subject_name=_name("grpcpool example CA"),
            **valid,
        )
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    server_key = ec.generate_private_key(ec.SECP256R1())
    server = (
        x509.CertificateBuilder(issuer_name=ca.subject, subject_name=_name("localhost"), **valid)
        .public_key(server_key.public_key())
        .serial_number(x509.random_serial_number())
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    return ca.public_bytes(pem), server.public_bytes(pem), _pem_key(server_key)


def tls_config(port: int, name: str, ssl: dict[str, object] | bool) -> Config:
    return Config.new(
        endpoint={"type": "production", "host": "127.0.0.1", "port": port, "ssl": ssl},
        pool={"size": 2, "name": name},
        connection={"connect_timeout": 1.0, "backoff_min": 0.2, "backoff_max": 0.5},
    )


def main() -> None:
    ca_pem, cert_pem, key_pem = make_certificates()
    credentials = grpc.ssl_server_credentials([(key_pem, cert_pem)])
    with tempfile.TemporaryDirectory() as scratch, EchoServer(credentials=credentials) as server:
        ca_file = Path(scratch, "ca.pem")
        ca_file.write_bytes(ca_pem)
        trusted = tls_config(server.port, "trusted", {"cacertfile": str(ca_file)})
        untrusted = tls_config(server.port, "untrusted", True)  # system roots only
        supervisor = Supervisor.start(children=[PoolSpec(trusted), PoolSpec(untrusted)])
        try:
            grpcpool.await_ready("trusted", timeout=5.0, min_ready=2)
            reply = say(grpcpool.get_channel("trusted"), "over TLS")
            print(
                f"trusted pool: {grpcpool.status('trusted').status}; "
                f"reply {reply.text!r} from the server, which saw us as {reply.peer}"
            )
            try:
                grpcpool.await_ready("untrusted", timeout=1.0)
            except PoolTimeoutError as error:
                print(f"untrusted pool: {grpcpool.status('untrusted').status} ({error})")
            errors = {w.last_error for w in grpcpool.status("untrusted").workers if w.last_error}
            for error in sorted(errors):
                print(f"  last error: {error}")
        finally:
            supervisor.stop()


if __name__ == "__main__":
    main()
