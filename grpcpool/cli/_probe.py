"""``python -m grpcpool probe HOST:PORT``: can a pool connect here, and is it healthy?

The probe opens a real pool to the endpoint with the options given, so it
sees what an application's pool would see: distinct connections, TLS, the
gRPC health check that gates every connection, and the reconnect path if the
endpoint is down. It reports each connection's connect time (from the
``channel.connected`` event), its last health ping and the peer it connected
to, asks the health service once for the endpoint's status, and exits 0 only
if every connection is ready and the endpoint says it is serving.

A server without the health service answers ``UNIMPLEMENTED``; the pool
counts a reachable server without one as healthy, and so does the probe.
"""

from __future__ import annotations

import contextlib
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import blinker
import grpc
import pykka

import grpcpool
from grpcpool import telemetry
from grpcpool._status import PoolStatus
from grpcpool.cli._console import format_duration, table
from grpcpool.cli._sniff import tls_hint
from grpcpool.config import Config
from grpcpool.connection._call_errors import status_code
from grpcpool.connection._health import health_check_method
from grpcpool.connection.health import health_pb2
from grpcpool.errors import ConfigError, GrpcPoolError, PoolTimeoutError
from grpcpool.supervisor import Supervisor

__all__ = ["ProbeOptions", "ProbeResult", "main", "parse_target", "probe"]

POOL_NAME = "probe"
EXIT_HEALTHY = 0
EXIT_UNHEALTHY = 1
EXIT_USAGE = 2

# How often each connection re-checks health while the probe waits for one
# ping per connection; short, because the probe is.
_PING_INTERVAL = 0.2
# The longest the probe spends finding out whether a failed endpoint speaks TLS.
_SNIFF_TIMEOUT = 2.0


class ProbeUsageError(ValueError):
    """The probe's arguments cannot describe an endpoint."""


@dataclass(frozen=True)
class ProbeOptions:
    """What to probe and how; mirrors the command line.

    Attributes:
        target: ``HOST:PORT`` (an IPv6 host in brackets).
        tls: Use TLS; verify against ``ca_file`` or else the system roots.
        ca_file: PEM file of roots to verify the server with.
        size: Connections to open.
        health_service: The service name sent in ``Health/Check``.
        timeout: Seconds to wait for every connection to be ready.
    """

    target: str
    tls: bool = False
    ca_file: str | None = None
    size: int = 2
    health_service: str = ""
    timeout: float = 5.0


@dataclass(frozen=True)
class ProbeResult:
    """What the probe found.

    Attributes:
        healthy: Every connection ready and the endpoint serving.
        reason: One line saying why (or why not).
        status: The pool's status when the probe ended.
        connect_times: Seconds each worker took to connect, by worker id.
        pings: Each worker's last health ping result (``"ok"``/``"error"``).
        service_status: What ``Health/Check`` answered, e.g. ``"SERVING"``,
            ``"UNIMPLEMENTED"``; ``None`` if no connection was ready to ask.
    """

    healthy: bool
    reason: str
    status: PoolStatus
    connect_times: dict[str, float] = field(default_factory=dict)
    pings: dict[str, str] = field(default_factory=dict)
    service_status: str | None = None


def parse_target(target: str) -> tuple[str, int]:
    """Splits ``HOST:PORT`` (or ``[V6]:PORT``) into host and port.

    Raises:
        ProbeUsageError: No host, or a port that is not a number.
    """
    host, sep, port = target.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not sep or not host or not port.isdigit():
        raise ProbeUsageError(f"expected HOST:PORT, got {target!r}")
    return host, int(port)


