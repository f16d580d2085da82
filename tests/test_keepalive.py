"""Keepalive pings never draw a too_many_pings GOAWAY from a server with default settings.

Against a grpcio server and a real grpc-go server (etcd). A server counts a
ping as a strike when it comes too soon after the previous one (5 minutes by
default while a call runs; 2 hours on a connection with no call, unless the
server permits pings without calls) and answers the third strike with a
``too_many_pings`` GOAWAY. Time is scaled: the pools ping every second (the
shortest interval grpcio keeps) and the client's own limit of two pings
without data, then one a minute, is lifted with
``grpc.http2.max_pings_without_data=0``, so the strikes that take minutes
with real settings come within seconds; it changes when pings go out, not
whether a server takes them for strikes.

Each pool reaches its server through a pass-through :class:`FaultProxy`,
which counts the TCP connections opened: a connection the server closed is
replaced by a new one, however the pool reports it. A pool that must survive
is watched alongside one that must be struck out on the same kind of server,
so the test waits on the second one's GOAWAY, not on a clock.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass, field
from typing import Any

import grpc
import pytest

import grpcpool
from grpcpool import Config, PoolSpec, Supervisor
from tests.etcd import ETCD_BINARY, ETCD_MISSING, EtcdServer
from tests.events import EventLog
from tests.faultproxy import FaultProxy
from tests.servers import EchoServer
from tests.waiting import wait_for

pytestmark = pytest.mark.slow

KEEPALIVE = 1.0
# Lifts grpcio's "two pings without data, then one a minute" (see the module doc).
UNTHROTTLED = (("grpc.http2.max_pings_without_data", 0),)
# What the pools used to send: keepalive pings on connections without calls.
OLD_IDLE_PINGS = (("grpc.keepalive_permit_without_calls", 1), *UNTHROTTLED)
# The first ping is free and the third strike draws the GOAWAY: four pings,
# plus room for a loaded machine.
STRUCK_OUT_TIMEOUT = 4 * KEEPALIVE + 8.0
# An HTTP/2 PING frame: a 9-byte frame header and 8 bytes of payload.
PING_FRAME_BYTES = 17
# grpcio's own report of the GOAWAY (an ERROR line from its C core on stderr).
TOO_MANY_PINGS = (
    'Received a GOAWAY with error code ENHANCE_YOUR_CALM and debug data equal to "too_many_pings"'
)
# A grpcio server that permits keepalive pings at KEEPALIVE, with or without calls.
PERMITTING_GRPCIO = (
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.min_ping_interval_without_data_ms", round(KEEPALIVE * 1000)),
)
# A grpcio server that wants KEEPALIVE between pings while calls run (a default
# server's 5 minutes, scaled) and keeps its default for connections without calls.
SCALED_GRPCIO = (("grpc.http2.min_ping_interval_without_data_ms", round(KEEPALIVE * 1000)),)
# etcd's --grpc-keepalive-min-time scaled the same way (its default is 5 s).
SCALED_ETCD = (f"--grpc-keepalive-min-time={round(KEEPALIVE * 1000)}ms",)


@dataclass(frozen=True)
class Setup:
    """One pool of a scenario: connection keys over the quiet base, and extra channel options."""

    connection: dict[str, Any] = field(default_factory=dict)
    options: tuple[tuple[str, Any], ...] = UNTHROTTLED
    size: int = 2


@dataclass(eq=False)
class ProxiedPool:
    """A running pool behind its own counting proxy."""

    name: str
    size: int
    proxy: FaultProxy
    events: EventLog
    bytes_up_when_ready: int = 0

    def bytes_sent_since_ready(self) -> int:
        """Bytes the pool's connections sent since every channel was ready."""
        return self.proxy.bytes_up - self.bytes_up_when_ready

    def drop_events(self) -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
        """This pool's connection_down and disconnected events."""
        kinds = ("channel.connection_down", "channel.disconnected")
        return [event for kind in kinds for event in self.events.of(kind) if event[0] == self.name]

    def dropped(self) -> bool:
        """True once a connection was replaced or the pool reported one lost."""
        return self.proxy.connections_accepted > self.size or bool(self.drop_events())

    def struck_out_in(self, stderr: str) -> bool:
        """True if grpcio logged a too_many_pings GOAWAY on this pool's connections."""
        peer = f"127.0.0.1:{self.proxy.port}:"
        return any(TOO_MANY_PINGS in line and peer in line for line in stderr.splitlines())


