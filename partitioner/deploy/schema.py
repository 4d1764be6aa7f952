"""The schemas of a deployment's JSON documents: a split's ``manifest.json``, a model's ``model.json``.

Both arrive from repositories and uploads, so each is validated once, where it is read
(:func:`partitioner.deploy.artifact.read_manifest`, :func:`partitioner.deploy.repository.read_model`),
against the pydantic models here; past that point code indexes them without checking. Types
are strict (a ``"3"`` is not a 3, a ``1`` is not ``true``), sizes that drive allocations are
bounded, and fields nothing reads are allowed, so writers may add to a document freely.
:func:`validate` turns a failure into one line naming the file, the field, what was expected
and what arrived.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError
from pydantic import model_validator as _model_validator

from partitioner.errors import EdgecutError

SPLIT_FORMAT = "edgecut-split"
SPLIT_FORMAT_VERSION = 1
REPOSITORY_FORMAT = "edgecut-repository-model"
REPOSITORY_FORMAT_VERSION = 1
HALVES = ("head.pt2", "tail.pt2")

# One frame of one tensor a manifest declares: nodes allocate example tensors of this shape.
MAX_TENSOR_BYTES = 1 << 30
MAX_RANK = 8
ITEM_BYTES = {
    "float32": 4, "float16": 2, "float64": 8, "bfloat16": 2, "int8": 1, "uint8": 1,
    "int16": 2, "int32": 4, "int64": 8, "bool": 1,
}  # fmt: skip

# Names that become OIP tensor names, log fields and metric labels: printable and short.
Name = Annotated[
    str, StringConstraints(min_length=1, max_length=256, pattern=r"^[^\x00-\x1f\x7f#]+$")
]
Text = Annotated[str, StringConstraints(max_length=4096)]
Sha256 = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
Version = Annotated[str, StringConstraints(pattern=r"^[1-9][0-9]{0,8}$")]
Registered = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_+.-]{0,63}$")]
Dim = Annotated[int, Field(ge=0, le=2**31 - 1)]
DType = Literal["float32", "float16", "float64", "bfloat16", "int8", "uint8", "int16", "int32",
                "int64", "bool"]  # fmt: skip
Half = Literal["head.pt2", "tail.pt2"]


class _Document(BaseModel):
    model_config = ConfigDict(strict=True, extra="allow", frozen=True)


class TensorEntry(_Document):
    """A tensor a split takes, passes across the cut, or returns: ``shape`` is one frame's,
    frames stack along ``batch_dim`` (absent: 0, as before the field; None: no batch dim)."""

    name: Name
    shape: Annotated[list[Dim], Field(max_length=MAX_RANK)]
    dtype: DType
    bytes: Annotated[int, Field(ge=0, le=MAX_TENSOR_BYTES)]
    placeholder: Name | None = None
    batch_dim: Annotated[int, Field(ge=0, lt=MAX_RANK)] | None = 0

    @_model_validator(mode="after")
    def _bounded(self) -> TensorEntry:
        if self.batch_dim is not None and self.shape and self.batch_dim >= len(self.shape):
            raise ValueError(f"batch_dim {self.batch_dim} is not a dim of shape {self.shape}")
        frame = math.prod(self.shape) * ITEM_BYTES[self.dtype]
        if frame > MAX_TENSOR_BYTES:
            raise ValueError(
                f"a frame of shape {self.shape} is {frame} bytes, above {MAX_TENSOR_BYTES}"
            )
        return self


class FileEntry(_Document):
    sha256: Sha256
    bytes: Annotated[int, Field(ge=0, le=1 << 40)]


class Prediction(_Document):
    edge_ms: float
    transfer_ms: float
    cloud_ms: float
    total_ms: float
    edge_energy_mj: float


class PlanEntry(_Document):
    """The plan the split was cut by: what ``Plan.from_json`` and ListCuts read."""

    model: Name
    solver: Text
    objective: Text
    edge_nodes: Annotated[list[Name], Field(max_length=100_000)]
    cut: list[TensorEntry]
    predicted: Prediction
    objective_value: float
    edge_only_ms: float
    cloud_only_ms: float
    solve_ms: float
    edge_device: Text = ""
    cloud_device: Text = ""
    bandwidth_mbps: float = 0.0
    rtt_ms: float = 0.0


class Signature(_Document):
    """An Ed25519 signature over the rest of the manifest (see ``docs/contracts.md``)."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)
    algorithm: Literal["ed25519"]
    public_key_sha256: Sha256
    value: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9+/]{86}==$")]


