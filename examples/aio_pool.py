"""An asyncio pool: ``grpcpool.aio.Pool`` on the running event loop.

A pool of 3 ``grpc.aio`` channels, one task per connection and no thread per
connection. A stub is built once on ``pool.channel()``, which routes each
call to a ready connection; ``get_channel()`` hands out one ready channel.
The server is then stopped and started again on the same port: a call made
with ``wait_for_ready=True`` waits for the pool to reconnect and answers.

Run from the repository root::

    .venv/bin/python examples/aio_pool.py
"""

from __future__ import annotations

import os

# grpcio prints INFO lines on stderr unless told otherwise; an application
# sets this before grpc is imported.
os.environ.setdefault("GRPC_VERBOSITY", "ERROR")

import asyncio
import time

import grpc

import grpcpool
import grpcpool.aio
from grpcpool.cli.echo import EchoServer  # the demo's service, standing in for yours
from grpcpool.cli.echo.echo_pb2 import EchoRequest
from grpcpool.cli.echo.echo_pb2_grpc import EchoStub


def config(port: int) -> grpcpool.Config:
    # Short backoff so the restart below is over quickly (the default is 1 s to 30 s).
    return grpcpool.Config.new(
        endpoint={"type": "local", "host": "127.0.0.1", "port": port},
        pool={"size": 3},
        connection={"backoff_min": 0.1, "backoff_max": 0.5},
    )


async def main() -> None:
    server = EchoServer()
    port = server.port
    try:
        async with grpcpool.aio.Pool(config(port), name="echo") as pool:
            await pool.await_ready(timeout=5.0, min_ready=3)

            # Built once: each call picks a ready connection when it starts.
            stub = EchoStub(pool.channel())
            replies = await asyncio.gather(
                *(stub.Say(EchoRequest(text=f"call {n}"), timeout=5.0) for n in range(30))
            )
            print(f"30 concurrent calls over {len({r.peer for r in replies})} connections")

            # One ready grpc.aio.Channel, e.g. for a stub used right away.
            channel = pool.get_channel()
            reply = await EchoStub(channel).Say(EchoRequest(text="direct"), timeout=5.0)
            kind = "a grpc.aio.Channel" if isinstance(channel, grpc.aio.Channel) else "?"
            print(f"get_channel() gave {kind}; its reply: {reply.text!r}")
            status = grpcpool.aio.status("echo")
            print(f"status: {status.status}, {status.current_size}/{status.expected_size} ready")

            server.stop()  # every connection drops at once
            try:
                await stub.Say(EchoRequest(text="anyone?"), timeout=1.0)
            except grpc.RpcError as error:
                print(f"server down: the call failed with {error.code().name}")
            server = EchoServer(port=port)  # back on the same port
            restarted = time.monotonic()
            reply = await stub.Say(EchoRequest(text="back?"), timeout=5.0, wait_for_ready=True)
            print(
                f"server back: the same stub answered {reply.text!r} "
                f"{(time.monotonic() - restarted) * 1000:.0f} ms after the restart"
            )
            await pool.await_ready(timeout=5.0, min_ready=3)
            print(f"status: {pool.status().status}, {pool.status().current_size}/3 ready")
        print("pool stopped, every channel closed")
    finally:
        server.stop()


if __name__ == "__main__":
    asyncio.run(main())