def quiet_config(port: int, setup: Setup) -> Config:
    """No health pings and a KEEPALIVE keepalive: the keepalive policy alone decides."""
    connection = {
        "health_check": False,
        "ping_interval": None,
        "keepalive": KEEPALIVE,
        "keepalive_timeout": 2.0,
        "backoff_min": 0.05,
        "backoff_max": 0.5,
        "connect_timeout": 2.0,
        **setup.connection,
    }
    return Config.new(
        endpoint={"type": "local", "host": "127.0.0.1", "port": port, "options": setup.options},
        pool={"size": setup.size},
        connection=connection,
    )


@contextlib.contextmanager
def proxied_pools(
    events: EventLog, pools: dict[str, tuple[int, Setup]]
) -> Iterator[dict[str, ProxiedPool]]:
    """Starts each named pool (server port, setup) behind its own proxy, under one
    Supervisor, and waits until every channel is ready; stops pools, then proxies."""
    with contextlib.ExitStack() as stack:
        running: dict[str, ProxiedPool] = {}
        specs = []
        for name, (port, setup) in pools.items():
            proxy = stack.enter_context(FaultProxy(port))
            running[name] = ProxiedPool(name, setup.size, proxy, events)
            specs.append(PoolSpec(quiet_config(proxy.port, setup), name=name))
        supervisor = Supervisor.start(children=specs)
        stack.callback(supervisor.stop)  # before the proxies close their connections
        for name, pool in running.items():
            grpcpool.await_ready(name, timeout=10, min_ready=pool.size)
        for pool in running.values():
            pool.bytes_up_when_ready = pool.proxy.bytes_up
        yield running


def grpc_logs_errors() -> bool:
    """grpcio prints its ERROR lines (the GOAWAY report) unless told to be silent."""
    return os.environ.get("GRPC_VERBOSITY", "ERROR").upper() not in ("NONE", "")


# --- servers ---------------------------------------------------------------------


class HoldServer:
    """A grpcio server whose one method holds a call open, sending nothing, until
    the client ends it: a quiet call, like a stream waiting for news."""

    METHOD = "/test.Hold/Hold"

    def __init__(self, options: tuple[tuple[str, Any], ...] = ()) -> None:
        self._executor = futures.ThreadPoolExecutor(max_workers=4, thread_name_prefix="hold")
        self._server = grpc.server(self._executor, options=options)
        handler = grpc.stream_unary_rpc_method_handler(self._hold)
        self._server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler("test.Hold", {"Hold": handler}),)
        )
        self.port = self._server.add_insecure_port("127.0.0.1:0")
        self._server.start()

    @staticmethod
    def _hold(requests: Iterator[bytes], context: grpc.ServicerContext) -> bytes:
        for _ in requests:  # ends when the client cancels
            pass
        return b""

    def stop(self) -> None:
        self._server.stop(None).wait(10)
        self._executor.shutdown(wait=True)


@contextlib.contextmanager
def quiet_call(channel: grpc.Channel, method: str, first: bytes) -> Iterator[None]:
    """A client-streaming call that sends ``first`` and then nothing until the block ends."""
    release = threading.Event()

    def requests() -> Iterator[bytes]:
        yield first
        release.wait(60)

    call = channel.stream_stream(method)(requests(), timeout=60)
    try:
        yield
    finally:
        call.cancel()
        release.set()


# etcd's Watch with a create request for key b"k": WatchRequest{create_request{key}}.
ETCD_WATCH = ("/etcdserverpb.Watch/Watch", b"\x0a\x03\x0a\x01k")


@pytest.fixture(params=["grpcio", "etcd"])
def default_server(request: pytest.FixtureRequest) -> Iterator[int]:
    """The port of a server with default ping settings: a grpcio echo server, or etcd."""
    if request.param == "etcd":
        yield request.getfixturevalue("etcd_server").port
        return
    with EchoServer() as server:
        yield server.port


# --- scenarios -------------------------------------------------------------------


def test_idle_pool_with_default_keepalive_draws_no_goaway(
    default_server: int, events: EventLog, capfd: pytest.CaptureFixture[str]
) -> None:
    """Without health pings, an idle pool sends no keepalive ping and keeps its connections.

    Alongside it, a pool with the old settings (keepalive pings on idle
    connections) is struck out by the same server, which proves the pools
    were idle long enough.
    """
    scenario = {
        "quiet": (default_server, Setup()),
        "old-pings": (default_server, Setup(options=OLD_IDLE_PINGS)),
    }
    with proxied_pools(events, scenario) as pools:
        wait_for(pools["old-pings"].dropped, timeout=STRUCK_OUT_TIMEOUT)
        quiet = pools["quiet"]
        assert quiet.drop_events() == []
        assert quiet.proxy.connections_accepted == quiet.size
        assert quiet.bytes_sent_since_ready() == 0  # not one ping
    stderr = capfd.readouterr().err
    assert not quiet.struck_out_in(stderr)
    if grpc_logs_errors():
        assert pools["old-pings"].struck_out_in(stderr)


