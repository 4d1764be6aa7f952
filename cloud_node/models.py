"""The tails a cloud node serves: every version of every model of a repository, loaded once.

:class:`ModelStore` scans a repository (:mod:`partitioner.deploy.repository`), loads each version's
``tail.pt2`` after checking its sha256 against the manifest, and resolves a request's
``(model, version)`` to a :class:`Tail`, or raises :class:`NotFound` / :class:`Unavailable`
with a message that names what the server does hold.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from partitioner.deploy.artifact import ManifestTensors
from partitioner.deploy.repository import RepositoryModel, scan_repository
from partitioner.errors import EdgecutError

READY, LOADING, UNAVAILABLE, FAILED = "READY", "LOADING", "UNAVAILABLE", "FAILED"


class NotFound(EdgecutError):
    """An unknown model or version (gRPC NOT_FOUND)."""


class Unavailable(EdgecutError):
    """A known version that cannot serve now: loading, failed, or shutting down (UNAVAILABLE)."""


@dataclass(eq=False)
class Tail(ManifestTensors):
    """One version of a model: its manifest, what crosses, and the loaded tail module."""

    model: str
    version: str
    path: Path
    manifest: dict[str, Any]
    manifest_sha256: str
    state: str = LOADING
    reason: str = ""
    module: Any = None  # torch.nn.Module once loaded
    deployed_at: float = field(default_factory=time.time)

    @property
    def max_batch(self) -> int:
        from partitioner.model.graph import MAX_BATCH

        return MAX_BATCH if self.manifest.get("dynamic_batch") else 1

    @property
    def head_sha256(self) -> str:
        return str(self.manifest["files"].get("head.pt2", {}).get("sha256", ""))

    def load(self) -> None:
        """Check the files' sha256 and load ``tail.pt2``; sets READY or FAILED (with reason)."""
        from partitioner.deploy.artifact import load_half, verify_files

        try:
            if "tail.pt2" not in self.manifest["files"]:
                raise EdgecutError(f"{self.path}: an edge-only artifact has no tail to serve")
            verify_files(self.path, self.manifest)
            runtime = (self.manifest.get("runtime") or {}).get("tail.pt2")
            if runtime:
                import torch

                example = tuple(
                    torch.zeros((1, *s.shape[1:]), dtype=getattr(torch, s.dtype))
                    for s in self.crossing
                )
                self.module = load_half(self.path / "tail.pt2", runtime=runtime, example=example)
            else:
                self.module = load_half(self.path / "tail.pt2")
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


def _tail_of(model: RepositoryModel, version: str) -> Tail:
    from partitioner.deploy.artifact import read_manifest

    path = model.version_dir(version)
    manifest = read_manifest(path)
    digest = hashlib.sha256((path / "manifest.json").read_bytes()).hexdigest()
    deployed_at = (path / "manifest.json").stat().st_mtime
    return Tail(model.name, version, path, manifest, digest, deployed_at=deployed_at)


class ModelStore:
    """Every tail of a repository, by model and version."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self._lock = threading.RLock()
        self._models: dict[str, RepositoryModel] = scan_repository(self.root)
        self._tails: dict[tuple[str, str], Tail] = {}
        for model in self._models.values():
            for version in model.versions:
                self._tails[(model.name, version)] = _tail_of(model, version)

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
