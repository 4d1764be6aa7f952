"""Capture: a torch model traced with ``torch.export`` into a :class:`~partitioner.model.graph.Graph`.

:func:`capture` returns a :class:`CapturedModel`: the graph the planner prices plus
the runnable FX module it was read from, which :mod:`partitioner.deploy.split`
cuts into the two halves.

Why torch.export rather than ``torch.fx.symbolic_trace``: export traces through
Python with real tensor semantics (so ordinary ``forward`` code works, not only
code FX can read symbolically), refuses loudly and by name on constructs it
cannot capture, gives every node its shape from fake tensors without running
the model, keeps the batch dimension symbolic so the cloud can batch, and is the
same IR the split artifacts are saved in (``.pt2``), so what is planned is what
is deployed.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.fx as fx
from torch import nn

from partitioner.errors import CaptureError
from partitioner.model import ops
from partitioner.model.graph import MAX_BATCH, Graph, Node


@dataclass
class CapturedModel:
    """A graph together with the runnable FX module it was read from."""

    graph: Graph
    module: fx.GraphModule  # unlifted (params as get_attr), in-place ops rewritten
    fx_names: dict[str, str]  # graph node name -> fx node name
    input_shape: tuple[int, ...]
    dynamic_batch: bool  # dim 0 is symbolic in ``module``
    example_inputs: tuple[torch.Tensor, ...] = field(repr=False, default=())

    def fx_node(self, name: str) -> fx.Node:
        target = self.fx_names[name]
        for node in self.module.graph.nodes:
            if node.name == target:
                return node
        raise KeyError(name)


def capture(
    model: nn.Module,
    example_input: torch.Tensor,
    *,
    name: str = "model",
    dynamic_batch: bool = True,
) -> CapturedModel:
    """Trace ``model`` on ``example_input`` (batch 1 shape) into a graph.

    With ``dynamic_batch`` the batch dimension is exported as symbolic so the halves
    accept any batch; a model that cannot be traced that way is traced with a
    fixed batch instead (``CapturedModel.dynamic_batch`` says which happened).
    """
    model = model.eval()
    input_shape = tuple(example_input.shape)
    exported = None
    is_dynamic = False
    if dynamic_batch:
        # export specialises sizes 0 and 1, so trace the symbolic batch with 2 frames.
        batch2 = example_input.expand(2, *input_shape[1:]).clone()
        try:
            exported = _export(model, batch2, dynamic=True)
            is_dynamic = True
            example = batch2
        except CaptureError:
            exported = None
    if exported is None:
        exported = _export(model, example_input, dynamic=False)
        example = example_input
    module = exported.module()
    _strip_guards(module)
    _rewrite_inplace(module)
    module.recompile()
    graph, fx_names = _read_graph(module, name)
    return CapturedModel(
        graph=graph,
        module=module,
        fx_names=fx_names,
        input_shape=input_shape,
        dynamic_batch=is_dynamic,
        example_inputs=(example,),
    )


def _export(model: nn.Module, example: torch.Tensor, *, dynamic: bool) -> Any:
    from torch.export import Dim, export

    dynamic_shapes = ({0: Dim("batch", min=1, max=MAX_BATCH)},) if dynamic else None
    try:
        with torch.no_grad():
            return export(model, (example,), dynamic_shapes=dynamic_shapes, strict=False)
    except Exception as exc:  # torch raises many types; all mean "cannot trace"
        raise CaptureError(_describe_export_failure(exc)) from exc


def _describe_export_failure(exc: Exception) -> str:
    text = str(exc).strip()
    first = next((line.strip() for line in text.splitlines() if line.strip()), type(exc).__name__)
    construct = "an unsupported construct"
    lowered = text.lower()
    if "data-dependent" in lowered or "guardondatadependent" in lowered:
        construct = "data-dependent control flow (a Python branch or loop on tensor values)"
    elif ".item()" in lowered or ("item" in lowered and "scalar" in lowered):
        construct = "a tensor converted to a Python number (.item())"
    elif "constraint" in lowered or "specializ" in lowered:
        construct = "a shape the batch dimension cannot vary in"
    return (
        f"torch.export could not trace the model: {construct}: {type(exc).__name__}: {first[:300]}"
    )


def _strip_guards(module: fx.GraphModule) -> None:
    """Remove export's runtime guard call and assertion nodes: the halves check inputs themselves."""
    for node in list(module.graph.nodes):
        if (node.op == "call_module" and str(node.target).startswith("_guards")) or (
            node.op == "call_function" and "assert" in str(node.target) and not node.users
        ):
            module.graph.erase_node(node)
    for name in [n for n, _ in module.named_children() if n.startswith("_guards")]:
        delattr(module, name)