def probe_config(options: ProbeOptions) -> Config:
    """The pool the probe opens: the endpoint as given, short timeouts, quiet retries.

    Raises:
        ProbeUsageError: The target is malformed or the CA file unreadable.
        ConfigError: A value is out of range (e.g. the port).
    """
    host, port = parse_target(options.target)
    endpoint: dict[str, Any] = {"type": "local", "host": host, "port": port}
    if options.tls or options.ca_file is not None:
        ssl: dict[str, Any] | bool = True
        if options.ca_file is not None:
            try:
                ssl = {"root_certificates": Path(options.ca_file).read_bytes()}
            except OSError as error:
                raise ProbeUsageError(
                    f"cannot read --ca {options.ca_file}: {error.strerror}"
                ) from None
        endpoint.update(type="production", ssl=ssl)
    return Config.new(
        endpoint=endpoint,
        pool={"size": options.size, "name": POOL_NAME},
        connection={
            "health_service": options.health_service,
            "connect_timeout": min(options.timeout, 10.0),
            "ping_interval": _PING_INTERVAL,
            "backoff_min": 0.1,
            "backoff_max": 1.0,
            # Within the probe's timeout a worker retries without the outage warning.
            "max_reconnect_attempts": 1000,
            "suppress_connection_errors": True,
        },
    )


class _Recorder:
    """Keeps the latest connect time, connect error and ping result per worker."""

    def __init__(self) -> None:
        self.connect_times: dict[str, float] = {}
        self.errors: dict[str, str] = {}
        self.pings: dict[str, str] = {}
        self.changed = threading.Condition()
        self._receivers: list[tuple[blinker.NamedSignal, Any]] = [
            (telemetry.channel_connected, self._connected),
            (telemetry.channel_connection_failed, self._failed),
            (telemetry.channel_ping, self._ping),
        ]
        for signal, receiver in self._receivers:
            signal.connect(receiver, sender=POOL_NAME, weak=False)

    def _connected(
        self, sender: str, *, measurements: dict[str, Any], metadata: dict[str, Any]
    ) -> None:
        with self.changed:
            self.connect_times[metadata["worker_id"]] = measurements["duration"]
            self.changed.notify_all()

    def _failed(
        self, sender: str, *, measurements: dict[str, Any], metadata: dict[str, Any]
    ) -> None:
        with self.changed:
            self.errors[metadata["worker_id"]] = metadata["error"]

    def _ping(self, sender: str, *, measurements: dict[str, Any], metadata: dict[str, Any]) -> None:
        with self.changed:
            self.pings[metadata["worker_id"]] = metadata["result"]
            self.changed.notify_all()

    def close(self) -> None:
        for signal, receiver in self._receivers:
            signal.disconnect(receiver, sender=POOL_NAME)


def probe(options: ProbeOptions, config: Config | None = None) -> ProbeResult:
    """Opens a pool to the endpoint, waits up to ``options.timeout``, reports, and stops it.

    Args:
        options: What to probe.
        config: ``probe_config(options)``, if the caller has checked it already.

    Raises:
        ProbeUsageError: The target is malformed or the CA file unreadable.
        ConfigError: The options do not make a valid pool configuration.
    """
    if config is None:
        config = probe_config(options)
    deadline = time.monotonic() + options.timeout
    recorder = _Recorder()
    supervisor: pykka.ActorRef[Supervisor] | None = None
    try:
        supervisor = Supervisor.start(children=[grpcpool.PoolSpec(config)])
        with contextlib.suppress(PoolTimeoutError):  # a timeout is a finding, not a failure
            grpcpool.await_ready(POOL_NAME, timeout=options.timeout, min_ready=options.size)
        service_status = None
        if grpcpool.status(POOL_NAME).current_size == options.size:
            _wait_pings(recorder, options.size, deadline)
            service_status = _check_service(options.health_service, deadline)
        status = grpcpool.status(POOL_NAME)
    finally:
        if supervisor is not None:
            supervisor.stop()
        recorder.close()
    with recorder.changed:
        connect_times, pings = dict(recorder.connect_times), dict(recorder.pings)
        errors = dict(recorder.errors)
    healthy, reason = _verdict(options, status, service_status, errors)
    if status.current_size < options.size:
        # Connections that never came may be the wrong protocol, which
        # grpc's error does not say; asked only after the pool has stopped.
        hint = tls_hint(
            config.endpoint.host,
            config.endpoint.port,
            tls=options.tls or options.ca_file is not None,
            timeout=min(options.timeout, _SNIFF_TIMEOUT),
        )
        if hint is not None:
            reason = f"{reason}; {hint}"
    return ProbeResult(healthy, reason, status, connect_times, pings, service_status)


