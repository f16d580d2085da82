"""Several named pools in one process, each to its own endpoint.

Two pools start together under one Supervisor; a third is started later
under the process-wide default supervisor with ``grpcpool.start`` and removed
with ``grpcpool.stop``. Each call goes to the server of the pool it was taken
from, and each server sees as many connections as its pool has channels.

Run from the repository root::

    .venv/bin/python examples/multiple_pools.py
"""

from __future__ import annotations

import os

# grpcio prints INFO lines on stderr unless told otherwise; an application
# sets this before grpc is imported.
os.environ.setdefault("GRPC_VERBOSITY", "ERROR")

import grpcpool
from grpcpool import Config, PoolSpec, Supervisor
from grpcpool.cli.echo import EchoServer, say  # the demo's service, standing in for yours


def local(port: int, size: int) -> Config:
    return Config.local(host="127.0.0.1", port=port, pool_size=size)


def main() -> None:
    with EchoServer() as users, EchoServer() as billing, EchoServer() as reports:
        supervisor = Supervisor.start(
            children=[
                PoolSpec(local(users.port, 3), name="users"),
                PoolSpec(local(billing.port, 2), name="billing"),
            ]
        )
        try:
            grpcpool.await_ready("users", timeout=5.0, min_ready=3)
            grpcpool.await_ready("billing", timeout=5.0, min_ready=2)

            # The hot path: a module function, no actor round trip.
            for n in range(9):
                say(grpcpool.get_channel("users"), f"user {n}")
            # The same through a pool proxy, pykka style: a resolved future.
            billing_pool = grpcpool.pool("billing")
            for n in range(4):
                say(billing_pool.get_channel().get(), f"invoice {n}")

            # A pool can also live under the default supervisor, on its own.
            grpcpool.start(local(reports.port, 1), name="reports")
            grpcpool.await_ready("reports", timeout=5.0)
            say(grpcpool.get_channel("reports"), "monthly")

            for name, server in (("users", users), ("billing", billing), ("reports", reports)):
                counts = server.peer_counts()
                status = grpcpool.status(name)
                print(
                    f"pool {name!r}: {status.status}, {status.current_size}/{status.expected_size} "
                    f"ready; its server: calls={sum(counts.values())}, connections={len(counts)}"
                )
            grpcpool.stop("reports")
            print(f"after grpcpool.stop('reports'): {grpcpool.pool('users')!r} still runs")
        finally:
            supervisor.stop()  # both pools down, every channel closed
    print("all pools stopped")


if __name__ == "__main__":
    main()
