"""Exhaustive search: every predecessor-closed cut, evaluated at once. The reference.

Cuts are bitmasks over the non-input nodes; all 2^n masks are generated in
blocks, the closed ones kept (a node's bit implies its predecessors' bits), and
the objective is evaluated vectorised. It refuses graphs with more than
:data:`MAX_FREE_NODES` non-input nodes, where it would take too long.
"""

from __future__ import annotations

import numpy as np

from partitioner.solve.problem import CutProblem, SolverError, evaluate_masks, register_solver

MAX_FREE_NODES = 22  # 4 M masks: about a second on 2 cores
_BLOCK = 1 << 18


@register_solver("exhaustive")
def solve_exhaustive(problem: CutProblem) -> frozenset[str]:
    graph = problem.graph
    free = [i for i, n in enumerate(graph.nodes) if n.name not in set(graph.inputs)]
    k = len(free)
    if k > MAX_FREE_NODES:
        raise SolverError(
            f"exhaustive search refuses {k} nodes (2^{k} cuts); it handles at most "
            f"{MAX_FREE_NODES}: use --solver mincut or chain"
        )
    position = {i: b for b, i in enumerate(free)}
    input_idx = [graph.index[name] for name in graph.inputs]
    # pred_bits[b]: bits of the free predecessors of free node b.
    pred_bits = np.zeros(k, dtype=np.int64)
    for b, i in enumerate(free):
        for p in graph.nodes[i].inputs:
            j = graph.index[p]
            if j in position:
                pred_bits[b] |= 1 << position[j]
    tie_pairs = [
        (position[graph.index[a]], position[graph.index[c]])
        for a, c in graph.ties
        if graph.index[a] in position and graph.index[c] in position
    ]
    n = len(graph)
    best_value = np.inf
    best_mask: np.ndarray | None = None
    for start in range(0, 1 << k, _BLOCK):
        codes = np.arange(start, min(start + _BLOCK, 1 << k), dtype=np.int64)
        ok = np.ones(codes.shape, dtype=bool)
        for b in range(k):
            has = (codes >> b) & 1 == 1
            ok &= ~has | ((codes & pred_bits[b]) == pred_bits[b])
        for a, c in tie_pairs:
            ok &= ((codes >> a) & 1) == ((codes >> c) & 1)
        codes = codes[ok]
        if codes.size == 0:
            continue
        masks = np.zeros((codes.size, n), dtype=bool)
        masks[:, input_idx] = True
        for b, i in enumerate(free):
            masks[:, i] = (codes >> b) & 1 == 1
        values = evaluate_masks(problem, masks)
        j = int(np.argmin(values))
        if values[j] < best_value:
            best_value = float(values[j])
            best_mask = masks[j]
    assert best_mask is not None  # the cloud-only cut is always closed
    return frozenset(graph.nodes[i].name for i in np.flatnonzero(best_mask))
