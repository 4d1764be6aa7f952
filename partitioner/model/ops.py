"""Op accounting: what class of work an ATen op is, and how many FLOPs it does.

The cost model prices a node by its op class (a convolution and a ReLU run at
very different efficiencies on the same chip) and by its FLOPs and the bytes it
moves. Each ATen op maps to an :class:`OpRule` through a small registry; an op
that is not listed falls back to one FLOP per output element, class ``other``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

# Op classes the device profiles give an efficiency for.
OP_CLASSES = (
    "conv",  # dense convolution (groups == 1 or few groups)
    "dwconv",  # depthwise / grouped convolution with one channel per group
    "matmul",  # linear, mm, bmm, addmm
    "norm",  # batch/layer/group norm
    "elementwise",  # activations and arithmetic
    "pool",  # max/avg pooling, adaptive pooling, reductions
    "memory",  # cat, stack, pad, copies: pure data movement
    "view",  # flatten, reshape, dropout in eval: no work at run time
    "input",  # the model input
    "other",
)

Shape = tuple[int, ...]


@dataclass(frozen=True)
class OpShapes:
    """Shapes the FLOP rule needs: tensor inputs, output, and the op's arguments."""

    inputs: Sequence[Shape | None]  # one entry per positional arg; None if not a tensor
    output: Shape
    args: Sequence[object]  # positional args as captured (tensors replaced by shapes)


@dataclass(frozen=True)
class OpRule:
    op_class: str
    flops: Callable[[OpShapes], int]


def _numel(shape: Shape | None) -> int:
    return math.prod(shape) if shape else (1 if shape == () else 0)


def _out_numel(s: OpShapes) -> int:
    return _numel(s.output)


def _zero(_: OpShapes) -> int:
    return 0


def _conv_flops(s: OpShapes) -> int:
    # 2 * (output elements) * (input channels per group) * (kernel elements): one
    # multiply and one add per MAC; the bias adds one per output element.
    weight = s.inputs[1]
    if weight is None:
        return _out_numel(s)
    macs_per_output = math.prod(weight[1:])
    has_bias = len(s.inputs) > 2 and s.inputs[2] is not None
    return 2 * _out_numel(s) * macs_per_output + (_out_numel(s) if has_bias else 0)


def _linear_flops(s: OpShapes) -> int:
    weight = s.inputs[1]
    if weight is None:
        return _out_numel(s)
    in_features = weight[-1]
    has_bias = len(s.inputs) > 2 and s.inputs[2] is not None
    return 2 * _out_numel(s) * in_features + (_out_numel(s) if has_bias else 0)


def _matmul_flops(s: OpShapes) -> int:
    # (..., M, K) @ (..., K, N): 2*M*N*K per batch element.
    a = s.inputs[0]
    if a is None or len(a) == 0:
        return _out_numel(s)
    return 2 * _out_numel(s) * a[-1]


def _addmm_flops(s: OpShapes) -> int:
    mat1 = s.inputs[1]
    if mat1 is None:
        return _out_numel(s)
    return 2 * _out_numel(s) * mat1[-1] + _out_numel(s)


def _pool_flops(s: OpShapes) -> int:
    kernel = s.args[1] if len(s.args) > 1 else None
    if isinstance(kernel, (list, tuple)) and kernel:
        return _out_numel(s) * math.prod(int(k) for k in kernel)
    if isinstance(kernel, int):
        return _out_numel(s) * kernel * kernel
    return _out_numel(s)


def _input_numel(s: OpShapes) -> int:
    return _numel(s.inputs[0]) if s.inputs and s.inputs[0] is not None else _out_numel(s)


def _per_element(k: int) -> Callable[[OpShapes], int]:
    return lambda s: k * _out_numel(s)


_RULES: dict[str, OpRule] = {}


def register_op(names: Sequence[str], op_class: str, flops: Callable[[OpShapes], int]) -> None:
    """Register how ops named ``names`` (ATen packet names, e.g. ``conv2d``) are priced."""
    if op_class not in OP_CLASSES:
        raise ValueError(f"unknown op class {op_class!r}; expected one of {OP_CLASSES}")
    for name in names:
        _RULES[name] = OpRule(op_class, flops)


