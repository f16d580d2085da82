"""What callers see, against real grpcio servers on 127.0.0.1 (issue 12, items 8-11).

power_of_two compares two different channels; a custom strategy's bad answer
is a StrategyError, never a wrong object; a second pool under a name in use is
a ConfigError; a pool with no ready channel says why; a pool that ended for
good says it was shut down, and why.
"""

from __future__ import annotations

import collections
import contextlib
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from typing import Any

import grpc
import pykka
import pytest

import grpcpool
from grpcpool import Config, PoolSpec, Supervisor
from grpcpool._process import ENDED_POOLS_KEPT, PROCESS
from grpcpool.api import lookup
from grpcpool.errors import (
    ConfigError,
    NotConnectedError,
    PoolNotFoundError,
    PoolTimeoutError,
    StrategyError,
)
from tests.certs import Pem, make_ca, make_server_cert
from tests.pools import free_port, loopback_config, start_pool
from tests.servers import EchoServer, EchoStub
from tests.waiting import wait_for, wait_until


def live_workers() -> list[pykka.ActorRef[Any]]:
    """Every ChannelWorker actor still alive in the process."""
    return [r for r in pykka.ActorRegistry.get_by_class(grpcpool.ChannelWorker) if r.is_alive()]


def last_error_known(name: str) -> Callable[[], bool]:
    """A predicate: some worker of pool ``name`` has recorded a connection error."""
    return lambda: any(w.last_error for w in grpcpool.status(name).workers)


# --- item 8: power_of_two compares two different channels --------------------------


def test_power_of_two_in_a_pool_of_two_hands_out_both_channels_in_turn(
    echo_server: EchoServer, supervisors: list[pykka.ActorRef[Any]]
) -> None:
    """In a pool of 2 every pick compares both channels, so after each pair of picks
    both have been handed out equally (a self-comparison would repeat one)."""
    config = loopback_config(echo_server.port, size=2, pool={"strategy": "power_of_two"})
    proxy = start_pool(supervisors, config, "p2")
    grpcpool.await_ready("p2", timeout=5, min_ready=2)
    counts = collections.Counter(dict.fromkeys(lookup("p2").view.channels, 0))
    assert len(counts) == 2
    for _ in range(100):
        counts[proxy.get_channel().get()] += 1
        assert max(counts.values()) - min(counts.values()) <= 1
    assert sorted(counts.values()) == [50, 50]
    for channel in counts:
        assert EchoStub(channel).Unary(b"x", timeout=5) == b"x"


# --- item 9: a custom strategy's bad answer never hands out a wrong object ---------


class Answers:
    """A select() strategy giving ``answer(count)``."""

    def __init__(self, answer: Callable[[int], Any]) -> None:
        self.answer = answer

    def select(self, count: int) -> Any:
        return self.answer(count)


class ForeignPicker:
    """A picker() strategy whose picker returns an object the pool never gave it."""

    def picker(self, items: tuple[Any, ...]) -> Callable[[], Any]:
        stranger = object()
        return lambda: stranger


def boom(count: int) -> int:
    """A select that fails."""
    raise KeyError(f"no shard for {count}")


