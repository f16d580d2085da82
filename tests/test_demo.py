"""The command line: ``python -m grpcpool demo`` and ``python -m grpcpool probe``."""

from __future__ import annotations

import io
import itertools
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import grpc
import pytest

from grpcpool import cli, telemetry
from grpcpool.cli._console import Console, format_duration, format_event
from grpcpool.cli._demo import DemoOptions, run
from grpcpool.cli._demo_aio import AioDemoOptions
from grpcpool.cli._demo_aio import run as run_aio
from grpcpool.cli._probe import ProbeOptions
from grpcpool.cli._probe import main as probe_main
from grpcpool.cli.echo import EchoServer as TLSEchoServer
from grpcpool.strategy import STRATEGY_NAMES
from tests.certs import make_ca, make_server_cert
from tests.pools import free_port
from tests.servers import EchoServer

ROOT = Path(__file__).resolve().parent.parent
DEMO_BOUND_SECONDS = 30
AIO_DEMO_BOUND_SECONDS = 20
# A duration printed as the float a receiver gets (5.835600001091734e-05,
# 0.0123456) rather than as a figure a person reads (0.06 ms, 12.3 ms).
RAW_FLOAT = re.compile(r"\d\.\d{4,}|\d(\.\d+)?e-?\d")


def assert_no_raw_float(out: str) -> None:
    raw = [line for line in out.splitlines() if RAW_FLOAT.search(line)]
    assert not raw, "\n".join(raw)


def run_cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "grpcpool", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        check=False,
    )


# --- demo ------------------------------------------------------------------------


@pytest.mark.slow
def test_demo_command_narrates_the_whole_scenario() -> None:
    """The demo runs the issue's scenario end to end, exits 0, within its bound, without noise."""
    started = time.monotonic()
    result = run_cli("demo", "--seconds", "0.5", timeout=DEMO_BOUND_SECONDS + 15)
    elapsed = time.monotonic() - started
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    assert elapsed < DEMO_BOUND_SECONDS
    assert "Traceback" not in result.stderr and "Got goaway" not in result.stderr, result.stderr
    # Step 1: 40 calls over 4 distinct peers, 10 each, as the server saw them.
    first_table = out.split("[2]")[0]
    assert len(re.findall(r"ipv4:127\.0\.0\.1:\d+ +10\n", first_table)) == 4, first_table
    # Step 2: every worker reports the loss, and get_channel refuses.
    for event in ("connection_down", "disconnected", "reconnect_scheduled"):
        for worker in ("worker-1", "worker-2", "worker-3", "worker-4"):
            assert re.search(rf"channel\.{event} +{worker} ", out), (event, worker)
    assert "raised NotConnectedError" in out
    assert "backoff 0.2 s to 2.0 s" in out
    # The stub built once in step 1 fails fast while the server is down.
    assert "stub = EchoStub(grpcpool.channel('demo')), built once and kept" in out
    assert "the stub's call failed at once: UNAVAILABLE" in out
    # Step 3: the same stub answers once a connection is back; recovery, with its time.
    assert re.search(
        r"the same stub, called with wait_for_ready=True, timeout=6: answered [\d.]+ m?s "
        r"after the restart, by ipv4:127\.0\.0\.1:\d+",
        out,
    ), out
    assert re.search(r"healthy again [\d.]+ m?s after the restart", out), out
    # Step 4: four connections share the calls, the slow one gets few.
    routing = out.split("[4]")[1].split("[5]")[0]
    rows = re.findall(r"ipv4:127\.0\.0\.1:\d+ +(\d+) +\d+% *(slow)?\n", routing)
    assert len(rows) == 4 and sum(int(calls) for calls, _ in rows) == 200, routing
    (slow_calls,) = [int(calls) for calls, slow in rows if slow]
    assert slow_calls < 25, routing
    assert f"the slow connection got {slow_calls} of 200 calls" in routing
    check_backends_step(out)
    check_faults_step(out)
    check_autoscale_step(out)
    # Steps 7 and 9.
    assert "scale_up -> 6 workers, 6 ready" in out
    assert "scale_down -> 4 workers, 4 ready" in out
    assert "pool 'demo': healthy, 4 of 4 ready" in out
    assert "done in" in out
    assert re.search(r"pool\.resolved +demo +1 address in [\d.]+ m?s", out), out
    assert_no_raw_float(out)


