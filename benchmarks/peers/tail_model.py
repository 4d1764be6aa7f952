"""What the peer servers run: one exported tail and the tensors a Triton export declares.

Shared by ``pytriton_serve.py`` and ``mlserver_runtime.py``, which run in their own virtual
environments (see ``benchmarks/serving_peer.py``): this module imports neither edgecut nor
anything but numpy, torch and (to read ``config.pbtxt``) tritonclient's copy of Triton's
model-config schema.

``config.pbtxt`` (written by ``edgecut repository export --format triton``) names the
inputs, outputs, batch size, batching delay and instances; the engine is the export's
TorchScript ``model.pt`` or, with ``--tail``, the split's ``tail.pt2`` loaded with
``torch.export.load`` as the edgecut cloud node loads it (the same kernels, so a comparison
measures the serving stack, not the engine).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

NUMPY_TYPES = {
    "TYPE_BOOL": np.bool_,
    "TYPE_UINT8": np.uint8,
    "TYPE_INT8": np.int8,
    "TYPE_INT16": np.int16,
    "TYPE_INT32": np.int32,
    "TYPE_INT64": np.int64,
    "TYPE_FP16": np.float16,
    "TYPE_FP32": np.float32,
    "TYPE_FP64": np.float64,
}


@dataclass(frozen=True)
class TensorDecl:
    name: str
    dtype: Any  # numpy scalar type
    dims: tuple[int, ...]  # without the batch dimension when the model batches


@dataclass(frozen=True)
class TritonModelDir:
    name: str
    version: int
    path: Path
    max_batch_size: int
    batch_delay_us: int
    instances: int
    inputs: tuple[TensorDecl, ...]
    outputs: tuple[TensorDecl, ...]

    @classmethod
    def read(cls, path: Path) -> TritonModelDir:
        # Imported here: tritonclient.grpc registers the protobuf package "inference", as
        # MLServer does, so a runtime inside MLServer uses from_json instead.
        from google.protobuf import text_format
        from tritonclient.grpc import model_config_pb2

        config = text_format.Parse(
            (path / "config.pbtxt").read_text(), model_config_pb2.ModelConfig()
        )
        versions = sorted(int(p.name) for p in path.iterdir() if p.name.isdigit())
        if len(versions) != 1:
            raise SystemExit(f"{path}: expected one version directory, found {versions}")

        def decls(items: Any) -> tuple[TensorDecl, ...]:
            return tuple(
                TensorDecl(
                    t.name,
                    NUMPY_TYPES[model_config_pb2.DataType.Name(t.data_type)],
                    tuple(t.dims),
                )
                for t in items
            )

        return cls(
            name=config.name,
            version=versions[0],
            path=path,
            max_batch_size=config.max_batch_size,
            batch_delay_us=config.dynamic_batching.max_queue_delay_microseconds,
            instances=sum(g.count for g in config.instance_group) or 1,
            inputs=decls(config.input),
            outputs=decls(config.output),
        )

    def to_json(self) -> dict[str, Any]:
        def tensors(items: tuple[TensorDecl, ...]) -> list[dict[str, Any]]:
            return [
                {"name": d.name, "dtype": np.dtype(d.dtype).name, "dims": list(d.dims)}
                for d in items
            ]

        return {
            "name": self.name,
            "version": self.version,
            "path": str(self.path.resolve()),
            "max_batch_size": self.max_batch_size,
            "batch_delay_us": self.batch_delay_us,
            "instances": self.instances,
            "inputs": tensors(self.inputs),
            "outputs": tensors(self.outputs),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TritonModelDir:
        def tensors(items: list[dict[str, Any]]) -> tuple[TensorDecl, ...]:
            return tuple(
                TensorDecl(d["name"], np.dtype(d["dtype"]).type, tuple(d["dims"])) for d in items
            )

        return cls(
            **{k: data[k] for k in ("name", "version", "max_batch_size")},
            path=Path(data["path"]),
            batch_delay_us=data["batch_delay_us"],
            instances=data["instances"],
            inputs=tensors(data["inputs"]),
            outputs=tensors(data["outputs"]),
        )


class TailRunner:
    """Runs the tail on numpy arrays, in the order the config lists them."""

    def __init__(self, model: TritonModelDir, tail_pt2: Path | None = None) -> None:
        self.model = model
        if tail_pt2 is not None:
            self.module: Any = torch.export.load(str(tail_pt2)).module()
        else:
            self.module = torch.jit.load(str(model.path / str(model.version) / "model.pt"))

    def __call__(self, *arrays: np.ndarray) -> dict[str, np.ndarray]:
        with torch.inference_mode():
            out = self.module(*(torch.from_numpy(np.ascontiguousarray(a)) for a in arrays))
        outs = (out,) if isinstance(out, torch.Tensor) else tuple(out)
        return {d.name: t.numpy() for d, t in zip(self.model.outputs, outs, strict=True)}
