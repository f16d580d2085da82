"""The README's Python examples run exactly as written.

Each block runs alone in a fresh namespace holding nothing but what the block
imports itself, as a reader pasting it into a new file would; no port is
rewritten and no stub is lent. A block marked ``run`` starts and stops
whatever it needs (the bundled echo server stands in for the reader's
service), and a ``print(...)  # text`` line must print ``text``. A block
marked ``build`` only builds values: it must start no thread, actor or
channel, so the mark cannot hide a block that needs a server.
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

README = Path(__file__).resolve().parent.parent / "README.md"
_BLOCK = re.compile(r"(?:<!-- readme-test: (\w+) -->\n)?```python\n(.*?)```", re.DOTALL)
# `print(...)   # expected output` (the comment up to two spaces or a colon).
_PRINTED = re.compile(r"^[ \t]*print\(.*\)[ \t]+# (.+)$", re.MULTILINE)


def blocks() -> list[tuple[str | None, str]]:
    """Every ```python block of the README, with its readme-test mark (or None)."""
    return [(match.group(1), match.group(2)) for match in _BLOCK.finditer(README.read_text())]


def _marked(mode: str) -> list[Any]:
    return [
        pytest.param(code, id=f"block{index}")
        for index, (mark, code) in enumerate(blocks())
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


def _run_block(code: str) -> dict[str, Any]:
    namespace: dict[str, Any] = {"__name__": "readme_example"}
    exec(compile(code, "README.md", "exec"), namespace)
    return namespace


def test_every_python_block_compiles_and_is_marked() -> None:
    """No README Python block has a syntax error, and each is marked run or build,
    so none escapes being executed."""
    found = blocks()
    assert len(found) >= 8
    for index, (mark, code) in enumerate(found):
        compile(code, f"README.md block {index}", "exec")
        assert mark in ("run", "build"), f"README Python block {index} has no readme-test mark"


def test_print_comments_are_recognised() -> None:
    """The expected-output convention reads the comment up to two spaces or a colon."""
    code = "print(x)   # 5: the name first\nprint(y)  # hello  (one call)\nprint(z)  # <P 2/2>\n"
    assert _expected_lines(code) == ["5", "hello", "<P 2/2>"]


@pytest.mark.parametrize("code", _marked("run"))
def test_run_blocks_work_as_written(code: str, capsys: pytest.CaptureFixture[str]) -> None:
    """A run block works alone against the server it starts itself, prints what its
    comments say, keeps every receiver it connects (weak=False for lambdas), and
    leaves no pool or actor running."""
    receivers_before = _receivers()
    try:
        namespace = _run_block(code)
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


@pytest.mark.parametrize("code", _marked("build"))
def test_build_blocks_only_build(code: str) -> None:
    """A build block runs alone and starts nothing: no thread, actor, channel or
    receiver, so it needs no server."""
    threads_before = set(threading.enumerate())
    receivers_before = _receivers()
    channels_before = open_channel_count()
    _run_block(code)
    assert set(threading.enumerate()) - threads_before == set()
    assert pykka.ActorRegistry.get_all() == []
    assert open_channel_count() == channels_before
    assert _receivers() == receivers_before