def _wait_pings(recorder: _Recorder, size: int, deadline: float) -> None:
    """Waits, until the deadline at most, for every connection's first health ping."""
    with recorder.changed:
        recorder.changed.wait_for(
            lambda: len(recorder.pings) >= size, max(0.0, deadline - time.monotonic())
        )


def _check_service(service: str, deadline: float) -> str:
    """Asks the endpoint's health service for ``service``; returns the answer's name."""
    timeout = max(0.5, deadline - time.monotonic())
    try:
        check = health_check_method(grpcpool.get_channel(POOL_NAME))
        reply = check(health_pb2.HealthCheckRequest(service=service), timeout=timeout)
    except grpc.RpcError as error:
        code = status_code(error)
        return code.name if code is not None else type(error).__name__
    except GrpcPoolError as error:  # every connection dropped since it was ready
        return f"no connection ({error})"
    name: str = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
    return name


def _verdict(
    options: ProbeOptions,
    status: PoolStatus,
    service_status: str | None,
    errors: dict[str, str],
) -> tuple[bool, str]:
    ready = f"{status.current_size} of {options.size} connections ready"
    if status.current_size < options.size:
        last = {w.last_error for w in status.workers if w.last_error} or set(errors.values())
        why = f"; last error: {sorted(last)[0]}" if last else ""
        return False, f"{ready} after {options.timeout:g} s{why}"
    if service_status in ("SERVING", "UNIMPLEMENTED"):
        note = (
            " (no health service; reachable counts as healthy)"
            if service_status == "UNIMPLEMENTED"
            else ""
        )
        return True, f"{ready}, health {service_status}{note}"
    return (
        False,
        f"{ready}, but health check for service {options.health_service!r} says {service_status}",
    )


def report(options: ProbeOptions, result: ProbeResult) -> str:
    """The probe's findings: one row per connection, then the errors, then the health answer."""
    rows = []
    errors: dict[str, list[str]] = {}
    for worker in result.status.workers:
        connect = result.connect_times.get(worker.worker_id)
        ready = worker.state == "ready"
        rows.append(
            (
                worker.worker_id,
                worker.state,
                format_duration(connect) if connect is not None and ready else "-",
                result.pings.get(worker.worker_id, "-") if ready else "-",
                worker.peer or "-",
            )
        )
        if worker.last_error and not ready:
            errors.setdefault(worker.last_error, []).append(worker.worker_id)
    lines = [table(("connection", "state", "connect", "ping", "peer"), rows)]
    lines += [f"{', '.join(ids)}: {error}" for error, ids in errors.items()]
    if result.service_status is not None:
        lines.append(
            f"grpc.health.v1.Health/Check(service={options.health_service!r}): {result.service_status}"
        )
    return "\n".join(lines)


def main(options: ProbeOptions, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Runs the probe and prints its findings; returns the exit status.

    Findings go to ``out``; an unhealthy verdict or a usage problem goes to
    ``err`` as one line. The arguments are checked before anything is
    printed, so bad ones print only their reason.
    """
    out = out if out is not None else sys.stdout
    err = err if err is not None else sys.stderr
    try:
        config = probe_config(options)
    except (ProbeUsageError, ConfigError) as error:
        print(f"probe: {error}", file=err)
        return EXIT_USAGE
    security = "TLS" if options.tls or options.ca_file else "plaintext"
    print(
        f"probing {options.target} ({security}, {options.size} connections, "
        f"timeout {options.timeout:g} s)",
        file=out,
        flush=True,
    )
    try:
        result = probe(options, config)
    except (ProbeUsageError, ConfigError) as error:
        print(f"probe: {error}", file=err)
        return EXIT_USAGE
    except Exception as error:  # the pool itself failed: still one line, no traceback
        print(f"probe: failed: {type(error).__name__}: {error}", file=err)
        return EXIT_UNHEALTHY
    print(report(options, result), file=out, flush=True)
    if result.healthy:
        print(f"healthy: {result.reason}", file=out)
        return EXIT_HEALTHY
    print(f"unhealthy: {result.reason}", file=err)
    return EXIT_UNHEALTHY
