"""Solvers: find the cut (set of edge nodes) that minimises an objective.

Every solver takes a :class:`CutProblem` and returns a predecessor-closed set of
edge nodes. ``exhaustive`` enumerates every closed set (the reference; it
refuses graphs too large to enumerate), ``chain`` scans the cuts at layer
boundaries (exact on chains), ``mincut`` solves DAGs exactly for the linear
objectives by a min s-t cut, and ``auto`` picks among them. New solvers register
with :func:`register_solver` and are tested against ``exhaustive`` for free.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from partitioner.cost import OBJECTIVES, CostModel, LinearCost, StageCosts
from partitioner.errors import EdgecutError, unknown_name
from partitioner.graph import Graph
from partitioner.registry import Registry


class SolverError(EdgecutError):
    """A solver that cannot handle this problem (too large, wrong objective)."""


@dataclass(frozen=True)
class CutProblem:
    """One optimisation: a graph, an objective and the prices at one bandwidth."""

    graph: Graph
    objective: str
    linear: LinearCost | None  # latency and energy
    stages: StageCosts  # every objective; throughput needs only this

    def value(self, edge_mask: np.ndarray) -> float:
        """The objective of one cut, from the same prices the solvers use."""
        return float(evaluate_masks(self, edge_mask[None, :])[0])


@dataclass(frozen=True)
class Solution:
    edge_nodes: frozenset[str]
    value: float
    solver: str
    solve_ms: float
    extra: dict[str, object] = field(default_factory=dict)


SolverFn = Callable[[CutProblem], frozenset[str]]
_SOLVERS: Registry[SolverFn] = Registry("solver")


def register_solver(name: str) -> Callable[[SolverFn], SolverFn]:
    return lambda fn: _SOLVERS.add(name, fn)


def list_solvers() -> list[str]:
    return ["auto", *_SOLVERS.sorted_names()]


def get_solver(name: str) -> SolverFn:
    if name == "auto":
        return _auto
    if name not in _SOLVERS:  # "auto" is a choice too, so not _SOLVERS.lookup
        raise unknown_name("solver", name, list_solvers())
    return _SOLVERS[name]


def make_problem(
    cost: CostModel, objective: str, bandwidth_mbps: float | None = None
) -> CutProblem:
    if objective not in OBJECTIVES:
        raise EdgecutError(
            f"unknown objective {objective!r}: expected one of {', '.join(OBJECTIVES)}"
        )
    linear = cost.linear(objective, bandwidth_mbps) if objective != "throughput" else None
    return CutProblem(cost.graph, objective, linear, cost.stages(bandwidth_mbps))


def solve(
    cost: CostModel,
    objective: str = "latency",
    solver: str = "auto",
    bandwidth_mbps: float | None = None,
) -> Solution:
    problem = make_problem(cost, objective, bandwidth_mbps)
    fn = get_solver(solver)
    from partitioner.solvers.maxflow import warm_up

    warm_up()  # the first call loads compiled code; keep that out of solve_ms
    start = time.perf_counter()
    edge = fn(problem)
    solve_ms = (time.perf_counter() - start) * 1e3
    mask = mask_of(problem.graph, edge)
    used = _auto_choice(problem) if solver == "auto" else solver
    return Solution(edge, problem.value(mask), used, solve_ms)


def mask_of(graph: Graph, edge_nodes: frozenset[str] | set[str]) -> np.ndarray:
    mask = np.zeros(len(graph), dtype=bool)
    for name in edge_nodes:
        mask[graph.index[name]] = True
    return mask


def crossing_masks(graph: Graph, masks: np.ndarray) -> np.ndarray:
    """(M, n) bool: node i's output crosses in cut m (edge-only cuts cross nothing)."""
    masks = np.asarray(masks, dtype=bool)
    outside_user = np.zeros_like(masks)
    idx = graph.index
    for i, node in enumerate(graph.nodes):
        if node.is_output:
            outside_user[:, i] = True
        for u in node.users:
            outside_user[:, i] |= ~masks[:, idx[u]]
    cross = masks & outside_user
    cross[masks.all(axis=1)] = False
    return cross


def evaluate_masks(problem: CutProblem, masks: np.ndarray) -> np.ndarray:
    """Objective values of many cuts at once: (M, n) bool -> (M,)."""
    masks = np.asarray(masks, dtype=bool)
    cross = crossing_masks(problem.graph, masks)
    remote = ~masks.all(axis=1)
    if problem.linear is not None:
        lin = problem.linear
        return masks @ lin.edge + (~masks) @ lin.cloud + cross @ lin.cross + remote * lin.remote
    st = problem.stages
    edge_stage = masks @ st.edge_ms + cross @ st.encode_ms
    link_stage = cross @ st.transfer_ms
    cloud_stage = (~masks) @ st.cloud_ms + cross @ st.decode_ms
    return np.maximum(np.maximum(edge_stage, link_stage), cloud_stage)


def _auto_choice(problem: CutProblem) -> str:
    graph = problem.graph
    if graph.is_chain:
        return "chain"
    if problem.objective == "throughput":
        from partitioner.solvers.exhaustive import MAX_FREE_NODES

        if len(graph) - len(graph.inputs) <= MAX_FREE_NODES:
            return "exhaustive"
    return "mincut"


def _auto(problem: CutProblem) -> frozenset[str]:
    choice = _auto_choice(problem)
    best = get_solver(choice)(problem)
    if choice == "mincut" and problem.objective == "throughput":
        # The min-cut answer for throughput is a relaxation: keep the chain scan's
        # answer when it is better.
        chain = get_solver("chain")(problem)
        if problem.value(mask_of(graph := problem.graph, chain)) < problem.value(
            mask_of(graph, best)
        ):
            best = chain
    return best


# Registration happens on import of the solver modules.
from partitioner.solvers import chain, exhaustive, mincut  # noqa: E402,F401
