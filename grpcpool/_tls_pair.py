"""Checking that a client key and certificate chain belong together.

grpcio takes the PEM as given and finds out only at the first TLS handshake,
where a key of another certificate fails every connection attempt with
"Failed to create security handshaker" and no key named. The stdlib ``ssl``
module (OpenSSL) tells when the config is built instead. OpenSSL loads a key
and a chain only from files, so the PEM goes to anonymous in-memory files
(``memfd_create``, Linux) or, where there are none, to a private temporary
directory (mode 0700, files 0600) removed as soon as the check is done.
"""

from __future__ import annotations

import contextlib
import os
import ssl
import tempfile
from collections.abc import Iterator

from grpcpool.errors import ConfigError

__all__ = ["check_client_pair"]

# What OpenSSL reports when the key is not the one the first certificate of
# the chain was issued for (OpenSSL 1.1 and 3, LibreSSL).
_MISMATCH = "KEY_VALUES_MISMATCH"


class _Encrypted(Exception):
    """OpenSSL asked for the key's passphrase."""


def _no_passphrase() -> bytes:
    # Without a callback OpenSSL would prompt on the terminal and block.
    raise _Encrypted


def check_client_pair(
    private_key: bytes, certificate_chain: bytes, key_name: str, chain_name: str
) -> None:
    """Refuses a client key that is not the key of the chain's first certificate.

    Also refuses what grpcio could not use either: a chain with no readable
    certificate, a key OpenSSL cannot read, and an encrypted key (grpcio
    takes no passphrase). The errors name ``key_name`` and ``chain_name`` (the
    config keys the two came from), never their contents.

    Raises:
        ConfigError: The pair is unusable, naming the key at fault.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    try:
        # Reads the certificates alone, so a bad chain is told from a bad key.
        context.load_verify_locations(cadata=certificate_chain.decode("ascii", errors="ignore"))
    except ssl.SSLError:
        raise ConfigError(chain_name, "holds no certificate OpenSSL can read") from None
    with _pem_files(certificate_chain, private_key) as (chain_path, key_path):
        try:
            context.load_cert_chain(chain_path, key_path, password=_no_passphrase)
        except _Encrypted:
            raise ConfigError(
                key_name, "is encrypted; grpc takes only an unencrypted private key"
            ) from None
        except ssl.SSLError as error:
            if error.reason == _MISMATCH:
                raise ConfigError(
                    key_name,
                    f"does not belong to the certificate in {chain_name}: the chain's first "
                    "certificate must be the one issued for this private key",
                ) from None
            raise ConfigError(key_name, "holds no private key OpenSSL can read") from None


@contextlib.contextmanager
def _pem_files(*contents: bytes) -> Iterator[list[str]]:
    """Paths of files holding ``contents``, gone when the block ends."""
    with contextlib.ExitStack() as stack:
        if hasattr(os, "memfd_create") and os.path.isdir("/proc/self/fd"):
            yield [stack.enter_context(_memory_file(data)) for data in contents]
            return
        directory = stack.enter_context(tempfile.TemporaryDirectory(prefix="grpcpool-tls-"))
        paths = []
        for index, data in enumerate(contents):
            path = os.path.join(directory, f"{index}.pem")
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with open(fd, "wb") as file:
                file.write(data)
            paths.append(path)
        yield paths


@contextlib.contextmanager
def _memory_file(data: bytes) -> Iterator[str]:
    fd = os.memfd_create("grpcpool-tls", os.MFD_CLOEXEC)
    try:
        with open(fd, "wb", closefd=False) as file:
            file.write(data)
        yield f"/proc/self/fd/{fd}"
    finally:
        os.close(fd)
