"""Following a service registry kept in etcd: :class:`EtcdResolver`.

``etcd.proto`` is the part of etcd's v3 API the resolver speaks (KV/Range,
Watch/Watch, Auth/Authenticate), with etcd's field numbers and, in
``etcd_pb2_grpc``, etcd's method paths (``/etcdserverpb.KV/Range``, ...);
``etcd_pb2`` and ``etcd_pb2_grpc`` are generated from it by ``make proto``
and committed, so no third-party etcd client is needed. The proto package is
grpcpool's own (``grpcpool.etcd.v3``) so that an application's copy of
etcd's generated code cannot clash with it in protobuf's registry of names.

This package sits above the public API (it runs a grpcpool pool of its own
to reach etcd).
"""

from grpcpool.etcd._resolver import EtcdResolver

__all__ = ["EtcdResolver"]
