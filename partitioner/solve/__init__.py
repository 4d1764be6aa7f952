"""Solve: the cut that minimises an objective, at one bandwidth or at all of them.

:func:`solve` is the entry point: a priced :class:`~partitioner.pricing.cost.CostModel`,
an objective and a solver name in, a :class:`~partitioner.solve.problem.Solution` out.
Solvers (``exhaustive``, the reference; ``chain``; ``mincut``, the DADS construction;
``auto``) are registered in :mod:`partitioner.solve.problem` by the modules imported
below. :mod:`~partitioner.solve.plan` turns a solution into a :class:`Plan`,
:mod:`~partitioner.solve.breakpoints` finds the best cut for every bandwidth.
Nothing in this package imports torch.
"""

from __future__ import annotations

import time

from partitioner.pricing.cost import CostModel
from partitioner.solve import chain, exhaustive, mincut  # noqa: F401  (built-in solvers)
from partitioner.solve.auto import auto_choice
from partitioner.solve.maxflow import warm_up
from partitioner.solve.problem import SOLVERS, Solution, make_problem


def solve(
    cost: CostModel,
    objective: str = "latency",
    solver: str = "auto",
    bandwidth_mbps: float | None = None,
) -> Solution:
    problem = make_problem(cost, objective, bandwidth_mbps)
    fn = SOLVERS.get(solver)
    warm_up()  # the first call loads compiled code; keep that out of solve_ms
    start = time.perf_counter()
    edge = fn(problem)
    solve_ms = (time.perf_counter() - start) * 1e3
    mask = problem.graph.mask(edge)
    used = auto_choice(problem) if solver == "auto" else solver
    return Solution(edge, problem.value(mask), used, solve_ms)
