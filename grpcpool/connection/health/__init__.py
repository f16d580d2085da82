"""The gRPC health checking protocol (``grpc.health.v1``), as grpcpool ships it.

``health.proto`` defines the protocol's messages and its ``Health`` service
(``Check`` and ``Watch``); ``health_pb2`` and ``health_pb2_grpc`` are generated
from it by ``make proto`` with the oldest supported grpcio-tools, whose output
carries no runtime version check, and committed. grpcpool carries this code
instead of depending on grpcio-health-checking: the newest release of that
package pins the newest grpcio and protobuf, so installing grpcpool upgraded
both under an application that had pinned them.

The proto package is ``grpcpool.health.v1``, not the protocol's: protobuf
keeps one registry of message names per process, and grpcio-health-checking,
or an application's own copy of health.proto (of any version), may have put
``grpc.health.v1.HealthCheckRequest`` there already; every protobuf
implementation refuses a second file that defines it. Message names never
reach the wire. The method paths do, and they are the protocol's
(``/grpc.health.v1.Health/Check`` and ``/Watch``, which ``make proto`` writes
into ``health_pb2_grpc``), as are the fields and their numbers, so every gRPC
health server answers these calls and every health client reads the demo
server's answers.
"""
