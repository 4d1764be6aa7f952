"""Argument types, and the arguments shared by the commands that plan (profile, plan, split,
compress, demo).

Every value a user types is checked here, while argparse parses it, so that a mistake is one
line and exit 2 before any model is loaded or any file is written: a file to read exists, is a
regular file, can be read and holds text; a file to write has an existing directory to go in
and is not a directory; a number is finite and in its range. What the values may mean
(devices, networks, codecs) is checked where a planner is made
(:meth:`partitioner.planner.Planner.create`); the objectives and solvers a flag offers are
read from the packages that define them.
"""

from __future__ import annotations

import argparse
import codecs
import math
import os
import re
import stat
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, NoReturn

from partitioner.deploy.files import NotRegularFileError, open_regular

# gRPC keeps its message limit in a C int: 2 GiB - 1 bytes. --max-message-mb stays below it.
MAX_MESSAGE_MB = 2047
# torch accepts any thread count and crashes creating a million; no host has more cores.
MAX_THREADS = 1024
# Bytes of an input text file read to tell text from binary before its loader reads it all.
TEXT_SNIFF_BYTES = 1 << 20


def _refuse(message: str) -> NoReturn:
    raise argparse.ArgumentTypeError(message)


def _number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        _refuse(f"expected a number, got {text!r}")
    if not math.isfinite(value):
        _refuse(f"expected a finite number, got {text!r}")
    return value


def finite_float(text: str) -> float:
    """Any finite number; the planner checks the range of the values it owns (bandwidth, RTT)."""
    return _number(text)


def positive_float(text: str) -> float:
    value = _number(text)
    if not value > 0:
        _refuse(f"must be > 0, got {text}")
    return value


def non_negative_float(text: str) -> float:
    value = _number(text)
    if value < 0:
        _refuse(f"must be >= 0, got {text}")
    return value


def _integer(text: str, expected: str = "an integer") -> int:
    try:
        return int(text)
    except ValueError:
        _refuse(f"expected {expected}, got {text!r}")


def positive_int(text: str) -> int:
    value = _integer(text)
    if value < 1:
        _refuse(f"must be >= 1, got {value}")
    return value


def int_in_range(lo: int, hi: int, why: str = "") -> Callable[[str], int]:
    """An argparse type: an integer in ``lo..hi`` (both included); ``why`` explains the bound."""
    reason = f" ({why})" if why else ""

    def parse(text: str) -> int:
        value = _integer(text, f"an integer in {lo}..{hi}")
        if not lo <= value <= hi:
            _refuse(f"expected an integer in {lo}..{hi}{reason}, got {value}")
        return value

    parse.__name__ = f"int_in_range({lo}, {hi})"
    return parse


def port_number(text: str) -> int:
    value = _integer(text, "a port number")
    if not 0 <= value <= 65535:
        _refuse(f"expected a port in 0..65535 (0 picks a free one), got {value}")
    return value


def check_listen_port(flag: str, host: str, port: int) -> None:
    """Refuse, in one line naming ``flag``, a port another process already listens on.

    A node checks its ports before it loads anything, so a port in use costs no model load
    and no server log. The server's own bind stays the authority (the port may be taken
    between this check and the bind); an address this machine does not have is left to it.
    """
    import errno
    import socket

    from partitioner.errors import EdgecutError

    if port == 0:
        return
    bare = host.strip("[]") or None  # "" binds every interface
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            bare, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except (OSError, UnicodeError):
        return
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as servers bind
        try:
            probe.bind(address)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise EdgecutError(
                    f"{flag} {port}: expected a free port, but {host or '*'}:{port} is in use by "
                    "another process; stop it or choose another port (0 picks a free one)"
                ) from None
            if exc.errno == errno.EACCES:
                raise EdgecutError(
                    f"{flag} {port}: binding {host or '*'}:{port} is not permitted "
                    "(ports below 1024 need privileges); choose a port above 1023"
                ) from None


threads = int_in_range(1, MAX_THREADS, "torch threads")
message_mb = int_in_range(1, MAX_MESSAGE_MB, "gRPC limits a message to under 2 GiB")


def bandwidth_range(text: str) -> tuple[float, float]:
    lo, sep, hi = text.partition(":")
    try:
        low, high = float(lo), float(hi)
    except ValueError:
        _refuse(f"expected LO:HI in Mbit/s such as 1:100, got {text!r}")
    if not sep or not (0 < low < high < math.inf):
        _refuse(f"expected LO:HI with 0 < LO < HI, both finite, got {text!r}")
    return low, high


_SHAPE_EXPECTED = "N,C,H,W with the batch first, e.g. 1,3,224,224"


