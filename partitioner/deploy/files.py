"""Files of a deployment: hashing, atomic JSON writes, and reading JSON documents nobody vouched for.

Manifests and ``model.json`` files arrive from repositories and uploads; :func:`read_json_object`
is the one way they are read: bounded in size before a byte is parsed, and any way the file can
be wrong (a directory, unreadable, binary, not JSON, an array, a repeated key, nested past any
sane depth) becomes one error line naming the file.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import stat
from pathlib import Path
from typing import Any, BinaryIO

from partitioner.errors import EdgecutError

# A manifest or model.json lists tensors, files, a plan and a breakpoint table: kilobytes, or
# a few megabytes for a large network's node lists. Past this a file is refused unread.
MAX_JSON_BYTES = 16 * 1024 * 1024


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    """Write ``data`` so that a reader sees the old file or the new one, never half of one."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.write_text(json.dumps(data, indent=2) + "\n")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)  # a failed write leaves nothing behind
        raise


def _refuse_repeated_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj: dict[str, Any] = {}
    for key, value in pairs:
        if key in obj:
            # Parsers disagree on which copy wins; a signed document must mean one thing.
            raise ValueError(f"key {key!r} appears twice in one object")
        obj[key] = value
    return obj


def parse_json_object(
    data: bytes, where: str, *, error: type[EdgecutError] = EdgecutError
) -> dict[str, Any]:
    """``data`` as a JSON object; ``error`` naming ``where`` for anything else."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise error(
            f"{where}: expected UTF-8 JSON text, got binary data (byte {exc.start} is "
            f"0x{data[exc.start]:02x})"
        ) from None
    try:
        value = json.loads(text, object_pairs_hook=_refuse_repeated_keys)
    except RecursionError:
        raise error(f"{where}: expected a JSON object, got one nested too deeply") from None
    except ValueError as exc:  # JSONDecodeError, or a repeated key
        raise error(f"{where}: expected a JSON object, got invalid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise error(f"{where}: expected a JSON object, got a JSON {_json_kind(value)}")
    return value


def _json_kind(value: Any) -> str:
    if isinstance(value, list):
        return "array"
    if isinstance(value, str):
        return "string"
    if isinstance(value, bool) or value is None:
        return "literal"
    return "number"


class NotRegularFileError(OSError):
    """A path that is a FIFO, device or socket where a file was expected."""


def open_regular(path: Path) -> BinaryIO:
    """``path`` opened for reading if it is a regular file. Opening does not block (a FIFO would
    block a plain open until a writer came); a directory raises IsADirectoryError, a FIFO,
    device or socket NotRegularFileError, and anything else what ``open`` raises."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise IsADirectoryError(errno.EISDIR, "is a directory", str(path))
        if not stat.S_ISREG(mode):
            raise NotRegularFileError(errno.EINVAL, "not a regular file", str(path))
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_bounded(
    path: Path, *, error: type[EdgecutError] = EdgecutError, max_bytes: int = MAX_JSON_BYTES
) -> bytes:
    """The bytes of file ``path``, its size checked before it is read; ``error`` otherwise."""
    try:
        with open_regular(path) as f:
            size = os.fstat(f.fileno()).st_size
            if size > max_bytes:
                raise error(f"{path}: {size} bytes, above the limit of {max_bytes} for this file")
            data = f.read(max_bytes + 1)
    except FileNotFoundError:
        raise error(f"{path}: no such file") from None
    except IsADirectoryError:
        raise error(f"{path}: expected a JSON file, got a directory") from None
    except NotRegularFileError:
        raise error(f"{path}: expected a JSON file, got a device, FIFO or socket") from None
    except PermissionError:
        raise error(f"{path}: cannot be read (permission denied)") from None
    except OSError as exc:
        raise error(f"{path}: cannot be read: {exc.strerror or exc}") from None
    if len(data) > max_bytes:  # grew while being read
        raise error(f"{path}: above the limit of {max_bytes} bytes for this file")
    return data


def read_json_object(
    path: Path, *, error: type[EdgecutError] = EdgecutError, max_bytes: int = MAX_JSON_BYTES
) -> dict[str, Any]:
    """The JSON object in file ``path`` (:func:`read_bounded`, :func:`parse_json_object`)."""
    return parse_json_object(
        read_bounded(path, error=error, max_bytes=max_bytes), str(path), error=error
    )
