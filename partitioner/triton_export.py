"""Triton model repositories: the tails of an edgecut repository as Triton's PyTorch backend
serves them.

:func:`export_triton` reads every version of a repository (checked and loaded as the cloud
node loads it), traces each tail into TorchScript, checks that the traced module answers
exactly as the tail does, and writes one Triton model per tail::

    OUT/
      <name>/               a Triton model: <model>, or <model>-v<version> when several
        config.pbtxt        inputs, outputs, max_batch_size, dynamic_batching, instance_group
        <version>/model.pt  TorchScript of the tail (Triton's ``pytorch`` backend)

The tensor names are the manifest's, in its order; the backend binds them by that order
(its "strict config ordering"), so a client sends the crossing tensors exactly as it sends
them to ``edgecut cloud serve``. An edge node talks to the export unchanged when it holds
one version per model: it asks for model ``<model>`` and version ``<version>``.
"""

from __future__ import annotations

import io
import os
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from partitioner.deploy.artifact import SplitArtifact, check_split, load_split
from partitioner.deploy.repository import RepositoryModel, scan_repository
from partitioner.errors import EdgecutError
from partitioner.model.graph import MAX_BATCH

CONFIG_FILE = "config.pbtxt"
MODEL_FILE = "model.pt"
MAX_INSTANCES = 64
MAX_BATCH_DELAY_US = 10_000_000  # 10 s: past this a queue delay is a misconfiguration

# The manifest's dtype names (schema.DType) -> Triton's model-config DataType.
TRITON_TYPES = {
    "bool": "TYPE_BOOL",
    "uint8": "TYPE_UINT8",
    "int8": "TYPE_INT8",
    "int16": "TYPE_INT16",
    "int32": "TYPE_INT32",
    "int64": "TYPE_INT64",
    "float16": "TYPE_FP16",
    "bfloat16": "TYPE_BF16",
    "float32": "TYPE_FP32",
    "float64": "TYPE_FP64",
}

# Triton's PyTorch backend reads "<name>__<index>" as the argument position <index>.
_NAMED_INDEX = re.compile(r"__\d+$")


class TritonExportError(EdgecutError):
    """A repository, a tail or an option that cannot become a Triton model repository."""


@dataclass(frozen=True)
class TritonOptions:
    """How Triton should schedule each tail; validated on creation."""

    max_batch: int = 16  # frames per batch (Triton's max_batch_size); 1 turns batching off
    batch_delay_us: int = 1000  # dynamic_batching's max_queue_delay_microseconds
    instances: int = 1  # instance_group count: copies of the tail, each on its own thread

    def __post_init__(self) -> None:
        checks = {
            "max_batch": (self.max_batch, 1, MAX_BATCH),
            "batch_delay_us": (self.batch_delay_us, 0, MAX_BATCH_DELAY_US),
            "instances": (self.instances, 1, MAX_INSTANCES),
        }
        for name, (value, lo, hi) in checks.items():
            if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
                raise TritonExportError(
                    f"triton export: {name} must be an integer in [{lo}, {hi}], got {value!r}"
                )


@dataclass(frozen=True)
class TritonModel:
    """One tail written as a Triton model."""

    name: str  # the Triton model name (its directory)
    version: str  # the edgecut version, kept as the Triton version
    path: Path  # the model directory (config.pbtxt, <version>/model.pt)
    source: Path  # the edgecut version directory it was exported from
    inputs: tuple[dict[str, Any], ...]  # the manifest's crossing tensors
    outputs: tuple[dict[str, Any], ...]
    max_batch_size: int  # 0 when the tail was exported with a fixed batch of 1
    max_abs_error: float  # the TorchScript module against the tail on the check inputs

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "path": str(self.path),
            "source": str(self.source),
            "inputs": [t["name"] for t in self.inputs],
            "outputs": [t["name"] for t in self.outputs],
            "max_batch_size": self.max_batch_size,
            "max_abs_error": self.max_abs_error,
        }