def test_demo_in_process_quiet_prints_no_events_and_leaves_nothing_running() -> None:
    """--quiet keeps the narration and drops the event lines; everything is stopped after."""
    stream = io.StringIO()
    run(DemoOptions(size=2, seconds=0.2, quiet=True), Console(stream))
    out = stream.getvalue()
    assert "channel.connected" not in out
    assert "raised NotConnectedError" in out
    assert "the stub's call failed at once: UNAVAILABLE" in out
    assert "the same stub, called with wait_for_ready=True" in out
    assert "least_in_flight" in out and "the slow connection got" in out
    check_backends_step(out)
    check_faults_step(out)
    check_autoscale_step(out)
    assert "scale_up -> 4 workers, 4 ready" in out
    assert "pool 'demo': healthy, 2 of 2 ready" in out
    # The autouse leak check then verifies no thread, actor, channel or socket is left.


def test_aio_demo_command_tells_the_asyncio_story() -> None:
    """demo --aio: calls spread over 4 connections, a kill empties the view, the stub recovers."""
    started = time.monotonic()
    result = run_cli(
        "demo", "--aio", "--quiet", "--seconds", "0.3", timeout=AIO_DEMO_BOUND_SECONDS + 15
    )
    elapsed = time.monotonic() - started
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    assert elapsed < AIO_DEMO_BOUND_SECONDS
    assert result.stderr == "", result.stderr
    assert "channel.connected" not in out  # --quiet
    assert "4 of 4 ready; threads started for the pool: 0" in out
    # 40 calls before the kill and 40 after, 10 on each of 4 connections each time.
    before, after = out.split("[2]")[0], out.split("[3]")[1]
    for section in (before, after):
        assert len(re.findall(r"ipv4:127\.0\.0\.1:\d+ +10\n", section)) == 4, section
    assert re.search(r"every connection left the pool [\d.]+ m?s after the kill", out), out
    assert "pool.get_channel() raised NotConnectedError" in out
    assert "the stub's call failed at once: UNAVAILABLE" in out
    assert re.search(
        r"the same stub, called with wait_for_ready=True: answered [\d.]+ m?s after the "
        r"restart, by ipv4:127\.0\.0\.1:\d+",
        out,
    ), out
    assert re.search(r"healthy again, 4 of 4 ready [\d.]+ m?s after the restart", out), out
    assert "pool 'demo-aio': healthy, 4 of 4 ready" in out
    assert "done in" in out


def test_aio_demo_in_process_prints_events_and_leaves_nothing_running() -> None:
    """demo --aio without --quiet prints the pool's events; everything is stopped after."""
    stream = io.StringIO()
    run_aio(AioDemoOptions(size=2, seconds=0.1), Console(stream))
    out = stream.getvalue()
    assert re.search(r"channel\.connection_down +worker-1 ", out), out
    assert re.search(r"channel\.connected +worker-2 ", out), out
    assert "the stub's call failed at once: UNAVAILABLE" in out
    assert "pool 'demo-aio': healthy, 2 of 2 ready" in out
    assert re.search(r"pool\.resolved +demo-aio +1 address in [\d.]+ m?s", out), out
    assert_no_raw_float(out)
    # The autouse leak check then verifies no thread, channel or socket is left.


# Each event's measurements as the pool emits them (the spec's section 4), with
# durations of the kind a fast loopback produces.
EVENT_MEASUREMENTS: dict[str, dict[str, Any]] = {
    "pool.init": {"pool_size": 4},
    "pool.get_channel": {},
    "pool.scale_up": {
        "duration": 0.0003124,
        "requested": 2,
        "succeeded": 2,
        "failed": 0,
        "new_size": 6,
    },
    "pool.scale_down": {"duration": 0.0123456, "requested": 2, "terminated": 2, "new_size": 4},
    "pool.autoscaled": {"from_size": 2, "to_size": 4, "peak_in_flight": 90, "queued": 0},
    "pool.status": {"expected_size": 4, "current_size": 3, "in_flight": 0, "queued": 0},
    "pool.resolved": {"addresses": 3, "duration": 5.835600001091734e-05},
    "channel.connected": {"duration": 0.0138123},
    "channel.connection_failed": {"duration": 0.0116789},
    "channel.disconnected": {"duration": 12.3456789},
    "channel.ping": {"duration": 0.000412345},
    "channel.connection_down": {},
    "channel.reconnect_scheduled": {"delay_ms": 247, "attempt": 1},
    "channel.refreshed": {"age": 2.0004512},
    "channel.released": {"duration": 12.3456789},
    "pool.ejected": {
        "ejection_time": 30.0,
        "successes": 7,
        "failures": 14,
        "success_rate": 33.33333333333333,
        "failure_percentage": 66.66666666666667,
        "threshold": 50.0,
    },
    "pool.unejected": {"ejection_time": 30.0123456},
    "pool.panic": {"active": 1, "ready": 4, "ejected": 3},
    "call.hedged": {"attempts": 2, "won": 1},
    "call.queued": {"duration": 0.0123456},
    "supervisor.child_restarted": {"restarts": 1},
    "supervisor.shutdown": {"restarts": 4},
}
EVENT_METADATA: dict[str, Any] = {
    "pool_name": "demo",
    "worker_id": "worker-1",
    "endpoint": "127.0.0.1:50051",
    "error": "unavailable: Connection refused",
    "reason": "max_age",
    "result": "ok",
    "address": "127.0.0.2:50051",
    "added": ["127.0.0.2:50051"],
    "removed": [],
    "available_channels": 3,
    "supervisor": "pool:demo",
    "child_id": "worker-1",
    "method": "/test.Echo/Unary",
    "outcome": "started",
}


