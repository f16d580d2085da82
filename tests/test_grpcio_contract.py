"""What grpcpool relies on in grpcio's private API, checked against a real channel.

It also pins how grpcio words a stream the server refused at its stream
limit, which grpcpool/connection/_health.py tells apart from a dead
connection, and that such a stream reached no handler (the pool channel
routes it again: grpcpool/core/_capacity.py); how it words a call it failed before sending it, which the pool
channels send again (grpcpool/core/_reroute.py); the arguments of its
channels' multi-callable factories, which the pool channels take; and when
it lets a caller's ``grpc-previous-rpc-attempts`` header through, which
decides the channel options of a hedging pool (grpcpool/_channel_args.py).

The connectivity watcher (grpcpool/connection/_watcher.py) asks each channel
for its state with ``channel._channel.check_connectivity_state(try_to_connect)``,
the call grpcio's own ``Channel.subscribe`` makes from its polling threads.
It is private: a grpcio release may rename or change it. The watcher then
falls back to ``Channel.subscribe`` (one grpcio thread per channel), which
works but costs what the watcher exists to avoid, so these tests fail loudly
to say that the watcher needs updating. The watcher also hears a connection
hang up through a duplicate of its socket's descriptor, which relies on
grpcio shutting a socket down before it closes it (pinned here too).
"""

from __future__ import annotations

import asyncio
import inspect
import json
from collections.abc import Callable, Iterator

import grpc
import grpc._channel
import grpc.aio._channel
import pytest

from grpcpool import PoolChannel
from grpcpool.aio import AioPoolChannel
from grpcpool.api._aio_hedged import finished_details
from grpcpool.api._hedging_run import PREVIOUS_ATTEMPTS
from grpcpool.connection._call_errors import finished_code, refused_stream
from grpcpool.connection._sockets import SocketHints
from grpcpool.connection._watcher import STATES
from grpcpool.core._reroute import never_sent
from tests.pools import free_port
from tests.servers import ECHO_METHOD, HOLD, UNAVAILABLE, EchoProcess, EchoServer, EchoStub
from tests.waiting import wait_until

ADVICE = (
    f"grpcio {grpc.__version__} changed the private API grpcpool's connectivity watcher "
    "uses (grpc._channel.Channel._channel.check_connectivity_state); the watcher "
    "falls back to Channel.subscribe, one grpcio thread per channel. Update "
    "grpcpool/connection/_watcher.py. Problem: "
)


@pytest.fixture
def channel_and_server() -> Iterator[tuple[grpc.Channel, EchoServer]]:
    """A plaintext channel to a fresh echo server; both closed afterwards."""
    with EchoServer(with_health=False) as server:
        channel = grpc.insecure_channel(f"127.0.0.1:{server.port}")
        try:
            yield channel, server
        finally:
            channel.close()


def checker(channel: grpc.Channel) -> Callable[[bool], grpc.ChannelConnectivity]:
    """The channel's check_connectivity_state, mapped to ChannelConnectivity, or a failure."""
    check = getattr(getattr(channel, "_channel", None), "check_connectivity_state", None)
    if not callable(check):
        pytest.fail(ADVICE + "the method is gone", pytrace=False)

    def state(try_to_connect: bool) -> grpc.ChannelConnectivity:
        value = check(try_to_connect)
        if type(value) is not int or value not in STATES:
            pytest.fail(ADVICE + f"it returned {value!r}, not an int in {sorted(STATES)}")
        return STATES[value]

    return state


def test_connectivity_states_are_numbered_as_the_watcher_expects() -> None:
    """grpc.ChannelConnectivity still numbers its five states 0-4 in core's order."""
    names = {number: state.name for number, state in STATES.items()}
    assert names == {
        0: "IDLE",
        1: "CONNECTING",
        2: "READY",
        3: "TRANSIENT_FAILURE",
        4: "SHUTDOWN",
    }, ADVICE + "the connectivity states are numbered differently"


def test_check_connectivity_state_follows_a_real_connection(
    channel_and_server: tuple[grpc.Channel, EchoServer],
) -> None:
    """A new channel is IDLE; asked to connect it becomes READY; it leaves READY
    once its server stops."""
    channel, server = channel_and_server
    state = checker(channel)
    assert state(False) is grpc.ChannelConnectivity.IDLE, ADVICE + "a new channel is not IDLE"
    state(True)
    ready = wait_until(lambda: state(False) is grpc.ChannelConnectivity.READY, timeout=10)
    assert ready, ADVICE + f"never READY after try_to_connect; last {state(False)}"
    server.stop(None)
    left = wait_until(lambda: state(False) is not grpc.ChannelConnectivity.READY, timeout=10)
    assert left, ADVICE + "still READY after the server stopped"