def input_shape(text: str) -> tuple[int, ...]:
    """``--input-shape``: ``1,3,224,224``, or ``1x3x224x224`` as ``edgecut models`` prints it.

    The batch comes first and is 1: a plan prices one frame, and a shape without its batch
    (``3,224,224``) is refused here rather than traced as a batch of three.
    """
    # parse_input_shape is the one parser of shapes; its module imports torch, which only
    # the commands taking --input-shape need.
    from partitioner.errors import ModelSpecError
    from partitioner.model.spec import parse_input_shape

    commas = text if "," in text else re.sub(r"\s*[xX×]\s*", ",", text)
    try:
        shape = parse_input_shape(commas)
    except ModelSpecError:
        _refuse(f"expected {_SHAPE_EXPECTED} (or 1x3x224x224); got {text!r}")
    if shape[0] != 1:
        _refuse(
            f"expected {_SHAPE_EXPECTED}; got {text!r}, whose first number ({shape[0]}) "
            "would be the batch: a plan is for one frame, N = 1"
        )
    return shape


def _what_is(path: Path) -> str:
    """What a path that is not a regular file is, for an error message."""
    try:
        mode = path.stat().st_mode
    except OSError:
        return "something that cannot be examined"
    for test, name in (
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISFIFO, "a named pipe"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    ):
        if test(mode):
            return name
    return "not a regular file"


def _missing(path: Path, noun: str = "file") -> str:
    """Why ``path`` does not exist: no such ``noun``, or no such directory on the way to it."""
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        top, parent = parent, parent.parent
        if parent.exists():
            return f"no such directory {str(top)!r}"
    if parent.exists() and not parent.is_dir():
        return f"{str(parent)!r} is a file, not a directory"
    return f"no such {noun}"


def input_file(kind: str) -> Callable[[str], str]:
    """An argparse type: the path of an existing, readable regular file of UTF-8 text.

    ``kind`` says what the file should be ("a JSON plan file"). A FIFO, device or socket is
    refused unopened (reading one would block); the first MiB must be UTF-8 without NUL bytes.
    """

    def parse(text: str) -> str:
        path = Path(text)
        expected = f"expected {kind}"
        try:
            with open_regular(path) as f:
                head = f.read(TEXT_SNIFF_BYTES)
        except FileNotFoundError:
            _refuse(f"{expected}; got {text!r}: {_missing(path)}")
        except NotADirectoryError:
            _refuse(f"{expected}; got {text!r}: {_missing(path)}")
        except (IsADirectoryError, NotRegularFileError):
            _refuse(f"{expected}; got {text!r}, {_what_is(path)}")
        except PermissionError:
            _refuse(f"{expected}; got {text!r}, which cannot be read (permission denied)")
        except OSError as exc:
            _refuse(f"{expected}; got {text!r}, which cannot be read: {exc.strerror or exc}")
        binary = _binary_at(head)
        if binary is not None:
            _refuse(
                f"{expected}, which is text; got binary data in {text!r} "
                f"(byte 0x{head[binary]:02x} at offset {binary} is not UTF-8 text)"
            )
        return text

    parse.__name__ = f"input_file({kind!r})"
    return parse


def _binary_at(head: bytes) -> int | None:
    """Offset of the first byte that makes ``head`` (the start of a file) not UTF-8 text."""
    nul = head.find(b"\0")
    try:
        # final=False: a character cut at the end of the sniffed bytes is not an error.
        codecs.getincrementaldecoder("utf-8")().decode(head, final=False)
    except UnicodeDecodeError as exc:
        return exc.start if nul < 0 else min(exc.start, nul)
    return None if nul < 0 else nul


def input_dir(kind: str) -> Callable[[str], str]:
    """An argparse type: the path of an existing directory (``kind``: "a split artifact
    directory")."""

    def parse(text: str) -> str:
        path = Path(text)
        if not path.exists():
            _refuse(f"expected {kind}; got {text!r}: {_missing(path, 'directory')}")
        if not path.is_dir():
            _refuse(f"expected {kind}; got {text!r}, a file")
        if not os.access(path, os.R_OK | os.X_OK):
            _refuse(f"expected {kind}; got {text!r}, which cannot be read")
        return text

    parse.__name__ = f"input_dir({kind!r})"
    return parse


def output_file(kind: str, *, suffix: str | None = None) -> Callable[[str], str]:
    """An argparse type: a file path to write ``kind`` to, in an existing directory we may write.

    The path may name an existing regular file (it is replaced), never a directory, FIFO or
    device; with ``suffix`` it must end so (case-insensitive).
    """

    def parse(text: str) -> str:
        path = Path(text)
        expected = f"expected a file name for {kind}"
        if suffix and not text.lower().endswith(suffix):
            _refuse(f"{expected} ending in {suffix}; got {text!r}")
        if text.endswith(("/", os.sep)) or path.is_dir():
            _refuse(f"{expected}; got {text!r}, a directory")
        if path.exists() and not path.is_file():
            _refuse(f"{expected}; got {text!r}, {_what_is(path)}")
        parent = path.parent
        if not parent.is_dir():
            _refuse(f"{expected} in an existing directory; got {text!r}: {_missing(path)}")
        if not os.access(parent, os.W_OK | os.X_OK):
            _refuse(f"{expected} in a directory it may write; {str(parent)!r} is not writable")
        return text

    parse.__name__ = f"output_file({kind!r})"
    return parse


