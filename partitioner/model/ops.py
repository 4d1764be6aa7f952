"""Op accounting: what class of work an ATen op is, and the FLOPs torch does not count.

The cost model prices a node by its op class (a convolution and a ReLU run at
very different efficiencies on the same chip) and by its FLOPs and the bytes it
moves. FLOPs come first from torch's own accounting (``torch.utils.flop_counter``:
matmuls, convolutions, fused attention), applied by :mod:`partitioner.model.capture`
to the ATen ops a node dispatches to; the rules registered here cover the ops torch
has no formula for (elementwise ops, norms, pooling, the CPU attention kernel,
recurrent layers). An op that neither prices is *unpriced*: its node gets the class
``unpriced`` (priced by the bytes it moves only) and is listed in ``plan --json``
and ``profile --json`` as ``unpriced_ops``; it never silently costs a guess.
Nothing here imports torch.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from partitioner.model.graph import Graph, Loop

# Op classes the device profiles give an efficiency for.
OP_CLASSES = (
    "conv",  # dense convolution (groups == 1 or few groups)
    "dwconv",  # depthwise / grouped convolution with one channel per group
    "matmul",  # linear, mm, bmm, addmm, einsum
    "attention",  # fused scaled-dot-product attention: two batched GEMMs and a softmax
    "recurrent",  # LSTM / GRU / RNN layers: a small GEMM per time step, in sequence
    "norm",  # batch/layer/group norm
    "embedding",  # table lookups: bytes moved, no arithmetic
    "elementwise",  # activations and arithmetic
    "pool",  # max/avg pooling, adaptive pooling, reductions
    "memory",  # cat, stack, pad, copies: pure data movement
    "view",  # flatten, reshape, dropout in eval: no work at run time
    "input",  # the model input
    "other",
    "unpriced",  # no FLOP rule in torch or here: priced by bytes moved, and reported
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
    # The rule prices the whole op: its own kernels (an LSTM's fused cell loop) are
    # not looked into, so the count does not depend on which backend runs it.
    whole: bool = False


def _numel(shape: Shape | None) -> int:
    return math.prod(shape) if shape else (1 if shape == () else 0)


def _out_numel(s: OpShapes) -> int:
    return _numel(s.output)


def _zero(_: OpShapes) -> int:
    return 0


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


def _attention_flops(s: OpShapes) -> int:
    # q (B, H, Sq, D) @ k^T (B, H, D, Sk), then (B, H, Sq, Sk) @ v (B, H, Sk, Dv): two
    # batched GEMMs at 2 FLOPs per multiply-accumulate, as torch counts its fused
    # kernels (torch.utils.flop_counter.sdpa_flop_count); the softmax is not counted.
    q, k, v = (s.inputs[i] if len(s.inputs) > i else None for i in range(3))
    if q is None or k is None or v is None or len(q) < 2:
        return 0
    rows = _numel(q[:-1])  # B * H * Sq
    return 2 * rows * k[-2] * q[-1] + 2 * rows * k[-2] * v[-1]


# Elementwise FLOPs per hidden unit per step besides the GEMMs and bias adds: the gate
# activations plus the cell update (LSTM: c' = f*c + i*g, h' = o*tanh(c'); GRU:
# n = tanh(.. + r*..), h' = (1-z)*n + z*h; a plain RNN: its one activation).
_RNN_CELL_ELEMENTWISE = {"lstm": 4 + 5, "gru": 3 + 5, "rnn_tanh": 1, "rnn_relu": 1}
# Gates per recurrent kind: W_ih and W_hh have gates x H rows.
RECURRENT_GATES = {"lstm": 4, "gru": 3, "rnn_tanh": 1, "rnn_relu": 1}


@dataclass(frozen=True)
class _RnnGroup:
    """One layer and direction of a recurrent op: its weights' and biases' shapes."""

    weights: list[Shape]  # W_ih (G*H, I), W_hh (G*H, H) and a projection, if any
    biases: list[Shape]
    hidden: int


def _rnn_groups(kind: str, s: OpShapes) -> tuple[int, list[_RnnGroup]] | None:
    """(time steps x frames, the layer-direction groups) of a recurrent op, or None.

    Arguments as exported: (input, hx, params, has_biases, num_layers, dropout, train,
    bidirectional, batch_first); ``params`` holds, per layer and direction, W_ih
    (G*H, I), W_hh (G*H, H) and, with biases, b_ih and b_hh (and a projection, if any).
    """
    x = s.inputs[0]
    params = s.args[2] if len(s.args) > 2 else None
    if x is None or not isinstance(params, (list, tuple)) or not params or len(x) < 2:
        return None
    num_layers = int(s.args[4]) if len(s.args) > 4 else 1  # type: ignore[call-overload]
    directions = 2 if len(s.args) > 7 and s.args[7] else 1
    count = num_layers * directions
    per_group = len(params) // count
    groups = []
    for g in range(count):
        group = [p for p in params[g * per_group : (g + 1) * per_group] if p]
        weights = [p for p in group if len(p) == 2]
        biases = [p for p in group if len(p) == 1]
        hidden = (weights[0][0] if weights else 0) // RECURRENT_GATES[kind]
        groups.append(_RnnGroup(weights, biases, hidden))
    return _numel(x) // x[-1], groups


def _rnn_step(kind: str, group: _RnnGroup) -> tuple[int, int]:
    """(FLOPs, weight elements) of one time step of ``group`` for one frame, beyond the input
    projection: the hidden-to-hidden products (and projection), their bias, the cell's
    elementwise work."""
    recurrent = group.weights[1:]  # all but W_ih: what each step must wait for
    elements = sum(_numel(w) for w in recurrent)
    bias = _numel(group.biases[-1]) if len(group.biases) > 1 else 0  # b_hh
    return 2 * elements + bias + _RNN_CELL_ELEMENTWISE[kind] * group.hidden, elements


def _rnn_flops(kind: str) -> Callable[[OpShapes], int]:
    """FLOPs of ``aten.{lstm,gru,rnn_tanh,rnn_relu}.input``, every layer and direction.

    Each time step of each frame costs 2 FLOPs per weight plus the bias adds and the
    cell's elementwise work.
    """

    def flops(s: OpShapes) -> int:
        read = _rnn_groups(kind, s)
        if read is None:
            return 0
        steps, groups = read
        total = 0
        for group in groups:
            per_step = sum(2 * _numel(w) for w in group.weights)
            per_step += sum(_numel(b) for b in group.biases)
            per_step += _RNN_CELL_ELEMENTWISE[kind] * group.hidden
            total += steps * per_step
        return total

    return flops


def _rnn_loop(kind: str) -> Callable[[OpShapes], Loop | None]:
    """The sequential part of a recurrent op (:class:`~partitioner.model.graph.Loop`): its
    time steps in every layer and direction, each a hidden-to-hidden product that waits on
    the previous step. Per-group figures are averaged (stacked layers share H)."""

    def loop(s: OpShapes) -> Loop | None:
        read = _rnn_groups(kind, s)
        if read is None or not read[1]:
            return None
        steps, groups = read
        step = [_rnn_step(kind, g) for g in groups]
        return Loop(
            kind=kind,
            steps=steps * len(groups),
            step_flops=sum(f for f, _ in step) // len(groups),
            step_bytes=4 * sum(e for _, e in step) // len(groups),  # float32, as graph bytes
        )

    return loop


_RULES: dict[str, OpRule] = {}
_CLASSES: dict[str, str] = {}  # op class of ops priced by torch's own accounting


def register_op(
    names: Sequence[str],
    op_class: str,
    flops: Callable[[OpShapes], int] | None,
    *,
    whole: bool = False,
) -> None:
    """Register how ops named ``names`` (ATen packet names, e.g. ``conv2d``) are priced.

    ``flops=None`` gives only the class: torch's flop counter counts the op's FLOPs.
    """
    if op_class not in OP_CLASSES:
        raise ValueError(f"unknown op class {op_class!r}; expected one of {OP_CLASSES}")
    for name in names:
        _CLASSES[name] = op_class
        if flops is not None:
            _RULES[name] = OpRule(op_class, flops, whole)


# Counted by torch (flop_registry: convolution, mm, addmm, bmm, baddbmm, fused attention).
register_op(["conv1d", "conv2d", "conv3d", "convolution", "_convolution"], "conv", None)
register_op(["conv_transpose1d", "conv_transpose2d", "conv_transpose3d"], "conv", None)
register_op(["linear", "mm", "bmm", "matmul", "addmm", "baddbmm", "einsum"], "matmul", None)
register_op(
    [
        "_scaled_dot_product_flash_attention",
        "_scaled_dot_product_efficient_attention",
        "_scaled_dot_product_cudnn_attention",
    ],
    "attention",
    None,
)
# Torch has no formula for the CPU attention kernels or for an attention op as exported.
register_op(
    [
        "scaled_dot_product_attention",
        "_scaled_dot_product_flash_attention_for_cpu",
        "_scaled_dot_product_attention_math",
    ],
    "attention",
    _attention_flops,
)
_LOOPS: dict[str, Callable[[OpShapes], Loop | None]] = {}
for _kind in _RNN_CELL_ELEMENTWISE:
    register_op([_kind], "recurrent", _rnn_flops(_kind), whole=True)
    _LOOPS[_kind] = _rnn_loop(_kind)
register_op(["embedding", "embedding_bag", "_embedding_bag"], "embedding", _zero)
# Eval-mode batch norm is a per-channel scale and shift.
register_op(
    ["batch_norm", "_native_batch_norm_legit_no_training", "native_batch_norm"],
    "norm",
    _per_element(2),
)
register_op(
    ["layer_norm", "group_norm", "native_layer_norm", "native_group_norm", "rms_norm"],
    "norm",
    _per_element(5),
)
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
        "mish",
        "softplus",
        "add",
        "sub",
        "rsub",
        "mul",
        "div",
        "neg",
        "reciprocal",
        "clamp",
        "clamp_min",
        "clamp_max",
        "exp",
        "log",
        "sqrt",
        "rsqrt",
        "pow",
        "abs",
        "erf",
        "sin",
        "cos",
        "where",
        "maximum",
        "minimum",
        "masked_fill",
        "eq",
        "ne",
        "lt",
        "le",
        "gt",
        "ge",
        "logical_not",
        "logical_and",
        "logical_or",
        "bitwise_not",
        "bitwise_and",
        "bitwise_or",
        "sign",
        "floor",
        "ceil",
        "round",
        "lerp",
        "addcmul",
        "addcdiv",
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
        "max_pool3d_with_indices",
    ],
    "pool",
    _pool_flops,
)
register_op(
    [
        "adaptive_avg_pool1d",
        "adaptive_avg_pool2d",
        "adaptive_avg_pool3d",
        "adaptive_max_pool1d",
        "adaptive_max_pool2d",
        "_adaptive_avg_pool2d",
        "_adaptive_avg_pool3d",
        "mean",
        "sum",
        "prod",
        "amax",
        "max",
        "min",
        "amin",
        "argmax",
        "argmin",
        "var",
        "var_mean",
        "std",
        "std_mean",
        "norm",
        "linalg_vector_norm",
        "cumsum",
        "logsumexp",
        "any",
        "all",
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
        "reflection_pad1d",
        "reflection_pad2d",
        "replication_pad1d",
        "replication_pad2d",
        "clone",
        "contiguous",
        "copy",
        "copy_",
        "_to_copy",
        "to",
        "repeat",
        "tile",
        "roll",
        "flip",
        "expand_copy",
        "chunk",
        "split",
        "split_with_sizes",
        "unsafe_split",
        "unsafe_split_with_sizes",
        "unbind",
        "index",
        "index_select",
        "gather",
        "scatter",
        "index_put",
        "slice_copy",
        "slice_scatter",
        "select_scatter",
        "diagonal_scatter",
        "as_strided_scatter",
        "pixel_shuffle",
        "pixel_unshuffle",
        "channel_shuffle",
        "upsample_nearest1d",
        "upsample_nearest2d",
        "_upsample_nearest_exact2d",
        "fill",
        "zeros",
        "zeros_like",
        "ones",
        "ones_like",
        "full",
        "full_like",
        "empty",
        "empty_like",
        "empty_strided",
        "new_zeros",
        "new_ones",
        "new_full",
        "new_empty",
        "new_empty_strided",
        "arange",
        "tril",
        "triu",
        "masked_scatter",
        "im2col",
        "col2im",
    ],
    "memory",
    _zero,
)
register_op(
    [
        "flatten",
        "unflatten",
        "view",
        "reshape",
        "_unsafe_view",
        "_reshape_alias",
        "as_strided",
        "permute",
        "transpose",
        "t",
        "squeeze",
        "unsqueeze",
        "expand",
        "expand_as",
        "slice",
        "select",
        "narrow",
        "diagonal",
        "unfold",
        "dropout",
        "feature_dropout",
        "alpha_dropout",
        "identity",
        "getitem",
        "alias",
        "detach",
        "lift_fresh_copy",
        "lift_fresh",
        "type_as",
        "_assert_tensor_metadata",
        "_assert_scalar",
        "sym_constrain_range_for_size",
        "scalar_tensor",
        "view_as_real",
        "view_as_complex",
    ],
    "view",
    _zero,
)
register_op(
    ["upsample_bilinear2d", "upsample_bicubic2d", "_upsample_bilinear2d_aa", "grid_sampler_2d"],
    "elementwise",
    _per_element(8),
)


def base_name(op_name: str) -> str:
    """``relu_`` -> ``relu``: an in-place op is priced as its out-of-place form."""
    if op_name.endswith("_") and not op_name.startswith("_") and op_name[:-1] in _CLASSES:
        return op_name[:-1]
    return op_name


def rule_for(op_name: str) -> OpRule | None:
    """The project's FLOP rule for an ATen op name, or None (torch's count, or unpriced)."""
    return _RULES.get(base_name(op_name))


def op_class_of(op_name: str) -> str | None:
    """The class of an ATen op name, or None when the project does not know the op."""
    return _CLASSES.get(base_name(op_name))


def classify(op_name: str, inputs: Sequence[Shape | None], args: Sequence[object]) -> str | None:
    """The op class, refining convolutions with one input channel per group to ``dwconv``."""
    op_class = op_class_of(op_name)
    if op_class == "conv":
        groups = args[6] if op_name in ("conv1d", "conv2d", "conv3d") and len(args) > 6 else 1
        if op_name in ("convolution", "_convolution") and len(args) > 8:
            groups = args[8]
        weight = inputs[1] if len(inputs) > 1 else None
        if isinstance(groups, int) and groups > 1 and weight is not None and weight[1] == 1:
            return "dwconv"
    return op_class


def count_flops(op_name: str, shapes: OpShapes) -> int | None:
    """FLOPs by the project's rule, or None when it has none for ``op_name``."""
    rule = rule_for(op_name)
    return None if rule is None else int(rule.flops(shapes))


def loop_of(op_name: str, shapes: OpShapes) -> Loop | None:
    """The sequential steps of a recurrent op (``Loop``), or None for any other op."""
    rule = _LOOPS.get(base_name(op_name))
    return None if rule is None else rule(shapes)


def unpriced_ops(graph: Graph) -> list[str]:
    """The ops of ``graph`` that have no FLOP rule (class ``unpriced``), sorted and unique."""
    return sorted({n.op for n in graph.nodes if n.op_class == "unpriced"})


def unpriced_warning(graph: Graph) -> str | None:
    """One line warning that ``graph`` has unpriced ops (for table output), or None."""
    names = unpriced_ops(graph)
    if not names:
        return None
    nodes = sum(n.op_class == "unpriced" for n in graph.nodes)
    return (
        f"warning: {nodes} node(s) run ops with no FLOP rule ({', '.join(names)}): "
        "priced by the bytes they move only"
    )
