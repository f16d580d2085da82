"""House rules that are cheap to check mechanically."""

from __future__ import annotations

import ast
from pathlib import Path

import grpcpool
from grpcpool import telemetry

TESTS = Path(__file__).resolve().parent
PACKAGE = Path(grpcpool.__file__).resolve().parent


def test_every_test_says_what_it_pins() -> None:
    """Every test function has a docstring naming the behaviour it pins."""
    missing = []
    for path in sorted(TESTS.rglob("test_*.py")):  # tests/behaviour/ too
        for node in ast.walk(ast.parse(path.read_text())):
            is_test = isinstance(
                node, ast.FunctionDef | ast.AsyncFunctionDef
            ) and node.name.startswith("test_")
            if is_test and not ast.get_docstring(node):
                missing.append(f"{path.relative_to(TESTS)}::{node.name}")
    assert missing == []


def test_signal_names_live_only_in_the_telemetry_module() -> None:
    """No module but grpcpool.telemetry spells out a signal name."""
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        if path.name == "telemetry.py":
            continue
        text = path.read_text()
        offenders += [f"{path.name}: {name}" for name in telemetry.EVENTS if name in text]
    assert offenders == []


def test_package_ships_its_type_marker() -> None:
    """py.typed is in the package, so type checkers use its annotations."""
    assert (PACKAGE / "py.typed").is_file()


def _imported(node: ast.Import | ast.ImportFrom, package: str) -> list[str]:
    """The modules (and module.names) an import statement in ``package`` names."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    base = package.rsplit(".", node.level - 1)[0] if node.level else ""
    module = ".".join(part for part in (base, node.module or "") if part)
    return [module] + [f"{module}.{alias.name}" for alias in node.names]


def test_asyncio_pool_parts_never_import_the_pool() -> None:
    """No module of grpcpool.tasks but the pool's own and the package's imports the pool.

    Not even under TYPE_CHECKING: the parts see the pool only through the
    interfaces of grpcpool.tasks._parts, so no import loop runs through them.
    """
    offenders = []
    for path in sorted((PACKAGE / "tasks").glob("*.py")):
        if path.name in ("__init__.py", "_pool.py"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Import | ast.ImportFrom):
                continue
            if "grpcpool.tasks._pool" in _imported(node, "grpcpool.tasks"):
                offenders.append(f"{path.name}:{node.lineno}")
    assert offenders == []
