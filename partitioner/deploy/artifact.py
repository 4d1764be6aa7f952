"""Split artifacts: a head and a tail in torch.export's ``.pt2`` format, plus a manifest.

``write_split`` exports both halves (batch dimension symbolic where the capture
allowed it) into a directory::

    head.pt2        model inputs -> crossing tensors (an identity for a cloud-only plan)
    tail.pt2        crossing tensors -> model outputs (absent for an edge-only plan)
    manifest.json   model, plan, inputs, crossing tensors and outputs in order, sha256 of each file

``load_split`` checks every file against the manifest's sha256, and each archive
(:func:`partitioner.deploy.archive.check_pt2`) before handing it to ``torch.export.load``:
loading an artifact runs no code from it.

A manifest may name a *runtime* for a file (``"runtime": {"head.pt2": "pt2e-int8"}``):
a registered :class:`Runtime` then registers the custom ops that file's graph calls
before it is loaded, and prepares the loaded module for this host afterwards (an
int8 graph is lowered to the host's int8 kernels). Callers load every artifact the
same way; what a runtime did is reported in :attr:`SplitArtifact.runtime`.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from partitioner.deploy.archive import check_pt2
from partitioner.deploy.files import sha256_file, write_json_atomic
from partitioner.deploy.runtimes import RUNTIMES
from partitioner.deploy.split import Halves, placeholder_name, split_module
from partitioner.errors import ArtifactError, EdgecutError
from partitioner.model.capture import CapturedModel
from partitioner.model.graph import MAX_BATCH, TensorSpec
from partitioner.solve.plan import Plan

FORMAT = "edgecut-split"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"


class ManifestTensors:
    """The tensor specs a split's manifest lists, for any class holding ``self.manifest``."""

    manifest: dict[str, Any]

    @property
    def crossing(self) -> list[TensorSpec]:
        return [TensorSpec.from_json(t) for t in self.manifest["crossing"]]

    @property
    def outputs(self) -> list[TensorSpec]:
        return [TensorSpec.from_json(t) for t in self.manifest["outputs"]]


@dataclass
class SplitArtifact(ManifestTensors):
    """A loaded split: runnable halves plus the manifest that describes them."""

    path: Path
    manifest: dict[str, Any]
    head: nn.Module
    tail: nn.Module | None
    runtime: dict[str, str] = field(default_factory=dict)  # file -> what its runtime did

    @property
    def plan(self) -> Plan:
        return Plan.from_json(self.manifest["plan"])

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


def _spec(name: str, tensor: torch.Tensor) -> dict[str, Any]:
    shape = [1, *tensor.shape[1:]] if tensor.dim() else []
    return {
        "name": name,
        "shape": shape,
        "dtype": str(tensor.dtype).removeprefix("torch."),
        "bytes": int(tensor[:1].numel() * tensor.element_size())
        if tensor.dim()
        else int(tensor.element_size()),
    }


def export_half(
    module: nn.Module, args: tuple[torch.Tensor, ...], dynamic: bool, path: Path
) -> None:
    """Save ``module`` at ``path`` as a ``.pt2`` archive, batch dimension dynamic or not."""
    from torch.export import Dim, export

    batch = Dim("batch", min=1, max=MAX_BATCH)
    shapes = tuple({0: batch} if a.dim() > 0 else {} for a in args) if dynamic else None
    try:
        with torch.no_grad():
            exported = export(module, args, dynamic_shapes=shapes, strict=False)
    except Exception as exc:
        raise EdgecutError(
            f"could not export {path.name}: {type(exc).__name__}: "
            f"{(str(exc).splitlines() or [''])[0][:300]}"
        ) from exc
    exported.example_inputs = None  # the archive then carries no pickled sample inputs
    tmp = path.with_name(path.stem + ".tmp.pt2")
    torch.export.save(exported, tmp)
    os.replace(tmp, path)


def write_split(
    captured: CapturedModel,
    plan: Plan,
    out_dir: str | Path,
    *,
    model_spec: str | None = None,
    extra: dict[str, Any] | None = None,
    halves: Halves | None = None,
) -> Path:
    """Export the plan's head and tail into ``out_dir`` with a manifest; returns the dir."""
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise EdgecutError(f"cannot create output directory {out}: {exc.strerror}") from None
    if not os.access(out, os.W_OK):
        raise EdgecutError(f"output directory {out} is not writable")
    halves = halves or split_module(captured, plan.edge_nodes)
    example = captured.example_inputs[0]
    with torch.inference_mode():
        mid = tuple(halves.head(example))
        outputs = tuple(halves.tail(*mid)) if halves.tail is not None else mid
    dynamic = captured.dynamic_batch
    files: dict[str, dict[str, Any]] = {}
    export_half(halves.head, (example,), dynamic, out / "head.pt2")
    files["head.pt2"] = {}
    if halves.tail is not None:
        export_half(halves.tail, mid, dynamic, out / "tail.pt2")
        files["tail.pt2"] = {}
    elif (out / "tail.pt2").exists():
        (out / "tail.pt2").unlink()
    for name in files:
        path = out / name
        files[name] = {"sha256": sha256_file(path), "bytes": path.stat().st_size}
    graph = captured.graph
    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "model": graph.model,
        "model_spec": model_spec or graph.model,
        "input_shape": list(captured.input_shape),
        "dynamic_batch": dynamic,
        "inputs": [_spec(name, example) for name in graph.inputs],
        "crossing": [
            {**_spec(node.name, t), "placeholder": placeholder_name(node.name)}
            for node, t in zip(halves.crossing, mid if halves.crossing else (), strict=True)
        ],
        "outputs": [_spec(name, t) for name, t in zip(graph.outputs, outputs, strict=True)],
        "edge_only": halves.tail is None,
        "cloud_only": set(halves.edge_nodes) == set(graph.inputs),
        "codec": plan.codec,
        "plan": plan.to_json(),
        "files": files,
        "torch_version": torch.__version__.split("+")[0],
        **(extra or {}),
    }
    write_json_atomic(out / MANIFEST, manifest)
    return out


