"""The command line and its demo, kept apart from the library.

``python -m grpcpool demo`` runs a pool against a local echo server that is
killed and restarted; ``python -m grpcpool probe HOST:PORT`` checks that an
endpoint accepts a pool's connections and is healthy. The echo service they
and the examples use is :mod:`grpcpool.cli.echo`. Nothing in the library
imports this package, and importing it loads neither the demo nor the echo
service's generated code: each subcommand is loaded only when chosen.
"""

from grpcpool.cli._main import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    main,
    quiet_grpc_core,
)

__all__ = ["EXIT_FAILED", "EXIT_INTERRUPTED", "EXIT_OK", "EXIT_USAGE", "main", "quiet_grpc_core"]