def test_check_on_a_closed_channel_raises(
    channel_and_server: tuple[grpc.Channel, EchoServer],
) -> None:
    """Checking a closed channel raises (the watcher drops such a watch) rather than
    crashing or blocking."""
    channel, _ = channel_and_server
    check = channel._channel.check_connectivity_state
    channel.close()
    with pytest.raises(Exception):  # noqa: B017 - grpcio raises ValueError today
        check(False)


def test_a_refused_stream_is_told_apart_from_a_dead_connection() -> None:
    """grpcio reports a stream the server refused at its stream limit (RST_STREAM
    REFUSED_STREAM) as UNAVAILABLE with wording refused_stream recognises; an
    UNAVAILABLE from a server that is gone is not taken for one."""
    options = (("grpc.max_concurrent_streams", 4),)
    refused: list[grpc.RpcError] = []
    with EchoServer(with_health=False, options=options, delay=0.02) as server:
        for _ in range(5):  # refusals happen before a new connection learns the limit
            channel = grpc.insecure_channel(f"127.0.0.1:{server.port}")
            try:
                unary = EchoStub(channel).Unary
                calls = [unary.future(b"x", timeout=10, wait_for_ready=True) for _ in range(32)]
                refused += [c.exception() for c in calls if c.exception(timeout=10) is not None]
            finally:
                channel.close()
            if refused:
                break
    assert refused, "grpcio never refused a stream: the scenario needs another look"
    assert all(refused_stream(error) for error in refused), [e.details() for e in refused]

    gone = grpc.insecure_channel(f"127.0.0.1:{free_port()}")
    try:
        with pytest.raises(grpc.RpcError) as caught:
            EchoStub(gone).Unary(b"x", timeout=5)
    finally:
        gone.close()
    assert caught.value.code() is grpc.StatusCode.UNAVAILABLE
    assert not refused_stream(caught.value)


def test_a_refused_stream_never_reached_a_handler() -> None:
    """A server at its stream limit (grpc.max_concurrent_streams 4, a 20 ms handler) refuses
    some of 32 calls started at once on a new connection, before the client has learnt
    the limit: the handler ran for the answered calls only, so the pool channel may route
    a refused call again (grpcpool/core/_capacity.py)."""
    options = (("grpc.max_concurrent_streams", 4),)
    with EchoServer(with_health=False, options=options, delay=0.02) as server:
        for _ in range(5):  # refusals happen before a new connection learns the limit
            channel = grpc.insecure_channel(f"127.0.0.1:{server.port}")
            try:
                unary = EchoStub(channel).Unary
                served = server.calls
                calls = [unary.future(b"x", timeout=10, wait_for_ready=True) for _ in range(32)]
                refused = [c.exception() for c in calls if c.exception(timeout=10) is not None]
            finally:
                channel.close()
            if refused:
                break
        assert refused, "grpcio never refused a stream: the scenario needs another look"
        assert all(refused_stream(error) for error in refused), [e.details() for e in refused]
        assert server.calls - served == 32 - len(refused)


# --- grpcio shuts its connections' sockets down ------------------------------------------

SHUTDOWN_ADVICE = (
    f"grpcio {grpc.__version__} let a connection go without shutting its socket down; "
    "the watcher (grpcpool/connection/_sockets.py) holds a duplicate of each "
    "connection's descriptor to hear it hang up, and would neither hear such a "
    "connection go nor let its duplicate go before the next audit. Problem: "
)


@pytest.mark.parametrize("how", ["channel closed", "server stopped gracefully"])
def test_grpcio_shuts_a_connections_socket_down_when_it_lets_it_go(how: str) -> None:
    """When grpcio lets a connection go (its channel is closed, or the server's GOAWAY
    ends it) it shuts the socket down before closing it, so a duplicate of the
    descriptor hears the hang-up even though grpcio's own descriptor is gone."""
    hints = SocketHints.create()
    if hints is None:
        pytest.skip("no epoll, eventfd or /proc/self/fd here")
    server = EchoServer(with_health=False)
    channel = grpc.insecure_channel(
        f"127.0.0.1:{server.port}", options=(("grpc.use_local_subchannel_pool", 1),)
    )
    try:
        grpc.channel_ready_future(channel).result(timeout=10)
        assert hints.scan({server.port}) == 1, SHUTDOWN_ADVICE + "no connection found"
        if how == "channel closed":
            channel.close()
        else:
            server.stop(1.0)
        heard = wait_until(lambda: hints.wait(0.05), timeout=5, interval=0)
        assert heard, SHUTDOWN_ADVICE + f"nothing heard within 5 s of the {how}"
    finally:
        hints.close()
        channel.close()
        server.stop()


