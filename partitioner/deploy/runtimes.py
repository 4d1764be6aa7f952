"""Runtimes: how a half saved in a particular form is loaded and prepared on this host.

A manifest may name a runtime for a file (``"runtime": {"head.pt2": "pt2e-int8"}``);
:func:`partitioner.deploy.artifact.load_split` then asks :func:`get_runtime` for it,
registers the custom ops the file's graph calls before loading it, and prepares the
loaded module afterwards. One runtime is built in:

The ``pt2e-int8`` runtime: how an int8 head saved by PT2E is loaded and made fast.

A head quantized with PT2E is saved in its portable *reference* form: int8 weights,
and ``quantize``/``dequantize`` ops around float convolutions. Any host can run it
(the ops are defined by ``torch.ao.quantization.fx._decomposed``, registered before
loading), but only as fast as float. On x86-64 with oneDNN the loaded graph is
lowered here: re-exported with a symbolic batch, then inductor's freezing passes
fuse each dequantize-conv-quantize pattern into one oneDNN int8 kernel (weights
prepacked) and fold the constants. Elsewhere (a Raspberry Pi) the reference graph
runs as is; ``docs/compression.md`` says what to run there instead.
"""

from __future__ import annotations

import platform
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.fx as fx
from torch import nn

from partitioner.errors import ArtifactError
from partitioner.model.graph import MAX_BATCH
from partitioner.registry import Registry


@dataclass(frozen=True)
class Runtime:
    """How a half saved in a particular form is loaded and prepared on this host."""

    name: str
    register_ops: Callable[[], None]  # before loading: define the custom ops the graph calls
    # (module, example inputs at batch 2) -> (module ready to run here, what was done)
    prepare: Callable[[nn.Module, tuple[torch.Tensor, ...]], tuple[nn.Module, str]]


RUNTIMES: Registry[Runtime] = Registry("runtime", error=ArtifactError)


PT2E_INT8 = "pt2e-int8"

_X86 = {"x86_64", "amd64", "i386", "i686"}


def _register_ops() -> None:
    # Defines the quantized_decomposed ops; torch itself ships them, torchao is not needed.
    import torch.ao.quantization.fx._decomposed  # noqa: F401


def x86_lowering_available() -> bool:
    return platform.machine().lower() in _X86 and torch.backends.mkldnn.is_available()


def lower_to_x86(module: nn.Module, example: tuple[torch.Tensor, ...]) -> fx.GraphModule:
    """An int8 reference graph with its q/dq patterns fused into oneDNN int8 kernels."""
    from torch._inductor.constant_folding import constant_fold
    from torch._inductor.fx_passes.freezing_patterns import freezing_passes
    from torch.export import Dim, export

    # Keep only the decompositions of composite-implicit ops: the quantized patterns
    # the freezing passes match are written in terms of the remaining ATen ops.
    table = torch.export.default_decompositions()
    for op in list(table):
        if not torch._export.utils._is_cia_op(op):
            del table[op]
    dynamic = bool(example) and example[0].dim() > 0 and example[0].shape[0] > 1
    batch = Dim("batch", min=1, max=MAX_BATCH)
    shapes = tuple({0: batch} if t.dim() > 0 else {} for t in example) if dynamic else None
    with torch.no_grad():
        exported = export(module, example, dynamic_shapes=shapes, strict=False)
    lowered = exported.run_decompositions(table).module()
    assert isinstance(lowered, fx.GraphModule)
    graph = lowered.graph
    for node in list(graph.nodes):
        # The linear patterns expect permute where export left aten.t.
        if node.op == "call_function" and node.target == torch.ops.aten.t.default:
            with graph.inserting_before(node):
                permute = graph.call_function(
                    torch.ops.aten.permute.default, (node.args[0], [1, 0])
                )
            node.replace_all_uses_with(permute)
            graph.erase_node(node)
    lowered.recompile()
    with torch.no_grad():
        freezing_passes(lowered, example)
        constant_fold(lowered)
    for node in lowered.graph.nodes:
        # oneDNN kernels return channels-last tensors, which a later flatten's view
        # cannot reinterpret: reshape copies only when it has to.
        if node.op == "call_function" and node.target == torch.ops.aten.view.default:
            node.target = torch.ops.aten.reshape.default
    lowered.recompile()
    with torch.no_grad():
        lowered(*example)  # fail here, not on the first frame
    return lowered


def _prepare(module: nn.Module, example: tuple[torch.Tensor, ...]) -> tuple[nn.Module, str]:
    if not x86_lowering_available():
        return module, f"int8 reference graph (no int8 lowering for {platform.machine()})"
    try:
        lowered = lower_to_x86(module, example)
    except Exception as exc:  # the reference graph is still correct: run it, and say why
        reason = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"
        warnings.warn(f"int8 lowering failed, running the reference graph: {reason}", stacklevel=2)
        return module, f"int8 reference graph (lowering failed: {reason})"
    kernels = len(
        [
            n
            for n in lowered.graph.nodes
            if n.op == "call_function" and str(n.target).startswith("onednn.")
        ]
    )
    if kernels == 0:
        return module, "int8 reference graph (no pattern the x86 lowering knows)"
    return lowered, f"int8 lowered to oneDNN kernels (x86, {kernels} int8 ops)"


RUNTIMES.register(Runtime(PT2E_INT8, _register_ops, _prepare))
