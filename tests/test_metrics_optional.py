"""The exporters stay optional: grpcpool imports neither, and each says what to install."""

from __future__ import annotations

import subprocess
import sys

import pytest

# Runs in a fresh interpreter: this test process has long imported both libraries.
NOTHING_OPTIONAL = """
import sys
import grpcpool, grpcpool.metrics, grpcpool.telemetry
loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("prometheus_client", "opentelemetry"))
assert not loaded, loaded
"""

# Hides a library as if it were not installed (None in sys.modules fails its import).
WITHOUT = """
import sys
sys.modules[{library!r}] = None
try:
    import {module}
except ImportError as error:
    print(error)
else:
    raise SystemExit("imported without " + {library!r})
"""


def run(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=30, check=False
    )


def test_import_grpcpool_loads_no_exporter_library() -> None:
    """`import grpcpool` (and grpcpool.metrics) leaves prometheus_client and opentelemetry unloaded."""
    result = run(NOTHING_OPTIONAL)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    ("module", "library", "extra"),
    [
        ("grpcpool.metrics.prometheus", "prometheus_client", "grpcpool[prometheus]"),
        ("grpcpool.metrics.opentelemetry", "opentelemetry", "grpcpool[otel]"),
    ],
)
def test_missing_library_names_the_extra(module: str, library: str, extra: str) -> None:
    """Without its library, importing an exporter fails with an ImportError naming the extra."""
    result = run(WITHOUT.format(library=library, module=module))
    assert result.returncode == 0, result.stderr
    assert extra in result.stdout
