"""Chain scan: the cuts at layer boundaries, i.e. every prefix of the topological order.

On a chain these are all the closed cuts, so the scan is exact for every
objective; on a DAG it is a fast heuristic (one topological order's prefixes).
Prefixes that would separate an op from the getitem reading its tuple are
skipped.
"""

from __future__ import annotations

import numpy as np

from partitioner.model.graph import Graph
from partitioner.solve.problem import CutProblem, evaluate_masks, register_solver


def prefix_masks(graph: Graph) -> np.ndarray:
    """(P, n) bool: the closed topological-prefix cuts, cloud-only first, edge-only last."""
    n, n_inputs = len(graph), len(graph.inputs)
    masks = np.tri(n + 1, n, k=-1, dtype=bool)[n_inputs:]  # row p: the first n_inputs + p nodes
    keep = np.ones(len(masks), dtype=bool)
    for a, b in graph.ties:
        keep &= masks[:, graph.index[a]] == masks[:, graph.index[b]]
    # Inputs come first in a Graph, so each row is closed under predecessors.
    return masks[keep]


@register_solver("chain")
def solve_chain(problem: CutProblem) -> frozenset[str]:
    graph = problem.graph
    masks = prefix_masks(graph)
    values = evaluate_masks(problem, masks)
    best = masks[int(np.argmin(values))]
    return frozenset(graph.nodes[i].name for i in np.flatnonzero(best))