def read_manifest(path: str | Path) -> dict[str, Any]:
    root = Path(path)
    manifest_path = root / MANIFEST
    if not root.is_dir():
        raise ArtifactError(f"split artifact {root}: not a directory")
    try:
        manifest = json.loads(manifest_path.read_text())
    except FileNotFoundError:
        raise ArtifactError(f"split artifact {root}: no {MANIFEST}") from None
    except json.JSONDecodeError as exc:
        raise ArtifactError(f"split artifact {root}: {MANIFEST} is not JSON: {exc}") from None
    if manifest.get("format") != FORMAT:
        raise ArtifactError(
            f"split artifact {root}: format is {manifest.get('format')!r}, expected {FORMAT!r}"
        )
    if manifest.get("format_version") != FORMAT_VERSION:
        raise ArtifactError(
            f"split artifact {root}: format_version {manifest.get('format_version')!r}, "
            f"this edgecut reads {FORMAT_VERSION}"
        )
    for key in ("inputs", "crossing", "outputs", "files", "plan"):
        if key not in manifest:
            raise ArtifactError(f"split artifact {root}: manifest has no {key!r}")
    return manifest


def verify_files(root: Path, manifest: dict[str, Any]) -> None:
    for name, meta in manifest["files"].items():
        path = root / name
        if Path(name).name != name:
            raise ArtifactError(f"split artifact {root}: file name {name!r} is not a plain name")
        if not path.is_file():
            raise ArtifactError(f"split artifact {root}: {name} is listed but missing")
        actual = sha256_file(path)
        if actual != meta.get("sha256"):
            raise ArtifactError(
                f"split artifact {root}: {name} sha256 is {actual[:16]}…, manifest says "
                f"{str(meta.get('sha256'))[:16]}…: the file was altered or truncated"
            )


def _example(root: Path, specs: list[dict[str, Any]], batch: int) -> tuple[torch.Tensor, ...]:
    """Zeros shaped like ``specs`` (batch ``batch``): what a runtime prepares a half with."""
    tensors = []
    for spec in specs:
        dtype = getattr(torch, str(spec.get("dtype")), None)
        if not isinstance(dtype, torch.dtype):
            raise ArtifactError(
                f"split artifact {root}: tensor {spec.get('name')!r} has dtype "
                f"{spec.get('dtype')!r}, expected a torch dtype name such as 'float32'"
            )
        tensors.append(torch.zeros((batch, *spec["shape"][1:]), dtype=dtype))
    return tuple(tensors)


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
        module = exported.module()  # generates and execs Python from the program
    except Exception as exc:
        raise ArtifactError(
            f"{path}: torch.export.load failed: {type(exc).__name__}: "
            f"{(str(exc).splitlines() or [''])[0][:300]}"
        ) from exc
    if handler is None:
        return module, ""
    return handler.prepare(module, example)


def load_split(path: str | Path) -> SplitArtifact:
    root = Path(path)
    manifest = read_manifest(root)
    verify_files(root, manifest)
    runtimes = manifest.get("runtime") or {}
    if not isinstance(runtimes, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in runtimes.items()
    ):
        raise ArtifactError(f"split artifact {root}: 'runtime' must map file names to names")
    batch = 2 if manifest.get("dynamic_batch") else 1
    done: dict[str, str] = {}
    halves: dict[str, nn.Module] = {}
    for name, specs in (("head.pt2", manifest["inputs"]), ("tail.pt2", manifest["crossing"])):
        if name not in manifest["files"]:
            continue
        runtime = runtimes.get(name)
        example = _example(root, specs, batch) if runtime else ()
        halves[name], how = _load_half(root / name, runtime, example)
        if how:
            done[name] = how
    if "head.pt2" not in halves:
        raise ArtifactError(f"split artifact {root}: manifest lists no head.pt2")
    return SplitArtifact(root, manifest, halves["head.pt2"], halves.get("tail.pt2"), done)
