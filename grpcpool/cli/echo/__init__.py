"""The echo service that the demo, the examples and the tests run against.

``echo.proto`` defines it; ``echo_pb2`` and ``echo_pb2_grpc`` are generated
from it by ``make proto`` and committed, so running the demo needs no code
generator. :class:`EchoServer` serves it (plus the standard health service) on
127.0.0.1 and records which peer made each call, which is how the demo shows
that a pool of N is N connections.

``make proto`` generates them with the oldest supported ``grpcio-tools``,
whose output carries no runtime version check, so they import on every grpcio
and protobuf the library supports and never raise its floors.
"""

from grpcpool.cli.echo.server import EchoServer, say

__all__ = ["EchoServer", "say"]