@pytest.mark.parametrize(
    ("strategy", "shown"),
    [
        (Answers(lambda count: count), "returned 2, not an int in range(2)"),
        (Answers(lambda count: -1), "returned -1"),
        (Answers(lambda count: 0.0), "returned 0.0"),
        (Answers(lambda count: None), "returned None"),
        (Answers(lambda count: slice(0, 1)), "returned slice(0, 1, None)"),
        (Answers(lambda count: True), "returned True"),
        (Answers(boom), "raised KeyError"),
        (ForeignPicker(), "not one of the 2 ready channels"),
    ],
    ids=["count", "minus-one", "float", "none", "slice", "bool", "raises", "foreign-object"],
)
def test_a_bad_custom_strategy_is_a_strategy_error_from_every_entry_point(
    echo_server: EchoServer,
    supervisors: list[pykka.ActorRef[Any]],
    strategy: Any,
    shown: str,
) -> None:
    """get_channel raises StrategyError naming the strategy and its answer; the proxy's
    get_channel() returns a failed future instead of raising, and a call through the
    stub from stub() raises it."""
    config = loopback_config(echo_server.port, size=2, pool={"strategy": strategy})
    proxy = start_pool(supervisors, config, "custom")
    grpcpool.await_ready("custom", timeout=5, min_ready=2)
    name = type(strategy).__name__

    with pytest.raises(StrategyError, match=name) as caught:
        grpcpool.get_channel("custom")
    assert shown in str(caught.value)
    assert caught.value.strategy == name
    if shown.startswith("raised"):
        assert isinstance(caught.value.__cause__, KeyError)
    channel_future = proxy.get_channel()
    with pytest.raises(StrategyError, match=name):
        channel_future.get()
    # A stub on the pool channel picks per call: the call raises it.
    stub = proxy.stub(EchoStub).get()
    with pytest.raises(StrategyError, match=name):
        stub.Unary(b"x", timeout=5)
    assert grpcpool.status("custom").current_size == 2  # the pool itself is fine


# --- item 10: a second pool under a name in use is a ConfigError --------------------


def test_two_pools_of_one_name_in_one_start_are_a_config_error_and_start_nothing() -> None:
    """Supervisor.start with two PoolSpecs named alike raises ConfigError on pool.name
    (not the supervisor's generic duplicate-id ValueError), and nothing runs."""
    config = loopback_config(free_port())
    with pytest.raises(ConfigError, match=r"pool\.name: two pools in one start are named 'twin'"):
        grpcpool.Supervisor.start(
            children=[grpcpool.PoolSpec(config, "twin"), grpcpool.PoolSpec(config, "twin")]
        )
    assert pykka.ActorRegistry.get_all() == []
    assert "twin" not in grpcpool.actors.names()



def test_starting_a_running_name_again_is_a_config_error_and_changes_nothing(
    echo_server: EchoServer,
) -> None:
    """grpcpool.start(cfg, name="a") twice: ConfigError on pool.name saying a pool
    named 'a' is already running; the first pool and its supervisor are untouched."""
    config = loopback_config(echo_server.port, size=2)
    grpcpool.start(config, name="a")
    try:
        grpcpool.await_ready("a", timeout=5, min_ready=2)
        entry, owner = lookup("a"), lookup("a").owner
        default = PROCESS.default_supervisor
        assert default is not None
        children = default.proxy().which_children().get(timeout=10)

        with pytest.raises(ConfigError, match="a pool named 'a' is already running") as caught:
            grpcpool.start(loopback_config(echo_server.port, size=3), name="a")

        assert caught.value.key == "pool.name"
        assert lookup("a") is entry and entry.owner is owner
        assert PROCESS.default_supervisor is default
        assert default.proxy().which_children().get(timeout=10) == children
        assert grpcpool.status("a").expected_size == 2
        assert len(live_workers()) == 2
    finally:
        grpcpool.stop("a")


def test_start_child_with_a_pool_spec_its_supervisor_already_runs_is_a_config_error(
    echo_server: EchoServer, supervisors: list[pykka.ActorRef[Any]]
) -> None:
    """start_child(PoolSpec(cfg, name="a")) on the supervisor that runs pool "a" raises
    the same ConfigError as a clash under another supervisor, and starts nothing."""
    config = loopback_config(echo_server.port, size=2)
    start_pool(supervisors, config, "a")
    sup = supervisors[0]
    grpcpool.await_ready("a", timeout=5, min_ready=2)
    children = sup.proxy().which_children().get(timeout=10)
    other = Supervisor.start()
    supervisors.append(other)

    for target in (sup, other):
        with pytest.raises(ConfigError, match="a pool named 'a' is already running") as caught:
            target.proxy().start_child(PoolSpec(config, name="a")).get(timeout=10)
        assert caught.value.key == "pool.name"

    assert sup.proxy().which_children().get(timeout=10) == children
    assert other.proxy().count_children().get(timeout=10)["specs"] == 0
    assert len(live_workers()) == 2
    assert grpcpool.status("a").current_size == 2


