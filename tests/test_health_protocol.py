"""grpcpool's own health stubs: the protocol on the wire, beside grpcio-health-checking.

grpcpool ships code generated from its own health.proto (package
``grpcpool.health.v1``, paths ``/grpc.health.v1.Health/...``) instead of
depending on grpcio-health-checking. These tests show that the two talk to each
other both ways over a real connection (grpcio-health-checking is the
reference: the tests' servers serve its servicer, and here its client asks the
demo server's), that both load in one process in either order and under
either protobuf implementation, and that the library runs with no
grpcio-health-checking installed at all.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2 as reference_pb2
from grpc_health.v1 import health_pb2_grpc as reference_grpc

from grpcpool.cli.echo import EchoServer
from grpcpool.connection._health import CHECK_METHOD, check_verdict, health_check_method
from grpcpool.connection.health import health_pb2

ROOT = Path(__file__).resolve().parent.parent
SUBPROCESS_TIMEOUT = 50
WAIT = 5.0
ServingStatus = reference_pb2.HealthCheckResponse


@pytest.fixture
def demo_server() -> Iterator[EchoServer]:
    with EchoServer() as server:
        yield server


@pytest.fixture
def channel(demo_server: EchoServer) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(demo_server.address) as opened:
        yield opened


def run_python(code: str, **env: str) -> str:
    """Runs ``code`` in a fresh interpreter from the checkout; fails the test on exit != 0."""
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=ROOT,
        env={**_base_env(), **env},
        capture_output=True,
        text=True,
        timeout=SUBPROCESS_TIMEOUT,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    return result.stdout


def _base_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["GRPC_VERBOSITY"] = "ERROR"
    return env


# --- one process, two copies of health.proto ---------------------------------------------


@pytest.mark.parametrize("implementation", ["upb", "python"])
@pytest.mark.parametrize("grpcpool_first", [True, False], ids=["grpcpool-first", "reference-first"])
def test_both_health_stubs_load_in_one_process_in_either_order(
    implementation: str, grpcpool_first: bool
) -> None:
    """grpcpool's health messages and grpcio-health-checking's load side by side in either
    order, under the C (upb) and the pure-Python protobuf, with no warning, and each
    reads the other's bytes."""
    first, second = "grpcpool.connection.health.health_pb2", "grpc_health.v1.health_pb2"
    if not grpcpool_first:
        first, second = second, first
    out = run_python(
        f"""
        import importlib, warnings
        warnings.simplefilter("error")
        first = importlib.import_module({first!r})
        second = importlib.import_module({second!r})
        import grpcpool  # the whole library on top of both
        from google.protobuf.internal import api_implementation
        from grpc_health.v1 import health_pb2 as reference
        from grpcpool.connection.health import health_pb2 as ours
        for a, b in ((reference, ours), (ours, reference)):
            sent = a.HealthCheckResponse(status=a.HealthCheckResponse.NOT_SERVING)
            got = b.HealthCheckResponse.FromString(sent.SerializeToString())
            assert got.status == b.HealthCheckResponse.NOT_SERVING, got
            asked = b.HealthCheckRequest.FromString(
                a.HealthCheckRequest(service="svc").SerializeToString())
            assert asked.service == "svc", asked
        print(api_implementation.Type())
        """,
        PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION=implementation,
    )
    assert out.split() == [implementation]


def test_the_generated_service_code_uses_the_protocols_paths() -> None:
    """The generated stub and servicer call and serve /grpc.health.v1.Health/..., never the
    proto package's own name, which is only there to keep the message names apart."""
    source = (ROOT / "grpcpool" / "connection" / "health" / "health_pb2_grpc.py").read_text()
    assert "'/grpc.health.v1.Health/Check'" in source
    assert "'/grpc.health.v1.Health/Watch'" in source
    assert "'grpc.health.v1.Health', rpc_method_handlers" in source
    assert "grpcpool.health.v1.Health" not in source
    assert CHECK_METHOD == "/grpc.health.v1.Health/Check"
    assert health_pb2.HealthCheckRequest.DESCRIPTOR.full_name == "grpcpool.health.v1.HealthCheckRequest"


# --- the demo server's health service, asked by the reference client -----------------------


def test_reference_client_checks_the_demo_servers_health(
    demo_server: EchoServer, channel: grpc.Channel
) -> None:
    """grpcio-health-checking's stub gets SERVING, then NOT_SERVING once set, from the demo
    server's own servicer, and NOT_FOUND for a service it does not know."""
    stub = reference_grpc.HealthStub(channel)
    request = reference_pb2.HealthCheckRequest(service="")
    assert stub.Check(request, timeout=WAIT).status == ServingStatus.SERVING
    demo_server.set_serving(False)
    assert stub.Check(request, timeout=WAIT).status == ServingStatus.NOT_SERVING
    demo_server.set_serving(True, service="billing")
    billing = reference_pb2.HealthCheckRequest(service="billing")
    assert stub.Check(billing, timeout=WAIT).status == ServingStatus.SERVING
    with pytest.raises(grpc.RpcError) as raised:
        stub.Check(reference_pb2.HealthCheckRequest(service="nobody"), timeout=WAIT)
    assert raised.value.code() is grpc.StatusCode.NOT_FOUND