def export_triton(
    repository: str | Path,
    out_dir: str | Path,
    *,
    model: str | None = None,
    versions: Sequence[str] = (),
    options: TritonOptions | None = None,
) -> list[TritonModel]:
    """Write a Triton model repository for the tails of ``repository`` into ``out_dir``.

    ``model`` limits the export to one model, ``versions`` to those versions of it (or of
    every model). Each tail is traced, checked against the tail at several batch sizes, and
    only then written; any failure is one TritonExportError line.
    """
    options = options or TritonOptions()
    repo, out = Path(repository), Path(out_dir)
    models = scan_repository(repo)
    if model is not None:
        if model not in models:
            raise TritonExportError(
                f"repository {repo} has no model {model!r}; it holds {', '.join(models) or 'none'}"
            )
        models = {model: models[model]}
    chosen = [(m, v) for m in models.values() for v in _chosen_versions(m, versions)]
    if not chosen:
        raise TritonExportError(
            f"repository {repo} holds no version with a tail to export: expected "
            "<model>/<version>/manifest.json directories (see `edgecut repository build`)"
        )
    _check_out_dir(repo, out)
    per_model: dict[str, int] = {}
    for m, _ in chosen:
        per_model[m.name] = per_model.get(m.name, 0) + 1
    names = [m.name if per_model[m.name] == 1 else f"{m.name}-v{v}" for m, v in chosen]
    for name in names:
        if names.count(name) > 1:
            raise TritonExportError(
                f"two tails would become Triton model {name!r}: export the models one by one "
                "(--model) into separate directories"
            )
    written = []
    for (m, version), name in zip(chosen, names, strict=True):
        _check_model_dir(out / name, version, repo)
        written.append(_export_one(m.version_dir(version), out / name, name, version, options))
    return written


def _check_model_dir(root: Path, version: str, repo: Path) -> None:
    """An earlier export's other versions would be served instead (Triton serves the
    highest): refuse to mix them. A model or version directory that is a symbolic link, or
    that holds the repository, would have the export write where it was not asked to."""
    for path in (root, root / version):
        if path.is_symlink():
            raise TritonExportError(
                f"{path} is a symbolic link (to {os.readlink(path)}); the export writes only "
                "into directories of its output: remove the link or write to another directory"
            )
    resolved_repo = repo.resolve()
    if root.resolve() == resolved_repo or root.resolve() in resolved_repo.parents:
        raise TritonExportError(
            f"Triton model directory {root} would hold the repository {repo}: write the Triton "
            "repository to a directory of its own"
        )
    if not root.is_dir():
        return
    others = sorted(p.name for p in root.iterdir() if p.name.isdigit() and p.name != version)
    if others:
        raise TritonExportError(
            f"{root} already holds version {', '.join(others)} from another export; Triton "
            "would serve the highest: remove it or write to another directory"
        )


def _chosen_versions(model: RepositoryModel, versions: Sequence[str]) -> list[str]:
    if not versions:
        return list(model.versions)
    missing = [v for v in versions if v not in model.versions]
    if missing:
        raise TritonExportError(
            f"model {model.name!r} has no version {missing[0]} (it has "
            f"{', '.join(model.versions) or 'none'})"
        )
    return [v for v in model.versions if v in versions]


def _check_out_dir(repo: Path, out: Path) -> None:
    resolved_repo, resolved_out = repo.resolve(), out.resolve()
    if resolved_out == resolved_repo or resolved_repo in resolved_out.parents:
        raise TritonExportError(
            f"output {out} lies inside the repository {repo}: write the Triton repository to "
            "a directory of its own"
        )
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise TritonExportError(
            f"cannot create output directory {out}: {exc.strerror or exc}"
        ) from None
    if not os.access(out, os.W_OK | os.X_OK):
        raise TritonExportError(f"output directory {out} is not writable")


