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
    graph, fx_names = _GraphReader(module).read(name)
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


def _returns_tensors(node: fx.Node) -> bool:
    """The node's value is a tensor or a non-empty tuple of tensors (not a size or a bool)."""
    val = node.meta.get("val")
    if isinstance(val, torch.Tensor):
        return True
    return (
        isinstance(val, (list, tuple))
        and len(val) > 0
        and all(isinstance(v, torch.Tensor) for v in val)
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


def _parameter_bytes(module: fx.GraphModule) -> dict[fx.Node, int]:
    """Bytes of each parameter or buffer the graph reads (its ``get_attr`` nodes)."""
    sizes: dict[fx.Node, int] = {}
    for node in module.graph.nodes:
        if node.op == "get_attr":
            val = node.meta.get("val")
            if val is None:
                val = _fetch_attr(module, str(node.target))
            if isinstance(val, torch.Tensor):
                sizes[node] = val.numel() * val.element_size()
    return sizes


@dataclass
class _Draft:
    """A graph node as read from the FX graph, before its users are known."""

    name: str
    op: str
    op_class: str
    values: list[tuple[tuple[int, ...], torch.dtype]]  # (shape, dtype) of each output tensor
    is_tuple: bool  # the op returns a Python tuple of ``values``
    flops: int
    param_bytes: int
    in_bytes: int
    inputs: tuple[str, ...]

    def to_node(self, users: tuple[str, ...], is_output: bool) -> Node:
        shape: tuple[int, ...] = ()
        dtype = "tuple"
        if not self.is_tuple:
            ((shape, torch_dtype),) = self.values
            dtype = str(torch_dtype).removeprefix("torch.")
        return Node(
            name=self.name,
            op=self.op,
            op_class=self.op_class,
            shape=tuple(shape),
            dtype=dtype,
            out_bytes=sum(_nbytes(s, d) for s, d in self.values),
            flops=int(self.flops),
            param_bytes=int(self.param_bytes),
            in_bytes=int(self.in_bytes),
            inputs=self.inputs,
            users=users,
            is_output=is_output,
        )


class _GraphReader:
    """Reads an exported FX module into a :class:`Graph`, one FX node at a time.

    Each placeholder becomes an input node and each call that returns a tensor (or
    a tuple of tensors) an op node, named after the module that called it. Symbolic
    sizes and other Python values become no node: they are recomputed where needed.
    Users and outputs are filled in once every node is read.
    """

    def __init__(self, module: fx.GraphModule) -> None:
        self.module = module
        self.shapes = _BatchShapes(module)
        self.param_bytes = _parameter_bytes(module)
        self.names: dict[fx.Node, str] = {}  # FX node -> graph node name
        self.taken: set[str] = set()  # the values of ``names``
        self.drafts: list[_Draft] = []
        self.inputs: list[str] = []
        self.ties: list[tuple[str, str]] = []

    def read(self, model_name: str) -> tuple[Graph, dict[str, str]]:
        """The graph and, for each of its nodes, the name of the FX node it was read from."""
        for node in self.module.graph.nodes:
            if node.op == "placeholder":
                self._read_input(node)
            elif node.op == "call_function" and _returns_tensors(node):
                self._read_op(node)
        outputs = self._outputs()
        users = self._users()
        nodes = tuple(d.to_node(tuple(users[d.name]), d.name in outputs) for d in self.drafts)
        graph = Graph(
            model=model_name,
            nodes=nodes,
            inputs=tuple(self.inputs),
            outputs=tuple(outputs),
            ties=tuple(self.ties),
        )
        return graph, {name: node.name for node, name in self.names.items()}

    def _read_input(self, node: fx.Node) -> None:
        val = node.meta.get("val")
        if not isinstance(val, torch.Tensor):
            raise CaptureError(f"model input {node.name!r} is not a tensor")
        name = self._name(node, node.name)
        self.inputs.append(name)
        values = [(self.shapes.shape(val), val.dtype)]
        self.drafts.append(_Draft(name, "input", "input", values, False, 0, 0, 0, ()))

    def _read_op(self, node: fx.Node) -> None:
        val = node.meta["val"]
        packet = _packet(node)
        tensor_inputs = [a for a in node.all_input_nodes if a in self.names]
        name = self._name(node, self._base_name(node, packet))
        in_shapes = [self._arg_shape(a) for a in node.args]
        arg_values = [self._arg_value(a) for a in node.args]
        is_tuple = not isinstance(val, torch.Tensor)
        values = [(self.shapes.shape(v), v.dtype) for v in (val if is_tuple else [val])]
        # The FLOP rules see one output shape; an op returning k tensors costs k times that.
        op_shapes = ops.OpShapes(inputs=in_shapes, output=values[0][0], args=arg_values)
        flops = ops.count_flops(packet, op_shapes) * len(values)
        self.drafts.append(
            _Draft(
                name=name,
                op=packet,
                op_class=ops.classify(packet, in_shapes, arg_values),
                values=values,
                is_tuple=is_tuple,
                flops=flops,
                param_bytes=sum(self.param_bytes.get(a, 0) for a in node.all_input_nodes),
                in_bytes=sum(self._tensor_bytes(a) for a in tensor_inputs),
                inputs=tuple(dict.fromkeys(self.names[a] for a in tensor_inputs)),
            )
        )
        if packet == "getitem" and isinstance(node.args[0], fx.Node) and node.args[0] in self.names:
            # The getitem and the tuple it picks from must sit on the same side.
            self.ties.append((self.names[node.args[0]], name))

    def _base_name(self, node: fx.Node, packet: str) -> str:
        """A readable name: ``op[i]`` for a getitem, the module path for a leaf module's
        op, else the path plus the op (``layer1.0.add``)."""
        if packet == "getitem":
            parent = node.args[0]
            return (
                f"{self.names[parent]}[{node.args[1]}]" if isinstance(parent, fx.Node) else packet
            )
        path, leaf = _module_path(node)
        if leaf and path:
            return path
        return f"{path}.{packet}" if path else packet

    def _name(self, node: fx.Node, base: str) -> str:
        """``base``, numbered if taken (a second call of one ReLU module is ``relu_1``)."""
        name, i = base, 1
        while name in self.taken:
            name = f"{base}_{i}"
            i += 1
        self.taken.add(name)
        self.names[node] = name
        return name

    def _arg_shape(self, arg: object) -> tuple[int, ...] | None:
        """The per-frame shape of a tensor argument; None for anything else."""
        if isinstance(arg, fx.Node):
            val = arg.meta.get("val")
            if isinstance(val, torch.Tensor):
                return self.shapes.shape(val)
        return None

    def _arg_value(self, arg: object) -> object:
        """An argument as the FLOP rules read it: tensors as shapes, sizes as ints."""
        if isinstance(arg, fx.Node):
            return self._arg_shape(arg)
        if isinstance(arg, (list, tuple)):
            return type(arg)(self._arg_value(a) for a in arg)
        if isinstance(arg, torch.SymInt):
            return self.shapes.dim(arg)
        return arg

    def _tensor_bytes(self, node: fx.Node) -> int:
        val = node.meta.get("val")
        return _nbytes(self.shapes.shape(val), val.dtype) if isinstance(val, torch.Tensor) else 0

    def _outputs(self) -> list[str]:
        output = next(n for n in self.module.graph.nodes if n.op == "output")
        outputs: list[str] = []
        _collect_outputs(output.args, self.names, outputs)
        if not outputs:
            raise CaptureError("the model returns no tensor")
        return outputs

    def _users(self) -> dict[str, list[str]]:
        users: dict[str, list[str]] = {d.name: [] for d in self.drafts}
        for d in self.drafts:
            for p in d.inputs:
                users[p].append(d.name)
        return users


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
