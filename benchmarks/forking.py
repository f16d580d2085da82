"""Figure 8: how many children forked from a process holding ready channels crash.

grpcpool used to follow each channel with ``grpc.Channel.subscribe``: one
grpcio connectivity-poll thread per channel, and children forked from such a
process often died of SIGSEGV even when they never touched grpc. The pool now
watches every channel from one thread that its fork hook pauses
(:mod:`grpcpool._process`). This figure checks that holding an idle pool
makes forking no riskier than holding the same channels without a pool.

Two parent states, each in a fresh parent process
(``python -m benchmarks.forking``) talking to an echo server process:

- bare: :data:`POOL_SIZE` plain ``grpc.insecure_channel`` channels with the
  pool's channel arguments (``grpcpool.connection.channel_options``),
  connected once (``channel_ready_future``) and left idle, never subscribed
  or watched;
- pool: an idle, ready grpcpool pool of :data:`POOL_SIZE`.

Each state is measured with ``GRPC_ENABLE_FORK_SUPPORT=1`` in the parent's
environment (set before grpc is imported: the parent starts with it) and
without it. The parent forks :data:`CHILDREN` children one after another;
each child does a little pure-Python work, never touches grpc, and leaves
with ``os._exit(0)``. The parent waits for each child (at most
:data:`CHILD_TIMEOUT` seconds, then kills it and counts it as hung) and
counts the children killed by a signal. Once hung children have used
:data:`HANG_BUDGET` seconds it stops forking, and the note says so. Core
dumps are switched off in the parent (and so in its children), so a crash
costs no time. ``--quick`` forks 3 children per parent.

The baseline of a pool row is the bare row with the same fork-support
setting; the target allows the pool 2 crashes more than bare, which is noise
at these counts. A ratio is only given when the bare count is not 0.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from benchmarks.harness import Figure, Settings, not_measured
from benchmarks.server import ServerProcess

__all__ = ["CHILDREN", "CHILD_TIMEOUT", "POOL_SIZE", "fork_children", "run"]

POOL_SIZE = 8
CHILDREN = 40
# Seconds a forked child gets before it is killed and counted as hung.
CHILD_TIMEOUT = 10.0
# Seconds all the hung children of one parent may cost: it stops forking (and
# says so) rather than take minutes when every fork hangs.
HANG_BUDGET = 20.0
# Seconds one parent process (start, connect, forks, stop) may take.
_PARENT_TIMEOUT = 60.0
# Seconds the ready channels sit idle before the first fork.
_SETTLE = 0.5
FORK_SUPPORT = "GRPC_ENABLE_FORK_SUPPORT"
STATES = ("bare", "pool")


# --- in the parent process ------------------------------------------------------------


def _child_work() -> None:
    """What a forked child does: pure Python, no grpc; never returns."""
    code = 2
    try:
        total = sum(i * i for i in range(50_000))
        words = sorted(str(i) for i in range(2_000))
        code = 0 if total == 41_665_416_675_000 and len(words) == 2_000 else 3
    finally:
        os._exit(code)


def _wait(pid: int, timeout: float) -> int | None:
    """The child's wait status, or None if it did not end within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    pause = 0.0005
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return status
        if time.monotonic() >= deadline:
            return None
        time.sleep(pause)
        pause = min(pause * 2, 0.01)


def fork_children(count: int, timeout: float, hang_budget: float) -> dict[str, Any]:
    """Forks ``count`` children one after another and tells how each one ended.

    Returns the counts: ``forked``, ``ok``, ``crashed`` (killed by a signal),
    ``signals`` (by name), ``failed`` (a nonzero exit), ``hung`` (killed
    after ``timeout``), and ``stopped_early`` when the hangs used up
    ``hang_budget`` seconds.
    """
    signals: Counter[str] = Counter()
    ok = failed = hung = 0
    forked = 0
    hung_time = 0.0
    lifetimes: list[float] = []
    for _ in range(count):
        if hung and hung_time + timeout > hang_budget:
            break
        started = time.monotonic()
        pid = os.fork()
        if pid == 0:
            _child_work()
        forked += 1
        status = _wait(pid, timeout)
        if status is None:
            hung += 1
            hung_time += timeout
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            continue
        lifetimes.append(time.monotonic() - started)
        if os.WIFSIGNALED(status):
            signals[_signal_name(os.WTERMSIG(status))] += 1
        elif os.WEXITSTATUS(status) == 0:
            ok += 1
        else:
            failed += 1
    return {
        "forked": forked,
        "ok": ok,
        "crashed": sum(signals.values()),
        "signals": dict(signals),
        "failed": failed,
        "hung": hung,
        "stopped_early": forked < count,
        "max_child_ms": max(lifetimes, default=0.0) * 1000,
    }


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _thread_kinds() -> dict[str, int]:
    """The parent's Python threads by name without numbers."""
    kinds: Counter[str] = Counter()
    for thread in threading.enumerate():
        name = thread.name
        if name.endswith("(_run)"):
            kinds["grpc connectivity poll"] += 1
        elif name.startswith("grpcpool-"):
            kinds[name] += 1
        else:
            kinds[name.split("-")[0].split(" ")[0]] += 1
    return dict(kinds)


def _os_threads() -> int:
    """The parent's threads as the kernel sees them (grpcio's C threads too)."""
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:  # not Linux
        return 0