def _export_one(
    source: Path, root: Path, name: str, version: str, options: TritonOptions
) -> TritonModel:
    manifest = check_split(source)
    where = str(source)
    if "tail.pt2" not in manifest["files"]:
        raise TritonExportError(f"{where} is edge-only: it has no tail for Triton to serve")
    runtime = (manifest.get("runtime") or {}).get("tail.pt2")
    if runtime:
        raise TritonExportError(
            f"{where}: tail.pt2 needs the {runtime!r} runtime, whose custom ops TorchScript "
            "cannot carry; export a tail without a runtime"
        )
    tensors = [*manifest["crossing"], *manifest["outputs"]]
    for spec in tensors:
        if _NAMED_INDEX.search(spec["name"]):
            raise TritonExportError(
                f"{where}: tensor name {spec['name']!r} ends in '__<digits>', which Triton's "
                "PyTorch backend reads as an argument position"
            )
    dynamic = bool(manifest.get("dynamic_batch"))
    if dynamic:
        for spec in tensors:
            if not spec["shape"]:
                raise TritonExportError(
                    f"{where}: tensor {spec['name']!r} is a scalar: it has no batch dimension "
                    "for Triton to batch along"
                )
            if spec.get("batch_dim", 0) != 0:
                raise TritonExportError(
                    f"{where}: tensor {spec['name']!r} carries its frames along dim "
                    f"{spec['batch_dim']}; Triton batches along the first dimension only"
                )
    artifact = load_split(source)
    scripted, error = _script_tail(artifact, dynamic)
    max_batch_size = options.max_batch if dynamic else 0
    config = triton_config(name, manifest, max_batch_size=max_batch_size, options=options)
    version_dir = root / version
    try:
        version_dir.mkdir(parents=True, exist_ok=True)
        _write_atomic(version_dir / MODEL_FILE, scripted)
        _write_atomic(root / CONFIG_FILE, config.encode())
    except OSError as exc:
        raise TritonExportError(f"cannot write {root}: {exc.strerror or exc}") from None
    return TritonModel(
        name=name,
        version=version,
        path=root,
        source=source,
        inputs=tuple(manifest["crossing"]),
        outputs=tuple(manifest["outputs"]),
        max_batch_size=max_batch_size,
        max_abs_error=error,
    )


class _Tail(nn.Module):
    """The loaded tail with its outputs as TorchScript returns them: one tensor, or a tuple."""

    def __init__(self, tail: nn.Module) -> None:
        super().__init__()
        self.tail = tail

    def forward(self, *crossing: torch.Tensor) -> Any:
        # .forward, not __call__: the unlifted module's pre-hook checks its inputs' shapes
        # with symbolic ints, which tracing cannot record. The batch sizes checked after
        # tracing stand in for it.
        outputs = tuple(self.tail.forward(*crossing))
        return outputs[0] if len(outputs) == 1 else outputs


def _script_tail(artifact: SplitArtifact, dynamic: bool) -> tuple[bytes, float]:
    """The tail traced to TorchScript and serialised, and its largest absolute difference
    from the tail on seeded inputs at every checked batch size (after a save/load trip)."""
    specs = artifact.manifest["crossing"]
    assert artifact.tail is not None  # the manifest listing tail.pt2 was checked
    generator = torch.Generator().manual_seed(0)
    where = f"{artifact.path / 'tail.pt2'}"
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # TracerWarnings about Python values: checked below
            traced = torch.jit.trace(
                _Tail(artifact.tail),  # no .eval(): an exported module is already in it
                _inputs(specs, 2 if dynamic else 1, generator),
                check_trace=False,
            )
            buffer = io.BytesIO()
            torch.jit.save(traced, buffer)
            loaded = torch.jit.load(io.BytesIO(buffer.getvalue()))
    except Exception as exc:
        raise TritonExportError(
            f"{where} does not trace to TorchScript: {type(exc).__name__}: "
            f"{(str(exc).splitlines() or [''])[0][:300]}"
        ) from exc
    worst = 0.0
    for batch in (1, 3) if dynamic else (1,):
        x = _inputs(specs, batch, generator)
        want = artifact.run_tail(*x)
        for _ in range(2):  # the profiling executor specialises on a later run
            with torch.inference_mode():
                got = loaded(*x)
            got = (got,) if isinstance(got, torch.Tensor) else tuple(got)
            worst = max(worst, _check_same(where, batch, got, want))
    return buffer.getvalue(), worst


def _inputs(
    specs: list[dict[str, Any]], batch: int, generator: torch.Generator
) -> tuple[torch.Tensor, ...]:
    """Seeded inputs shaped like ``specs`` at ``batch``: normal floats; 0/1 integers, which
    index any embedding."""
    out = []
    for spec in specs:
        shape = (batch, *spec["shape"][1:])
        dtype = getattr(torch, spec["dtype"])
        if dtype.is_floating_point:
            out.append(torch.randn(shape, generator=generator).to(dtype))
        else:
            out.append(torch.randint(0, 2, shape, generator=generator).to(dtype))
    return tuple(out)


