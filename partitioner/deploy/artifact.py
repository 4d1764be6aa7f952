"""Split artifacts, the read side: a head and a tail in torch.export's ``.pt2`` format,
plus a manifest, as :mod:`partitioner.deploy.export` writes them into a directory::

    head.pt2        model inputs -> crossing tensors (an identity for a cloud-only plan)
    tail.pt2        crossing tensors -> model outputs (absent for an edge-only plan)
    manifest.json   model, plan, inputs, crossing tensors and outputs in order, sha256 of each file

The nodes import only this side: it never reaches the planner, the solvers or capture.
``load_split`` validates the manifest (:mod:`partitioner.deploy.schema`), checks its
signature when the node trusts a key (:mod:`partitioner.deploy.signing`), every file's size
and sha256, and each archive (:func:`partitioner.deploy.archive.check_pt2`) before handing it
to ``torch.export.load``: loading an artifact runs no code from it.

A manifest may name a *runtime* for a file (``"runtime": {"head.pt2": "pt2e-int8"}``):
a registered :class:`Runtime` then registers the custom ops that file's graph calls
before it is loaded, and prepares the loaded module for this host afterwards (an
int8 graph is lowered to the host's int8 kernels). Callers load every artifact the
same way; what a runtime did is reported in :attr:`SplitArtifact.runtime`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from partitioner.deploy.archive import check_pt2
from partitioner.deploy.files import (
    parse_json_object,
    read_bounded,
    sha256_file,
)
from partitioner.deploy.runtimes import RUNTIMES
from partitioner.deploy.schema import Manifest, validate
from partitioner.deploy.signing import TrustKey
from partitioner.errors import ArtifactError
from partitioner.model.graph import TensorSpec

MANIFEST = "manifest.json"


class ManifestTensors:
    """The tensor specs a split's manifest lists, for any class holding ``self.manifest``."""

    manifest: dict[str, Any]

    @property
    def crossing(self) -> list[TensorSpec]:
        return [TensorSpec.from_json(t) for t in self.manifest.get("crossing", ())]

    @property
    def outputs(self) -> list[TensorSpec]:
        return [TensorSpec.from_json(t) for t in self.manifest.get("outputs", ())]