@pytest.mark.parametrize("name", telemetry.EVENTS)
def test_every_event_line_shows_figures_not_raw_floats(name: str) -> None:
    """Each telemetry event the demo prints shows its durations as figures (0.06 ms),
    never as the raw float its receivers get."""
    measurements = EVENT_MEASUREMENTS[name.removeprefix(telemetry.PREFIX + ".")]
    line = format_event(name, measurements, EVENT_METADATA)
    assert not RAW_FLOAT.search(line), line
    for key in ("duration", "age", "ejection_time", "ejected_for"):
        if key in measurements:
            assert format_duration(measurements[key]) in line, line


def test_durations_under_a_millisecond_keep_two_digits() -> None:
    """58 microseconds read 0.06 ms, not 0.1 ms or 5.8e-05."""
    assert format_duration(5.835600001091734e-05) == "0.06 ms"
    assert format_duration(0.0123456) == "12.3 ms"
    assert format_duration(2.0004512) == "2.00 s"


def backend_tables(section: str) -> list[dict[str, tuple[int, int]]]:
    """Each per-backend table of the demo's many-backends step: host -> (connections, calls)."""
    tables = section.split("backend    connections  calls")[1:]
    return [
        {host: (int(conns), int(calls)) for host, conns, calls in ROW.findall(text)}
        for text in tables
    ]


ROW = re.compile(r"(127\.0\.0\.\d) +(\d+) +(\d+)\n")


def check_backends_step(out: str) -> None:
    """The many-backends step: 2/2/2, then the new backend gets its share, then .2 is gone."""
    section = out.split("[5] many backends")[1].split("[6]")[0]
    three, four, after = backend_tables(section)
    assert three == {f"127.0.0.{i}": (2, 20) for i in (1, 2, 3)}, section
    assert set(four) == {"127.0.0.1", "127.0.0.2", "127.0.0.3", "127.0.0.4"}, section
    assert sorted(conns for conns, _ in four.values()) == [1, 1, 2, 2], section
    assert sum(calls for _, calls in four.values()) == 60 and four["127.0.0.4"][1] > 0, section
    assert after == {f"127.0.0.{i}": (2, 20) for i in (1, 3, 4)}, section
    assert re.search(
        r"127\.0\.0\.4 joins the answer: \d+ connections? moved to it in [\d.]+ m?s, "
        r"never fewer than 6 ready",
        section,
    ), section
    assert re.search(
        r"127\.0\.0\.2 leaves the answer and stops: \d+ connections? moved to the "
        r"others in [\d.]+ m?s",
        section,
    ), section


def check_faults_step(out: str) -> None:
    """The faults step: shares before, the failing backend ejected, the slow one and the
    ejected one nearly idle after; or, where grpcpool has no peak_ewma, a line saying why not."""
    section = out.split("[6] slow and failing backends")[1].split("[7]")[0]
    if "peak_ewma" not in STRATEGY_NAMES:
        assert "skipped: this grpcpool has no 'peak_ewma' strategy" in section, section
        return
    before, after = section.split("turns slow")
    assert len(re.findall(r"127\.0\.0\.[2-5] +\d+ +\d+%", before)) == 4, section
    assert re.search(
        r"pool\.ejected 127\.0\.0\.4:\d+ \(failure_percentage\) [\d.]+ m?s after it began "
        r"failing",
        after,
    ), section
    shares = dict(re.findall(r"(127\.0\.0\.[2-5]) +\d+ +(\d+)%", after))
    assert int(shares["127.0.0.3"]) < 15 and int(shares["127.0.0.4"]) <= 1, section


AUTOSCALED = re.compile(r"pool\.autoscaled (\d+) -> (\d+) connections \((.*?)\)\n")


