"""A model repository: the split artifacts of one or more networks, one per cut, plus the table.

Both nodes read the same layout (the cloud loads the tails, the edge the heads)::

    REPO/
      <model>/              one network; its directory name is the OIP model name
        model.json          what the repository holds for it: versions, breakpoint table, default
        1/                  version 1: one cut, a split artifact (manifest.json head.pt2 tail.pt2)
        2/ ...
        local/              the whole network as an edge-only artifact (manifest.json head.pt2),
                            for answering on the edge when the cloud cannot

:func:`scan_repository` reads a repository (:func:`partitioner.publish.build_repository`
writes one). A version directory without ``model.json`` (a split deployed by hand) is still
a valid version.
"""

from __future__ import annotations

import bisect
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from partitioner.deploy.files import read_json_object
from partitioner.deploy.schema import (
    REPOSITORY_FORMAT,
    REPOSITORY_FORMAT_VERSION,
    ModelFile,
    validate,
)
from partitioner.errors import EdgecutError

MODEL_FILE = "model.json"
LOCAL_DIR = "local"
FORMAT = REPOSITORY_FORMAT
FORMAT_VERSION = REPOSITORY_FORMAT_VERSION
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
VERSION_PATTERN = re.compile(r"^[1-9][0-9]{0,8}$")


class RepositoryError(EdgecutError):
    """A repository directory that is missing or not laid out as expected."""


