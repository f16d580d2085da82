"""Pools and os.fork(): a child never uses the parent's channels.

A forked child starts the parent's pools again on their first use (same name,
config and expected size), so prefork servers need no post-fork hook, and the
parent's pool is unharmed.

grpcio itself is only fork-safe with ``GRPC_ENABLE_FORK_SUPPORT=1`` set before
it is imported: without it, forking a process whose grpc threads are running
crashes many children inside grpcio (seen with bare channels too, no grpcpool
involved). These tests therefore run their scenario in a fresh interpreter
that sets it, as an application that forks must.
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
from grpcpool.errors import PoolNotFoundError

def echo(channel):
    return channel.unary_unary("/test.Echo/Unary")(b"ping", timeout=5)

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


def test_forked_child_restarts_the_parents_pool_on_first_use(echo_server: EchoServer) -> None:
    """After os.fork() the child's first use starts its own pool of that name, whose calls
    reach the server; the parent's pool keeps serving while and after the child runs."""
    result = run_scenario(
        echo_server,
        """
        import pykka
        pid = os.fork()
        if pid == 0:
            code = 0
            ghosts = [r for r in pykka.ActorRegistry.get_all()
                      if issubclass(r.actor_class, grpcpool.SupervisedActor)]
            if ghosts or grpcpool.connection.open_channel_count():
                os._exit(12)
            grpcpool.await_ready("forked", timeout=10, min_ready=2)
            if echo(grpcpool.get_channel("forked")) != b"ping":
                code = 13
            if grpcpool.status("forked").expected_size != 2:
                code = 14
            if grpcpool.connection.open_channel_count() != 2:
                code = 15
            grpcpool.stop("forked")
            os._exit(code)
        served = [echo(grpcpool.get_channel("forked")) for _ in range(20)]  # child running
        _, status = os.waitpid(pid, 0)
        served += [echo(grpcpool.get_channel("forked")) for _ in range(20)]
        print("child", os.waitstatus_to_exitcode(status))
        print("parent", grpcpool.status("forked").current_size, served.count(b"ping"))
        """,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["child", "0", "parent", "2", "40"]


def test_concurrent_first_uses_in_a_child_start_the_pool_once(echo_server: EchoServer) -> None:
    """Threads of a forked child that all use the parent's pool at once start it once, and
    the parent's scaled size is the size the child starts with."""
    result = run_scenario(
        echo_server,
        """
        import threading
        grpcpool.resize("forked", 3)
        grpcpool.await_ready("forked", timeout=5, min_ready=3)
        pid = os.fork()
        if pid == 0:
            barrier = threading.Barrier(8)
            errors = []

            def use():
                barrier.wait(timeout=10)
                try:
                    grpcpool.await_ready("forked", timeout=10, min_ready=3)
                    echo(grpcpool.get_channel("forked"))
                except Exception as error:
                    errors.append(error)

            threads = [threading.Thread(target=use) for _ in range(8)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(20)
            default = grpcpool._process.PROCESS.default_supervisor
            specs = default.proxy().count_children().get(timeout=10)["specs"]
            size = grpcpool.status("forked").expected_size
            grpcpool.stop("forked")
            os._exit(0 if (not errors and specs == 1 and size == 3) else 20)
        _, status = os.waitpid(pid, 0)
        print("child", os.waitstatus_to_exitcode(status))
        print("parent", grpcpool.status("forked").current_size)
        """,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["child", "0", "parent", "3"]


def test_multiprocessing_fork_child_uses_the_pool_without_a_hook(
    echo_server: EchoServer,
) -> None:
    """A multiprocessing 'fork' child uses the parent's pool name as a bare fork does."""
    result = run_scenario(
        echo_server,
        """
        import multiprocessing

        def child(queue):
            try:
                grpcpool.await_ready("forked", timeout=10)
                queue.put(echo(grpcpool.get_channel("forked")).decode())
            except Exception as error:
                queue.put(repr(error))
            grpcpool.stop("forked")

        context = multiprocessing.get_context("fork")
        queue = context.SimpleQueue()
        process = context.Process(target=child, args=(queue,))
        process.start()
        process.join(30)
        print(process.exitcode)
        print(queue.get())
        print(echo(grpcpool.get_channel("forked")).decode())
        """,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["0", "ping", "ping"]


def test_a_parents_pool_the_child_stops_stays_stopped(echo_server: EchoServer) -> None:
    """grpcpool.stop in a child, before or after the pool's first use there, is final:
    get_channel then raises PoolNotFoundError saying it was stopped."""
    result = run_scenario(
        echo_server,
        """
        def outcome(use_first):
            pid = os.fork()
            if pid == 0:
                if use_first:
                    grpcpool.await_ready("forked", timeout=10)
                grpcpool.stop("forked")
                try:
                    grpcpool.get_channel("forked")
                except PoolNotFoundError as error:
                    os._exit(0 if "stopped by grpcpool.stop()" in str(error) else 31)
                os._exit(30)
            _, status = os.waitpid(pid, 0)
            return os.waitstatus_to_exitcode(status)

        print(outcome(False), outcome(True))
        print(grpcpool.status("forked").current_size)
        """,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["0", "0", "2"]


def test_a_fork_while_another_thread_holds_pykkas_registry_lock_leaves_the_child_usable(
    echo_server: EchoServer,
) -> None:
    """A fork waits for pykka's registry lock (held briefly by a thread registering an
    actor) rather than copying it held: the child forgets the parent's actors and starts
    the pool again; the parent goes on."""
    result = run_scenario(
        echo_server,
        """
        import threading, pykka
        lock = pykka.ActorRegistry._actor_refs_lock
        held, release = threading.Event(), threading.Event()
        def hold():
            with lock:
                held.set()
                release.wait(5)
        holder = threading.Thread(target=hold)
        holder.start()
        held.wait(5)
        threading.Timer(0.3, release.set).start()
        pid = os.fork()  # waits for the holder to let go
        if pid == 0:
            ghosts = [r for r in pykka.ActorRegistry.get_all()
                      if issubclass(r.actor_class, grpcpool.SupervisedActor)]
            grpcpool.await_ready("forked", timeout=10, min_ready=2)
            ok = echo(grpcpool.get_channel("forked")) == b"ping"
            grpcpool.stop("forked")
            os._exit(0 if ok and not ghosts else 21)
        holder.join(5)
        _, status = os.waitpid(pid, 0)
        print("child", os.waitstatus_to_exitcode(status))
        print("parent", echo(grpcpool.get_channel("forked")).decode())
        """,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["child", "0", "parent", "ping"]
