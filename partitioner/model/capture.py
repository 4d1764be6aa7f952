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

The exported program is functionalised by torch itself
(``ExportedProgram.run_decompositions({})``): in-place ops and writes through views
become out-of-place ops with identical results, so a half is a pure function of its
inputs whatever the model's ``forward`` mutates, while the ops the pricing knows
(``conv2d``, ``linear``, ``layer_norm``, ``scaled_dot_product_attention``, ``lstm``)
are kept whole rather than lowered to the core ATen set. Each node's FLOPs then come
from running it on fake tensors at batch 1 under torch's flop counter
(:func:`_account`), with :mod:`partitioner.model.ops` pricing what torch does not.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import torch
import torch.fx as fx
from torch import nn

from partitioner.errors import CaptureError
from partitioner.model import ops
from partitioner.model.graph import MAX_BATCH, Graph, Loop, Node


@dataclass
class CapturedModel:
    """A graph together with the runnable FX module it was read from."""

    graph: Graph
    module: fx.GraphModule  # unlifted (params as get_attr), functional: no in-place op
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
        batch2 = torch.cat([example_input[:1], example_input[:1]]) if input_shape else example_input
        try:
            exported = _export(model, batch2, dynamic=True)
            is_dynamic = True
            example = batch2
        except CaptureError:
            exported = None
    if exported is None:
        try:
            exported = _export(model, example_input, dynamic=False)
        except CaptureError:
            check_runs(model, example_input)  # a model that cannot run on its input says where
            raise
        example = example_input
    module = exported.module()
    _strip_guards(module)
    _restore_batch_norm(module)
    _views_as_reshapes(module)
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
    """``torch.export`` of ``model`` on ``example``, functionalised; any refusal is a CaptureError.

    Why ``run_decompositions({})`` and not a decomposition table: an empty table only
    functionalises (in-place ops, writes through views and aliasing are removed by
    torch, with identical outputs) and keeps every op whole, so the graph keeps the
    ops the pricing and the node names know; the core ATen table would lower
    ``linear``, ``layer_norm`` and attention to dozens of primitives.
    """
    from torch.export import Dim, export

    dynamic_shapes = ({0: Dim("batch", min=1, max=MAX_BATCH)},) if dynamic else None
    trail = _ModuleTrail(model)
    try:
        with torch.no_grad(), trail:
            exported = export(model, (example,), dynamic_shapes=dynamic_shapes, strict=False)
        with torch.no_grad():
            return exported.run_decompositions({})
    except Exception as exc:  # torch raises many types; all mean "cannot trace"
        raise CaptureError(_describe_export_failure(exc, trail.where())) from exc


class _ModuleTrail:
    """Which submodule is running: forward hooks keep a stack of module paths.

    When tracing fails the stack is left where it failed (an exception skips the
    closing hooks), so an error can name the layer.
    """

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.stack: list[tuple[str, nn.Module, tuple[Any, ...]]] = []
        self.handles: list[Any] = []

    def __enter__(self) -> _ModuleTrail:
        self.stack.clear()
        for path, module in self.model.named_modules():
            if not path:
                continue
            self.handles.append(module.register_forward_pre_hook(self._enter(path)))
            self.handles.append(module.register_forward_hook(self._leave))
        return self

    def __exit__(self, *exc: object) -> None:
        for handle in self.handles:
            handle.remove()
        self.handles.clear()

    def _enter(self, path: str) -> Any:
        def hook(module: nn.Module, args: tuple[Any, ...]) -> None:
            self.stack.append((path, module, args))

        return hook

    def _leave(self, module: nn.Module, args: Any, output: Any) -> None:
        if self.stack and self.stack[-1][1] is module:
            self.stack.pop()

    def where(self) -> str:
        """``at <path> (<ModuleType>)`` of the innermost running module, or ''."""
        if not self.stack:
            return ""
        path, module, _ = self.stack[-1]
        return f"at {path} ({type(module).__name__})"


def check_runs(model: nn.Module, example: torch.Tensor) -> None:
    """Run ``model`` eagerly on ``example``; a failure is one CaptureError naming the layer.

    A model that cannot run on its input (3 input channels expected, 1 given) fails
    inside torch.export with a message about tracing; run eagerly, the same mistake
    says which layer refused what.
    """
    trail = _ModuleTrail(model)
    try:
        with torch.no_grad(), trail:
            model(example)
    except Exception as exc:
        shape = "x".join(map(str, example.shape))
        layer = trail.stack[-1] if trail.stack else None
        if layer is None:
            raise CaptureError(
                f"the model does not run on an input of shape {shape} (dim 0 is the batch): "
                f"{type(exc).__name__}: {_first_line(exc)}"
            ) from exc
        path, module, args = layer
        got = args[0].shape if args and isinstance(args[0], torch.Tensor) else None
        raise CaptureError(
            f"the model does not run on an input of shape {shape} (dim 0 is the batch): "
            f"layer {path} ({type(module).__name__}) {_expectation(module, got, exc)}"
        ) from exc


