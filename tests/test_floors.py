"""The declared floors are the ones CI tests, and the demo's code never raises them.

`make test-floors` runs this suite on the pins of ``.ci/floors-constraints.txt``;
these checks keep those pins, the floors in ``pyproject.toml`` and the README's
table of supported ranges the same numbers, so that no floor is declared that
CI never ran.
"""

from __future__ import annotations

import importlib.metadata
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent
RUNTIME = ("grpcio", "protobuf", "pykka", "blinker")


def declared_floors() -> dict[str, Version]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    floors: dict[str, Version] = {}
    for line in project["dependencies"]:
        requirement = Requirement(line)
        lower = [spec.version for spec in requirement.specifier if spec.operator == ">="]
        assert len(lower) == 1, f"{requirement.name} must declare one floor (>=), got {line!r}"
        floors[requirement.name] = Version(lower[0])
    return floors


def pinned_floors() -> dict[str, Version]:
    pins: dict[str, Version] = {}
    for raw in (ROOT / ".ci" / "floors-constraints.txt").read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            assert version, f"constraints line {raw!r} must pin with =="
            pins[name.strip()] = Version(version.strip())
    return pins


def test_every_runtime_dependency_has_a_floor_that_ci_pins() -> None:
    """Each runtime dependency declares one floor, and CI pins exactly it."""
    floors = declared_floors()
    pins = pinned_floors()
    assert set(floors) == set(RUNTIME)
    for name in RUNTIME:
        assert pins.get(name) == floors[name], f"{name}: floor {floors[name]}, pinned {pins.get(name)}"


def test_readme_states_the_tested_floors() -> None:
    """The README's table of supported ranges shows the declared floors."""
    readme = (ROOT / "README.md").read_text()
    for name, floor in declared_floors().items():
        shown = f"| {name} | {floor}"
        assert shown in readme, f"README's supported ranges must say {shown!r}"


def test_ci_runs_the_suite_on_newest_and_on_floors() -> None:
    """`.ci/run` runs `make test`, builds the docs, then runs the suite on the floors' pins."""
    script = (ROOT / ".ci" / "run").read_text().splitlines()
    commands = [line.strip() for line in script if line.strip().startswith("make ")]
    assert commands == ["make test", "make docs", "make test-floors"]
    makefile = (ROOT / "Makefile").read_text()
    assert "-c $(FLOORS)" in makefile
    assert "FLOORS := .ci/floors-constraints.txt" in makefile


@pytest.mark.parametrize(
    "module",
    [
        "cli/echo/echo_pb2.py",
        "cli/echo/echo_pb2_grpc.py",
        "connection/health/health_pb2.py",
        "connection/health/health_pb2_grpc.py",
    ],
)
def test_generated_code_checks_no_runtime_version(module: str) -> None:
    """The echo service's and the health check's generated code imports on every
    supported runtime."""
    # Code from newer grpcio-tools refuses to import on a grpcio or protobuf
    # older than the generator; ours must import on every supported release.
    source = (ROOT / "grpcpool" / module).read_text()
    assert "GRPC_GENERATED_VERSION" not in source
    assert "ValidateProtobufRuntimeVersion" not in source
    assert "first_version_is_lower" not in source


def test_installed_runtime_meets_the_floors() -> None:
    """The environment running the suite is within the supported ranges."""
    for name, floor in declared_floors().items():
        installed = Version(importlib.metadata.version(name))
        assert installed >= floor, f"{name} {installed} is below the declared floor {floor}"
