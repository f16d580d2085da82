"""The documentation site's sources hold together without building it.

`make docs` (run in CI) builds the site with ``mkdocs build --strict``, which
catches broken links, anchors and nav entries; these checks run in `make
test` too, where mkdocs is not installed: the README stays short, every page
is in the nav, the API reference documents every public name, and CI builds
the site.
"""

from __future__ import annotations

import importlib
import re
import types
from pathlib import Path

import pytest

import grpcpool

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
API = DOCS / "api"
README_MAX_LINES = 250

# Public modules whose every exported name the reference must show.
PUBLIC_MODULES = ("grpcpool", "grpcpool.aio", "grpcpool.config", "grpcpool.resolver")


def nav_pages() -> list[str]:
    """The Markdown files mkdocs.yml's nav names, relative to docs/."""
    text = (ROOT / "mkdocs.yml").read_text()
    nav = text.split("\nnav:\n", 1)[1]
    nav = re.split(r"\n(?=\S)", nav, maxsplit=1)[0]
    return re.findall(r":\s*(\S+\.md)\s*$", nav, re.MULTILINE)


def directives() -> set[str]:
    """The identifiers the API pages render with their members (``::: identifier``
    not followed by ``members: false`` in its options)."""
    shown = set()
    for page in API.glob("*.md"):
        for match in re.finditer(
            r"^::: ([\w.]+)[ \t]*\n((?:[ \t]+\S.*\n)*)", page.read_text(), re.MULTILINE
        ):
            if not re.search(r"^\s*members:\s*false\s*$", match.group(2), re.MULTILINE):
                shown.add(match.group(1))
    return shown


def _is_module(name: str) -> bool:
    try:
        importlib.import_module(name)
    except ImportError:
        return False
    return True


def test_readme_is_short() -> None:
    """The README stays a front page (at most 250 lines); the rest is in docs/."""
    lines = (ROOT / "README.md").read_text().count("\n")
    assert lines <= README_MAX_LINES, f"README.md has {lines} lines"


def test_every_page_is_in_the_nav_and_every_nav_entry_exists() -> None:
    """Each Markdown page under docs/ is reachable from the nav, and the nav names
    no page that is missing."""
    pages = sorted(p.relative_to(DOCS).as_posix() for p in DOCS.rglob("*.md"))
    nav = nav_pages()
    assert len(nav) == len(set(nav))
    assert sorted(nav) == pages


@pytest.mark.parametrize("module_name", PUBLIC_MODULES)
def test_the_api_reference_shows_every_public_name(module_name: str) -> None:
    """Every name in a public module's ``__all__`` is rendered by some API page:
    by its own ``::: module.name`` directive, or by a directive for the module
    it comes from, which renders that module's ``__all__`` whole."""
    shown = directives()
    if module_name in shown:
        return
    module = importlib.import_module(module_name)
    rendered_whole = [importlib.import_module(name) for name in shown if _is_module(name)]
    missing = []
    for name in module.__all__:
        if name == "__version__" or f"{module_name}.{name}" in shown:
            continue
        value = getattr(module, name)
        if isinstance(value, types.ModuleType) and value.__name__ in shown:
            continue
        if any(
            name in getattr(other, "__all__", ()) and getattr(other, name) is value
            for other in rendered_whole
        ):
            continue
        missing.append(name)
    assert not missing, f"{module_name}: no API page shows {missing}"


def test_the_telemetry_and_metrics_modules_have_pages() -> None:
    """The signals module and both exporters are rendered."""
    shown = directives()
    assert grpcpool.telemetry.__name__ in shown
    assert {"grpcpool.metrics.prometheus", "grpcpool.metrics.opentelemetry"} <= shown


def test_ci_builds_the_site_strictly() -> None:
    """`make docs` runs ``mkdocs build --strict`` and CI runs it after `make test`."""
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^docs: .*\n\t.*mkdocs build --strict$", makefile, re.MULTILINE)
    assert "strict: true" in (ROOT / "mkdocs.yml").read_text()
    script = (ROOT / ".ci" / "run").read_text().splitlines()
    commands = [line.strip() for line in script if line.strip().startswith("make ")]
    assert commands.index("make docs") == commands.index("make test") + 1
