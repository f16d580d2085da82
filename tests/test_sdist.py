"""The source distribution carries its own test suite, and the wheel does not.

Someone who downloads the sdist (a distribution packager, a CI mirror) runs
its tests from the unpacked tree, so the tests' helpers, fixtures and the
files the tests read must be in it. The build runs offline with the
setuptools already installed (no build isolation), in a copy of the tree so
that the checkout's own ``*.egg-info`` is never rewritten under anyone.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# Generous for slow CI machines; the whole test takes a few seconds.
TIMEOUT_SECONDS = 50

# What running or reading the tests needs besides tests/test_*.py.
NEEDED = [
    "tests/__init__.py",
    "tests/conftest.py",
    "tests/servers.py",
    "tests/certs.py",
    "tests/faultproxy.py",
    "tests/etcd.py",
    "tests/events.py",
    "tests/pools.py",
    "tests/waiting.py",
    "tests/workers.py",
    "Makefile",
    "CHANGELOG.md",
    "README.md",
    "docs/SPEC.md",
    "pyproject.toml",
    "benchmarks/__main__.py",
    "grpcpool/cli/echo/echo.proto",
    "grpcpool/connection/health/health.proto",
]

# Never copied into the build tree: local state, not sources.
_LOCAL_STATE = shutil.ignore_patterns(
    ".git",
    ".venv",
    "*.egg-info",
    "__pycache__",
    ".pytest_cache",
    ".mypy_cache",
    ".ruff_cache",
    ".hypothesis",
    "build",
    "dist",
    "site",
)


def _env() -> dict[str, str]:
    """The caller's environment minus anything that could put the checkout on the path."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTEST_ADDOPTS")}
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env["GRPC_VERBOSITY"] = "ERROR"
    return env


def _run(code_or_args: list[str], cwd: Path) -> str:
    """Runs this interpreter with ``code_or_args`` in ``cwd``; fails the test on exit != 0."""
    result = subprocess.run(
        [sys.executable, *code_or_args],
        cwd=cwd,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=TIMEOUT_SECONDS,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    return result.stdout


def _build(kind: str, source: Path, out: Path) -> Path:
    """Builds an sdist or a wheel of ``source`` into ``out`` with setuptools' PEP 517 hooks."""
    out.mkdir()
    hook = f"build_{kind}"
    name = _run(
        [
            "-c",
            f"import sys; from setuptools import build_meta; print(build_meta.{hook}(sys.argv[1]))",
            str(out),
        ],
        source,
    ).splitlines()[-1]
    return out / name


@pytest.mark.slow
def test_the_sdist_carries_its_tests_and_the_wheel_only_the_package(tmp_path: Path) -> None:
    """The sdist holds the test helpers, examples, docs and Makefile, its tests collect
    from the unpacked tree without import errors (against the sdist's own grpcpool),
    and a wheel built from that sdist contains the grpcpool package and nothing else."""
    source = tmp_path / "checkout"
    shutil.copytree(ROOT, source, ignore=_LOCAL_STATE)
    sdist = _build("sdist", source, tmp_path / "sdist")

    with tarfile.open(sdist) as archive:
        archive.extractall(tmp_path / "unpacked", filter="data")
    (unpacked,) = (tmp_path / "unpacked").iterdir()
    missing = [path for path in NEEDED if not (unpacked / path).is_file()]
    assert not missing, f"missing from the sdist: {missing}"
    for folder in ("examples", "tests"):
        shipped = sorted(p.name for p in (unpacked / folder).glob("*.py"))
        assert shipped == sorted(p.name for p in (ROOT / folder).glob("*.py")), folder

    imported = _run(
        ["-c", "import grpcpool, tests; print(grpcpool.__file__, tests.__file__)"], unpacked
    )
    assert all(Path(path).is_relative_to(unpacked) for path in imported.split()), imported

    collected = _run(
        ["-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", "tests"], unpacked
    )
    summary = collected.strip().splitlines()[-1]
    assert " tests collected" in summary and "error" not in summary, collected[-4000:]
    assert int(summary.split()[0]) >= len(list((ROOT / "tests").glob("test_*.py")))

    wheel = _build("wheel", unpacked, tmp_path / "wheel")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        tops = {name.split("/")[0] for name in names}
    assert "grpcpool" in tops
    # The generated code's sources and type stubs ship with it (package data).
    for data in (
        "grpcpool/py.typed",
        "grpcpool/cli/echo/echo.proto",
        "grpcpool/cli/echo/echo_pb2.pyi",
        "grpcpool/connection/health/health.proto",
        "grpcpool/connection/health/health_pb2.pyi",
    ):
        assert data in names, f"{data} is missing from the wheel"
    extra = tops - {"grpcpool"}
    assert len(extra) == 1 and extra.pop().endswith(".dist-info"), tops