_VIEW_OPS = {
    "view",
    "slice",
    "select",
    "transpose",
    "permute",
    "expand",
    "narrow",
    "as_strided",
    "unsqueeze",
    "squeeze",
    "t",
    "diagonal",
    "unfold",
    "alias",
}


def _rewrite_inplace(module: fx.GraphModule) -> None:
    """Replace in-place ops (``relu_``, ``add_``) by their out-of-place forms.

    A half must be a pure function of its inputs. ``relu_(y)`` returns ``y``
    mutated, so every later reader of ``y`` is pointed at the new node: the same
    values, without aliasing across the cut.
    """
    order = {node: i for i, node in enumerate(module.graph.nodes)}
    for node in list(module.graph.nodes):
        if node.op != "call_function" or not isinstance(node.target, torch._ops.OpOverload):
            continue
        packet = node.target.overloadpacket.__name__
        if not packet.endswith("_") or packet.startswith("_"):
            continue
        functional = getattr(torch.ops.aten, packet[:-1], None)
        if functional is None or not hasattr(functional, node.target._overloadname):
            continue
        mutated = node.args[0]
        if isinstance(mutated, fx.Node) and mutated.op in ("placeholder", "get_attr"):
            raise CaptureError(
                f"in-place op {packet} at {node.name} mutates a model input or buffer; "
                "use the out-of-place form in forward()"
            )
        if isinstance(mutated, fx.Node) and _packet(mutated) in _VIEW_OPS:
            raise CaptureError(
                f"in-place op {packet} at {node.name} writes through a view ({mutated.name}); "
                "use the out-of-place form in forward()"
            )
        node.target = getattr(functional, node.target._overloadname)
        if isinstance(mutated, fx.Node):
            for user in list(mutated.users):
                if user is not node and order[user] > order[node]:
                    user.replace_input_with(mutated, node)


def _packet(node: fx.Node) -> str:
    target = node.target
    if isinstance(target, torch._ops.OpOverload):
        return target.overloadpacket.__name__
    if isinstance(target, torch._ops.OpOverloadPacket):
        return target.__name__
    return getattr(target, "__name__", str(target))


def _is_tensor_meta(value: object) -> bool:
    return isinstance(value, torch.Tensor)


def _is_tensor_list(value: object) -> bool:
    return (
        isinstance(value, (list, tuple))
        and len(value) > 0
        and all(isinstance(v, torch.Tensor) for v in value)
    )


class _BatchShapes:
    """Turns symbolic shapes (batch ``s0``) into concrete per-frame shapes (batch 1)."""

    def __init__(self, module: fx.GraphModule) -> None:
        self.subs: dict[Any, int] = {}
        for node in module.graph.nodes:
            if node.op == "placeholder":
                val = node.meta.get("val")
                if isinstance(val, torch.Tensor) and val.dim() > 0:
                    dim0 = val.shape[0]
                    if isinstance(dim0, torch.SymInt):
                        for sym in dim0.node.expr.free_symbols:
                            self.subs[sym] = 1

    def dim(self, d: int | torch.SymInt) -> int:
        if isinstance(d, torch.SymInt):
            expr = d.node.expr.subs(self.subs)
            try:
                return int(expr)
            except TypeError as exc:
                raise CaptureError(f"a tensor size depends on more than the batch: {d}") from exc
        return int(d)

    def shape(self, t: torch.Tensor) -> tuple[int, ...]:
        return tuple(self.dim(d) for d in t.shape)