def check_autoscale_step(out: str) -> None:
    """The autoscale step: waiting calls grow the pool from 2, the burst's 160 calls all
    succeed on more than 2 connections, then interval steps take it back to 2, each step
    starting where the one before ended."""
    section = out.split("[8] autoscale")[1].split("[9]")[0]
    during, after = section.split("burst over")
    grew = AUTOSCALED.findall(during)
    assert grew and grew[0][0] == "2" and "waiting" in grew[0][2], section
    assert max(int(to) for _, to, _ in grew) > 2, section
    burst = re.search(r": 160 calls, 0 failed, on (\d+) connections; (\d+) waited", after)
    assert burst is not None and int(burst.group(1)) > 2 and int(burst.group(2)) > 0, section
    shrank = AUTOSCALED.findall(after)
    assert shrank and shrank[-1][1] == "2", section
    steps = grew + shrank
    for (_, to, _), (start, _, _) in itertools.pairwise(steps):
        assert start == to, section
    assert all("in an interval" in why for _, _, why in shrank), section
    assert "idle again: back to 2 connections (2 ready)" in after, section


@pytest.mark.parametrize(
    "args",
    [
        ["demo", "--size", "0"],
        ["demo", "--size", "33"],
        ["demo", "--seconds", "11"],
        ["demo", "--seconds", "nan"],
        [],
    ],
)
def test_bad_flags_are_usage_errors(args: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    """Unknown or out-of-range flags exit 2 with a usage message."""
    with pytest.raises(SystemExit) as raised:
        cli.main(args)
    assert raised.value.code == 2
    assert "usage:" in capsys.readouterr().err


# --- probe -----------------------------------------------------------------------


def probe(**options: Any) -> tuple[int, str, str]:
    """Runs the probe in-process; returns its exit status, stdout and stderr."""
    out, err = io.StringIO(), io.StringIO()
    code = probe_main(ProbeOptions(**options), out, err)
    return code, out.getvalue(), err.getvalue()


def test_probe_healthy_endpoint(echo_server: EchoServer) -> None:
    """Every connection ready with its connect time and ping; the health service says SERVING."""
    code, out, err = probe(target=f"127.0.0.1:{echo_server.port}", size=3)
    assert code == 0, out + err
    assert err == ""
    for worker in ("worker-1", "worker-2", "worker-3"):
        assert re.search(
            rf"{worker} +ready +[\d.]+ m?s +ok +127\.0\.0\.1:{echo_server.port}", out
        ), out
    assert "Health/Check(service=''): SERVING" in out
    assert "healthy: 3 of 3 connections ready, health SERVING" in out


def test_probe_command_against_an_embedded_server(echo_server: EchoServer) -> None:
    """The probe command reports a healthy embedded server and exits 0."""
    result = run_cli("probe", f"127.0.0.1:{echo_server.port}", "--size", "2")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "healthy: 2 of 2 connections ready" in result.stdout
    assert result.stderr == ""


def test_probe_command_against_a_closed_port_fails_with_one_line() -> None:
    """A closed port makes the probe exit 1 with one line on stderr (and no TLS hint)."""
    result = run_cli("probe", f"127.0.0.1:{free_port()}", "--timeout", "1")
    assert result.returncode == 1, result.stdout + result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("unhealthy: 0 of 2 connections ready after 1 s; last error: ")
    assert "--tls" not in lines[0]
    assert "backoff" in result.stdout or "connecting" in result.stdout


def test_probe_server_without_health_service_is_healthy(plain_server: EchoServer) -> None:
    """A server without the health service counts as healthy."""
    code, out, _ = probe(target=f"127.0.0.1:{plain_server.port}", size=1)
    assert code == 0
    assert "health UNIMPLEMENTED (no health service; reachable counts as healthy)" in out


def test_probe_not_serving_is_unhealthy(echo_server: EchoServer) -> None:
    """NOT_SERVING makes the probe exit 1 naming the status."""
    echo_server.set_serving(False)
    code, _, err = probe(target=f"127.0.0.1:{echo_server.port}", size=1, timeout=1.0)
    assert code == 1
    assert "NOT_SERVING" in err and len(err.splitlines()) == 1


def test_probe_unknown_health_service_is_unhealthy(echo_server: EchoServer) -> None:
    """A health service name the server does not know makes the probe exit 1."""
    code, _, err = probe(
        target=f"127.0.0.1:{echo_server.port}", size=1, timeout=1.0, health_service="nope"
    )
    assert code == 1
    assert "does not know this health service" in err


def test_probe_tls_with_and_without_the_ca(tmp_path: Path) -> None:
    """--ca FILE verifies against the given roots; --tls alone uses the system roots and fails."""
    ca, ca_key = make_ca()
    server_pem = make_server_cert(ca, ca_key)
    ca_file = tmp_path / "ca.pem"
    ca_file.write_bytes(ca.certificate)
    credentials = grpc.ssl_server_credentials([(server_pem.private_key, server_pem.certificate)])
    with TLSEchoServer(credentials=credentials) as server:
        code, out, err = probe(target=server.address, ca_file=str(ca_file), tls=True)
        assert code == 0, out + err
        assert "(TLS, 2 connections" in out
        code, _, err = probe(target=server.address, tls=True, timeout=1.0)
        assert code == 1
        assert "CERTIFICATE_VERIFY_FAILED" in err


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"target": "127.0.0.1"}, "expected HOST:PORT"),
        ({"target": "127.0.0.1:http"}, "expected HOST:PORT"),
        ({"target": "127.0.0.1:70000"}, "endpoint.port"),
        ({"target": "127.0.0.1:1", "ca_file": "/nonexistent/ca.pem"}, "cannot read --ca"),
    ],
)
def test_probe_bad_arguments_exit_2(options: dict[str, Any], message: str) -> None:
    """Bad probe arguments exit 2 with a one-line reason, before "probing ..." is printed."""
    code, out, err = probe(**options)
    assert code == 2
    assert message in err and len(err.splitlines()) == 1
    assert out == ""


