"""Regenerates the Python code of every ``protos/**/*.proto``: ``python -m protos.generate``.

Writes ``_pb2.py`` and ``_pb2_grpc.py`` (grpcio-tools) and their ``.pyi`` stubs (mypy-protobuf)
beside each source; ``--check`` regenerates into a temporary directory instead and exits 1,
naming every stale, missing or orphaned file, when the checked-in code is not exactly fresh.
"""

from __future__ import annotations

import argparse
import filecmp
import importlib.metadata
import re
import shlex
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
PROTO_DIR = "protos"  # the proto include root is REPO_ROOT, so paths mirror the package
GENERATED_SUFFIXES = ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py", "_pb2_grpc.pyi")

# The plugins are written as tiny shell scripts that run mypy-protobuf with this
# interpreter, so generation does not depend on PATH or on a venv's bin/ layout.
_PLUGINS = {"protoc-gen-mypy": "main", "protoc-gen-mypy_grpc": "grpc"}


class GenerationError(RuntimeError):
    """protoc failed, or a tool that generation needs is missing."""


def proto_sources(root: Path = REPO_ROOT) -> list[Path]:
    """The .proto files under ``root/protos``, relative to ``root``, sorted."""
    return sorted(p.relative_to(root) for p in (root / PROTO_DIR).rglob("*.proto"))


def expected_outputs(sources: Sequence[Path]) -> list[Path]:
    """The generated files the given sources produce, relative to the include root."""
    outputs = []
    for source in sources:
        stem = source.with_suffix("")
        outputs += [stem.with_name(stem.name + suffix) for suffix in GENERATED_SUFFIXES]
    return sorted(outputs)


def tool_versions() -> dict[str, str]:
    """Versions of the generators; they stamp their output, so CI must pin them."""
    versions = {}
    for dist in ("grpcio-tools", "mypy-protobuf", "protobuf"):
        try:
            versions[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            versions[dist] = "not installed"
    return versions


def generate(out_dir: Path, root: Path = REPO_ROOT) -> list[Path]:
    """Run protoc on every source under ``root`` into ``out_dir``; return the files written."""
    try:
        import grpc_tools
        from grpc_tools import protoc
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise GenerationError("grpcio-tools is not installed (pip install -e '.[test]')") from exc
    try:
        import mypy_protobuf.main  # noqa: F401
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise GenerationError("mypy-protobuf is not installed (pip install -e '.[test]')") from exc

    sources = proto_sources(root)
    if not sources:
        raise GenerationError(f"no .proto files under {root / PROTO_DIR}")
    well_known = Path(grpc_tools.__file__).parent / "_proto"  # google/protobuf/*.proto
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="protoc-plugins-") as plugin_dir:
        plugin_args = [
            f"--plugin={name}={_write_plugin(Path(plugin_dir), name, entry)}"
            for name, entry in _PLUGINS.items()
        ]
        # Absolute source paths under --proto_path=root map to root-relative virtual
        # paths, so the output never depends on the working directory.
        args = [
            "grpc_tools.protoc",
            f"--proto_path={root}",
            f"--proto_path={well_known}",
            f"--python_out={out_dir}",
            f"--grpc_python_out={out_dir}",
            f"--mypy_out=quiet:{out_dir}",
            f"--mypy_grpc_out=quiet:{out_dir}",
            *plugin_args,
            *(str(root / s) for s in sources),
        ]
        status = protoc.main(args)
    if status != 0:
        raise GenerationError(f"protoc exited with status {status} (its message is above)")
    written = expected_outputs(sources)
    missing = [p for p in written if not (out_dir / p).is_file()]
    if missing:
        raise GenerationError(f"protoc did not write: {', '.join(map(str, missing))}")
    return written


def _write_plugin(directory: Path, name: str, entry: str) -> Path:
    script = directory / name
    code = f"import sys; from mypy_protobuf.main import {entry}; sys.exit({entry}())"
    script.write_text(f"#!/bin/sh\nexec {shlex.quote(sys.executable)} -c {shlex.quote(code)}\n")
    script.chmod(0o755)
    return script


def checked_in_outputs(root: Path = REPO_ROOT) -> list[Path]:
    """Generated-looking files present under ``root/protos``, relative to ``root``."""
    found = []
    for suffix in GENERATED_SUFFIXES:
        found += [p.relative_to(root) for p in (root / PROTO_DIR).rglob(f"*{suffix}")]
    return sorted(set(found))