def _nbytes(shape: Sequence[int], dtype: torch.dtype) -> int:
    itemsize = torch.empty((), dtype=dtype).element_size()
    return math.prod(shape) * itemsize


def _module_path(node: fx.Node) -> tuple[str, bool]:
    """The innermost module a node was called from, and whether that module is a leaf."""
    stack = node.meta.get("nn_module_stack") or {}
    if not stack:
        return "", False
    path, type_name = list(stack.values())[-1]
    path = re.sub(r"@\d+$", "", str(path))
    type_name = str(getattr(type_name, "__qualname__", type_name))
    leaf = type_name.startswith("torch.nn.modules.") and not any(
        container in type_name for container in ("Sequential", "ModuleList", "ModuleDict")
    )
    return path, leaf


def _read_graph(module: fx.GraphModule, model_name: str) -> tuple[Graph, dict[str, str]]:
    shapes = _BatchShapes(module)
    params: dict[fx.Node, int] = {}
    for node in module.graph.nodes:
        if node.op == "get_attr":
            val = node.meta.get("val")
            if val is None:
                val = _fetch_attr(module, str(node.target))
            if isinstance(val, torch.Tensor):
                params[node] = val.numel() * val.element_size()

    names: dict[fx.Node, str] = {}
    taken: set[str] = set()
    used_module_call: set[str] = set()

    def unique(base: str) -> str:
        name, i = base, 1
        while name in taken:
            name = f"{base}_{i}"
            i += 1
        taken.add(name)
        return name

    records: list[dict[str, Any]] = []
    inputs: list[str] = []
    ties: list[tuple[str, str]] = []
    for node in module.graph.nodes:
        if node.op == "placeholder":
            val = node.meta.get("val")
            if not isinstance(val, torch.Tensor):
                raise CaptureError(f"model input {node.name!r} is not a tensor")
            shape = shapes.shape(val)
            names[node] = unique(node.name)
            inputs.append(names[node])
            records.append(
                dict(
                    fx=node,
                    name=names[node],
                    op="input",
                    op_class="input",
                    shape=shape,
                    dtype=val.dtype,
                    flops=0,
                    param_bytes=0,
                    in_bytes=0,
                    inputs=(),
                )
            )
            continue
        if node.op != "call_function":
            continue
        val = node.meta.get("val")
        tensor_inputs = [a for a in node.all_input_nodes if a in names]
        if not (_is_tensor_meta(val) or _is_tensor_list(val)):
            # Symbolic sizes and other Python values are recomputed where they are needed.
            continue
        packet = _packet(node)
        path, leaf = _module_path(node)
        if packet == "getitem":
            parent = node.args[0]
            base = f"{names[parent]}[{node.args[1]}]" if isinstance(parent, fx.Node) else packet
        elif leaf and path:
            # A leaf module's op is named after the module; a second call of the same
            # module (one ReLU reused in a block) gets a numbered name.
            base = path
            used_module_call.add(path)
        else:
            base = f"{path}.{packet}" if path else packet
        names[node] = unique(base)

        def arg_shape(a: object) -> tuple[int, ...] | None:
            if isinstance(a, fx.Node):
                v = a.meta.get("val")
                if isinstance(v, torch.Tensor):
                    return shapes.shape(v)
            return None

        def arg_value(a: object) -> object:
            if isinstance(a, fx.Node):
                return arg_shape(a)
            if isinstance(a, (list, tuple)):
                return type(a)(arg_value(x) for x in a)
            if isinstance(a, torch.SymInt):
                return shapes.dim(a)
            return a

        in_shapes = [arg_shape(a) for a in node.args]
        arg_values = [arg_value(a) for a in node.args]
        if _is_tensor_meta(val):
            out_shape = shapes.shape(val)
            dtype = val.dtype
            out_elems = [(out_shape, dtype)]
        else:
            out_shape = ()
            dtype = None
            out_elems = [(shapes.shape(v), v.dtype) for v in val]
        flop_shape = out_shape if dtype is not None else out_elems[0][0]
        op_shapes = ops.OpShapes(inputs=in_shapes, output=flop_shape, args=arg_values)
        flops = ops.count_flops(packet, op_shapes)
        if dtype is None:
            flops *= len(out_elems)
        in_bytes = 0
        for a in tensor_inputs:
            v = a.meta.get("val")
            if isinstance(v, torch.Tensor):
                in_bytes += _nbytes(shapes.shape(v), v.dtype)
        param_bytes = sum(params.get(a, 0) for a in node.all_input_nodes)
        records.append(
            dict(
                fx=node,
                name=names[node],
                op=packet,
                op_class=ops.classify(packet, in_shapes, arg_values),
                shape=out_shape,
                dtype=dtype,
                out_elems=out_elems,
                flops=flops,
                param_bytes=param_bytes,
                in_bytes=in_bytes,
                inputs=tuple(dict.fromkeys(names[a] for a in tensor_inputs)),
            )
        )
        if packet == "getitem" and isinstance(node.args[0], fx.Node) and node.args[0] in names:
            ties.append((names[node.args[0]], names[node]))

    users: dict[str, list[str]] = {r["name"]: [] for r in records}
    for r in records:
        for p in r["inputs"]:
            users[p].append(r["name"])

    output_node = next(n for n in module.graph.nodes if n.op == "output")
    outputs: list[str] = []
    for a in torch.fx.node.map_arg(output_node.args, lambda n: n).__iter__():
        _collect_outputs(a, names, outputs)
    if not outputs:
        raise CaptureError("the model returns no tensor")
    out_set = set(outputs)

    nodes = []
    for r in records:
        if r["dtype"] is None:
            out_bytes = sum(_nbytes(s, d) for s, d in r["out_elems"])
            dtype_name = "tuple"
        else:
            out_bytes = _nbytes(r["shape"], r["dtype"])
            dtype_name = str(r["dtype"]).removeprefix("torch.")
        nodes.append(
            Node(
                name=r["name"],
                op=r["op"],
                op_class=r["op_class"],
                shape=tuple(r["shape"]),
                dtype=dtype_name,
                out_bytes=out_bytes,
                flops=int(r["flops"]),
                param_bytes=int(r["param_bytes"]),
                in_bytes=int(r["in_bytes"]),
                inputs=r["inputs"],
                users=tuple(users[r["name"]]),
                is_output=r["name"] in out_set,
            )
        )
    graph = Graph(
        model=model_name,
        nodes=tuple(nodes),
        inputs=tuple(inputs),
        outputs=tuple(outputs),
        ties=tuple(ties),
    )
    fx_names = {names[n]: n.name for n in names}
    return graph, fx_names


def _collect_outputs(arg: object, names: dict[fx.Node, str], out: list[str]) -> None:
    if isinstance(arg, fx.Node):
        if arg not in names:
            raise CaptureError(f"model output {arg.name!r} is not a tensor computed by the graph")
        out.append(names[arg])
    elif isinstance(arg, (list, tuple)):
        for a in arg:
            _collect_outputs(a, names, out)
    elif isinstance(arg, dict):
        for a in arg.values():
            _collect_outputs(a, names, out)


def _fetch_attr(module: nn.Module, target: str) -> object:
    obj: object = module
    for part in target.split("."):
        obj = getattr(obj, part)
    return obj