def test_pool_check_reads_the_demo_servers_answers(
    demo_server: EchoServer, channel: grpc.Channel
) -> None:
    """The pool's own check call reads the demo servicer's answers as the pool judges them."""
    check = health_check_method(channel)
    reply = check(health_pb2.HealthCheckRequest(service=""), timeout=WAIT)
    assert check_verdict(None, reply.status) is None
    demo_server.set_serving(False)
    reply = check(health_pb2.HealthCheckRequest(service=""), timeout=WAIT)
    assert check_verdict(None, reply.status) == "health status NOT_SERVING"


def test_reference_client_watches_the_demo_servers_health(
    demo_server: EchoServer, channel: grpc.Channel
) -> None:
    """Watch sends the status at once and then each change (not a repeat of the same one),
    SERVICE_UNKNOWN for a service not set yet, and ends when the client cancels."""
    stub = reference_grpc.HealthStub(channel)
    whole = stub.Watch(reference_pb2.HealthCheckRequest(service=""), timeout=30)
    later = stub.Watch(reference_pb2.HealthCheckRequest(service="later"), timeout=30)
    assert next(whole).status == ServingStatus.SERVING
    assert next(later).status == ServingStatus.SERVICE_UNKNOWN
    demo_server.set_serving(True)  # no change: nothing sent
    demo_server.set_serving(False)
    assert next(whole).status == ServingStatus.NOT_SERVING
    demo_server.set_serving(True, service="later")
    assert next(later).status == ServingStatus.SERVING
    for call in (whole, later):
        call.cancel()
        with pytest.raises(grpc.RpcError) as raised:
            next(call)
        assert raised.value.code() is grpc.StatusCode.CANCELLED
    # The autouse leak check then shows the server's watch threads were let go.


def test_stopping_the_demo_server_ends_an_open_watch_at_once() -> None:
    """A server stopped while a client watches it stops promptly: the watch does not hold
    one of its threads until the next status change."""
    server = EchoServer()
    try:
        with grpc.insecure_channel(server.address) as channel:
            watch = reference_grpc.HealthStub(channel).Watch(
                reference_pb2.HealthCheckRequest(service=""), timeout=30
            )
            assert next(watch).status == ServingStatus.SERVING
            started = time.monotonic()
            server.stop()
            assert time.monotonic() - started < WAIT
            # The stream has ended: closed by the servicer (OK) or cut by the stop.
            try:
                rest = list(watch)
            except grpc.RpcError as error:
                assert error.code() in (grpc.StatusCode.CANCELLED, grpc.StatusCode.UNAVAILABLE)
            else:
                assert rest == []
    finally:
        server.stop()


# --- the runtime without grpcio-health-checking --------------------------------------------


def test_the_library_and_the_demo_server_run_without_grpcio_health_checking() -> None:
    """With grpc_health made unimportable, every grpcpool module imports, and a pool of 2
    to the demo server becomes ready (each connection health-checked) and serves calls."""
    out = run_python(
        """
        import importlib, pkgutil, sys

        class NoGrpcHealth:
            def find_spec(self, name, path=None, target=None):
                if name == "grpc_health" or name.startswith("grpc_health."):
                    raise ModuleNotFoundError(f"blocked: {name}", name=name)
                return None

        sys.meta_path.insert(0, NoGrpcHealth())
        import grpcpool
        for module in pkgutil.walk_packages(grpcpool.__path__, "grpcpool."):
            importlib.import_module(module.name)

        from grpcpool import Config, PoolSpec, Supervisor
        from grpcpool.cli.echo import EchoServer, say

        with EchoServer() as server:
            config = Config.local(host="127.0.0.1", port=server.port, pool_size=2)
            supervisor = Supervisor.start(children=[PoolSpec(config, name="bare")])
            try:
                grpcpool.await_ready("bare", timeout=10.0, min_ready=2)
                replies = [say(grpcpool.get_channel("bare"), f"call {n}") for n in range(4)]
                assert [r.text for r in replies] == [f"call {n}" for n in range(4)]
                print(grpcpool.status("bare").status, len(server.peer_counts()))
            finally:
                supervisor.stop()
        assert not any(name.startswith("grpc_health") for name in sys.modules)
        """
    )
    assert out.split() == ["healthy", "2"], out