def _expectation(module: nn.Module, got: torch.Size | None, exc: Exception) -> str:
    """What ``module`` expects of its input and what it got, in a few words."""
    if got is not None and len(got) > 0:
        shape = "x".join(map(str, got))
        if isinstance(module, nn.modules.conv._ConvNd):
            rank = len(module.kernel_size) + 2
            channels = got[1] if len(got) == rank else got[0] if len(got) == rank - 1 else None
            if channels != module.in_channels:
                return (
                    f"expects {module.in_channels} input channels (a {rank}-D input with the "
                    f"channels in dim 1), got {shape}"
                )
        if isinstance(module, nn.Linear) and got[-1] != module.in_features:
            return f"expects {module.in_features} input features in the last dim, got {shape}"
        batch_norm = isinstance(module, nn.modules.batchnorm._BatchNorm)
        if batch_norm and len(got) > 1 and got[1] != module.num_features:
            return f"expects {module.num_features} input channels in dim 1, got {shape}"
    return f"refused its input: {type(exc).__name__}: {_first_line(exc)}"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    line = next((ln.strip() for ln in text.splitlines() if ln.strip()), type(exc).__name__)
    return line[:300]


def _describe_export_failure(exc: Exception, where: str = "") -> str:
    text = str(exc).strip()
    construct = "an unsupported construct"
    lowered = text.lower()
    if "data-dependent" in lowered or "guardondatadependent" in lowered:
        construct = "data-dependent control flow (a Python branch or loop on tensor values)"
    elif ".item()" in lowered or ("item" in lowered and "scalar" in lowered):
        construct = "a tensor converted to a Python number (.item())"
    elif "not a known type" in lowered or "register a pytree" in lowered:
        construct = "an input or output of a type torch.export cannot flatten (register it as a pytree, or return tensors)"
    elif "constraint" in lowered or "specializ" in lowered:
        construct = "a shape the batch dimension cannot vary in"
    place = f" {where}" if where else ""
    return (
        f"torch.export could not trace the model{place}: {construct}: "
        f"{type(exc).__name__}: {_first_line(exc)}"
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


def _restore_batch_norm(module: fx.GraphModule) -> None:
    """Turn export's eval batch norm back into ``aten.batch_norm``: one node, as the model has it.

    torch.export always lowers ``batch_norm`` (it is tagged as maybe mutating) to
    ``_native_batch_norm_legit_no_training``, which returns a tuple picked by a
    ``getitem``. In eval mode both compute the same out-of-place function; the one
    op keeps the layer one node named after its module (``layer1.0.bn1``), and is
    what head compression rebuilds ``nn.BatchNorm`` modules from.
    """
    legit = torch.ops.aten._native_batch_norm_legit_no_training.default
    for node in list(module.graph.nodes):
        if node.op != "call_function" or node.target is not legit:
            continue
        picks = list(node.users)
        if not picks or any(u.target is not operator.getitem or u.args[1] != 0 for u in picks):
            continue
        x, weight, bias, mean, var, momentum, eps = node.args
        with module.graph.inserting_before(node):
            norm = module.graph.call_function(
                torch.ops.aten.batch_norm.default,
                (x, weight, bias, mean, var, False, momentum, eps, True),
            )
        norm.meta = {**node.meta, "val": picks[0].meta.get("val")}
        for pick in picks:
            pick.replace_all_uses_with(norm)
            module.graph.erase_node(pick)
        module.graph.erase_node(node)


def _views_as_reshapes(module: fx.GraphModule) -> None:
    """``aten.view`` becomes ``aten.reshape``, and a reshape to (batch, 512) one to (-1, 512).

    Export lowers ``reshape`` and ``flatten`` to ``view`` when the traced tensor was
    contiguous, baking the trace's memory layout into the graph. Run with another
    kernel's output (a compressed head's layers, attention outside ``no_grad``) a
    view can fail where the model's own reshape would copy. The graph is functional,
    so nothing can observe whether a reshape aliased or copied.

    ``flatten(x, 1)`` comes out as ``view(x, [x.size(0), 512])``; it goes back to
    ``flatten``, which needs no size node (tools that trace a half at one batch would
    freeze it) and which head pruning follows when it narrows the channels. Another
    reshape whose one symbolic size is the only unknown gets -1 there instead.
    """
    for node in list(module.graph.nodes):
        if node.op != "call_function" or node.target is not torch.ops.aten.view.default:
            continue
        node.target = torch.ops.aten.reshape.default
        source, shape = node.args[0], node.args[1]
        if not isinstance(shape, (list, tuple)) or not isinstance(source, fx.Node):
            continue
        sizes = [d for d in shape if isinstance(d, fx.Node)]
        fixed = [d for d in shape if not isinstance(d, fx.Node)]
        if _is_flatten(source, shape):
            node.target = torch.ops.aten.flatten.using_ints
            node.args = (source, 1, -1)
        elif len(sizes) == 1 and all(isinstance(d, int) and d >= 0 for d in fixed):
            node.args = (source, [-1 if isinstance(d, fx.Node) else d for d in shape])
        else:
            continue
        for size in sizes:
            if not size.users:
                module.graph.erase_node(size)


def _is_flatten(source: fx.Node, shape: Sequence[object]) -> bool:
    """``reshape(source, shape)`` is ``flatten(source, 1)``: shape is [source.size(0), rest]."""
    val = source.meta.get("val")
    if not isinstance(val, torch.Tensor) or val.dim() < 2 or len(shape) != 2:
        return False
    first, rest = shape
    if isinstance(first, fx.Node):  # a size node: the same symbol as source's dim 0?
        size, dim0 = first.meta.get("val"), val.shape[0]
        same_first = (
            isinstance(size, torch.SymInt)
            and isinstance(dim0, torch.SymInt)
            and size.node.expr == dim0.node.expr
        )
    else:
        same_first = isinstance(val.shape[0], int) and first == val.shape[0]
    inner = math.prod(val.shape[1:])
    return same_first and (rest == -1 or (isinstance(rest, int) and rest == inner))


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
    """Turns symbolic shapes (batch ``s0``) into concrete per-frame shapes (batch 1), and
    says which dim of a shape carries the batch."""

    def __init__(self, module: fx.GraphModule) -> None:
        self.subs: dict[Any, int] = {}  # batch symbol -> 1
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

    def batch_dim(self, t: torch.Tensor) -> int | None:
        """The one dim of ``t`` whose size is a whole multiple of the batch (``s0``, or
        ``4*s0`` where windows are folded into it); None if no dim, or more than one, grows
        with the batch. A graph traced with a fixed batch has no symbol: dim 0, as traced.
        """
        if not self.subs:
            return 0
        grows = []
        for i, d in enumerate(t.shape):
            size: object = d  # torch types shapes as ints; under export they may be SymInts
            if isinstance(size, torch.SymInt) and size.node.expr.free_symbols & self.subs.keys():
                grows.append((i, size.node.expr))
        if len(grows) != 1:
            return None
        i, expr = grows[0]
        if len(expr.free_symbols) != 1:
            return None
        (symbol,) = expr.free_symbols
        per_frame = expr.subs(self.subs)
        # k * batch and nothing else (not batch + 1, not batch**2): frames stack along it.
        if not per_frame.is_Integer or int(per_frame) < 1 or (expr - per_frame * symbol) != 0:
            return None
        return i


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


@dataclass(frozen=True)
class _Cost:
    """What one FX node costs, as counted on fake tensors at batch 1."""

    flops: int
    op_class: str | None  # from the ops the node dispatched to; None if it dispatched none
    unpriced: tuple[str, ...] = ()  # ops with no FLOP rule in torch or in ops.py


def _shape_of(value: object) -> object:
    """An argument as the FLOP rules read it: tensors as shapes, lists element-wise."""
    if isinstance(value, torch.Tensor):
        return tuple(int(d) for d in value.shape)
    if isinstance(value, (list, tuple)):
        return type(value)(_shape_of(v) for v in value)
    return value


def _op_shapes(args: Sequence[object], out: object) -> ops.OpShapes:
    first = out[0] if isinstance(out, (list, tuple)) and out else out
    output = tuple(int(d) for d in first.shape) if isinstance(first, torch.Tensor) else ()
    return ops.OpShapes(
        inputs=[_shape_of(a) if isinstance(a, torch.Tensor) else None for a in args],  # type: ignore[misc]
        output=output,
        args=[_shape_of(a) for a in args],
    )


class _LeafOps:
    """The ATen ops a node ran under torch's flop counter, with their shapes.

    Sits below :class:`~torch.utils.flop_counter.FlopCounterMode` in the mode stack:
    the counter decomposes what it can and counts what its registry knows (those ops
    are marked ``counted``); every other op that reaches here is the project's to
    price (:func:`partitioner.model.ops.count_flops`) or is unpriced.
    """

    def __init__(self) -> None:
        from torch.utils._python_dispatch import TorchDispatchMode
        from torch.utils.flop_counter import flop_registry

        self.seen: list[tuple[str, ops.OpShapes, bool]] = []  # (op, shapes, counted by torch)
        seen = self.seen

        class Mode(TorchDispatchMode):
            def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
                out = func(*args, **(kwargs or {}))
                if func.namespace != "prim":
                    counted = func._overloadpacket in flop_registry
                    seen.append((func._overloadpacket.__name__, _op_shapes(args, out), counted))
                return out

        self.mode = Mode()


def _account(module: fx.GraphModule, shapes: _BatchShapes) -> dict[fx.Node, _Cost]:
    """Each call node's FLOPs and class, from running the graph on fake tensors at batch 1.

    torch's flop counter prices every ATen op its registry knows (GEMMs, convolutions,
    fused attention) after decomposing composite ops; the ops it runs without a
    formula are priced by :mod:`partitioner.model.ops`, or reported as unpriced. An
    op whose project rule prices it whole (an LSTM layer) is not looked into. A graph
    that cannot run on fake tensors (an op with a data-dependent output size) keeps
    what was counted so far; the rest is priced node by node from its shapes.
    """
    from torch._subclasses.fake_tensor import FakeTensorMode
    from torch.utils.flop_counter import FlopCounterMode

    costs: dict[fx.Node, _Cost] = {}
    leaves = _LeafOps()
    counter = FlopCounterMode(display=False)

    class Accountant(fx.Interpreter):
        def run_node(self, n: fx.Node) -> Any:
            target = n.target
            if n.op != "call_function" or not isinstance(target, torch._ops.OpOverload):
                return super().run_node(n)
            packet = target.overloadpacket.__name__
            rule = ops.rule_for(packet)
            if rule is not None and rule.whole:
                args, _ = self.fetch_args_kwargs_from_env(n)
                out = super().run_node(n)
                costs[n] = _Cost(rule.flops(_op_shapes(args, out)), rule.op_class)
                return out
            mark = len(leaves.seen)
            with counter:
                out = super().run_node(n)
            costs[n] = _leaf_cost(counter.get_total_flops(), leaves.seen[mark:])
            return out

    fake = FakeTensorMode(allow_non_fake_inputs=True)
    with fake:
        inputs = [
            torch.empty(shapes.shape(n.meta["val"]), dtype=n.meta["val"].dtype)
            for n in module.graph.nodes
            if n.op == "placeholder"
        ]
    try:
        with torch.no_grad(), fake, leaves.mode:
            Accountant(module).run(*inputs)
    except Exception:  # an op fake tensors cannot run: the rest is priced from shapes
        pass
    return costs


def _leaf_cost(torch_flops: int, seen: Sequence[tuple[str, ops.OpShapes, bool]]) -> _Cost:
    """Torch's count plus the project's rules for the ops torch had no formula for.

    The class is that of the op doing most of the work (torch's count is shared
    evenly among the ops it counted); the node's own op may still name it instead.
    """
    n_counted = sum(counted for _, _, counted in seen)
    flops = torch_flops
    unpriced: list[str] = []
    best: tuple[float, str] | None = None  # (flops, class) of the costliest op
    for name, op_shapes, counted in seen:
        op_class = ops.classify(name, op_shapes.inputs, op_shapes.args)
        if counted:
            count: float | None = torch_flops / n_counted
        else:
            count = ops.count_flops(name, op_shapes)
            if count is None and op_class is None:
                unpriced.append(ops.base_name(name))
                continue
            flops += int(count or 0)
        if op_class is not None and (best is None or (count or 0) > best[0]):
            best = (count or 0, op_class)
    if unpriced:
        return _Cost(flops, "unpriced", tuple(dict.fromkeys(unpriced)))
    return _Cost(flops, best[1] if best else None)


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
    batch_dim: int | None = 0  # of the one output tensor (a tuple's parts cross as getitems)
    loop: Loop | None = None  # a recurrent op's sequential steps

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
            batch_dim=self.batch_dim,
            loop=self.loop,
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
        self.costs = _account(module, self.shapes)
        # Leaf modules that compute (their path is claimed by that op, not by a view).
        self.computing = {
            _module_path(n)[0]
            for n in module.graph.nodes
            if n.op == "call_function"
            and ops.op_class_of(_packet(n)) not in (None, "view", "memory")
        }
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
        graph = replace(graph, ties=graph.ties + _batchless_ties(graph))
        return graph, {name: node.name for node, name in self.names.items()}

    def _read_input(self, node: fx.Node) -> None:
        val = node.meta.get("val")
        if not isinstance(val, torch.Tensor):
            raise CaptureError(f"model input {node.name!r} is not a tensor")
        name = self._name(node, node.name)
        self.inputs.append(name)
        values = [(self.shapes.shape(val), val.dtype)]
        batch_dim = self.shapes.batch_dim(val)
        self.drafts.append(_Draft(name, "input", "input", values, False, 0, 0, 0, (), batch_dim))

    def _read_op(self, node: fx.Node) -> None:
        val = node.meta["val"]
        packet = _packet(node)
        tensor_inputs = [a for a in node.all_input_nodes if a in self.names]
        in_shapes = [self._arg_shape(a) for a in node.args]
        arg_values = [self._arg_value(a) for a in node.args]
        is_tuple = not isinstance(val, torch.Tensor)
        values = [(self.shapes.shape(v), v.dtype) for v in (val if is_tuple else [val])]
        op_class = ops.classify(packet, in_shapes, arg_values)
        cost = self.costs.get(node)
        op_shapes = ops.OpShapes(inputs=in_shapes, output=values[0][0], args=arg_values)
        if cost is None:  # not run on fake tensors: the op's own rule, from its shapes
            count = ops.count_flops(packet, op_shapes)
            flops = count or 0
            if op_class is None or (count is None and op_class not in ("view", "memory")):
                op_class = "unpriced"
        else:
            flops = cost.flops
            if cost.op_class == "unpriced" or op_class is None:
                op_class = cost.op_class or "view"  # an op that dispatched nothing is an alias
        name = self._name(node, self._base_name(node, packet, op_class))
        self.drafts.append(
            _Draft(
                name=name,
                op=packet,
                op_class=op_class,
                values=values,
                is_tuple=is_tuple,
                flops=flops,
                param_bytes=sum(self.param_bytes.get(a, 0) for a in node.all_input_nodes),
                in_bytes=sum(self._tensor_bytes(a) for a in tensor_inputs),
                inputs=tuple(dict.fromkeys(self.names[a] for a in tensor_inputs)),
                batch_dim=0 if is_tuple else self.shapes.batch_dim(val),
                loop=ops.loop_of(packet, op_shapes),
            )
        )
        if packet == "getitem" and isinstance(node.args[0], fx.Node) and node.args[0] in self.names:
            # The getitem and the tuple it picks from must sit on the same side.
            self.ties.append((self.names[node.args[0]], name))

    def _base_name(self, node: fx.Node, packet: str, op_class: str) -> str:
        """A readable name: ``op[i]`` for a getitem, the module path for a leaf module's
        op, else the path plus the op (``layer1.0.add``).

        Views and copies never take a leaf module's bare path: functionalisation
        replays a view where it is used, inside the module that reads it, so the
        path names the reader (``fc.view`` feeds ``fc``). A module that only moves data
        (``nn.Flatten``) keeps its name.
        """
        if packet == "getitem":
            parent = node.args[0]
            return (
                f"{self.names[parent]}[{node.args[1]}]" if isinstance(parent, fx.Node) else packet
            )
        path, leaf = _module_path(node)
        if leaf and path and (op_class not in ("view", "memory") or path not in self.computing):
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


def _batchless_ties(graph: Graph) -> tuple[tuple[str, str], ...]:
    """Ties that keep a tensor which mixes frames on the side of its readers: it cannot cross.

    A tensor the input flows into but whose shape has no batch dim (a reduction over the
    batch, a batch spread over two dims) has no per-frame part to send, and stacking
    requests along any dim would mix their frames. Tied to each reader, no cut makes it
    cross. A constant has no batch dim either, but it never crosses
    (``Graph.constant_mask``), so it stays free.
    """
    return tuple(
        (node.name, user)
        for node, constant in zip(graph.nodes, graph.constant_mask, strict=True)
        if node.batch_dim is None and node.dtype != "tuple" and not constant
        for user in node.users
    )


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
