"""Telemetry to the standard ``logging`` module.

Every pool event is a blinker signal (``grpcpool.telemetry``). This script
connects one receiver per event that logs it, at WARNING for connection
trouble and INFO for the rest, then makes the pool produce events: it starts,
serves calls, loses its server, reconnects when the server comes back, and is
scaled up.

The library also logs connection problems itself, at ERROR on the
``grpcpool`` logger (``connection.suppress_connection_errors=True`` moves them
to DEBUG); they show up below too.

Two ways to connect a receiver are shown. A module-level function can use
the decorator form; blinker holds receivers weakly by default, so a receiver
made on the fly (a lambda, a closure) must be connected with ``weak=False``
or it is garbage-collected at once and silently never called.

Run from the repository root::

    .venv/bin/python examples/telemetry_logging.py
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

# grpcio prints INFO lines on stderr unless told otherwise; an application
# sets this before grpc is imported.
os.environ.setdefault("GRPC_VERBOSITY", "ERROR")

import blinker

import grpcpool
from grpcpool import Config, PoolSpec, Supervisor, telemetry
from grpcpool.cli.echo import EchoServer, say  # the demo's service, standing in for yours

log = logging.getLogger("myapp.grpcpool")

TROUBLE = {"channel.connection_failed", "channel.connection_down", "channel.disconnected"}
# One line per call would drown the rest; these go to DEBUG.
CHATTY = {"pool.get_channel", "channel.ping", "pool.status"}


def log_receiver(event: str) -> Any:
    """A receiver that logs ``event`` at a level that fits it."""
    short = event.removeprefix("grpc_connection_pool.")
    level = (
        logging.WARNING if short in TROUBLE else logging.DEBUG if short in CHATTY else logging.INFO
    )

    def receive(pool_name: str, *, measurements: dict[str, Any], metadata: dict[str, Any]) -> None:
        details = {k: round(v, 4) if isinstance(v, float) else v for k, v in measurements.items()}
        details.update((k, v) for k, v in metadata.items() if k != "pool_name")
        log.log(level, "%s %s %s", pool_name, short, details)

    return receive


@telemetry.pool_scale_up.connect
def on_scale_up(pool_name: str, measurements: dict[str, Any], metadata: dict[str, Any]) -> None:
    """The decorator form, for a function that lives as long as the module."""
    log.info(
        "%s grew to %d workers in %.1f ms",
        pool_name,
        measurements["new_size"],
        measurements["duration"] * 1000,
    )


def main() -> None:
    logging.basicConfig(
        level=logging.INFO, stream=sys.stdout, format="%(levelname)-7s %(name)s: %(message)s"
    )
    receivers = []
    for event in telemetry.EVENTS:
        receiver = log_receiver(event)
        blinker.signal(event).connect(receiver, weak=False)  # a closure: weak=False
        receivers.append((event, receiver))
    # A lambda only for the "orders" pool (the sender is the pool name).
    telemetry.pool_init.connect(
        lambda pool_name, **kw: log.info("hello from %s", pool_name), sender="orders", weak=False
    )

    server = EchoServer()
    port = server.port
    config = Config.new(
        endpoint={"type": "local", "host": "127.0.0.1", "port": port},
        pool={"size": 2, "name": "orders"},
        # Small backoff so the script reconnects within a second.
        connection={"backoff_min": 0.1, "backoff_max": 0.5},
    )
    supervisor = Supervisor.start(children=[PoolSpec(config)])
    try:
        grpcpool.await_ready("orders", timeout=5.0, min_ready=2)
        for n in range(4):
            say(grpcpool.get_channel("orders"), f"order {n}")
        log.info("stopping the server")
        server.stop()
        server = EchoServer(port=port)
        log.info("server back on port %d", port)
        grpcpool.await_ready("orders", timeout=5.0, min_ready=2)
        grpcpool.scale_up("orders", 1)
        grpcpool.await_ready("orders", timeout=5.0, min_ready=3)
        log.info("status: %s", grpcpool.status("orders").status)
    finally:
        supervisor.stop()
        server.stop()
        for event, receiver in receivers:
            blinker.signal(event).disconnect(receiver)


if __name__ == "__main__":
    main()
