"""Pools and os.fork(): a child never uses the parent's channels."""

from __future__ import annotations

import multiprocessing
import os
import time
from typing import Any

import pykka

import grpcpool
from grpcpool import Config, PoolSpec, Supervisor
from grpcpool.errors import NotConnectedError
from tests.servers import EchoServer, EchoStub


def wait_for_child(pid: int, timeout: float = 20.0) -> int:
    """The child's exit status; kills it if it has not exited in time."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.02)
    os.kill(pid, 9)
    os.waitpid(pid, 0)
    raise AssertionError("the forked child hung")


def child_checks(pool_name: str) -> int:
    """Runs in the forked child; returns an exit code naming the first failed check."""
    try:
        grpcpool.get_channel(pool_name)
    except NotConnectedError as error:
        if "fork" not in str(error):
            return 11
    else:
        return 10
    if [
        ref
        for ref in pykka.ActorRegistry.get_all()
        if issubclass(ref.actor_class, grpcpool.SupervisedActor)
    ]:
        return 12
    if grpcpool._channels.open_channel_count() != 0:
        return 13
    return 0


def test_forked_child_gets_clear_advice_instead_of_parent_channels(
    echo_server: EchoServer,
) -> None:
    """After os.fork() the child's get_channel raises NotConnectedError explaining the fork."""
    config = Config.local(host="127.0.0.1", port=echo_server.port, pool_size=2)
    sup = Supervisor.start(children=[PoolSpec(config, name="forked")])
    try:
        grpcpool.await_ready("forked", timeout=5, min_ready=2)
        pid = os.fork()
        if pid == 0:  # the child: never return into pytest
            code = 99
            try:
                code = child_checks("forked")
            finally:
                os._exit(code)
        assert wait_for_child(pid) == 0
        # The parent's pool is untouched by the fork.
        assert EchoStub(grpcpool.get_channel("forked")).Unary(b"p", timeout=5) == b"p"
    finally:
        sup.stop()


def _multiprocessing_child(queue: Any) -> None:
    try:
        grpcpool.get_channel("mp")
        queue.put("handed out a parent channel")
    except NotConnectedError as error:
        queue.put(str(error))


def test_multiprocessing_fork_child_is_told_to_start_pools_after_fork(
    echo_server: EchoServer,
) -> None:
    """A multiprocessing 'fork' child sees the same advice as a bare fork."""
    config = Config.local(host="127.0.0.1", port=echo_server.port, pool_size=1)
    sup = Supervisor.start(children=[PoolSpec(config, name="mp")])
    try:
        grpcpool.await_ready("mp", timeout=5)
        context = multiprocessing.get_context("fork")
        queue = context.SimpleQueue()
        process = context.Process(target=_multiprocessing_child, args=(queue,))
        process.start()
        process.join(20)
        assert process.exitcode == 0
        message = queue.get()
        assert "start pools in each process after it forks" in message
        queue.close()
    finally:
        sup.stop()
