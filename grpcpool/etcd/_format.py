"""grpc-go's etcd naming format: which keys belong to a target, and what a value says.

grpc-go's ``endpoints.Manager`` (``go.etcd.io/etcd/client/v3/naming/endpoints``)
keeps one key per endpoint under ``<target>/``, its value JSON
``{"Op":0,"Addr":"ip:port","Metadata":...}`` (``Op`` 0 is Add; a deleted
endpoint's key is deleted). The target is a directory: ``services/echo``
holds ``services/echo/...``, never ``services/echo-canary/...``. A value may
also be a plain ``ip:port``, as many registrations written by hand are.
"""

from __future__ import annotations

import json

__all__ = ["address_of", "key_range"]

# grpc-go's internal.Update Op values: Add is 0, Delete is 1.
_ADD = 0


def key_range(prefix: str) -> tuple[bytes, bytes]:
    """The etcd range ``[key, range_end)`` of everything under the directory ``prefix``.

    Raises:
        ValueError: ``prefix`` is empty or only slashes.
    """
    directory = prefix.rstrip("/")
    if not directory:
        raise ValueError("prefix must name a directory of keys, e.g. 'services/echo'")
    key = (directory + "/").encode()
    # A range end one past the prefix covers every key that starts with it;
    # the last byte is '/', so no carry is needed.
    return key, key[:-1] + bytes([key[-1] + 1])


def address_of(value: bytes) -> str | None:
    """The address a key's value registers, or None if it registers none.

    JSON in grpc-go's format gives its ``Addr`` when ``Op`` is Add (or
    missing); anything that is not JSON is taken as the address itself.
    Whether the address is a usable ``ip:port`` is the pool's to check.
    """
    text = value.decode("utf-8", errors="replace").strip()
    if not text:
        return None
    if not text.startswith("{"):
        return text
    try:
        update = json.loads(text)
    except ValueError:
        return None
    if not isinstance(update, dict):
        return None
    op = update.get("Op", _ADD)
    address = update.get("Addr")
    if op != _ADD or not isinstance(address, str) or not address.strip():
        return None
    return address.strip()