# --- item 11: no ready channel says why ---------------------------------------------


def test_a_refused_endpoint_is_named_in_not_connected_and_timeout_errors(
    supervisors: list[pykka.ActorRef[Any]],
) -> None:
    """Against a closed port, NotConnectedError and PoolTimeoutError say what the workers
    are doing and quote their last error (Connection refused), shortened."""
    start_pool(supervisors, loopback_config(free_port(), size=3), "refused")
    wait_for(last_error_known("refused"))

    with pytest.raises(NotConnectedError) as not_connected:
        grpcpool.get_channel("refused")
    with pytest.raises(PoolTimeoutError) as timed_out:
        grpcpool.await_ready("refused", timeout=0.05)

    for error in (not_connected.value, timed_out.value):
        message = str(error)
        assert message.startswith("pool 'refused': ")
        assert "Connection refused" in message, message
        assert "last error: " in message
        assert "workers" in message or "worker" in message
        assert error.last_error is not None and "Connection refused" in error.last_error
        assert len(error.last_error) <= 200
    assert "0 of 1 required channels ready after 0.05s (" in str(timed_out.value)
    assert str(not_connected.value).startswith("pool 'refused': no ready channel (")


def test_a_tls_verification_failure_is_named_in_the_errors(
    supervisors: list[pykka.ActorRef[Any]],
) -> None:
    """A server whose certificate the pool does not trust: the errors quote the
    verification failure, not just "0 of 1 ready"; no key material appears."""
    ca, ca_key = make_ca()
    server_pem: Pem = make_server_cert(ca, ca_key)
    untrusted, _ = make_ca("some other CA")
    credentials = grpc.ssl_server_credentials([(server_pem.private_key, server_pem.certificate)])
    server = EchoServer(credentials=credentials)
    try:
        config = Config.new(
            endpoint={
                "type": "production",
                "host": "127.0.0.1",
                "port": server.port,
                "ssl": {"root_certificates": untrusted.certificate},
            },
            pool={"size": 1},
            connection={"backoff_min": 0.05, "backoff_max": 0.5, "connect_timeout": 2.0},
        )
        start_pool(supervisors, config, "untrusted")
        wait_for(last_error_known("untrusted"))
        with pytest.raises(PoolTimeoutError) as timed_out:
            grpcpool.await_ready("untrusted", timeout=0.05)
        with pytest.raises(NotConnectedError) as not_connected:
            grpcpool.get_channel("untrusted")
    finally:
        supervisors.pop().stop()
        server.stop()
    for error in (timed_out.value, not_connected.value):
        assert "CERTIFICATE_VERIFY_FAILED" in str(error), str(error)
        assert server_pem.private_key.decode() not in str(error)
        assert untrusted.private_key.decode() not in str(error)


# --- a pool that ended for good says so ---------------------------------------------


def ask_every_way(name: str) -> list[PoolNotFoundError]:
    """The errors of get_channel, status, pool, await_ready and the proxy for ``name``."""
    calls: list[Callable[[], Any]] = [
        lambda: grpcpool.get_channel(name),
        lambda: grpcpool.status(name),
        lambda: grpcpool.pool(name),
        lambda: grpcpool.await_ready(name, timeout=0.01),
        lambda: grpcpool.PoolProxy(name).get_channel().get(),
    ]
    errors: list[PoolNotFoundError] = []
    for call in calls:
        with pytest.raises(PoolNotFoundError) as caught:
            call()
        errors.append(caught.value)
    return errors


def assert_shut_down(name: str, reason: str) -> None:
    """Every way of asking for pool ``name`` says it was shut down for ``reason``."""
    for error in ask_every_way(name):
        assert str(error) == f"pool {name!r} was shut down: {reason}"
        assert error.reason == reason
        assert isinstance(error, NotConnectedError) and isinstance(error, LookupError)