register_op(["conv1d", "conv2d", "conv3d", "convolution", "_convolution"], "conv", _conv_flops)
register_op(["linear"], "matmul", _linear_flops)
register_op(["mm", "bmm", "matmul"], "matmul", _matmul_flops)
register_op(["addmm"], "matmul", _addmm_flops)
# Eval-mode batch norm is a per-channel scale and shift.
register_op(
    ["batch_norm", "_native_batch_norm_legit_no_training", "native_batch_norm"],
    "norm",
    _per_element(2),
)
register_op(["layer_norm", "group_norm", "native_layer_norm"], "norm", _per_element(5))
register_op(
    [
        "relu",
        "relu6",
        "hardtanh",
        "leaky_relu",
        "sigmoid",
        "tanh",
        "silu",
        "hardswish",
        "hardsigmoid",
        "gelu",
        "elu",
        "add",
        "sub",
        "mul",
        "div",
        "neg",
        "clamp",
        "clamp_min",
        "clamp_max",
        "exp",
        "log",
        "sqrt",
        "rsqrt",
        "pow",
        "abs",
        "where",
        "maximum",
        "minimum",
    ],
    "elementwise",
    _per_element(1),
)
register_op(["softmax", "_softmax", "log_softmax", "_log_softmax"], "elementwise", _per_element(5))
register_op(
    [
        "max_pool1d",
        "max_pool2d",
        "max_pool3d",
        "avg_pool1d",
        "avg_pool2d",
        "avg_pool3d",
        "max_pool2d_with_indices",
    ],
    "pool",
    _pool_flops,
)
register_op(
    [
        "adaptive_avg_pool1d",
        "adaptive_avg_pool2d",
        "adaptive_avg_pool3d",
        "adaptive_max_pool2d",
        "_adaptive_avg_pool2d",
        "mean",
        "sum",
        "amax",
        "max",
        "min",
        "amin",
    ],
    "pool",
    _input_numel,
)
register_op(
    [
        "cat",
        "stack",
        "pad",
        "constant_pad_nd",
        "clone",
        "contiguous",
        "copy",
        "_to_copy",
        "to",
        "repeat",
        "expand_copy",
        "chunk",
        "split",
        "split_with_sizes",
        "unbind",
        "index_select",
        "slice_copy",
        "pixel_shuffle",
        "channel_shuffle",
    ],
    "memory",
    _zero,
)
register_op(
    [
        "flatten",
        "view",
        "reshape",
        "_unsafe_view",
        "permute",
        "transpose",
        "t",
        "squeeze",
        "unsqueeze",
        "expand",
        "slice",
        "select",
        "dropout",
        "feature_dropout",
        "alpha_dropout",
        "identity",
        "getitem",
        "alias",
        "detach",
        "narrow",
        "contiguous_format",
        "lift_fresh_copy",
        "type_as",
    ],
    "view",
    _zero,
)


def rule_for(op_name: str) -> OpRule:
    """The rule for an ATen op name; ``other`` at one FLOP per output element if unknown."""
    return _RULES.get(op_name, OpRule("other", _out_numel))


def classify(op_name: str, inputs: Sequence[Shape | None], args: Sequence[object]) -> str:
    """The op class, refining convolutions with one input channel per group to ``dwconv``."""
    rule = rule_for(op_name)
    if rule.op_class == "conv":
        groups = args[6] if op_name in ("conv1d", "conv2d", "conv3d") and len(args) > 6 else 1
        if op_name in ("convolution", "_convolution") and len(args) > 8:
            groups = args[8]
        weight = inputs[1] if len(inputs) > 1 else None
        if isinstance(groups, int) and groups > 1 and weight is not None and weight[1] == 1:
            return "dwconv"
    return rule.op_class


def count_flops(op_name: str, shapes: OpShapes) -> int:
    return int(rule_for(op_name).flops(shapes))
