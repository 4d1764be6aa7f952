"""The tails a cloud node serves: every version of every model of a repository, loaded once.

:class:`ModelStore` scans a repository (:mod:`partitioner.deploy.repository`), loads each version's
``tail.pt2`` after checking its manifest, its signature (when the node trusts a key) and its
files, and resolves a request's ``(model, version)`` to a :class:`Tail`, or raises
:class:`NotFound` / :class:`Unavailable` with a message that names what the server does hold.
A version whose manifest, ``model.json`` or files are refused stays FAILED with the reason:
listed, never served, and the other versions serve on.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from cloud_node.batcher import Stacking
from partitioner.deploy.artifact import ManifestTensors
from partitioner.deploy.repository import RepositoryModel, scan_repository
from partitioner.errors import ArtifactError, EdgecutError

if TYPE_CHECKING:
    from partitioner.deploy.signing import TrustKey
    from partitioner.model.graph import TensorSpec

READY, LOADING, UNAVAILABLE, FAILED = "READY", "LOADING", "UNAVAILABLE", "FAILED"


class NotFound(EdgecutError):
    """An unknown model or version (gRPC NOT_FOUND)."""


class Unavailable(EdgecutError):
    """A known version that cannot serve now: loading, failed, or shutting down (UNAVAILABLE)."""


@dataclass(eq=False)
class Tail(ManifestTensors):
    """One version of a model: its manifest, what crosses, and the loaded tail module.

    A version whose manifest could not be read has an empty ``manifest``, state FAILED and the
    reason; it is listed, never served.
    """

    model: str
    version: str
    path: Path
    manifest: dict[str, Any]
    manifest_sha256: str
    state: str = LOADING
    reason: str = ""
    module: Any = None  # torch.nn.Module once loaded
    deployed_at: float = field(default_factory=time.time)
    manifest_text: str = ""  # the manifest as read and validated (what GetManifest returns)
    trust: TrustKey | None = None  # when set, load() refuses versions this key did not sign

    @property
    def max_batch(self) -> int:
        """Frames one run takes: any batch when exported so, unless a tensor it takes or returns
        has no batch dim (requests could not be stacked along it), then one frame at a time."""
        from partitioner.model.graph import MAX_BATCH

        stackable = all(t.batch_dim is not None for t in (*self.crossing, *self.outputs))
        return MAX_BATCH if self.manifest.get("dynamic_batch") and stackable else 1

    @property
    def stacking(self) -> Stacking:
        """Where the tail's inputs and outputs hold their frames, for the batcher."""
        inputs, outputs = self.crossing, self.outputs
        return Stacking(
            input_dims=tuple(t.batch_dim or 0 for t in inputs),
            output_dims=tuple(t.batch_dim or 0 for t in outputs),
            output_per_frame=tuple(_per_frame(t) for t in outputs),
            input_per_frame=tuple(_per_frame(t) for t in inputs),
        )

    @property
    def head_sha256(self) -> str:
        return str(self.manifest.get("files", {}).get("head.pt2", {}).get("sha256", ""))

    def load(self) -> None:
        """Verify the version and load ``tail.pt2``; sets READY or FAILED (with reason)."""
        from partitioner.deploy.artifact import example_inputs, load_half, verify_split

        if self.state == FAILED:  # its manifest or model.json was refused when read
            return
        try:
            if "tail.pt2" not in self.manifest["files"]:
                raise EdgecutError(f"{self.path}: an edge-only artifact has no tail to serve")
            verify_split(self.path, self.manifest, self.trust)
            runtime = self.manifest.get("runtime", {}).get("tail.pt2")
            example = example_inputs(self.manifest["crossing"], 2 if self.max_batch > 1 else 1)
            self.module = load_half(
                self.path / "tail.pt2", runtime=runtime, example=example if runtime else ()
            )
        except EdgecutError as exc:
            self.state, self.reason = FAILED, str(exc)
            return
        self.state, self.reason = READY, ""

    def run(self, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
        """The tail on a batch of decoded crossing tensors (manifest order)."""
        import torch

        tensors = [torch.from_numpy(np.require(a, requirements=["C", "W"])) for a in inputs]
        with torch.inference_mode():
            out = self.module(*tensors)
        return [t.numpy() for t in (out if isinstance(out, (tuple, list)) else (out,))]


def _per_frame(spec: TensorSpec) -> int:
    """Entries one frame has in ``spec``'s batch dim (k of a folded ``k * batch``)."""
    return spec.shape[spec.batch_dim] if spec.batch_dim is not None and spec.shape else 1


def read_tail(
    model: str, version: str, path: Path, trust: TrustKey | None, problem: str = ""
) -> Tail:
    """The version in ``path`` with its manifest read and validated, not yet loaded; FAILED (with
    the reason) when ``problem`` is set or the manifest is refused."""
    from partitioner.deploy.artifact import MANIFEST, parse_manifest
    from partitioner.deploy.files import read_bounded

    tail = Tail(model, version, path, {}, "", trust=trust)
    try:
        if problem:
            raise EdgecutError(problem)
        data = read_bounded(path / MANIFEST, error=ArtifactError)
        tail.manifest = parse_manifest(data, str(path / MANIFEST))
        tail.manifest_text = data.decode("utf-8")
        tail.manifest_sha256 = hashlib.sha256(data).hexdigest()
        tail.deployed_at = (path / MANIFEST).stat().st_mtime
    except (EdgecutError, OSError) as exc:
        reason = str(exc) if isinstance(exc, EdgecutError) else f"{path / MANIFEST}: {exc}"
        tail.manifest, tail.state, tail.reason = {}, FAILED, reason
    return tail


class ModelStore:
    """Every tail of a repository, by model and version."""

    def __init__(self, root: str | Path, *, trust: TrustKey | None = None) -> None:
        self.root = Path(root)
        self.trust = trust
        self._lock = threading.RLock()
        self._models: dict[str, RepositoryModel] = scan_repository(self.root, keep_broken=True)
        self._tails: dict[tuple[str, str], Tail] = {}
        for model in self._models.values():
            for version in model.versions:
                self._tails[(model.name, version)] = read_tail(
                    model.name, version, model.version_dir(version), trust, model.error
                )

    def tails(self) -> list[Tail]:
        with self._lock:
            return list(self._tails.values())

    def models(self) -> dict[str, RepositoryModel]:
        with self._lock:
            return dict(self._models)

    def versions(self, model: str) -> list[str]:
        with self._lock:
            return sorted((v for m, v in self._tails if m == model), key=int)

    def load_all(self, on_loaded: Callable[[Tail], None] | None = None) -> None:
        for tail in self.tails():
            tail.load()
            if on_loaded is not None:
                on_loaded(tail)

    def default_version(self, model: str) -> str:
        with self._lock:
            entry = self._models[model]
            versions = self.versions(model)
            if entry.default_version in versions:
                return str(entry.default_version)
            return versions[-1]

    def resolve(self, model: str, version: str = "") -> Tail:
        """The ready tail for a request; NotFound or Unavailable with what the server holds."""
        tail = self.find(model, version)
        if tail.state != READY:
            detail = f": {tail.reason}" if tail.reason else ""
            raise Unavailable(f"model {model!r} version {tail.version} is {tail.state}{detail}")
        return tail

    def find(self, model: str, version: str = "") -> Tail:
        """The tail of ``model`` (the default version when ``version`` is empty), in any state."""
        with self._lock:
            if model not in self._models or not self.versions(model):
                held = ", ".join(sorted(m for m in self._models if self.versions(m))) or "none"
                raise NotFound(f"unknown model {model!r}: this server serves {held}")
            version = version or self.default_version(model)
            tail = self._tails.get((model, version))
            if tail is None:
                raise NotFound(
                    f"model {model!r} has no version {version!r}: it has versions "
                    f"{', '.join(self.versions(model))}"
                )
        return tail

    def replace_entry(self, entry: RepositoryModel) -> None:
        with self._lock:
            self._models[entry.name] = entry

    def set_tail(self, tail: Tail) -> None:
        with self._lock:
            self._tails[(tail.model, tail.version)] = tail
