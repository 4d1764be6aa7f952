"""``distill``: knowledge distillation into a lightweight student head.

The automatic student follows the lightweight-design rules of MobileNet and
ShuffleNet: every internal width is multiplied by ``width`` (the channels that cross
the cut keep their count, so the tail is unchanged), and every k x k convolution
with enough input channels becomes depthwise-separable — a depthwise k x k, batch
norm and ReLU, then a pointwise 1 x 1 — which costs Cin·k² + Cin·Cout instead of
Cin·Cout·k² per pixel. The student is trained to match the teacher head at the cut
(hint) and, through the frozen tail, its soft predictions and the labels.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
import torch.fx as fx
from torch import nn

from partitioner.compress.config import DistillConfig
from partitioner.compress.head import Context, Head, TupleOutput, as_tuple
from partitioner.compress.prune import prune_channels
from partitioner.compress.registry import METHODS, Method
from partitioner.compress.training import train_student
from partitioner.errors import ConfigError, EdgecutError
from partitioner.model.spec import load_model


def separable(conv: nn.Conv2d) -> nn.Sequential:
    """A depthwise-separable stand-in for ``conv``: same input, output, stride and padding."""
    cin = conv.in_channels
    depthwise = nn.Conv2d(
        cin,
        cin,
        conv.kernel_size,  # type: ignore[arg-type]
        stride=conv.stride,  # type: ignore[arg-type]
        padding=conv.padding,  # type: ignore[arg-type]
        dilation=conv.dilation,  # type: ignore[arg-type]
        groups=cin,
        bias=False,
    )
    pointwise = nn.Conv2d(cin, conv.out_channels, 1, bias=conv.bias is not None)
    return nn.Sequential(depthwise, nn.BatchNorm2d(cin), nn.ReLU(), pointwise)


def make_separable(module: fx.GraphModule, min_channels: int) -> list[str]:
    """Swap every dense k x k conv with >= ``min_channels`` inputs for a separable block."""
    swapped = []
    for node in module.graph.nodes:
        if node.op != "call_module":
            continue
        name = str(node.target)
        layer = module.get_submodule(name)
        if (
            isinstance(layer, nn.Conv2d)
            and layer.groups == 1
            and layer.kernel_size != (1, 1)
            and layer.in_channels >= min_channels
        ):
            parent_name, _, attr = name.rpartition(".")
            parent = module.get_submodule(parent_name) if parent_name else module
            setattr(parent, attr, separable(layer))
            swapped.append(name)
    return swapped


def build_student(head: Head, ctx: Context, config: DistillConfig) -> tuple[nn.Module, dict]:
    """The student module named by ``config.student``, untrained, and what it is."""
    if config.student == "self":
        if not head.trainable:
            raise EdgecutError("distill with student: self needs a float head (put int8 last)")
        return copy.deepcopy(head.module), {"student": "self"}
    if config.student == "auto":
        if not isinstance(head.module, fx.GraphModule):
            raise EdgecutError("distill: an automatic student needs a captured (FX) head")
        student = copy.deepcopy(head.module)
        note: dict[str, Any] = {"student": "auto", "width": config.width}
        if config.width < 1:
            note["narrow"] = prune_channels(student, ctx.example, 1 - config.width)
        if config.depthwise:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(ctx.seed)  # the new layers' initial weights
                note["separable"] = make_separable(student, config.min_depthwise_channels)
        student.recompile()
        return student.eval(), note
    return _user_student(config.student, ctx), {"student": config.student}


def _user_student(spec: str, ctx: Context) -> nn.Module:
    loaded = load_model(spec, (1, *ctx.example.shape[1:]))
    student = loaded.module
    with torch.no_grad():
        want = [tuple(t.shape) for t in as_tuple(ctx.teacher(ctx.example))]
        try:
            got = [tuple(t.shape) for t in as_tuple(student(ctx.example))]
        except Exception as exc:
            raise ConfigError(
                f"distill.student {spec}: fails on the head's input "
                f"{list(ctx.example.shape)}: {type(exc).__name__}: {exc}"
            ) from None
    if got != want:
        raise ConfigError(
            f"distill.student {spec}: returns tensors of shapes {got}, the cut needs {want}"
        )
    return TupleOutput(student)


def distill(head: Head, ctx: Context, config: DistillConfig) -> Head:
    student = _structure(head, ctx, config)
    train_student(student.module, ctx, config.train, task="distill: train student")
    return student


def _structure(head: Head, ctx: Context, config: DistillConfig) -> Head:
    module, note = build_student(head, ctx, config)
    return head.replaced(module, notes={"distill": note})


METHODS.register(
    Method(
        "distill",
        DistillConfig,
        distill,
        _structure,
        "distillation into a narrow depthwise-separable student head (hint + soft targets)",
    )
)
