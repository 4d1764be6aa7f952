"""The head as a tree of ``nn`` modules, so that it can be trained, pruned and rewritten.

A captured head is an FX graph of ATen calls whose weights are plain attributes
(``aten.conv2d(x, conv1_weight, ...)``). :func:`modularize` turns every convolution,
batch norm and linear call into a call of a real ``nn.Conv2d`` / ``nn.BatchNorm2d`` /
``nn.Linear`` holding a copy of those weights: the same function, but one that
torch-pruning can trace, an optimiser can train (batch norm follows ``train()``),
and a method can rewrite by swapping one submodule. :func:`protected_layers` names
the layers whose output channels reach the cut: compression keeps them, so the
tensors that cross, and therefore the tail, stay exactly as they were.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterable

import torch
import torch.fx as fx
from torch import nn
from torch.fx.operator_schemas import normalize_function

_CONV2D = torch.ops.aten.conv2d.default
_BATCH_NORM = torch.ops.aten.batch_norm.default
_LINEAR = torch.ops.aten.linear.default

# Layers that change the channel count; everything else carries channels through.
CHANNEL_LAYERS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)


def modularize(head: fx.GraphModule) -> fx.GraphModule:
    """A copy of ``head`` whose conv/batch-norm/linear calls are module calls.

    The weights are copied, so the captured model (and the teacher built from it)
    is never modified. Modules are named after the attributes they replace
    (``layer1.0.conv1``) when that is unambiguous.
    """
    gm = copy.deepcopy(head)
    graph = gm.graph
    claimed: set[str] = set()
    for node in list(graph.nodes):
        if node.op != "call_function":
            continue
        built = _build_module(gm, node)
        if built is None:
            continue
        module, source, consumed = built
        name = _module_name(gm, node, consumed, claimed)
        claimed.add(name)
        gm.add_submodule(name, module)
        with graph.inserting_before(node):
            call = graph.call_module(name, (source,))
        call.meta = dict(node.meta)
        node.replace_all_uses_with(call)
        graph.erase_node(node)
    graph.eliminate_dead_code()
    _drop_unreferenced_tensors(gm)
    gm.recompile()
    return gm.eval()


def _fetch(gm: fx.GraphModule, node: object) -> torch.Tensor | None:
    if not isinstance(node, fx.Node) or node.op != "get_attr":
        return None
    value = _attr(gm, str(node.target))
    return value if isinstance(value, torch.Tensor) else None


def _attr(root: nn.Module, target: str) -> object:
    obj: object = root
    for part in target.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            return None
    return obj


def _build_module(gm: fx.GraphModule, node: fx.Node) -> tuple[nn.Module, fx.Node, list[str]] | None:
    """The module that computes ``node``, its input node, and the attributes it consumes."""
    if node.target not in (_CONV2D, _BATCH_NORM, _LINEAR):
        return None
    normalized = normalize_function(
        node.target, tuple(node.args), dict(node.kwargs), normalize_to_only_use_kwargs=True
    )
    if normalized is None:
        return None
    kw = normalized.kwargs
    source = kw["input"]
    if not isinstance(source, fx.Node):
        return None
    weight = _fetch(gm, kw.get("weight"))
    bias_node = kw.get("bias")
    bias = _fetch(gm, bias_node)
    if bias_node is not None and bias is None:
        return None  # a bias computed by the graph: leave the op as it is
    consumed = [
        str(n.target)
        for n in (kw.get("weight"), bias_node)
        if isinstance(n, fx.Node) and n.op == "get_attr"
    ]

    if node.target is _CONV2D:
        if weight is None or not all(
            isinstance(v, (list, tuple)) and all(isinstance(i, int) for i in v)
            for v in (kw["stride"], kw["padding"], kw["dilation"])
        ):
            return None
        groups = int(kw["groups"])
        out_ch, in_per_group, kh, kw_ = weight.shape
        conv = nn.Conv2d(
            in_per_group * groups,
            out_ch,
            (kh, kw_),
            stride=tuple(kw["stride"]),
            padding=tuple(kw["padding"]),
            dilation=tuple(kw["dilation"]),
            groups=groups,
            bias=bias is not None,
        )
        _load(conv, weight=weight, bias=bias)
        return conv, source, consumed

    if node.target is _LINEAR:
        if weight is None:
            return None
        linear = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None)
        _load(linear, weight=weight, bias=bias)
        return linear, source, consumed

    # batch norm in inference form: running statistics are attributes
    if kw["training"]:
        return None
    mean_node, var_node = kw["running_mean"], kw["running_var"]
    mean, var = _fetch(gm, mean_node), _fetch(gm, var_node)
    val = source.meta.get("val")
    if mean is None or var is None or not isinstance(val, torch.Tensor):
        return None
    if kw.get("weight") is not None and weight is None:
        return None
    norm_type = {2: nn.BatchNorm1d, 3: nn.BatchNorm1d, 4: nn.BatchNorm2d, 5: nn.BatchNorm3d}.get(
        val.dim()
    )
    if norm_type is None:
        return None
    norm = norm_type(
        mean.numel(), eps=float(kw["eps"]), momentum=kw["momentum"], affine=weight is not None
    )
    _load(norm, weight=weight, bias=bias, running_mean=mean, running_var=var)
    consumed += [str(mean_node.target), str(var_node.target)]
    holder = str(mean_node.target).rpartition(".")[0]
    tracked = _attr(gm, f"{holder}.num_batches_tracked") if holder else None
    if isinstance(tracked, torch.Tensor) and norm.num_batches_tracked is not None:
        norm.num_batches_tracked.copy_(tracked)
        consumed.append(f"{holder}.num_batches_tracked")
    return norm, source, consumed


def _load(module: nn.Module, **tensors: torch.Tensor | None) -> None:
    with torch.no_grad():
        for name, value in tensors.items():
            if value is None:
                continue
            target = getattr(module, name)
            target.copy_(value.detach().to(target.dtype))


def _module_name(gm: fx.GraphModule, node: fx.Node, consumed: list[str], claimed: set[str]) -> str:
    """The holder path of the consumed attributes if it holds nothing else, else a new name."""
    holders = {t.rpartition(".")[0] for t in consumed}
    if len(holders) == 1:
        (holder,) = holders
        owner = _attr(gm, holder) if holder else None
        if (
            holder
            and holder not in claimed
            and isinstance(owner, nn.Module)
            and not isinstance(owner, (*CHANNEL_LAYERS, nn.modules.batchnorm._BatchNorm))
            and not list(owner.children())
        ):
            own = {f"{holder}.{n}" for n, _ in owner.named_parameters(recurse=False)}
            own |= {f"{holder}.{n}" for n, _ in owner.named_buffers(recurse=False)}
            if own <= set(consumed) and not _referenced_elsewhere(gm, node, own):
                return holder
    base = re.sub(r"\W", "_", node.name) or "layer"
    name, i = f"m_{base}", 1
    while _attr(gm, name) is not None or name in claimed:
        name, i = f"m_{base}_{i}", i + 1
    return name


def _referenced_elsewhere(gm: fx.GraphModule, node: fx.Node, targets: set[str]) -> bool:
    for n in gm.graph.nodes:
        if (
            n.op == "get_attr"
            and str(n.target) in targets
            and any(user is not node for user in n.users)
        ):
            return True
    return False


def _drop_unreferenced_tensors(gm: fx.GraphModule) -> None:
    """Delete parameters and buffers that no graph node reads any more."""
    referenced = {str(n.target) for n in gm.graph.nodes if n.op == "get_attr"}
    called = {str(n.target) for n in gm.graph.nodes if n.op == "call_module"}

    def inside_called(name: str) -> bool:
        return any(name == c or name.startswith(c + ".") for c in called)

    names = [n for n, _ in gm.named_parameters(remove_duplicate=False)]
    names += [n for n, _ in gm.named_buffers(remove_duplicate=False)]
    for name in names:
        if name in referenced or inside_called(name):
            continue
        owner_path, _, attr = name.rpartition(".")
        owner = gm.get_submodule(owner_path) if owner_path else gm
        if hasattr(owner, attr):
            delattr(owner, attr)
    gm.delete_all_unused_submodules()


def protected_layers(module: fx.GraphModule) -> list[nn.Module]:
    """The channel-changing layers whose output channels reach the head's outputs.

    Walking back from the outputs, every op but a conv or linear carries channels
    through (activations, batch norm, pooling, residual adds, concatenation, flatten);
    the first conv or linear met on each path produces channels that cross the cut.
    Unknown ops are walked through as well, which can only protect more.
    """
    protected: list[nn.Module] = []
    seen: set[fx.Node] = set()
    stack = [n for n in module.graph.nodes if n.op == "output"]
    while stack:
        node = stack.pop()
        if node in seen:
            continue
        seen.add(node)
        if node.op == "call_module":
            sub = module.get_submodule(str(node.target))
            layers = [m for m in sub.modules() if isinstance(m, CHANNEL_LAYERS)]
            if layers:
                if all(m is not layers[-1] for m in protected):
                    protected.append(layers[-1])
                continue
        stack.extend(node.all_input_nodes)
    return protected


def layers_of(module: nn.Module, types: Iterable[type] = CHANNEL_LAYERS) -> list[nn.Module]:
    kinds = tuple(types)
    return [m for m in module.modules() if isinstance(m, kinds)]
