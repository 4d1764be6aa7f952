"""What the edge holds of a repository model: a head per cut, and the whole model for fallback.

:meth:`EdgeModel.load` loads every version's ``head.pt2`` (checked against its manifest's
sha256, its signature when the node trusts a key, and :func:`partitioner.deploy.archive.check_pt2`;
an edge copy of the repository needs no tails) and the ``local`` edge-only artifact, once,
before the first frame, so switching cut or falling back costs no loading. One ``EdgeModel``
can be shared by several edge nodes in a process.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from partitioner.deploy.artifact import ManifestTensors
from partitioner.deploy.repository import RepositoryModel
from partitioner.errors import EdgecutError

if TYPE_CHECKING:
    from partitioner.deploy.signing import TrustKey


@dataclass
class Head(ManifestTensors):
    """One loaded half: ``run`` maps a frame batch to its outputs (manifest order)."""

    version: str  # the cut's version, or "local" for the whole model
    path: Path
    manifest: dict[str, Any]
    module: Any  # torch.nn.Module

    @property
    def sha256(self) -> str:
        return str(self.manifest["files"]["head.pt2"]["sha256"])

    def run(self, frame: np.ndarray) -> list[np.ndarray]:
        import torch

        with torch.inference_mode():
            out = self.module(torch.from_numpy(np.require(frame, np.float32, ["C", "W"])))
        return [t.numpy() for t in (out if isinstance(out, (tuple, list)) else (out,))]


def load_head(path: Path, version: str, trust: TrustKey | None = None) -> Head:
    """The head of the split artifact in ``path``, verified (manifest, signature with ``trust``,
    sha256, archive) before it is loaded."""
    from partitioner.deploy.artifact import example_inputs, load_half, read_manifest, verify_split

    manifest = read_manifest(path)
    verify_split(path, manifest, trust, names=["head.pt2"])  # an edge copy needs no tails
    runtime = manifest.get("runtime", {}).get("head.pt2")
    # A compressed head (an int8 graph) names the runtime that registers its ops and lowers it
    # for this host; preparing it needs example inputs.
    example = example_inputs(manifest["inputs"], 2 if manifest.get("dynamic_batch") else 1)
    module = load_half(path / "head.pt2", runtime=runtime, example=example if runtime else ())
    return Head(version, path, manifest, module)


class EdgeModel:
    """Heads of a repository model by version, plus the local whole model (or None)."""

    def __init__(self, entry: RepositoryModel, heads: dict[str, Head], local: Head | None) -> None:
        self.entry = entry
        self.heads = heads
        self.local = local
        reference = local or next(iter(heads.values()), None)
        if reference is None:
            raise EdgecutError(f"model {entry.name!r} has neither a cut nor a local model")
        self.input_shape = tuple(int(d) for d in reference.manifest["input_shape"])
        self.output_names = [t.name for t in reference.outputs]

    @property
    def name(self) -> str:
        return self.entry.name

    @classmethod
    def load(
        cls,
        entry: RepositoryModel,
        *,
        versions: Iterable[str] | None = None,
        local: bool = True,
        trust: TrustKey | None = None,
    ) -> EdgeModel:
        """Every head of ``entry`` (and its local model); with ``trust``, only signed ones."""
        wanted = list(entry.versions if versions is None else versions)
        missing = [v for v in wanted if v not in entry.versions]
        if missing:
            raise EdgecutError(
                f"model {entry.name!r} has no version {missing[0]}: the repository holds "
                f"{', '.join(entry.versions) or 'none'}"
            )
        heads = {v: load_head(entry.version_dir(v), v, trust) for v in wanted}
        local_head = load_head(entry.local, "local", trust) if local and entry.local else None
        return cls(entry, heads, local_head)

    def head(self, version: str) -> Head:
        try:
            return self.heads[version]
        except KeyError:
            raise EdgecutError(
                f"model {self.name!r}: no head loaded for version {version}; loaded "
                f"{', '.join(self.heads) or 'none'}"
            ) from None