def test_keepalive_without_calls_is_kept_by_a_server_that_permits_it(
    events: EventLog, capfd: pytest.CaptureFixture[str]
) -> None:
    """The opt-in pings idle connections every keepalive: a grpcio server with
    grpc.keepalive_permit_without_calls=1 and min_ping_interval_without_data_ms <= keepalive
    keeps them, and one with default settings strikes them out."""
    opt_in = Setup(connection={"keepalive_without_calls": True}, options=())
    with EchoServer(options=PERMITTING_GRPCIO) as permitting, EchoServer() as default:
        scenario = {"permitted": (permitting.port, opt_in), "refused": (default.port, opt_in)}
        with proxied_pools(events, scenario) as pools:
            wait_for(pools["refused"].dropped, timeout=STRUCK_OUT_TIMEOUT)
            permitted = pools["permitted"]
            assert permitted.drop_events() == []
            assert permitted.proxy.connections_accepted == permitted.size
            # It did ping meanwhile: an idle connection sends nothing else.
            assert permitted.bytes_sent_since_ready() >= 2 * PING_FRAME_BYTES * permitted.size
    stderr = capfd.readouterr().err
    assert not permitted.struck_out_in(stderr)
    if grpc_logs_errors():
        assert pools["refused"].struck_out_in(stderr)


@pytest.mark.parametrize("etcd_server", [("--grpc-keepalive-min-time=100ms",)], indirect=True)
def test_keepalive_without_calls_is_refused_by_etcd_whatever_its_min_time(
    etcd_server: EtcdServer, events: EventLog, capfd: pytest.CaptureFixture[str]
) -> None:
    """etcd never permits pings without calls (grpc-go PermitWithoutStream is false
    there), so even with its smallest --grpc-keepalive-min-time the opt-in is struck out."""
    opt_in = Setup(connection={"keepalive_without_calls": True}, options=())
    with proxied_pools(events, {"opt-in": (etcd_server.port, opt_in)}) as pools:
        wait_for(pools["opt-in"].dropped, timeout=STRUCK_OUT_TIMEOUT)
    if grpc_logs_errors():
        assert pools["opt-in"].struck_out_in(capfd.readouterr().err)


@contextlib.contextmanager
def holding_server(kind: str, scaled: bool) -> Iterator[tuple[int, tuple[str, bytes]]]:
    """A server with default ping settings, or with its minimum ping interval
    while calls run scaled down to KEEPALIVE; yields its port and a quiet call."""
    if kind == "etcd":
        if ETCD_BINARY is None:
            pytest.skip(ETCD_MISSING)
        with EtcdServer.start(*(SCALED_ETCD if scaled else ())) as etcd:
            yield etcd.port, ETCD_WATCH
        return
    server = HoldServer(SCALED_GRPCIO if scaled else ())
    try:
        yield server.port, (HoldServer.METHOD, b"hold")
    finally:
        server.stop()


@pytest.mark.parametrize("kind", ["grpcio", "etcd"])
@pytest.mark.parametrize("scaled", [True, False], ids=["at-server-minimum", "below-minimum"])
def test_keepalive_during_a_quiet_call_needs_the_servers_minimum_interval(
    kind: str, scaled: bool, events: EventLog, capfd: pytest.CaptureFixture[str]
) -> None:
    """While a call runs, keepalive pings at the server's minimum interval are kept and
    shorter ones are struck out: why the default keepalive is a default server's 5 minutes.

    Scaled: the server's minimum (grpcio min_ping_interval_without_data, etcd
    --grpc-keepalive-min-time) is brought down to the pool's 1 s keepalive, or
    left at its default (5 minutes; etcd 5 s). The call sends nothing after
    its start and gets nothing back, like a stream waiting for news. With the
    minimum kept, an idle opt-in pool on the same server is the clock: it is
    struck out after as many pings as the busy pool sent meanwhile.
    """
    busy = Setup(size=1)
    clock = Setup(connection={"keepalive_without_calls": True}, options=(), size=1)
    with holding_server(kind, scaled) as (port, (method, first)):
        scenario = {"busy": (port, busy), **({"clock": (port, clock)} if scaled else {})}
        with (
            proxied_pools(events, scenario) as pools,
            quiet_call(grpcpool.get_channel("busy"), method, first),
        ):
            watched = pools["clock"] if scaled else pools["busy"]
            wait_for(watched.dropped, timeout=STRUCK_OUT_TIMEOUT)
            busy_dropped = pools["busy"].dropped()
    stderr = capfd.readouterr().err
    if scaled:
        assert not busy_dropped
        assert not pools["busy"].struck_out_in(stderr)
    elif grpc_logs_errors():
        assert pools["busy"].struck_out_in(stderr)