def test_probe_command_with_a_bad_port_prints_only_the_reason() -> None:
    """python -m grpcpool probe HOST:70000 prints nothing on stdout, one line on stderr."""
    result = run_cli("probe", "127.0.0.1:70000")
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stdout == ""
    assert result.stderr.splitlines() == ["probe: endpoint.port: must be <= 65535, got 70000"]


def tls_server_credentials() -> tuple[grpc.ServerCredentials, bytes]:
    """Server credentials from a throwaway CA, and that CA's certificate."""
    ca, ca_key = make_ca()
    server_pem = make_server_cert(ca, ca_key)
    credentials = grpc.ssl_server_credentials([(server_pem.private_key, server_pem.certificate)])
    return credentials, ca.certificate


def test_probe_plaintext_to_a_tls_server_hints_at_tls() -> None:
    """A plaintext probe of a TLS server fails with a reason that ends: try --tls."""
    credentials, _ = tls_server_credentials()
    with TLSEchoServer(credentials=credentials) as server:
        code, _, err = probe(target=server.address, size=1, timeout=1.0)
    assert code == 1
    assert len(err.splitlines()) == 1, err
    assert err.rstrip().endswith(
        "; the endpoint speaks TLS: try --tls (and --ca FILE for a private CA)"
    ), err


def test_probe_tls_to_a_plaintext_server_hints_to_drop_tls(
    echo_server: EchoServer, tmp_path: Path
) -> None:
    """A TLS probe (--tls, or --ca) of a plaintext server ends its reason with: drop --tls."""
    _, ca_certificate = tls_server_credentials()
    ca_file = tmp_path / "ca.pem"
    ca_file.write_bytes(ca_certificate)
    target = f"127.0.0.1:{echo_server.port}"
    for options in ({"tls": True}, {"ca_file": str(ca_file)}):
        code, _, err = probe(target=target, size=1, timeout=1.0, **options)
        assert code == 1
        assert len(err.splitlines()) == 1, err
        assert err.rstrip().endswith("; the endpoint does not speak TLS: drop --tls (and --ca)"), err


def test_docs_probe_sample_is_what_the_probe_prints(echo_server: EchoServer) -> None:
    """The docs' sample probe output (docs/demo.md) is, line for line and word for
    word, what the probe prints for a healthy server (its port and durations aside)."""
    page = (ROOT / "docs" / "demo.md").read_text()
    match = re.search(r"```\n(probing .*?)```", page, re.DOTALL)
    assert match is not None, "docs/demo.md lost its probe sample"
    sample = match.group(1)
    sample_port = re.search(r"127\.0\.0\.1:(\d+)", sample)
    assert sample_port is not None
    code, out, err = probe(target=f"127.0.0.1:{echo_server.port}")
    assert code == 0, out + err
    printed = out.replace(str(echo_server.port), sample_port.group(1))

    def words(text: str) -> list[list[str]]:
        # Durations and column widths vary from run to run; the rest may not.
        text = re.sub(r"\b\d+\.\d+ m?s\b", "<duration>", text)
        text = re.sub(r"-{2,}", "--", text)
        return [line.split() for line in text.splitlines()]

    assert words(printed) == words(sample), f"the probe printed:\n{out}"
