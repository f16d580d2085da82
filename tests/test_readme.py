"""The README's code runs: every Python block compiles, and the marked ones run
against real servers on 127.0.0.1 (ports 9090 and 9091 are replaced by theirs)."""

from __future__ import annotations

import re
import weakref
from pathlib import Path
from typing import Any

import blinker
import pytest

import grpcpool
from grpcpool import telemetry
from tests.servers import EchoServer, EchoStub

README = Path(__file__).resolve().parent.parent / "README.md"
_BLOCK = re.compile(r"(?:<!-- readme-test: (\w+) -->\n)?```python\n(.*?)```", re.DOTALL)


def blocks() -> list[tuple[str | None, str]]:
    return [(match.group(1), match.group(2)) for match in _BLOCK.finditer(README.read_text())]


def test_every_python_block_compiles() -> None:
    """No README Python block has a syntax error."""
    found = blocks()
    assert len(found) >= 5
    for index, (_, code) in enumerate(found):
        compile(code, f"README.md block {index}", "exec")


def test_marked_blocks_run_against_real_servers(capsys: pytest.CaptureFixture[str]) -> None:
    """The usage examples work as written, in order, in one namespace."""
    receivers_before = {name: set(blinker.signal(name).receivers) for name in telemetry.EVENTS}
    first, second = EchoServer(), EchoServer()
    namespace: dict[str, Any] = {"EchoStub": EchoStub}
    try:
        for mode, code in blocks():
            if mode not in ("run", "build"):
                continue
            code = code.replace("9090", str(first.port)).replace("9091", str(second.port))
            exec(compile(code, "README.md", "exec"), namespace)
    finally:
        for name in telemetry.EVENTS:
            signal = blinker.signal(name)
            for receiver_id in set(signal.receivers) - receivers_before[name]:
                receiver = signal.receivers[receiver_id]
                if isinstance(receiver, weakref.ref):
                    receiver = receiver()
                if receiver is not None:
                    signal.disconnect(receiver)
        for pool_name in ("a", "b"):
            grpcpool.stop(pool_name)
        first.stop()
        second.stop()
    assert all(
        set(blinker.signal(name).receivers) == receivers_before[name] for name in telemetry.EVENTS
    )
    printed = capsys.readouterr().out
    assert "b'hello'" in printed
    assert "b'again'" in printed
    assert "<PoolProxy 'a' healthy 2/2 round_robin>" in printed
