"""``python -m grpcpool demo|probe``: the command line, kept in :mod:`grpcpool.cli`."""

from grpcpool.cli import main, quiet_grpc_core

if __name__ == "__main__":
    quiet_grpc_core()
    raise SystemExit(main())