@dataclass(frozen=True)
class Band:
    """For uplink bandwidths in [min_mbps, max_mbps) use ``version`` (None: run on the edge)."""

    min_mbps: float
    max_mbps: float
    version: str | None
    edge_nodes: tuple[str, ...]
    total_ms_at_min: float
    total_ms_at_max: float

    def to_json(self) -> dict[str, Any]:
        return {
            "min_mbps": self.min_mbps,
            "max_mbps": self.max_mbps,
            "version": self.version,
            "edge_nodes": list(self.edge_nodes),
            "total_ms_at_min": self.total_ms_at_min,
            "total_ms_at_max": self.total_ms_at_max,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Band:
        """A band of a ``model.json`` already validated by ``schema.ModelFile``."""
        return cls(
            float(data["min_mbps"]),
            float(data["max_mbps"]),
            data.get("version"),
            tuple(data.get("edge_nodes", ())),
            float(data.get("total_ms_at_min", math.nan)),
            float(data.get("total_ms_at_max", math.nan)),
        )


@dataclass(frozen=True)
class RepositoryModel:
    """One network of a repository: its versions (cuts), table, default and local artifact."""

    name: str
    path: Path
    versions: tuple[str, ...]  # sorted numerically
    default_version: str | None
    bands: tuple[Band, ...]  # ordered by bandwidth; empty without model.json
    local: Path | None  # the edge-only artifact, when the repository has one
    meta: dict[str, Any]  # model.json as read ({} when absent)
    error: str = ""  # why model.json could not be used (read_model_or_reason only)

    def version_dir(self, version: str) -> Path:
        return self.path / version

    def band_for(self, bandwidth_mbps: float) -> Band:
        """The band holding ``bandwidth_mbps`` (clamped to the table's range)."""
        if not self.bands:
            raise RepositoryError(f"model {self.name!r} in {self.path.parent} has no breakpoints")
        lows = [b.min_mbps for b in self.bands]
        i = bisect.bisect_right(lows, bandwidth_mbps) - 1
        return self.bands[min(max(i, 0), len(self.bands) - 1)]

    @property
    def codec(self) -> str:
        return str(self.meta.get("codec", "none"))


def _check_name(kind: str, name: str, pattern: re.Pattern[str], expected: str) -> str:
    if not pattern.fullmatch(name):
        raise RepositoryError(f"{kind} {name!r} is not valid: expected {expected}")
    return name


def check_model_name(name: str) -> str:
    return _check_name(
        "model name", name, NAME_PATTERN, "letters, digits, '_', '.', '-' (at most 128)"
    )


def check_version(version: str) -> str:
    return _check_name("version", version, VERSION_PATTERN, "a positive integer such as 1")


def read_json(path: Path) -> dict[str, Any]:
    """A JSON object from a repository file (any other content is a RepositoryError)."""
    return read_json_object(path, error=RepositoryError)


def version_dirs(root: Path) -> list[str]:
    """The version directories of model directory ``root`` (those with a manifest), in order."""
    return sorted(
        (
            p.name
            for p in root.iterdir()
            if p.is_dir() and VERSION_PATTERN.fullmatch(p.name) and (p / "manifest.json").exists()
        ),
        key=int,
    )


def read_model(path: str | Path) -> RepositoryModel:
    """One model directory of a repository; a ``model.json`` that does not match
    :class:`partitioner.deploy.schema.ModelFile` is a RepositoryError naming field and file."""
    root = Path(path)
    name = check_model_name(root.name)
    try:
        versions = version_dirs(root)
    except OSError as exc:
        raise RepositoryError(f"model directory {root} cannot be read: {exc.strerror}") from None
    meta: dict[str, Any] = {}
    if (root / MODEL_FILE).exists() or (root / MODEL_FILE).is_symlink():
        meta = read_json(root / MODEL_FILE)
        validate(ModelFile, meta, str(root / MODEL_FILE), RepositoryError)
    bands = tuple(Band.from_json(b) for b in meta.get("breakpoints", ()))
    for band in bands:
        if band.version is not None and band.version not in versions:
            raise RepositoryError(
                f"{root / MODEL_FILE}: band {band.min_mbps:g}-{band.max_mbps:g} Mbit/s names "
                f"version {band.version}, which has no directory {root / band.version}"
            )
    default = meta.get("default_version")
    if default is not None and default not in versions:
        default = None
    if default is None and versions:
        default = versions[-1]
    local = root / LOCAL_DIR
    return RepositoryModel(
        name=name,
        path=root,
        versions=tuple(versions),
        default_version=default,
        bands=bands,
        local=local if (local / "manifest.json").exists() else None,
        meta=meta,
    )


def read_model_or_reason(path: Path) -> RepositoryModel:
    """:func:`read_model`, or, when its ``model.json`` is unusable, the model's versions with no
    table and the reason in ``error``: a server then reports that model's versions as failed
    and goes on serving the others."""
    try:
        return read_model(path)
    except RepositoryError as exc:
        try:
            versions = tuple(version_dirs(path))
        except OSError:
            versions = ()
        return RepositoryModel(
            name=path.name,
            path=path,
            versions=versions,
            default_version=versions[-1] if versions else None,
            bands=(),
            local=None,
            meta={},
            error=str(exc),
        )


def scan_repository(path: str | Path, *, keep_broken: bool = False) -> dict[str, RepositoryModel]:
    """Every model of a repository, by name; a model needs a version or a local artifact.

    A model whose ``model.json`` is unusable stops the scan with its error, or, with
    ``keep_broken``, is kept with that error (:func:`read_model_or_reason`).
    """
    root = Path(path)
    if not root.exists():
        raise RepositoryError(
            f"repository {root} does not exist: expected a directory written by "
            "`edgecut repository build`"
        )
    if not root.is_dir():
        raise RepositoryError(f"repository {root} is not a directory")
    if not os.access(root, os.R_OK | os.X_OK):
        raise RepositoryError(f"repository {root} cannot be read (permission denied)")
    models = {}
    for child in sorted(root.iterdir()):
        if not child.is_dir() or child.name.startswith("."):
            continue
        if not NAME_PATTERN.fullmatch(child.name):
            continue
        model = read_model_or_reason(child) if keep_broken else read_model(child)
        if model.versions or model.local is not None:
            models[model.name] = model
    return models


def open_model(path: str | Path, name: str | None = None) -> RepositoryModel:
    """The model ``name`` of a repository, or its only model when ``name`` is None."""
    models = scan_repository(path)
    if not models:
        raise RepositoryError(
            f"repository {path} holds no model: expected <model>/<version>/manifest.json "
            "directories (see `edgecut repository build`)"
        )
    if name is None:
        if len(models) > 1:
            raise RepositoryError(
                f"repository {path} holds several models ({', '.join(models)}); name one"
            )
        return next(iter(models.values()))
    if name not in models:
        raise RepositoryError(
            f"repository {path} has no model {name!r}; it holds {', '.join(models)}"
        )
    return models[name]