def test_a_stopped_pool_says_it_was_shut_down_until_the_name_starts_again(
    echo_server: EchoServer,
) -> None:
    """grpcpool.stop(name): every call says the pool was shut down (and why), not that
    no such pool runs; a new pool of that name clears it; a name never started keeps
    "no pool of this name is running"."""
    config = loopback_config(echo_server.port, size=1)
    grpcpool.start(config, name="kv")
    grpcpool.await_ready("kv", timeout=5)
    grpcpool.stop("kv")
    assert_shut_down("kv", "stopped by grpcpool.stop()")
    assert "shut down" in repr(grpcpool.PoolProxy("kv"))

    grpcpool.start(config, name="kv")
    try:
        grpcpool.await_ready("kv", timeout=5)
        assert EchoStub(grpcpool.get_channel("kv")).Unary(b"back", timeout=5) == b"back"
        assert "kv" not in PROCESS.ended_pools
    finally:
        grpcpool.stop("kv")

    with pytest.raises(PoolNotFoundError) as never:
        grpcpool.get_channel("never-started")
    assert str(never.value) == "pool 'never-started': no pool of this name is running"
    assert never.value.reason is None


def test_a_pool_whose_supervisor_tree_stopped_says_so(echo_server: EchoServer) -> None:
    """Stopping the user's Supervisor ends its pools: calls say "supervisor stopped"."""
    sup = Supervisor.start(children=[PoolSpec(loopback_config(echo_server.port), name="tree")])
    try:
        grpcpool.await_ready("tree", timeout=5)
    finally:
        sup.stop()
    assert_shut_down("tree", "supervisor stopped")


def test_a_pool_whose_parent_gave_up_says_so(echo_server: EchoServer) -> None:
    """A crash loop past every supervisor's intensity ends the pool: calls say the
    supervisor gave up, and a waiter in await_ready hears the same."""
    config = loopback_config(echo_server.port, size=1)
    sup = Supervisor.start(children=[PoolSpec(config, name="doomed")], max_restarts=0)
    try:
        grpcpool.await_ready("doomed", timeout=5)
        deadline = time.monotonic() + 10
        while sup.is_alive():
            assert time.monotonic() < deadline, "the supervisor never gave up"
            for worker in live_workers():
                with contextlib.suppress(pykka.ActorDeadError):
                    worker.tell("crash")  # not a message a worker knows: it crashes
            time.sleep(0.02)  # pacing: each round lets the restarts happen
    finally:
        sup.stop()
    assert wait_until(lambda: "doomed" not in grpcpool.actors.names(), timeout=5)
    assert_shut_down("doomed", "supervisor gave up")


def test_the_ended_names_are_bounded_and_forgotten_in_a_forked_child() -> None:
    """The process remembers at most ENDED_POOLS_KEPT ended names, oldest forgotten
    first; a forked child remembers none of its parent's."""
    script = textwrap.dedent(
        """
        import os
        from grpcpool import Config
        from grpcpool._process import ENDED_POOLS_KEPT, PROCESS
        from grpcpool.errors import PoolNotFoundError
        from grpcpool.actors._entry import claim, release
        from grpcpool.api import lookup

        config = Config.local(host="127.0.0.1", port=9, pool_size=1)

        def message(name):
            try:
                lookup(name)
            except PoolNotFoundError as error:
                return str(error)

        for number in range(ENDED_POOLS_KEPT + 5):
            name = f"p{number}"
            release(claim(name, config, token=object(), parent=None, child_id=None), "stopped")
        print(len(PROCESS.ended_pools) == ENDED_POOLS_KEPT)
        print(message("p0"))
        print(message(f"p{ENDED_POOLS_KEPT + 4}"))
        pid = os.fork()
        if pid == 0:
            gone = message(f"p{ENDED_POOLS_KEPT + 4}")
            os._exit(0 if gone.endswith("no pool of this name is running") else 1)
        _, status = os.waitpid(pid, 0)
        print("child", os.waitstatus_to_exitcode(status))
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, "GRPC_ENABLE_FORK_SUPPORT": "1", "GRPC_VERBOSITY": "ERROR"},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "True",
        "pool 'p0': no pool of this name is running",
        f"pool 'p{ENDED_POOLS_KEPT + 4}' was shut down: stopped",
        "child 0",
    ]
