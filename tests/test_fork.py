"""Pools and os.fork(): a child never uses the parent's channels.

grpcio itself is only fork-safe with ``GRPC_ENABLE_FORK_SUPPORT=1`` set before
it is imported: without it, forking a process whose grpc threads are running
crashes a few children in a hundred inside grpcio (seen here with bare
channels, no grpcpool involved). These tests therefore run their scenario in
a fresh interpreter that sets it, as an application that forks must.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

from tests.servers import EchoServer

SCENARIO_PREFIX = """
import os, sys, time
import grpcpool
from grpcpool import Config, PoolSpec, Supervisor
from grpcpool.errors import NotConnectedError

config = Config.local(host="127.0.0.1", port=int(sys.argv[1]), pool_size=2)
sup = Supervisor.start(children=[PoolSpec(config, name="forked")])
grpcpool.await_ready("forked", timeout=5, min_ready=2)
"""


def run_scenario(server: EchoServer, body: str) -> subprocess.CompletedProcess[str]:
    """Runs SCENARIO_PREFIX plus ``body`` in a fresh interpreter with fork support."""
    script = SCENARIO_PREFIX + textwrap.dedent(body) + "\nsup.stop()\n"
    env = {**os.environ, "GRPC_ENABLE_FORK_SUPPORT": "1", "GRPC_VERBOSITY": "ERROR"}
    return subprocess.run(
        [sys.executable, "-c", script, str(server.port)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )


def test_forked_child_gets_clear_advice_instead_of_parent_channels(
    echo_server: EchoServer,
) -> None:
    """After os.fork() the child's get_channel raises NotConnectedError explaining the fork;
    the parent's pool keeps working."""
    result = run_scenario(
        echo_server,
        """
        import pykka
        pid = os.fork()
        if pid == 0:
            code = 10
            try:
                grpcpool.get_channel("forked")
            except NotConnectedError as error:
                code = 0 if "os.fork()" in str(error) else 11
            ghosts = [r for r in pykka.ActorRegistry.get_all()
                      if issubclass(r.actor_class, grpcpool.SupervisedActor)]
            if ghosts:
                code = 12
            if grpcpool.connection.open_channel_count():
                code = 13
            os._exit(code)
        _, status = os.waitpid(pid, 0)
        print("child", os.waitstatus_to_exitcode(status))
        print("parent", grpcpool.status("forked").current_size)
        """,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["child", "0", "parent", "2"]


def test_multiprocessing_fork_child_is_told_to_start_pools_after_fork(
    echo_server: EchoServer,
) -> None:
    """A multiprocessing 'fork' child sees the same advice as a bare fork."""
    result = run_scenario(
        echo_server,
        """
        import multiprocessing

        def child(queue):
            try:
                grpcpool.get_channel("forked")
                queue.put("handed out a parent channel")
            except NotConnectedError as error:
                queue.put(str(error))

        context = multiprocessing.get_context("fork")
        queue = context.SimpleQueue()
        process = context.Process(target=child, args=(queue,))
        process.start()
        process.join(20)
        print(process.exitcode)
        print(queue.get())
        """,
    )
    assert result.returncode == 0, result.stderr
    exit_code, message = result.stdout.splitlines()[:2]
    assert exit_code == "0"
    assert "start pools in each process after it forks" in message
