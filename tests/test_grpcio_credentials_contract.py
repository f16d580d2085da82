"""What grpcpool relies on in grpcio's private credential classes.

A production endpoint refuses plaintext credentials (grpcpool/_tls.py,
``plaintext_kind``). grpcio's ``ChannelCredentials`` are opaque: grpcpool
tells the kinds apart by the class name of the cygrpc object each one wraps
in the private attribute ``_credentials``, and finds the channel credentials
inside a composite in ``_channel_credentials``. A grpcio release may rename
either; then plaintext credentials would pass as TLS, so these tests fail
loudly, naming what changed.
"""

from __future__ import annotations

from collections.abc import Callable

import grpc
import grpc.experimental
import pytest

from grpcpool._tls import plaintext_kind

ADVICE = (
    f"grpcio {grpc.__version__} changed the private credential classes grpcpool inspects "
    "to refuse plaintext credentials for production endpoints (ChannelCredentials."
    "_credentials and its cygrpc class names). Update grpcpool/_tls.py plaintext_kind, "
    "or plaintext credentials pass as TLS. Problem: "
)


def _token() -> grpc.CallCredentials:
    return grpc.access_token_call_credentials("contract-token")


PLAINTEXT: dict[str, Callable[[], grpc.ChannelCredentials]] = {
    "insecure": grpc.experimental.insecure_channel_credentials,
    "local TCP": lambda: grpc.local_channel_credentials(grpc.LocalConnectionType.LOCAL_TCP),
    "local UDS": lambda: grpc.local_channel_credentials(grpc.LocalConnectionType.UDS),
    "composite(local, token)": lambda: grpc.composite_channel_credentials(
        grpc.local_channel_credentials(), _token()
    ),
    "composite(local, token, token)": lambda: grpc.composite_channel_credentials(
        grpc.local_channel_credentials(), _token(), _token()
    ),
    "xds(fallback insecure)": lambda: grpc.xds_channel_credentials(
        grpc.experimental.insecure_channel_credentials()
    ),
}

ENCRYPTED: dict[str, Callable[[], grpc.ChannelCredentials]] = {
    "ssl": grpc.ssl_channel_credentials,
    "composite(ssl, token)": lambda: grpc.composite_channel_credentials(
        grpc.ssl_channel_credentials(), _token()
    ),
    "alts": grpc.alts_channel_credentials,
    "compute engine": lambda: grpc.compute_engine_channel_credentials(_token()),
    "xds(fallback ssl)": lambda: grpc.xds_channel_credentials(grpc.ssl_channel_credentials()),
}


@pytest.mark.parametrize("name", sorted(PLAINTEXT))
def test_plaintext_credentials_are_recognised(name: str) -> None:
    """Every way grpcio offers to make plaintext channel credentials is seen as plaintext."""
    credentials = PLAINTEXT[name]()
    inner = getattr(credentials, "_credentials", None)
    assert inner is not None, ADVICE + "ChannelCredentials has no _credentials"
    assert plaintext_kind(credentials) is not None, (
        ADVICE + f"{name} credentials (class {type(inner).__name__}) are not seen as plaintext"
    )


@pytest.mark.parametrize("name", sorted(ENCRYPTED))
def test_encrypted_credentials_are_not_plaintext(name: str) -> None:
    """TLS and ALTS credentials, alone or with call credentials, are not refused."""
    assert plaintext_kind(ENCRYPTED[name]()) is None


def test_class_names_are_the_ones_pinned() -> None:
    """The cygrpc class names and attributes grpcpool relies on are still there."""
    local = grpc.local_channel_credentials()
    composite = grpc.composite_channel_credentials(local, _token())
    names = {
        "insecure": type(grpc.experimental.insecure_channel_credentials()._credentials).__name__,
        "local": type(local._credentials).__name__,
        "composite": type(composite._credentials).__name__,
    }
    assert names == {
        "insecure": "InsecureChannelCredentials",
        "local": "LocalChannelCredentials",
        "composite": "CompositeChannelCredentials",
    }, ADVICE + f"class names are now {names}"
    inside = getattr(composite._credentials, "_channel_credentials", None)
    assert type(inside).__name__ == "LocalChannelCredentials", (
        ADVICE + "a composite no longer keeps its channel credentials in _channel_credentials"
    )


def test_every_channel_credentials_maker_is_covered() -> None:
    """A new grpc.*_channel_credentials function must be classified here first.

    A new kind of channel credentials could be plaintext; this lists the
    makers this contract knows, so that a grpcio adding one fails here.
    """
    known = {
        "alts_channel_credentials",
        "composite_channel_credentials",
        "compute_engine_channel_credentials",
        "local_channel_credentials",
        "ssl_channel_credentials",
        "xds_channel_credentials",
    }
    found = {name for name in dir(grpc) if name.endswith("_channel_credentials")}
    assert found <= known, ADVICE + f"new credential makers {sorted(found - known)}"
    experimental = {
        name
        for name in dir(grpc.experimental)
        if name.endswith("_channel_credentials") and not name.startswith("_")
    }
    assert experimental <= {"insecure_channel_credentials"}, (
        ADVICE + f"new experimental credential makers {sorted(experimental)}"
    )