@contextmanager
def _holding(state: str, port: int, size: int) -> Iterator[None]:
    """Holds ``state`` (``bare`` channels or a ``pool``) ready, idle; closes it on exit."""
    import grpc

    from benchmarks.pools import pool_config, running_pool, wait_channels_ready
    from grpcpool.connection import channel_options

    config = pool_config(port, size, f"forking-{state}")
    if state == "pool":
        with running_pool(config):
            yield
        return
    options = channel_options(config)
    target = f"127.0.0.1:{port}"
    channels = tuple(grpc.insecure_channel(target, options=options) for _ in range(size))
    try:
        wait_channels_ready(channels)
        yield
    finally:
        for channel in channels:
            channel.close()


def _parent(port: int, state: str, size: int, children: int) -> None:
    """Holds ``state``, forks ``children`` and prints the counts as one JSON line.

    The line is printed before the channels or the pool are closed, so that
    a crash or hang while closing cannot lose it.
    """
    import resource

    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    result: dict[str, Any] = {
        "state": state,
        "fork_support": os.environ.get(FORK_SUPPORT, ""),
        "size": size,
    }
    with _holding(state, port, size):
        time.sleep(_SETTLE)
        result["threads"] = _thread_kinds()
        result["os_threads"] = _os_threads()
        result.update(fork_children(children, CHILD_TIMEOUT, HANG_BUDGET))
        print(json.dumps(result), flush=True)


# --- in the benchmark process ---------------------------------------------------------


def _measure(port: int, state: str, fork_support: bool, size: int, children: int) -> dict[str, Any]:
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ)
    env.pop(FORK_SUPPORT, None)
    if fork_support:
        env[FORK_SUPPORT] = "1"
    command = [
        sys.executable,
        "-m",
        "benchmarks.forking",
        f"--port={port}",
        f"--state={state}",
        f"--size={size}",
        f"--children={children}",
    ]
    try:
        done = subprocess.run(
            command,
            cwd=root,
            env=env,
            capture_output=True,
            text=True,
            timeout=_PARENT_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired as timeout:
        # It may have reported before it hung (closing, say).
        stdout, stderr = _text(timeout.stdout), _text(timeout.stderr)
        returncode: int | str = f"killed after {_PARENT_TIMEOUT:.0f} s"
    else:
        stdout, stderr, returncode = done.stdout, done.stderr, done.returncode
    lines = [line for line in stdout.splitlines() if line.startswith("{")]
    if not lines:
        return {"error": f"parent process failed ({returncode}): {stderr[-500:]}"}
    result: dict[str, Any] = json.loads(lines[-1])
    if returncode != 0:
        result["parent_exit"] = returncode
    return result


def _text(output: str | bytes | None) -> str:
    if isinstance(output, bytes):
        return output.decode(errors="replace")
    return output or ""


def _describe(result: dict[str, Any], children: int) -> str:
    """``crashed 3 of 40 (SIGSEGV 3)``, hangs and anything else that went wrong."""
    if "error" in result:
        return result["error"]
    forked = result["forked"]
    text = f"crashed {result['crashed']} of {forked}"
    if result["signals"]:
        text += " (" + ", ".join(f"{n} {s}" for s, n in sorted(result["signals"].items())) + ")"
    if result["hung"]:
        text += f", hung {result['hung']}"
    if result["failed"]:
        text += f", exited nonzero {result['failed']}"
    if result["stopped_early"]:
        text += f"; stopped after {forked} of {children} children (hangs used the budget)"
    if "parent_exit" in result:
        text += f"; parent exit status after reporting: {result['parent_exit']}"
    threads = sum(result["threads"].values())
    text += f"; parent threads at fork: {threads} Python, {result['os_threads']} in all"
    return text


def run(settings: Settings) -> list[Figure]:
    children = settings.pick(CHILDREN, 3)
    size = POOL_SIZE
    results: dict[tuple[str, bool], dict[str, Any]] = {}
    with ServerProcess() as server:
        for fork_support in (False, True):
            for state in STATES:
                results[state, fork_support] = _measure(
                    server.port, state, fork_support, size, children
                )
    figures = []
    keys = iter(("8a", "8b", "8c", "8d"))
    for fork_support in (False, True):
        setting = f"{FORK_SUPPORT}={'1' if fork_support else 'unset'}"
        bare = results["bare", fork_support]
        pool = results["pool", fork_support]
        bare_measure = (
            f"children crashed, of {children} forked: {size} idle plain channels "
            f"(never subscribed), {setting}"
        )
        pool_measure = f"children crashed, of {children} forked: idle pool of {size}, {setting}"
        bare_key, pool_key = next(keys), next(keys)
        if "error" in bare:
            figures.append(not_measured(bare_key, bare_measure, bare["error"]))
        else:
            figures.append(
                Figure(
                    bare_key,
                    bare_measure,
                    bare["crashed"],
                    "children",
                    note=_describe(bare, children),
                )
            )
        if "error" in pool or "error" in bare:
            why = pool.get("error") or f"its baseline ({bare_key}) was not measured"
            figures.append(not_measured(pool_key, pool_measure, why))
            continue
        bare_crashed, pool_crashed = float(bare["crashed"]), float(pool["crashed"])
        figures.append(
            Figure(
                pool_key,
                pool_measure,
                pool_crashed,
                "children",
                baseline=f"{size} plain channels, same setting",
                baseline_value=bare_crashed,
                ratio=pool_crashed / bare_crashed if bare_crashed > 0 else None,
                target="<= bare + 2",
                met=pool_crashed <= bare_crashed + 2,
                note=_describe(pool, children),
            )
        )
    return figures


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--state", choices=STATES, required=True)
    parser.add_argument("--size", type=int, default=POOL_SIZE)
    parser.add_argument("--children", type=int, default=CHILDREN)
    args = parser.parse_args(argv)
    _parent(args.port, args.state, args.size, args.children)


if __name__ == "__main__":
    main()
