"""DAG min-cut (the DADS construction): exact for the linear objectives.

Source = edge, sink = cloud. Each node v gets an arc s->v priced at its cloud
cost (cut when v is on the cloud) and v->t at its edge cost (cut when v is on
the edge). A tensor read by several consumers goes through one auxiliary vertex
(u -> aux at the crossing price, aux -> each consumer at infinity), so it is paid
once however many cloud nodes read it. Every data edge u->w gets an infinite
reverse arc w->u, so no cut puts w on the edge and u on the cloud: the edge side
is closed under predecessors. Model outputs are read by a virtual node pinned to
the cloud; the edge-only cut, which pays no transfer, is compared separately.

Throughput (the slowest of three stages) is not a sum, so for it the solver
minimises weighted sums of the stages over a grid of weights and keeps the best
maximum: a relaxation, exact when the optimum is a supported point.
"""

from __future__ import annotations

import math

import numpy as np

from partitioner.model.graph import Graph
from partitioner.pricing.cost import LinearCost
from partitioner.solve.maxflow import FlowNetwork
from partitioner.solve.problem import CutProblem, register_solver

INF = math.inf


def min_cut_edge_set(graph: Graph, cost: LinearCost) -> frozenset[str]:
    """The closed edge set minimising ``cost`` among cuts that use the cloud."""
    n = len(graph)
    out_vertex, source, sink = n, n + 1, n + 2
    # Auxiliary vertices only for tensors read by more than one consumer.
    readers: list[list[int]] = []
    for node in graph.nodes:
        r = [graph.index[u] for u in node.users]
        if node.is_output:
            r.append(out_vertex)
        readers.append(r)
    n_aux = sum(1 for r in readers if len(r) > 1)
    net = FlowNetwork(n + 3 + n_aux)
    aux = n + 3
    for i in range(n):
        # Only the difference between the two sides matters for the argmin.
        edge_price, cloud_price = float(cost.edge[i]), float(cost.cloud[i])
        base = min(edge_price, cloud_price)
        net.add_arc(source, i, cloud_price - base)
        net.add_arc(i, sink, edge_price - base)
    for name in graph.inputs:
        net.add_arc(source, graph.index[name], INF)
    net.add_arc(out_vertex, sink, INF)
    for i, r in enumerate(readers):
        cross = float(cost.cross[i])
        if len(r) == 1:
            net.add_arc(i, r[0], cross)
        elif len(r) > 1:
            net.add_arc(i, aux, cross)
            for w in r:
                net.add_arc(aux, w, INF)
            aux += 1
        for w in r:
            if w != out_vertex:
                net.add_arc(w, i, INF)  # closure: w on the edge forces i on the edge
    for a, b in graph.ties:
        ia, ib = graph.index[a], graph.index[b]
        net.add_arc(ia, ib, INF)
        net.add_arc(ib, ia, INF)
    _, side = net.min_cut(source, sink)
    return frozenset(graph.nodes[i].name for i in range(n) if side[i])


def _best_of(problem: CutProblem, candidates: list[frozenset[str]]) -> frozenset[str]:
    graph = problem.graph
    values = [problem.value(graph.mask(c)) for c in candidates]
    return candidates[int(np.argmin(values))]


@register_solver("mincut")
def solve_mincut(problem: CutProblem) -> frozenset[str]:
    graph = problem.graph
    edge_only = frozenset(graph.index)
    if problem.linear is not None:
        return _best_of(problem, [min_cut_edge_set(graph, problem.linear), edge_only])
    # Throughput: weighted sums of the edge, link and cloud stages.
    st = problem.stages
    candidates = [edge_only]
    steps = 6
    for i in range(steps + 1):
        for j in range(steps + 1 - i):
            w_edge, w_link = i / steps, j / steps
            w_cloud = 1.0 - w_edge - w_link
            weights = LinearCost(
                st.edge_ms * w_edge,
                st.cloud_ms * w_cloud,
                st.encode_ms * w_edge + st.transfer_ms * w_link + st.decode_ms * w_cloud,
                0.0,
            )
            candidates.append(min_cut_edge_set(graph, weights))
    return _best_of(problem, list(dict.fromkeys(candidates)))
