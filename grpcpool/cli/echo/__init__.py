"""The echo service that the demo, the examples and the tests run against.

``echo.proto`` defines it; ``echo_pb2`` and ``echo_pb2_grpc`` are generated
from it by ``make proto`` and committed, so running the demo needs no code
generator. :class:`EchoServer` serves it (plus the standard health service) on
127.0.0.1 and records which peer made each call, which is how the demo shows
that a pool of N is N connections.

The generated modules require a grpcio and protobuf at least as new as the
``grpcio-tools`` that generated them; nothing in the library proper imports
this package, so only the demo and the examples carry that requirement.
"""

from grpcpool.cli.echo.server import EchoServer, say

__all__ = ["EchoServer", "say"]
