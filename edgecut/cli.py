"""Entry point of the ``edgecut`` console script.

User errors (:class:`partitioner.errors.EdgecutError`, bad arguments) print one
line to stderr and exit with code 2; anything else is a bug and keeps its
traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from collections.abc import Sequence
from typing import NoReturn

from edgecut import __version__
from edgecut.commands import COMMANDS

EXIT_USAGE = 2


class _Parser(argparse.ArgumentParser):
    """argparse that reports a bad argument in one line (and still exits 2)."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="edgecut",
        description="Split DNNs between edge devices and the cloud: plan, compress, serve, simulate.",
    )
    parser.add_argument("--version", action="version", version=f"edgecut {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for module in COMMANDS:
        module.register(sub)
    return parser


def _quiet_library_warnings() -> None:
    """Hide deprecation notices raised inside torch and friends (not actionable by a user).

    Set PYTHONWARNINGS to see them again.
    """
    if not os.environ.get("PYTHONWARNINGS"):
        warnings.filterwarnings("ignore", category=FutureWarning)
        warnings.filterwarnings("ignore", category=DeprecationWarning)


def main(argv: Sequence[str] | None = None) -> int:
    _quiet_library_warnings()
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "run", None):
        parser.print_help()
        return EXIT_USAGE
    from partitioner.errors import EdgecutError

    try:
        return int(args.run(args) or 0)
    except EdgecutError as exc:
        message = " ".join(str(exc).split())
        print(f"edgecut {args.command}: error: {message}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"edgecut {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