# --- a call that never reached a server ---------------------------------------------------


def test_a_call_failed_at_pick_time_is_told_apart_from_one_cut_in_flight() -> None:
    """grpcio fails a call on a channel whose connect failed at pick time with
    UNAVAILABLE and the wording never_sent recognises (grpcpool sends such a call
    again), after a hard stop and after a SIGKILL of the server process alike; a
    call the server held when it stopped fails otherwise."""
    with EchoServer(host="127.0.0.2", with_health=False) as server:
        channel = grpc.insecure_channel(
            f"127.0.0.2:{server.port}", options=(("grpc.use_local_subchannel_pool", 1),)
        )
        try:
            unary = EchoStub(channel).Unary
            assert unary(b"x", timeout=5) == b"x"
            held = unary.future(HOLD, timeout=10)
            assert wait_until(lambda: server.calls == 2, timeout=5)
            server.kill()
            cut = held.exception(timeout=10)
            assert cut is not None and cut.code() is grpc.StatusCode.UNAVAILABLE
            assert not never_sent(cut), cut.details()
            with pytest.raises(grpc.RpcError) as refused:
                unary(b"y", timeout=5)
            assert never_sent(refused.value), refused.value.details()
        finally:
            channel.close()

    process = EchoProcess(host="127.0.0.3")
    channel = grpc.insecure_channel(
        f"127.0.0.3:{process.port}", options=(("grpc.use_local_subchannel_pool", 1),)
    )
    try:
        unary = EchoStub(channel).Unary
        assert unary(b"x", timeout=10) == b"x"
        states: list[grpc.ChannelConnectivity] = []
        channel.subscribe(states.append)
        try:
            process.kill()
            # A call made before the channel has read the reset goes out on the
            # dead connection ("Connection reset by peer") and may have been
            # sent: the contract is about a call made once the channel knows.
            assert wait_until(
                lambda: bool(states) and states[-1] is not grpc.ChannelConnectivity.READY,
                timeout=5,
            )
        finally:
            channel.unsubscribe(states.append)
        with pytest.raises(grpc.RpcError) as refused:
            unary(b"z", timeout=5)
        assert never_sent(refused.value), refused.value.details()
    finally:
        channel.close()
        process.stop()


# --- the pool channels take what grpcio's channels take --------------------------------

FACTORIES = ("unary_unary", "unary_stream", "stream_unary", "stream_stream")


def parameters(function: Callable[..., object]) -> list[tuple[str, object, object]]:
    """A function's parameters as (name, kind, default): annotations aside."""
    return [(p.name, p.kind, p.default) for p in inspect.signature(function).parameters.values()]


@pytest.mark.parametrize("factory", FACTORIES)
def test_the_pool_channels_take_grpcios_multi_callable_arguments(factory: str) -> None:
    """PoolChannel and AioPoolChannel make multi-callables from exactly the arguments
    grpcio's Channel classes take (grpc.intercept_channel passes them positionally,
    _registered_method included): a grpcio release that changes them fails here."""
    sync = parameters(getattr(grpc._channel.Channel, factory))
    aio = parameters(getattr(grpc.aio._channel.Channel, factory))
    assert parameters(getattr(PoolChannel, factory)) == sync
    assert parameters(getattr(AioPoolChannel, factory)) == aio


# --- a finished grpc.aio call's code, read without awaiting ----------------------------


def test_a_finished_aio_calls_code_is_read_in_its_done_callback() -> None:
    """finished_code reads how a grpc.aio call ended from its done callback, as the
    asyncio pool channel does for every call: OK, and UNAVAILABLE from the server."""
    with EchoServer(with_health=False) as server:

        async def codes() -> list[grpc.StatusCode | None]:
            seen: list[grpc.StatusCode | None] = []
            async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
                unary = channel.unary_unary(ECHO_METHOD)
                ok = unary(b"x", timeout=5)
                ok.add_done_callback(lambda call: seen.append(finished_code(call)))
                assert await ok == b"x"
                failed = unary(UNAVAILABLE, timeout=5)
                failed.add_done_callback(lambda call: seen.append(finished_code(call)))
                failed.add_done_callback(lambda call: said.append(finished_details(call)))
                with pytest.raises(grpc.aio.AioRpcError):
                    await failed
                await asyncio.sleep(0)  # done callbacks run on the loop's next turn
            return seen

        said: list[str | None] = []
        assert asyncio.run(codes()) == [grpc.StatusCode.OK, grpc.StatusCode.UNAVAILABLE]
        assert said == ["asked to answer UNAVAILABLE"]  # finished_details, for hedging


