"""Every script in examples/ runs, exits 0 and prints what it is there to show."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
# Generous: each script takes a second or two, but CI machines can be slow.
TIMEOUT_SECONDS = 45

# Script -> lines (or fragments) its output must contain.
EXPECTED = {
    "aio_pool.py": [
        "30 concurrent calls over 3 connections",
        "get_channel() gave a grpc.aio.Channel; its reply: 'direct'",
        "status: healthy, 3/3 ready",
        "server down: the call failed with UNAVAILABLE",
        "server back: the same stub answered 'back?'",
        "pool stopped, every channel closed",
    ],
    "multiple_pools.py": [
        "pool 'users': healthy, 3/3 ready; its server: calls=9, connections=3",
        "pool 'billing': healthy, 2/2 ready; its server: calls=4, connections=2",
        "pool 'reports': healthy, 1/1 ready; its server: calls=1, connections=1",
        "after grpcpool.stop('reports'): <PoolProxy 'users' healthy 3/3",
        "all pools stopped",
    ],
    "telemetry_logging.py": [
        "INFO    myapp.grpcpool: orders pool.init",
        "INFO    myapp.grpcpool: hello from orders",
        "WARNING myapp.grpcpool: orders channel.connection_down",
        "INFO    myapp.grpcpool: orders channel.reconnect_scheduled",
        "INFO    myapp.grpcpool: orders grew to 3 workers",
        "INFO    myapp.grpcpool: status: healthy",
    ],
    "tls_local_ca.py": [
        "trusted pool: healthy; reply 'over TLS'",
        "untrusted pool: down",
        "CERTIFICATE_VERIFY_FAILED",
    ],
}


def test_every_example_is_tested() -> None:
    """A new script in examples/ needs an entry here."""
    assert sorted(p.name for p in EXAMPLES.glob("*.py")) == sorted(EXPECTED)


@pytest.mark.slow
@pytest.mark.parametrize("script", sorted(EXPECTED))
def test_example_runs(script: str) -> None:
    """Each example script runs to completion and prints what it shows."""
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / script)],
        capture_output=True,
        text=True,
        timeout=TIMEOUT_SECONDS,
        cwd=EXAMPLES.parent,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    for expected in EXPECTED[script]:
        assert expected in result.stdout, f"{expected!r} not in:\n{result.stdout}"
