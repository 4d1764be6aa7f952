"""``int8``: post-training quantization of the head with PT2E (torchao), on real samples.

The head is exported, annotated by a quantizer (``X86InductorQuantizer``: uint8
activations per tensor from histograms, int8 weights per channel; ``arm``:
``ArmInductorQuantizer``, signed int8 activations and symmetric per-tensor weights as
the qnnpack/XNNPACK kernels of ARM CPUs expect), observed on calibration samples,
and converted: batch norm is folded into the convolutions and the weights are stored
as int8. The artifact keeps that portable reference graph and names the
``pt2e-int8`` runtime, which lowers it to oneDNN int8 kernels where it is loaded
on x86 (:mod:`partitioner.deploy.runtimes`).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Any

import torch
import torch.fx as fx
from torch import nn
from torch.export import Dim, export

from partitioner.compress.config import Int8Config
from partitioner.compress.head import Context, Head
from partitioner.compress.registry import METHODS, Method
from partitioner.deploy.runtimes import PT2E_INT8
from partitioner.model.graph import MAX_BATCH

CALIBRATION_BATCH = 64


@contextlib.contextmanager
def quiet_torchao() -> Iterator[None]:
    """torchao logs a warning per optional CUDA kernel library it cannot load on a CPU host."""
    loggers = [logging.getLogger(name) for name in ("torchao", "torch.utils._pytree")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def export_for_quantization(module: nn.Module, example: torch.Tensor) -> fx.GraphModule:
    batch = Dim("batch", min=1, max=MAX_BATCH)
    with torch.no_grad():
        return export(module, (example,), dynamic_shapes=({0: batch},), strict=False).module()


# torchao is imported inside the functions that use it: it takes longer to import than
# the rest of partitioner.compress together, and only the int8 method needs it.


def _quantizer(backend: str) -> Any:
    with quiet_torchao():
        if backend == "arm":
            from torchao.quantization.pt2e.quantizer.arm_inductor_quantizer import (
                ArmInductorQuantizer,
                get_default_arm_inductor_quantization_config,
            )

            return ArmInductorQuantizer().set_global(get_default_arm_inductor_quantization_config())
        from torchao.quantization.pt2e.quantizer.x86_inductor_quantizer import (
            X86InductorQuantizer,
            get_default_x86_inductor_quantization_config,
        )

        return X86InductorQuantizer().set_global(get_default_x86_inductor_quantization_config())


def drop_unused_tensors(module: fx.GraphModule) -> None:
    """convert_pt2e leaves the float weights it replaced on the module: delete them."""
    used = {str(n.target) for n in module.graph.nodes if n.op == "get_attr"}
    names = [n for n, _ in module.named_parameters()] + [n for n, _ in module.named_buffers()]
    for name in names:
        if name in used:
            continue
        owner_path, _, attr = name.rpartition(".")
        owner = module.get_submodule(owner_path) if owner_path else module
        delattr(owner, attr)
    module.delete_all_unused_submodules()
    module.recompile()


def quantize_int8(head: Head, ctx: Context, config: Int8Config) -> Head:
    with quiet_torchao():
        from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    exported = export_for_quantization(head.module, ctx.example)
    prepared = prepare_pt2e(exported, _quantizer(config.backend))
    samples = ctx.data.x_train[: config.calibration_samples]
    batches = list(torch.split(samples, CALIBRATION_BATCH))
    ctx.report("int8: calibrate", 0, len(batches))
    with torch.no_grad():
        for i, batch in enumerate(batches, 1):
            prepared(batch)
            ctx.report("int8: calibrate", i, len(batches))
    converted = convert_pt2e(prepared)
    drop_unused_tensors(converted)
    note = {
        "backend": config.backend,
        "calibration_samples": int(samples.shape[0]),
        "quantizer": "ArmInductorQuantizer" if config.backend == "arm" else "X86InductorQuantizer",
    }
    return head.replaced(
        converted,
        structure=head.structure,
        runtime=PT2E_INT8,
        trainable=False,
        notes={"int8": note},
    )


def _structure(head: Head, ctx: Context, config: Int8Config) -> Head:
    # The same ops, priced at the device's int8 throughput: the runtime marks it.
    return head.replaced(head.module, structure=head.structure, runtime=PT2E_INT8, trainable=False)


METHODS.register(
    Method(
        "int8",
        Int8Config,
        quantize_int8,
        _structure,
        "post-training int8 (PT2E, torchao), calibrated on real samples; lowered on x86",
        terminal=True,
    )
)
