"""Cut a captured model into a head (edge) and a tail (cloud) as FX modules.

Given the set of edge nodes, :func:`split_module` copies those nodes into a head
``GraphModule`` whose outputs are the crossing tensors (in topological order),
and the rest into a tail whose inputs are those tensors and whose outputs are
the model's. ``tail(*head(x))`` computes exactly what the whole model computes;
:mod:`partitioner.deploy.artifact` saves both halves for deployment.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

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
    lookup = _copy_nodes(captured, tail_graph, tail_env, cloud)
    tail_graph.output(tuple(lookup(fx_of[name]) for name in graph.outputs))
    tail = fx.GraphModule(captured.module, tail_graph, class_name="Tail")
    return Halves(head=head, tail=tail, crossing=crossing, edge_nodes=edge)


def _fx_order(captured: CapturedModel) -> list[fx.Node]:
    return list(captured.module.graph.nodes)


def _copy_nodes(
    captured: CapturedModel,
    graph: fx.Graph,
    env: dict[fx.Node, fx.Node],
    nodes: list[fx.Node],
) -> Callable[[fx.Node], fx.Node]:
    """Copy ``nodes`` into ``graph``, pulling in parameters, symbolic sizes and constants on
    demand; returns the lookup that does so."""
    constants = {
        captured.fx_node(node.name)
        for node, constant in zip(captured.graph.nodes, captured.graph.constant_mask, strict=True)
        if constant
    }

    def lookup(arg: fx.Node) -> fx.Node:
        if arg not in env:
            env[arg] = _materialize(captured, graph, env, lookup, arg, constants)
        return env[arg]

    for node in nodes:
        env[node] = graph.node_copy(node, lookup)
    return lookup


def _materialize(
    captured: CapturedModel,
    graph: fx.Graph,
    env: dict[fx.Node, fx.Node],
    lookup: Callable[[fx.Node], fx.Node],
    node: fx.Node,
    constants: set[fx.Node],
) -> fx.Node:
    """Make a value that no node of this half computes available in it.

    Parameters are copied as ``get_attr``. A constant tensor (``Graph.constant_mask``:
    position ids, a mask built from parameters), which never crosses, is computed again
    here, as are symbolic sizes (``x.size(0)`` in a ``view``) whose inputs are here;
    otherwise a size that equals the batch is read from this half's inputs.
    """
    if node.op == "get_attr":
        new = graph.get_attr(str(node.target))
        new.meta = dict(node.meta)
        return new
    if node in constants:
        return graph.node_copy(node, lookup)
    if node.op == "call_function" and not isinstance(node.meta.get("val"), torch.Tensor):
        here = (
            a in env or a.op == "get_attr" or a in constants or _is_symbolic(a)
            for a in node.all_input_nodes
        )
        if all(here):
            return graph.node_copy(node, lookup)
        val = node.meta.get("val")
        if isinstance(val, torch.SymInt):
            size = _batch_size(captured, graph, val)
            if size is not None:
                size.meta = dict(node.meta)
                return size
    raise EdgecutError(
        f"cannot place {node.name!r} ({node.target}) in this half: it needs values from the "
        "other side that are not tensors"
    )


def _batch_size(captured: CapturedModel, graph: fx.Graph, val: torch.SymInt) -> fx.Node | None:
    """A node of ``graph`` computing ``val`` when it is the batch size, from an input of this
    half whose batch dim is ``k * batch``: that dim's size over k. None if it is not the batch."""
    batch = _batch_symbols(captured)
    if val.node.expr not in batch:
        return None
    for placeholder in [n for n in graph.nodes if n.op == "placeholder"]:
        tensor = placeholder.meta.get("val")
        if not isinstance(tensor, torch.Tensor):
            continue
        for i, d in enumerate(tensor.shape):
            if not isinstance(d, torch.SymInt):
                continue
            k = d.node.expr / val.node.expr
            if k.is_Integer and int(k) >= 1:
                size = graph.call_function(torch.ops.aten.sym_size.int, (placeholder, i))
                return (
                    size if int(k) == 1 else graph.call_function(operator.floordiv, (size, int(k)))
                )
    return None


def _batch_symbols(captured: CapturedModel) -> set[Any]:
    """The symbols of the model inputs' batch dims (dim 0, symbolic when the batch is)."""
    symbols: set[Any] = set()
    for node in captured.module.graph.nodes:
        v = node.meta.get("val") if node.op == "placeholder" else None
        if isinstance(v, torch.Tensor) and v.dim() > 0 and isinstance(v.shape[0], torch.SymInt):
            symbols.add(v.shape[0].node.expr)
    return symbols


def _is_symbolic(node: fx.Node) -> bool:
    return not isinstance(node.meta.get("val"), torch.Tensor) and node.op == "call_function"