class Manifest(_Document):
    """``manifest.json`` of a split artifact (written by ``write_split``)."""

    format: Literal["edgecut-split"]
    format_version: Literal[1]
    model: Name
    model_spec: Text | None = None
    input_shape: Annotated[list[Dim], Field(min_length=1, max_length=MAX_RANK)]
    dynamic_batch: bool = False
    inputs: Annotated[list[TensorEntry], Field(min_length=1, max_length=256)]
    crossing: Annotated[list[TensorEntry], Field(max_length=4096)]
    outputs: Annotated[list[TensorEntry], Field(min_length=1, max_length=256)]
    edge_only: bool = False
    cloud_only: bool = False
    codec: Registered = "none"
    plan: PlanEntry
    files: dict[Half, FileEntry]
    torch_version: Text | None = None
    runtime: dict[Half, Registered] = Field(default_factory=dict)
    signature: Signature | None = None

    @_model_validator(mode="after")
    def _consistent(self) -> Manifest:
        if "head.pt2" not in self.files:
            raise ValueError("files must list head.pt2")
        for half in self.runtime:
            if half not in self.files:
                raise ValueError(f"runtime names {half}, which files does not list")
        if self.edge_only == ("tail.pt2" in self.files):
            raise ValueError("files must list tail.pt2 exactly when edge_only is false")
        for field in ("inputs", "crossing", "outputs"):
            names = [t.name for t in getattr(self, field)]
            if len(set(names)) != len(names):
                raise ValueError(f"{field} names a tensor twice")
        return self


class Band(_Document):
    min_mbps: Annotated[float, Field(ge=0)]
    max_mbps: float
    version: Version | None
    edge_nodes: Annotated[list[Name], Field(max_length=100_000)] = Field(default_factory=list)
    total_ms_at_min: float = math.nan
    total_ms_at_max: float = math.nan

    @_model_validator(mode="after")
    def _ordered(self) -> Band:
        if not self.min_mbps < self.max_mbps:
            raise ValueError(f"min_mbps {self.min_mbps} must be below max_mbps {self.max_mbps}")
        return self


class VersionEntry(_Document):
    crossing: list[Name] = Field(default_factory=list)
    cloud_only: bool = False


class ModelFile(_Document):
    """``model.json`` of a repository model (written by ``build_repository`` and DeploySplit)."""

    format: Literal["edgecut-repository-model"]
    format_version: Literal[1]
    name: Name | None = None
    model: Name | None = None
    model_spec: Text | None = None
    input_shape: Annotated[list[Dim], Field(max_length=MAX_RANK)] = Field(default_factory=list)
    codec: Registered = "none"
    default_version: Version | None = None
    versions: dict[Version, VersionEntry] = Field(default_factory=dict)
    local: Literal["local"] | None = None
    breakpoints: Annotated[list[Band], Field(max_length=10_000)] = Field(default_factory=list)

    @_model_validator(mode="after")
    def _sorted(self) -> ModelFile:
        lows = [b.min_mbps for b in self.breakpoints]
        if lows != sorted(lows):
            raise ValueError("breakpoints must be ordered by min_mbps")
        return self


D = TypeVar("D", bound=BaseModel)


def validate(schema: type[D], data: dict[str, Any], where: str, error: type[EdgecutError]) -> D:
    """``data`` as ``schema``, or ``error``: one line naming ``where``, the field and the value."""
    try:
        return schema.model_validate(data)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        field = ".".join(str(part) for part in first["loc"]) or "(document)"
        message = first["msg"].removeprefix("Value error, ")
        value = first.get("input")
        shown = first["type"] != "missing" and not isinstance(value, (dict, list))
        got = f", got {_brief(value)}" if shown else ""
        more = exc.error_count() - 1
        extra = f" (and {more} more problem{'s' * (more > 1)})" if more else ""
        raise error(f"{where}: field {field!r}: {message}{got}{extra}") from None


def _brief(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
