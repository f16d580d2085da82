"""Installing grpcpool changes nothing else in an environment that pins grpcio and protobuf.

An application that pins grpcio 1.80 and protobuf 5 for a reason must keep
them through ``pip install grpcpool``: no runtime dependency of grpcpool may
ask for newer ones (grpcio-health-checking did: its newest release pins the
newest grpcio and protobuf). The test does what such an application does, in
a fresh venv: pin both, install grpcpool from a copy of the tree (not
editable), and look. It needs PyPI (or the pip cache) for those releases and
for setuptools, which pip's isolated build fetches.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# What the application pins: a grpcio and a protobuf older than the newest.
PINS = ("grpcio==1.80.*", "protobuf==5.29.*")
# Per step; the whole test takes about 20 s with a warm pip cache.
STEP_TIMEOUT = 150

# Never copied: local state, not sources.
_LOCAL_STATE = shutil.ignore_patterns(
    ".git",
    ".venv*",
    "*.egg-info",
    "__pycache__",
    ".pytest_cache",
    ".mypy_cache",
    ".ruff_cache",
    ".hypothesis",
    "build",
    "dist",
)


def _env() -> dict[str, str]:
    """The caller's environment minus anything that could put the checkout on the path."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("PYTHONPATH", "PYTEST_ADDOPTS", "VIRTUAL_ENV", "PYTHONHOME")
    }
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env["GRPC_VERBOSITY"] = "ERROR"
    return env


def _run(args: list[str], cwd: Path) -> str:
    result = subprocess.run(
        args,
        cwd=cwd,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=STEP_TIMEOUT,
        check=False,
    )
    assert result.returncode == 0, f"{args}\n{result.stdout[-4000:]}{result.stderr[-4000:]}"
    return result.stdout


def _installed(python: Path, cwd: Path) -> dict[str, str]:
    """Distribution name (normalised) -> version, for every package of ``python``'s venv."""
    out = _run(
        [
            str(python),
            "-c",
            "import importlib.metadata as m\n"
            "for d in m.distributions(): print(d.metadata['Name'], d.version)",
        ],
        cwd,
    )
    pairs = (line.split() for line in out.splitlines() if line.strip())
    return {name.lower().replace("_", "-"): version for name, version in pairs}


# What runs in the venv: grpcpool from site-packages, a pool of 2 to the demo
# server (each connection health-checked with grpcpool's own stubs), calls.
_SMOKE = """
    import google.protobuf, grpc, grpcpool
    from grpcpool import Config, PoolSpec, Supervisor
    from grpcpool.cli.echo import EchoServer, say

    with EchoServer() as server:
        config = Config.local(host="127.0.0.1", port=server.port, pool_size=2)
        supervisor = Supervisor.start(children=[PoolSpec(config, name="pinned")])
        try:
            grpcpool.await_ready("pinned", timeout=10.0, min_ready=2)
            replies = [say(grpcpool.get_channel("pinned"), str(n)).text for n in range(4)]
            assert replies == ["0", "1", "2", "3"], replies
            print(grpcpool.__file__)
            print(grpc.__version__, google.protobuf.__version__)
            print(grpcpool.status("pinned").status, len(server.peer_counts()))
        finally:
            supervisor.stop()
"""


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_install_beside_pinned_grpcio_and_protobuf_leaves_them_untouched(
    tmp_path: Path,
) -> None:
    """``pip install .`` into a venv holding grpcio 1.80.x and protobuf 5.29.x keeps every
    package already there at its version, adds no grpcio-health-checking, and the
    installed grpcpool runs a health-checked pool there."""
    venv = tmp_path / "venv"
    python = venv / "bin" / "python"
    _run([sys.executable, "-m", "venv", str(venv)], tmp_path)
    _run([str(python), "-m", "pip", "install", "--quiet", *PINS], tmp_path)
    before = _installed(python, tmp_path)
    assert before["grpcio"].startswith("1.80.") and before["protobuf"].startswith("5.29."), before

    source = tmp_path / "checkout"
    shutil.copytree(ROOT, source, ignore=_LOCAL_STATE)
    _run([str(python), "-m", "pip", "install", "--quiet", str(source)], tmp_path)
    after = _installed(python, tmp_path)

    changed = {name: (v, after.get(name)) for name, v in before.items() if after.get(name) != v}
    assert not changed, f"pip install . changed {changed}"
    assert "grpcpool" in after
    assert "grpcio-health-checking" not in after, after

    out = _run([str(python), "-c", textwrap.dedent(_SMOKE)], tmp_path).split("\n")
    assert Path(out[0]).is_relative_to(venv), out  # the installed copy, not the checkout
    assert out[1] == f"{before['grpcio']} {before['protobuf']}", out
    assert out[2] == "healthy 2", out
    # The whole demo runs there too: it needs nothing beyond the runtime dependencies.
    demo = _run([str(python), "-m", "grpcpool", "demo", "--quiet", "--seconds", "0.2"], tmp_path)
    assert "pool 'demo': healthy, 4 of 4 ready" in demo and "done in" in demo, demo[-2000:]


def test_make_demo_installs_the_runtime_dependencies_only() -> None:
    """`make demo` builds a venv of its own with grpcpool and its runtime dependencies (no
    extra, so no test toolchain) and runs the demo with it; `make test` keeps the test extra."""
    if shutil.which("make") is None:
        pytest.skip("no make on this machine")

    def commands(target: str) -> list[str]:
        # A dry run (-n) of every step (-B), in the checkout: prints, runs nothing.
        # Under `make test` this make is nested: --no-print-directory keeps its
        # "Entering directory" lines out of the commands.
        out = _run(["make", "--no-print-directory", "-n", "-B", target], ROOT)
        return [line.strip() for line in out.splitlines()]

    demo = commands("demo")
    installs = [line for line in demo if " pip install " in line]
    assert any(line.endswith("-m venv .venv-demo") for line in demo), demo
    assert installs and all(".venv-demo/bin/python" in line for line in installs), installs
    assert all("[" not in line for line in installs), installs  # no extra
    assert demo[-1] == ".venv-demo/bin/python -m grpcpool demo", demo
    assert any("'.[test]'" in line for line in commands("test")), "make test installs the test extra"
