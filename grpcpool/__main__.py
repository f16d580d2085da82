"""Command line entry point: ``python -m grpcpool demo``."""

from __future__ import annotations

import sys


def main(argv: list[str]) -> int:
    if argv[:1] != ["demo"]:
        print("usage: python -m grpcpool demo", file=sys.stderr)
        return 2
    print("The demo is not built yet.", file=sys.stderr)
    return 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
