"""Command line: ``python -m grpcpool demo`` and ``python -m grpcpool probe HOST:PORT``.

Both commands end with an exit status and, on failure, one line saying why:
they are meant for terminals and scripts, so no traceback reaches the user.
The subcommands are imported only when chosen, so ``probe`` works even where
the demo's generated echo code cannot be loaded.

``grpcpool/__main__.py`` calls :func:`quiet_grpc_core` and then :func:`main`;
tests call :func:`main` in-process.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 1, got {text!r}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not 0 < value < float("inf"):  # also refuses nan
        raise argparse.ArgumentTypeError(f"must be a number > 0, got {text!r}")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m grpcpool", description="grpcpool: a supervised pool of gRPC channels."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = commands.add_parser(
        "demo",
        help="run a pool against a local server that is killed and restarted",
        description="Starts an echo server on 127.0.0.1 and a pool under a Supervisor, "
        "kills and restarts the server, scales the pool, and narrates it all "
        "with the telemetry events as they fire.",
    )
    demo.add_argument(
        "--size",
        type=_positive_int,
        default=4,
        metavar="N",
        help="pool size (default 4, at most 32)",
    )
    demo.add_argument(
        "--seconds",
        type=_positive_float,
        default=2.0,
        metavar="S",
        help="seconds the server stays down (default 2, at most 10)",
    )
    demo.add_argument("--quiet", action="store_true", help="do not print each telemetry event")
    demo.add_argument(
        "--aio",
        action="store_true",
        help="the asyncio pool (grpcpool.aio) instead: a shorter story on one event loop",
    )

    probe = commands.add_parser(
        "probe",
        help="check that an endpoint accepts a pool's connections and is healthy",
        description="Opens a pool to HOST:PORT, waits for every connection, and reports "
        "per-connection connect time, health and peer. Exits 0 if the endpoint is "
        "healthy, 1 if not, 2 on bad arguments.",
    )
    probe.add_argument("target", metavar="HOST:PORT", help="the endpoint, e.g. 127.0.0.1:50051")
    probe.add_argument(
        "--tls", action="store_true", help="use TLS, verifying against the system roots"
    )
    probe.add_argument(
        "--ca", metavar="FILE", help="PEM roots to verify the server with (implies --tls)"
    )
    probe.add_argument(
        "--size", type=_positive_int, default=2, metavar="N", help="connections to open (default 2)"
    )
    probe.add_argument(
        "--health-service",
        default="",
        metavar="S",
        help="service name for grpc.health.v1.Health/Check (default: the whole server)",
    )
    probe.add_argument(
        "--timeout",
        type=_positive_float,
        default=5.0,
        metavar="T",
        help="seconds to wait for every connection (default 5)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """Runs a subcommand; returns the process exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "demo":
            return _demo(parser, args)
        return _probe(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


def _demo(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    if args.size > 32:
        parser.error("demo: --size must be at most 32")
    if args.seconds > 10:
        parser.error("demo: --seconds must be at most 10")
    try:
        from grpcpool.cli import _demo, _demo_aio
    except Exception as error:  # the generated code refuses an older grpcio/protobuf
        print(f"demo: cannot load the echo service: {error}", file=sys.stderr)
        return EXIT_FAILED
    try:
        if args.aio:
            options = _demo_aio.AioDemoOptions(
                size=args.size, seconds=args.seconds, quiet=args.quiet
            )
            _demo_aio.run(options)
            return EXIT_OK
        _demo.run(_demo.DemoOptions(size=args.size, seconds=args.seconds, quiet=args.quiet))
    except Exception as error:
        print(f"demo failed: {_demo.describe_error(error)}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


def _probe(args: argparse.Namespace) -> int:
    from grpcpool.cli import _probe

    return _probe.main(
        _probe.ProbeOptions(
            target=args.target,
            tls=args.tls or args.ca is not None,
            ca_file=args.ca,
            size=args.size,
            health_service=args.health_service,
            timeout=args.timeout,
        )
    )


def quiet_grpc_core() -> None:
    """Re-runs this command with ``GRPC_VERBOSITY=ERROR`` unless the user chose a level.

    grpc's C core reads ``GRPC_VERBOSITY`` when grpcio is imported, which
    ``python -m grpcpool`` has done (through the package) before the command
    line runs, so setting it here would be too late. Left unset, current grpcio
    prints INFO lines such as "Got goaway" and every failed TLS handshake on
    stderr, drowning the one-line verdicts these commands promise. A level the
    user set is kept.
    """
    if "GRPC_VERBOSITY" in os.environ or os.name != "posix":
        return
    sys.stdout.flush()
    sys.stderr.flush()
    with contextlib.suppress(OSError):  # if exec fails, run as we are
        os.execve(sys.executable, sys.orig_argv, {**os.environ, "GRPC_VERBOSITY": "ERROR"})