def output_dir(kind: str) -> Callable[[str], str]:
    """An argparse type: a directory to write ``kind`` into, made with its parents if missing.

    Refused: an existing file at the path or on the way to it, or a directory we may not write.
    """

    def parse(text: str) -> str:
        path = Path(text)
        expected = f"expected a directory for {kind}"
        existing = path
        while not existing.exists() and existing != existing.parent:
            existing = existing.parent
        if not existing.is_dir():
            what = "a file" if existing.is_file() else _what_is(existing)
            where = "" if existing == path else f" on the way to {text!r}"
            _refuse(f"{expected}; got {str(existing)!r}, {what}{where}")
        if not os.access(existing, os.W_OK | os.X_OK):
            _refuse(f"{expected}; {str(existing)!r} is not writable")
        return text

    parse.__name__ = f"output_dir({kind!r})"
    return parse


class LazyChoices:
    """argparse ``choices`` read from the package that defines them when first consulted,
    so building the parser (every ``edgecut`` start) imports neither numpy nor numba.
    """

    def __init__(self, load: Callable[[], Sequence[str]]) -> None:
        self._load = load

    def __contains__(self, value: object) -> bool:
        return value in self._load()

    def __iter__(self) -> Iterator[str]:
        return iter(self._load())


def objective_names() -> Sequence[str]:
    from partitioner.pricing.cost import OBJECTIVES  # numpy: only once the flag is read

    return OBJECTIVES


def solver_names() -> Sequence[str]:
    from partitioner.solve import SOLVERS  # numba: only once the flag is read

    return SOLVERS.names()


def read_plan_json(path: str) -> dict[str, Any]:
    """The JSON object of a plan file (``edgecut plan --out``), checked against the plan's
    schema (the one a manifest's plan is held to), with one-line errors."""
    from partitioner.deploy.files import read_json_object
    from partitioner.deploy.schema import PlanEntry, validate
    from partitioner.errors import EdgecutError

    try:
        data = read_json_object(Path(path))
        validate(PlanEntry, data, path, EdgecutError)
    except EdgecutError as exc:
        raise EdgecutError(f"--plan {exc} (a plan from `edgecut plan --out`)") from None
    return data


PLAN_FILE = input_file("a JSON plan file (from `edgecut plan --out`)")
SCENARIO_FILE = input_file("a YAML scenario file")


def add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--model",
        required=True,
        help="zoo name (edgecut models), pkg.module:factory or path/to/file.py:factory",
    )
    p.add_argument(
        "--input-shape",
        type=input_shape,
        metavar="N,C,H,W",
        help="input shape, batch first, e.g. 1,3,224,224 or 1x3x224x224 (zoo default)",
    )


def add_host_threads_arg(p: argparse.ArgumentParser) -> None:
    """``--threads`` for a command that measures on this machine (device ``host``)."""
    p.add_argument(
        "--threads",
        type=threads,
        metavar="N",
        help="torch threads while measuring on host (default 1, partitioner.pricing.host."
        "HOST_THREADS: a figure that does not depend on how many cores are idle, so runs "
        "agree; to price a node, pass the --threads it runs with)",
    )


def add_plan_args(p: argparse.ArgumentParser) -> None:
    add_model_args(p)
    p.add_argument("--edge", default="rpi4", help="edge device preset or host (default rpi4)")
    p.add_argument("--cloud", default="x86-server", help="cloud device preset (default x86-server)")
    p.add_argument(
        "--network",
        default="lte",
        help="network preset, packaged trace or trace file (default lte)",
    )
    p.add_argument(
        "--bandwidth-mbps", type=finite_float, help="uplink Mbit/s (overrides --network)"
    )
    p.add_argument("--rtt-ms", type=finite_float, help="round trip ms (overrides --network)")
    p.add_argument(
        "--objective",
        default="latency",
        choices=LazyChoices(objective_names),
        metavar="NAME",  # argparse would list the choices at start-up to build a metavar
        help="what to minimise: %(choices)s (default %(default)s)",
    )
    p.add_argument(
        "--solver",
        default="auto",
        choices=LazyChoices(solver_names),
        metavar="NAME",
        help="%(choices)s (default %(default)s)",
    )
    p.add_argument(
        "--codec",
        default="none",
        help="feature codec for crossing tensors: none, fp16, int8, or with a lossless stage "
        "such as int8+zstd (default none)",
    )
    p.add_argument("--edge-dtype", help="compute dtype on the edge (device default, e.g. int8)")


def make_planner(args: argparse.Namespace) -> Any:
    """The planner the plan arguments describe; Planner.create checks them before capturing."""
    from partitioner.planner import Planner

    return Planner.create(
        args.model,
        edge=args.edge,
        cloud=args.cloud,
        network=args.network,
        bandwidth_mbps=args.bandwidth_mbps,
        rtt_ms=args.rtt_ms,
        codec=args.codec,
        input_shape=args.input_shape,
        edge_dtype=getattr(args, "edge_dtype", None),
        threads=getattr(args, "threads", None),
    )
