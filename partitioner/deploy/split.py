"""Cut a captured model into a head (edge) and a tail (cloud) as FX modules.

Given the set of edge nodes, :func:`split_module` copies those nodes into a head
``GraphModule`` whose outputs are the crossing tensors (in topological order),
and the rest into a tail whose inputs are those tensors and whose outputs are
the model's. ``tail(*head(x))`` computes exactly what the whole model computes;
:mod:`partitioner.deploy.artifact` saves both halves for deployment.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

import torch
import torch.fx as fx

from partitioner.errors import EdgecutError
from partitioner.model.capture import CapturedModel
from partitioner.model.graph import Node


@dataclass
class Halves:
    head: fx.GraphModule  # model inputs -> tuple of crossing tensors
    tail: fx.GraphModule | None  # crossing tensors -> tuple of model outputs; None if edge-only
    crossing: list[Node]  # the tensors that cross, in the order head returns them
    edge_nodes: frozenset[str]


def placeholder_name(tensor_name: str) -> str:
    """A Python identifier for a tensor name such as ``layer1.0.relu`` (tail placeholders)."""
    ident = re.sub(r"\W", "_", tensor_name)
    return ident if ident and not ident[0].isdigit() else f"t_{ident}"


def split_module(captured: CapturedModel, edge_nodes: Iterable[str]) -> Halves:
    graph = captured.graph
    edge = frozenset(edge_nodes)
    unknown = edge - set(graph.index)
    if unknown:
        raise EdgecutError(f"unknown node(s) in the edge set: {sorted(unknown)[:5]}")
    if not graph.is_closed(edge):
        raise EdgecutError(
            "the edge set is not closed under predecessors: a node on the edge needs a "
            "tensor computed on the cloud"
        )
    crossing = graph.crossing(edge)
    fx_of = {name: captured.fx_node(name) for name in graph.index}
    edge_fx = {fx_of[name] for name in edge}

    head_graph = fx.Graph()
    head_env: dict[fx.Node, fx.Node] = {}
    for name in graph.inputs:
        src = fx_of[name]
        head_env[src] = head_graph.placeholder(src.name)
        head_env[src].meta = dict(src.meta)
    _copy_nodes(
        captured,
        head_graph,
        head_env,
        [n for n in _fx_order(captured) if n in edge_fx and n.op == "call_function"],
    )
    if crossing:
        head_outputs = tuple(head_env[fx_of[n.name]] for n in crossing)
    else:  # edge-only: the head computes the model's outputs
        head_outputs = tuple(head_env[fx_of[name]] for name in graph.outputs)
    head_graph.output(head_outputs)
    head = fx.GraphModule(captured.module, head_graph, class_name="Head")

    if not crossing:
        return Halves(head=head, tail=None, crossing=[], edge_nodes=edge)

    tail_graph = fx.Graph()
    tail_env: dict[fx.Node, fx.Node] = {}
    for node in crossing:
        src = fx_of[node.name]
        tail_env[src] = tail_graph.placeholder(placeholder_name(node.name))
        tail_env[src].meta = dict(src.meta)
    graph_fx = set(fx_of.values())
    cloud = [
        n
        for n in _fx_order(captured)
        if n in graph_fx and n not in edge_fx and n.op == "call_function"
    ]
    _copy_nodes(captured, tail_graph, tail_env, cloud)
    tail_graph.output(tuple(tail_env[fx_of[name]] for name in graph.outputs))
    tail = fx.GraphModule(captured.module, tail_graph, class_name="Tail")
    return Halves(head=head, tail=tail, crossing=crossing, edge_nodes=edge)


def _fx_order(captured: CapturedModel) -> list[fx.Node]:
    return list(captured.module.graph.nodes)


def _copy_nodes(
    captured: CapturedModel,
    graph: fx.Graph,
    env: dict[fx.Node, fx.Node],
    nodes: list[fx.Node],
) -> None:
    """Copy ``nodes`` into ``graph``, pulling in parameters and symbolic sizes on demand."""

    def lookup(arg: fx.Node) -> fx.Node:
        if arg not in env:
            env[arg] = _materialize(captured, graph, env, arg)
        return env[arg]

    for node in nodes:
        env[node] = graph.node_copy(node, lookup)


def _materialize(
    captured: CapturedModel, graph: fx.Graph, env: dict[fx.Node, fx.Node], node: fx.Node
) -> fx.Node:
    """Make a value that is not a graph tensor available in a half.

    Parameters are copied as ``get_attr``. Symbolic sizes (``x.size(0)`` in a
    ``view``) are recomputed from tensors of this half when their inputs are here;
    otherwise a size that equals the batch is read from the half's first input.
    """
    if node.op == "get_attr":
        new = graph.get_attr(str(node.target))
        new.meta = dict(node.meta)
        return new
    if node.op == "call_function" and not isinstance(node.meta.get("val"), torch.Tensor):
        if all(a in env or a.op == "get_attr" or _is_symbolic(a) for a in node.all_input_nodes):
            return graph.node_copy(
                node, lambda a: env[a] if a in env else _materialize(captured, graph, env, a)
            )
        val = node.meta.get("val")
        if isinstance(val, torch.SymInt) and _is_batch(val, captured):
            first = next(n for n in graph.nodes if n.op == "placeholder")
            new = graph.call_function(torch.ops.aten.sym_size.int, (first, 0))
            new.meta = dict(node.meta)
            return new
    raise EdgecutError(
        f"cannot place {node.name!r} ({node.target}) in this half: it needs values from the "
        "other side that are not tensors"
    )


def _is_symbolic(node: fx.Node) -> bool:
    return not isinstance(node.meta.get("val"), torch.Tensor) and node.op == "call_function"


def _is_batch(val: torch.SymInt, captured: CapturedModel) -> bool:
    for node in captured.module.graph.nodes:
        if node.op == "placeholder":
            v = node.meta.get("val")
            if isinstance(v, torch.Tensor) and v.dim() > 0 and isinstance(v.shape[0], torch.SymInt):
                return bool(v.shape[0].node.expr == val.node.expr)
    return False