def _check_same(
    where: str, batch: int, got: tuple[torch.Tensor, ...], want: tuple[torch.Tensor, ...]
) -> float:
    if len(got) != len(want):
        raise TritonExportError(
            f"{where}: TorchScript returns {len(got)} outputs, the tail {len(want)}"
        )
    worst = 0.0
    for g, w in zip(got, want, strict=True):
        if g.shape != w.shape or g.dtype != w.dtype:
            raise TritonExportError(
                f"{where}: at batch {batch} TorchScript answers {g.dtype} {list(g.shape)}, the "
                f"tail {w.dtype} {list(w.shape)}"
            )
        if not w.dtype.is_floating_point:
            if not torch.equal(g, w):
                raise TritonExportError(f"{where}: at batch {batch} TorchScript differs")
            continue
        diff = float((g.double() - w.double()).abs().max()) if w.numel() else 0.0
        if not torch.allclose(g.double(), w.double(), rtol=1e-4, atol=1e-5):
            raise TritonExportError(
                f"{where}: at batch {batch} TorchScript differs from the tail by {diff:.3g}"
            )
        worst = max(worst, diff)
    return worst


def triton_config(
    name: str, manifest: dict[str, Any], *, max_batch_size: int, options: TritonOptions
) -> str:
    """``config.pbtxt`` (protobuf text format of Triton's ModelConfig) for a tail.

    With ``max_batch_size`` > 0 the dims leave out the batch dimension, as Triton wants them
    (it reports the shape as ``[-1, ...]``); with 0 they are the manifest's full shape.
    """
    tail = manifest["files"]["tail.pt2"]["sha256"]
    lines = [
        f"# edgecut tail of model {manifest['model']}, tail.pt2 sha256 {tail},",
        "# traced to TorchScript by `edgecut repository export --format triton`.",
        f"name: {_quote(name)}",
        'backend: "pytorch"',
        f"max_batch_size: {max_batch_size}",
    ]
    for kind, specs in (("input", manifest["crossing"]), ("output", manifest["outputs"])):
        lines.append(f"{kind} [")
        for i, spec in enumerate(specs):
            lines.extend(_tensor_lines(spec, max_batch_size > 0))
            lines[-1] += "," if i < len(specs) - 1 else ""
        lines.append("]")
    if max_batch_size > 1:
        lines += [
            "dynamic_batching {",
            f"  max_queue_delay_microseconds: {options.batch_delay_us}",
            "}",
        ]
    lines += ["instance_group [", "  {", f"    count: {options.instances}"]
    lines += ["    kind: KIND_CPU", "  }", "]"]
    return "\n".join(lines) + "\n"


def _tensor_lines(spec: dict[str, Any], batched: bool) -> list[str]:
    dims = list(spec["shape"][1:] if batched else spec["shape"])
    lines = [
        "  {",
        f"    name: {_quote(spec['name'])}",
        f"    data_type: {TRITON_TYPES[spec['dtype']]}",
    ]
    if batched and not dims:
        # A tensor of shape [batch]: Triton wants dims [1] reshaped to no dims at all.
        lines += ["    dims: [ 1 ]", "    reshape: { shape: [ ] }"]
    else:
        lines.append(f"    dims: [ {', '.join(str(d) for d in dims)} ]")
    return [*lines, "  }"]


def _quote(text: str) -> str:
    """A protobuf text-format string literal: quotes and backslashes escaped, any byte
    outside printable ASCII as an octal escape of its UTF-8."""
    out = []
    for byte in text.encode():
        char = chr(byte)
        if char in '"\\':
            out.append("\\" + char)
        elif 0x20 <= byte < 0x7F:
            out.append(char)
        else:
            out.append(f"\\{byte:03o}")
    return '"' + "".join(out) + '"'


def _write_atomic(path: Path, data: bytes) -> None:
    # The temporary file is made anew (O_EXCL, no link followed): a link or file planted under
    # its name by whoever else can write the output directory is removed, never written through.
    tmp = path.with_name(path.name + ".tmp")
    tmp.unlink(missing_ok=True)
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
