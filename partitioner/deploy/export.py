"""Split artifacts, the write side: a plan's head and tail exported as ``.pt2`` plus a manifest.

:func:`write_split` cuts a captured model at a plan (:mod:`partitioner.deploy.split`),
exports both halves with the batch dimension symbolic where the capture allowed it, and
writes the manifest that :mod:`partitioner.deploy.artifact` reads back. The compressor
exports its smaller heads through :func:`export_half` too.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from partitioner.deploy.artifact import MANIFEST
from partitioner.deploy.files import sha256_file, write_json_atomic
from partitioner.deploy.schema import SPLIT_FORMAT, SPLIT_FORMAT_VERSION
from partitioner.deploy.split import Halves, placeholder_name, split_module
from partitioner.errors import EdgecutError
from partitioner.model.capture import CapturedModel
from partitioner.model.graph import MAX_BATCH
from partitioner.solve.plan import Plan


def _spec(name: str, tensor: torch.Tensor, batch_dim: int | None, batch: int) -> dict[str, Any]:
    """A manifest's entry for ``tensor``, which holds ``batch`` frames along ``batch_dim``."""
    shape = list(tensor.shape)
    if batch_dim is not None and shape:
        shape[batch_dim] //= batch
    return {
        "name": name,
        "shape": shape,
        "dtype": str(tensor.dtype).removeprefix("torch."),
        "bytes": math.prod(shape) * tensor.element_size(),
        "batch_dim": batch_dim,
    }


def export_half(
    module: nn.Module,
    args: tuple[torch.Tensor, ...],
    dynamic: bool,
    path: Path,
    batch_dims: Sequence[int | None] | None = None,
    frames: int | None = None,
) -> None:
    """Save ``module`` at ``path`` as a ``.pt2`` archive, batch dimension dynamic or not.

    ``batch_dims`` says where each argument holds the batch (default: dim 0 of each), and
    ``frames`` how many frames ``args`` hold there (default: as many as that dim's size).
    A dim holding k entries per frame (Swin's windows, ``k * batch``) is exported as that
    multiple of the one batch dimension.
    """
    from torch.export import Dim, export

    batch = Dim("batch", min=1, max=MAX_BATCH)
    dims = list(batch_dims) if batch_dims is not None else [0] * len(args)
    shapes = tuple(_dynamic_dim(a, d, batch, frames) for a, d in zip(args, dims, strict=True))
    try:
        with torch.no_grad():
            exported = export(
                module, args, dynamic_shapes=shapes if dynamic else None, strict=False
            )
    except Exception as exc:
        raise EdgecutError(
            f"could not export {path.name}: {type(exc).__name__}: "
            f"{(str(exc).splitlines() or [''])[0][:300]}"
        ) from exc
    exported.example_inputs = None  # the archive then carries no pickled sample inputs
    tmp = path.with_name(path.stem + ".tmp.pt2")
    torch.export.save(exported, tmp)
    os.replace(tmp, path)


def _dynamic_dim(
    arg: torch.Tensor, batch_dim: int | None, batch: Any, frames: int | None
) -> dict[int, Any]:
    """The dynamic shape of one argument: its batch dim as ``k * batch``, k its size per frame."""
    if batch_dim is None or arg.dim() == 0:
        return {}
    per_frame = arg.shape[batch_dim] // frames if frames else 1
    return {batch_dim: batch if per_frame == 1 else per_frame * batch}


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
    batch = int(example.shape[0]) if example.dim() else 1
    graph = captured.graph
    input_dims = [graph.node(name).batch_dim for name in graph.inputs]
    crossing_dims = [node.batch_dim for node in halves.crossing]
    output_dims = [graph.node(name).batch_dim for name in graph.outputs]
    files: dict[str, dict[str, Any]] = {}
    export_half(halves.head, (example,), dynamic, out / "head.pt2", input_dims, batch)
    files["head.pt2"] = {}
    if halves.tail is not None:
        export_half(halves.tail, mid, dynamic, out / "tail.pt2", crossing_dims, batch)
        files["tail.pt2"] = {}
    elif (out / "tail.pt2").exists():
        (out / "tail.pt2").unlink()
    for name in files:
        path = out / name
        files[name] = {"sha256": sha256_file(path), "bytes": path.stat().st_size}
    manifest = {
        "format": SPLIT_FORMAT,
        "format_version": SPLIT_FORMAT_VERSION,
        "model": graph.model,
        "model_spec": model_spec or graph.model,
        "input_shape": list(captured.input_shape),
        "dynamic_batch": dynamic,
        "inputs": [
            _spec(name, example, d, batch) for name, d in zip(graph.inputs, input_dims, strict=True)
        ],
        "crossing": [
            {
                **_spec(node.name, t, node.batch_dim, batch),
                "placeholder": placeholder_name(node.name),
            }
            for node, t in zip(halves.crossing, mid if halves.crossing else (), strict=True)
        ],
        "outputs": [
            _spec(name, t, d, batch)
            for name, t, d in zip(graph.outputs, outputs, output_dims, strict=True)
        ],
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
