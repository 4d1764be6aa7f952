"""``auto``: the solver that picks one: the chain scan on chains, min-cut on DAGs.

For the throughput objective (not a cut function) a small DAG is searched exhaustively;
a larger one gets min-cut's weighted-sum relaxation, or the chain scan's answer when
that is better.
"""

from __future__ import annotations

from partitioner.solve.chain import solve_chain
from partitioner.solve.exhaustive import MAX_FREE_NODES, solve_exhaustive
from partitioner.solve.mincut import solve_mincut
from partitioner.solve.problem import CutProblem, register_solver

_BY_NAME = {"chain": solve_chain, "exhaustive": solve_exhaustive, "mincut": solve_mincut}


def auto_choice(problem: CutProblem) -> str:
    """The solver ``auto`` runs for ``problem``."""
    graph = problem.graph
    if graph.is_chain:
        return "chain"
    if problem.objective == "throughput" and len(graph) - len(graph.inputs) <= MAX_FREE_NODES:
        return "exhaustive"
    return "mincut"


@register_solver("auto")
def solve_auto(problem: CutProblem) -> frozenset[str]:
    choice = auto_choice(problem)
    best = _BY_NAME[choice](problem)
    if choice == "mincut" and problem.objective == "throughput":
        # The min-cut answer for throughput is a relaxation: keep the chain scan's
        # answer when it is better.
        chain = solve_chain(problem)
        graph = problem.graph
        if problem.value(graph.mask(chain)) < problem.value(graph.mask(best)):
            best = chain
    return best