def stale_files(root: Path = REPO_ROOT) -> dict[str, list[Path]]:
    """Regenerate into a temporary directory and compare with what ``root`` holds.

    Returns ``{"modified": [...], "missing": [...], "orphaned": [...]}`` (paths relative to
    ``root``); all three empty means the checked-in code is fresh.
    """
    with tempfile.TemporaryDirectory(prefix="protos-check-") as tmp:
        fresh = generate(Path(tmp), root)
        modified = [
            p
            for p in fresh
            if (root / p).is_file() and not filecmp.cmp(Path(tmp) / p, root / p, shallow=False)
        ]
    missing = [p for p in fresh if not (root / p).is_file()]
    orphaned = sorted(set(checked_in_outputs(root)) - set(fresh))
    return {"modified": modified, "missing": missing, "orphaned": orphaned}


def write(root: Path = REPO_ROOT) -> list[Path]:
    """Regenerate in place: rewrite changed files, delete orphaned ones; return what changed."""
    changed = []
    with tempfile.TemporaryDirectory(prefix="protos-gen-") as tmp:
        fresh = generate(Path(tmp), root)
        for rel in fresh:
            target = root / rel
            if target.is_file() and filecmp.cmp(Path(tmp) / rel, target, shallow=False):
                continue
            shutil.copyfile(Path(tmp) / rel, target)
            changed.append(rel)
    for rel in sorted(set(checked_in_outputs(root)) - set(fresh)):
        (root / rel).unlink()
        changed.append(rel)
    return changed


_PROTOBUF_GUARD = re.compile(
    r"ValidateProtobufRuntimeVersion\(\s*_runtime_version\.Domain\.\w+,\s*(\d+),\s*(\d+),\s*(\d+),"
)
_GRPC_GUARD = re.compile(r"GRPC_GENERATED_VERSION = '([\d.]+)'")


def runtime_floors(root: Path = REPO_ROOT) -> dict[str, str]:
    """The lowest protobuf and grpcio runtimes the checked-in code accepts, read from its guards."""
    floors: dict[str, tuple[int, ...]] = {}
    for rel in checked_in_outputs(root):
        text = (root / rel).read_text()
        for dist, pattern in (("protobuf", _PROTOBUF_GUARD), ("grpcio", _GRPC_GUARD)):
            for match in pattern.finditer(text):
                groups = match.groups()
                parts = tuple(int(x) for x in ".".join(groups).split("."))
                floors[dist] = max(floors.get(dist, parts), parts)
    return {dist: ".".join(map(str, version)) for dist, version in sorted(floors.items())}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m protos.generate", description=__doc__)
    parser.add_argument(
        "--check",
        action="store_true",
        help="do not write; exit 1 if the checked-in generated code is not fresh",
    )
    parser.add_argument(
        "--root", type=Path, default=REPO_ROOT, help="include root holding protos/ (default: repo)"
    )
    args = parser.parse_args(argv)
    root = args.root.resolve()
    versions = ", ".join(f"{k} {v}" for k, v in tool_versions().items())
    try:
        if args.check:
            stale = stale_files(root)
        else:
            changed = write(root)
    except GenerationError as exc:
        print(f"protos.generate: {exc}", file=sys.stderr)
        return 2
    if not args.check:
        for rel in changed:
            print(f"wrote {rel}" if (root / rel).exists() else f"deleted {rel}")
        floors = ", ".join(f"{k}>={v}" for k, v in runtime_floors(root).items())
        print(f"{len(changed)} file(s) changed ({versions}); the code needs {floors}")
        return 0
    if not any(stale.values()):
        print(f"generated code is fresh ({versions})")
        return 0
    print(
        "protos: the checked-in generated code is stale; run `python -m protos.generate` "
        "and commit the result.",
        file=sys.stderr,
    )
    for kind, paths in stale.items():
        for rel in paths:
            print(f"  {kind}: {rel}", file=sys.stderr)
    print(
        f"(generated with {versions}; a different grpcio-tools or mypy-protobuf version "
        "than the one the files were made with also shows up as 'modified')",
        file=sys.stderr,
    )
    return 1


if __name__ == "__main__":
    sys.exit(main())
