"""The Python examples of the README and of every page under docs/ run exactly as written.

Each block runs alone in a fresh namespace holding nothing but what the block
imports itself, as a reader pasting it into a new file would; no port is
rewritten and no stub is lent. A block marked ``run`` starts and stops
whatever it needs (the bundled echo server stands in for the reader's
service), and a ``print(...)  # text`` line must print ``text``. A block
marked ``build`` only builds values: it must start no thread, actor or
channel, so the mark cannot hide a block that needs a server. A block marked
``skip`` is not run; its mark must say why (``skip: <reason>``), and only the
contract (docs/SPEC.md), whose sketches stand for any service, may use it.

The mark is an HTML comment on the line before the block:
``<!-- docs-test: run -->``, invisible on GitHub and on the docs site.
"""

from __future__ import annotations

import gc
import re
import threading
import weakref
from pathlib import Path
from typing import Any

import blinker
import pykka
import pytest

from grpcpool import telemetry
from grpcpool.connection import open_channel_count

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS = ROOT / "docs"
_BLOCK = re.compile(
    r"(?:<!-- docs-test: (\w+)(?::[ \t]*(.*?))? -->\n)?```python\n(.*?)```", re.DOTALL
)
# Any fence that opens a Python-ish block, to catch one that would escape _BLOCK.
_PY_FENCE = re.compile(r"^[ \t]*```[ \t]*(py\w*)", re.MULTILINE | re.IGNORECASE)
# `print(...)   # expected output` (the comment up to two spaces or a colon).
_PRINTED = re.compile(r"^[ \t]*print\(.*\)[ \t]+# (.+)$", re.MULTILINE)
# The pages whose blocks may be skipped, with a reason.
_MAY_SKIP = {"docs/SPEC.md"}


def pages() -> list[Path]:
    """The README and every Markdown page of the documentation."""
    return [README, *sorted(DOCS.rglob("*.md"))]


def _name(page: Path) -> str:
    return page.relative_to(ROOT).as_posix()


def blocks() -> list[tuple[str, int, str | None, str | None, str]]:
    """Every ```python block: (page, index in the page, mark or None, reason, code)."""
    found = []
    for page in pages():
        for index, match in enumerate(_BLOCK.finditer(page.read_text())):
            found.append((_name(page), index, match.group(1), match.group(2), match.group(3)))
    return found


def _marked(mode: str) -> list[Any]:
    return [
        pytest.param(page, code, id=f"{page}:{index}")
        for page, index, mark, _, code in blocks()
        if mark == mode
    ]


def _receivers() -> dict[str, set[Any]]:
    return {name: set(blinker.signal(name).receivers) for name in telemetry.EVENTS}


def _disconnect_new(before: dict[str, set[Any]]) -> None:
    """Disconnects the receivers a block connected, so no later test sees them."""
    for name in telemetry.EVENTS:
        signal = blinker.signal(name)
        for receiver_id in set(signal.receivers) - before[name]:
            receiver = signal.receivers.get(receiver_id)
            if isinstance(receiver, weakref.ref):
                receiver = receiver()
            if receiver is not None:
                signal.disconnect(receiver)


def _expected_lines(code: str) -> list[str]:
    return [re.split(r"  |: ", comment)[0].strip() for comment in _PRINTED.findall(code)]


def _run_block(page: str, code: str) -> dict[str, Any]:
    namespace: dict[str, Any] = {"__name__": "docs_example"}
    exec(compile(code, page, "exec"), namespace)
    return namespace


def test_every_python_block_compiles_and_is_marked() -> None:
    """No Python block of the README or the docs has a syntax error, and each is
    marked run or build (or, in the contract only, skip with a reason), so none
    escapes being executed."""
    found = blocks()
    assert sum(page == "README.md" for page, *_ in found) >= 3
    assert len(found) >= 15
    for page, index, mark, reason, code in found:
        where = f"{page} Python block {index}"
        compile(code, where, "exec")
        if mark == "skip":
            assert page in _MAY_SKIP, f"{where}: only {sorted(_MAY_SKIP)} may skip a block"
            assert reason and len(reason) > 20, f"{where}: a skip mark must say why"
        else:
            assert mark in ("run", "build"), f"{where} has no docs-test mark"
            assert reason is None, f"{where}: only a skip mark takes a reason"


def test_no_python_block_escapes_the_check() -> None:
    """Every fence that opens Python code is a ```python fence the test reads
    (```py, ```python3 or ```pycon would be skipped silently)."""
    for page in pages():
        text = page.read_text()
        fences = _PY_FENCE.findall(text)
        assert all(fence == "python" for fence in fences), f"{_name(page)}: {fences}"
        assert len(fences) == len(_BLOCK.findall(text)), _name(page)


def test_print_comments_are_recognised() -> None:
    """The expected-output convention reads the comment up to two spaces or a colon."""
    code = "print(x)   # 5: the name first\nprint(y)  # hello  (one call)\nprint(z)  # <P 2/2>\n"
    assert _expected_lines(code) == ["5", "hello", "<P 2/2>"]


@pytest.mark.parametrize(("page", "code"), _marked("run"))
def test_run_blocks_work_as_written(
    page: str, code: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A run block works alone against the server it starts itself, prints what its
    comments say, keeps every receiver it connects (weak=False for lambdas), and
    leaves no pool or actor running."""
    receivers_before = _receivers()
    try:
        namespace = _run_block(page, code)
        gc.collect()
        connected = sum(
            len(set(blinker.signal(name).receivers) - receivers_before[name])
            for name in telemetry.EVENTS
        )
        assert connected == len(re.findall(r"\.connect\b", code)), "a receiver was collected"
        del namespace
    finally:
        _disconnect_new(receivers_before)
    assert pykka.ActorRegistry.get_all() == []
    printed = capsys.readouterr().out.splitlines()
    for expected in _expected_lines(code):
        assert expected in printed, f"{expected!r} not printed; got {printed}"


@pytest.mark.parametrize(("page", "code"), _marked("build"))
def test_build_blocks_only_build(page: str, code: str) -> None:
    """A build block runs alone and starts nothing: no thread, actor, channel or
    receiver, so it needs no server."""
    threads_before = set(threading.enumerate())
    receivers_before = _receivers()
    channels_before = open_channel_count()
    _run_block(page, code)
    assert set(threading.enumerate()) - threads_before == set()
    assert pykka.ActorRegistry.get_all() == []
    assert open_channel_count() == channels_before
    assert _receivers() == receivers_before