# --- the A6 attempts header: when grpcio lets a caller's through ---------------------------

RETRY_POLICY = json.dumps(
    {
        "methodConfig": [
            {
                "name": [{"service": "test.Echo"}],
                "retryPolicy": {
                    "maxAttempts": 3,
                    "initialBackoff": "0.01s",
                    "maxBackoff": "0.05s",
                    "backoffMultiplier": 2,
                    "retryableStatusCodes": ["UNAVAILABLE"],
                },
            }
        ]
    }
)

HEADER_ADVICE = (
    f"grpcio {grpc.__version__} changed what it does with a caller's "
    f"{PREVIOUS_ATTEMPTS} header; a hedging pool turns grpcio's retries off so "
    "that its hedged attempts can carry it (grpcpool/_channel_args.py): revisit "
    "that choice and docs/SPEC.md's Hedging section. Seen: "
)


@pytest.mark.parametrize(
    ("options", "seen"),
    [
        pytest.param((), None, id="default options: dropped"),
        pytest.param((("grpc.enable_retries", 1),), None, id="retries on: dropped"),
        pytest.param((("grpc.enable_retries", 0),), "1", id="retries off: passed"),
        pytest.param((("grpc.service_config", RETRY_POLICY),), None, id="retryPolicy: dropped"),
        pytest.param(
            (("grpc.service_config", RETRY_POLICY), ("grpc.enable_retries", 0)),
            "1",
            id="retryPolicy, retries off: passed",
        ),
    ],
)
def test_grpcio_lets_a_callers_attempts_header_through_only_with_retries_off(
    options: tuple[tuple[str, object], ...], seen: str | None
) -> None:
    """grpcio's retry code (on by default, whether or not a retry policy is configured)
    drops a grpc-previous-rpc-attempts header set by the caller; with
    grpc.enable_retries 0 the server sees it. Other metadata passes either way."""
    with EchoServer(host="127.0.0.2", with_health=False) as server:
        channel = grpc.insecure_channel(f"127.0.0.2:{server.port}", options=options)
        try:
            metadata = ((PREVIOUS_ATTEMPTS, "1"), ("x-other", "y"))
            EchoStub(channel).Unary(b"x", metadata=metadata, timeout=5)
        finally:
            channel.close()
        received = dict(server.metadata[-1])
    assert received.get("x-other") == "y"
    assert received.get(PREVIOUS_ATTEMPTS) == seen, HEADER_ADVICE + repr(received)


def test_grpcio_aio_treats_the_attempts_header_as_grpcio_does() -> None:
    """The same on grpc.aio channels: dropped with default options, passed with
    grpc.enable_retries 0."""
    with EchoServer(host="127.0.0.2", with_health=False) as server:

        async def seen(options: tuple[tuple[str, object], ...]) -> str | None:
            target = f"127.0.0.2:{server.port}"
            async with grpc.aio.insecure_channel(target, options=options) as channel:
                unary = channel.unary_unary(ECHO_METHOD)
                await unary(b"x", metadata=((PREVIOUS_ATTEMPTS, "1"),), timeout=5)
            return dict(server.metadata[-1]).get(PREVIOUS_ATTEMPTS)

        assert asyncio.run(seen(())) is None, HEADER_ADVICE + "aio, default"
        assert asyncio.run(seen((("grpc.enable_retries", 0),))) == "1", HEADER_ADVICE + "aio"


def test_grpcio_numbers_the_attempts_of_its_own_retry_policy() -> None:
    """With a retryPolicy grpcio sends the header on its own retries (1, 2): a user's
    retry policy, which a hedging pool keeps on, still tells the server."""
    with EchoServer(host="127.0.0.2", with_health=False) as server:
        options = (("grpc.service_config", RETRY_POLICY),)
        channel = grpc.insecure_channel(f"127.0.0.2:{server.port}", options=options)
        try:
            with pytest.raises(grpc.RpcError):
                EchoStub(channel).Unary(UNAVAILABLE, timeout=5)
        finally:
            channel.close()
        numbers = [dict(seen).get(PREVIOUS_ATTEMPTS) for seen in server.metadata]
    assert numbers == [None, "1", "2"], HEADER_ADVICE + repr(numbers)
