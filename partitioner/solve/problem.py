"""The cut problem: one graph, one objective, the prices at one bandwidth; and the solvers' registry.

A solver is a function from a :class:`CutProblem` to a predecessor-closed set of edge
nodes, registered under a name with :func:`register_solver`; the built-in ones live in
the modules beside this one and are imported by the package. :func:`evaluate_masks`
prices many cuts at once from the same prices every solver sees.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from partitioner.errors import EdgecutError
from partitioner.model.graph import Graph
from partitioner.pricing.cost import (
    CostModel,
    LinearCost,
    StageCosts,
    check_objective,
    frame_period_ms,
)
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
SOLVERS: Registry[SolverFn] = Registry("solver")


def register_solver(name: str) -> Callable[[SolverFn], SolverFn]:
    """Decorator: register a solver function under ``name``."""
    return lambda fn: SOLVERS.register(fn, name)


def make_problem(
    cost: CostModel, objective: str, bandwidth_mbps: float | None = None
) -> CutProblem:
    check_objective(objective)
    linear = cost.linear(objective, bandwidth_mbps) if objective != "throughput" else None
    return CutProblem(cost.graph, objective, linear, cost.stages(bandwidth_mbps))


def evaluate_masks(problem: CutProblem, masks: np.ndarray) -> np.ndarray:
    """Objective values of many cuts at once: (M, n) bool -> (M,)."""
    masks = np.asarray(masks, dtype=bool)
    cross = problem.graph.crossing_mask(masks)
    if problem.linear is not None:
        return problem.linear.evaluate(masks, cross)
    st = problem.stages
    edge_stage = masks @ st.edge_ms + cross @ st.encode_ms
    link_stage = cross @ st.transfer_ms
    cloud_stage = (~masks) @ st.cloud_ms + cross @ st.decode_ms
    return frame_period_ms(edge_stage, link_stage, cloud_stage)