@dataclass
class SplitArtifact(ManifestTensors):
    """A loaded split: runnable halves plus the manifest that describes them."""

    path: Path
    manifest: dict[str, Any]
    head: nn.Module
    tail: nn.Module | None
    runtime: dict[str, str] = field(default_factory=dict)  # file -> what its runtime did

    def run_head(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        with torch.inference_mode():
            return tuple(self.head(*inputs))

    def run_tail(self, *crossing: torch.Tensor) -> tuple[torch.Tensor, ...]:
        if self.tail is None:
            raise ArtifactError(f"{self.path}: edge-only split has no tail")
        with torch.inference_mode():
            return tuple(self.tail(*crossing))

    def run(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """head then tail: the whole model's outputs."""
        mid = self.run_head(*inputs)
        return mid if self.tail is None else self.run_tail(*mid)


def parse_manifest(data: bytes, where: str) -> dict[str, Any]:
    """Manifest bytes (a file's, or an upload's) as a manifest that matches the schema."""
    manifest = parse_json_object(data, where, error=ArtifactError)
    validate(Manifest, manifest, where, ArtifactError)
    return manifest


def read_manifest(path: str | Path) -> dict[str, Any]:
    """The manifest of the split artifact in directory ``path``, validated (``schema.Manifest``).

    Returned as read: the fields the schema names are there and well typed, any others as
    their writer left them.
    """
    root = Path(path)
    if not root.is_dir():
        raise ArtifactError(f"split artifact {root}: not a directory")
    if not (root / MANIFEST).exists() and not (root / MANIFEST).is_symlink():
        raise ArtifactError(f"split artifact {root}: no {MANIFEST}")
    data = read_bounded(root / MANIFEST, error=ArtifactError)
    return parse_manifest(data, str(root / MANIFEST))


def verify_files(root: Path, manifest: dict[str, Any], names: Iterable[str] | None = None) -> None:
    """Every file the manifest lists (or those of ``names``) is a regular file of the listed
    size and sha256."""
    for name in manifest["files"] if names is None else names:
        meta = manifest["files"][name]
        path = root / name
        if not path.is_file():
            what = "is not a regular file" if path.exists() else "is listed but missing"
            raise ArtifactError(f"split artifact {root}: {name} {what}")
        size = path.stat().st_size
        if size != meta["bytes"]:
            raise ArtifactError(
                f"split artifact {root}: {name} is {size} bytes, manifest says {meta['bytes']}: "
                "the file was altered or truncated"
            )
        try:
            actual = sha256_file(path)
        except OSError as exc:
            raise ArtifactError(f"split artifact {root}: {name}: {exc.strerror or exc}") from None
        if actual != meta["sha256"]:
            raise ArtifactError(
                f"split artifact {root}: {name} sha256 is {actual[:16]}…, manifest says "
                f"{meta['sha256'][:16]}…: the file was altered or truncated"
            )


def verify_split(
    root: Path,
    manifest: dict[str, Any],
    trust: TrustKey | None = None,
    names: Iterable[str] | None = None,
) -> None:
    """What every loader checks before a file is opened: the signature (when the node trusts a
    key), then the size and sha256 of each file (of ``names``, default all), which the
    signature covers."""
    if trust is not None:
        trust.verify(manifest, f"split artifact {root}")
    verify_files(root, manifest, names)


def check_split(path: str | Path, trust: TrustKey | None = None) -> dict[str, Any]:
    """Everything :func:`load_split` checks, short of loading: the manifest, the signature (with
    ``trust``), every file's size and sha256, and every archive. Returns the manifest."""
    root = Path(path)
    manifest = read_manifest(root)
    verify_split(root, manifest, trust)
    for name in manifest["files"]:
        check_pt2(root / name)
    return manifest


def example_inputs(specs: list[dict[str, Any]], batch: int) -> tuple[torch.Tensor, ...]:
    """Zeros shaped like a manifest's ``specs`` with ``batch`` frames in each one's batch dim:
    what a runtime prepares a half with. The shapes were bounded when the manifest was read."""
    return tuple(
        torch.zeros(TensorSpec.from_json(spec).batched(batch), dtype=getattr(torch, spec["dtype"]))
        for spec in specs
    )


def load_half(
    path: Path, *, runtime: str | None = None, example: tuple[torch.Tensor, ...] = ()
) -> nn.Module:
    """Load one half; with ``runtime``, register its ops first and prepare it after."""
    prepared, _ = _load_half(path, runtime, example)
    return prepared


def _load_half(
    path: Path, runtime: str | None, example: tuple[torch.Tensor, ...]
) -> tuple[nn.Module, str]:
    check_pt2(path)  # the only call of torch.export.load below, and nothing reaches it unchecked
    handler = RUNTIMES.get(runtime) if runtime else None
    if handler is not None:
        handler.register_ops()
    try:
        exported = torch.export.load(path)
        module = exported.module()
    except Exception as exc:
        raise ArtifactError(
            f"{path}: torch.export.load failed: {type(exc).__name__}: "
            f"{(str(exc).splitlines() or [''])[0][:300]}"
        ) from exc
    if handler is None:
        return module, ""
    return handler.prepare(module, example)


def load_split(path: str | Path, *, trust: TrustKey | None = None) -> SplitArtifact:
    """A split artifact, verified (:func:`verify_split`) and its halves loaded."""
    root = Path(path)
    manifest = read_manifest(root)
    verify_split(root, manifest, trust)
    runtimes = manifest.get("runtime") or {}
    batch = 2 if manifest.get("dynamic_batch") else 1
    done: dict[str, str] = {}
    halves: dict[str, nn.Module] = {}
    for name, specs in (("head.pt2", manifest["inputs"]), ("tail.pt2", manifest["crossing"])):
        if name not in manifest["files"]:
            continue
        runtime = runtimes.get(name)
        example = example_inputs(specs, batch) if runtime else ()
        halves[name], how = _load_half(root / name, runtime, example)
        if how:
            done[name] = how
    return SplitArtifact(root, manifest, halves["head.pt2"], halves.get("tail.pt2"), done)
