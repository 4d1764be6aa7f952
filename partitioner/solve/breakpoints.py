"""The breakpoint table: the best cut for every bandwidth, computed once.

Only the transfer term depends on bandwidth, and it scales with 1/B. So each cut
S costs ``F(S) + G(S) / B``: a line in x = 1/B, and the optimum over all cuts is
the lower envelope of those lines, concave and piecewise linear. The table is
built by the Eisner–Severance method: solve at both ends of the range; where two
different cuts are optimal, solve again where their lines cross; if nothing is
cheaper there, that crossing is a breakpoint, else recurse on both halves. It
takes two solves per breakpoint, and the runtime choice is a binary search.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from partitioner.errors import EdgecutError
from partitioner.model.graph import Graph
from partitioner.pricing.cost import CostModel, LinearCost
from partitioner.solve.problem import SOLVERS, CutProblem


@dataclass(frozen=True)
class Breakpoint:
    """Over [min_mbps, max_mbps] the cut ``edge_nodes`` is optimal, costing fixed + per_inv / B."""

    min_mbps: float
    max_mbps: float
    edge_nodes: frozenset[str]
    fixed: float  # objective at infinite bandwidth
    per_inverse_mbps: float  # objective added per 1/(Mbit/s)

    def value(self, bandwidth_mbps: float) -> float:
        return self.fixed + self.per_inverse_mbps / bandwidth_mbps


@dataclass(frozen=True)
class BreakpointTable:
    """Entries ordered by bandwidth; adjacent entries share a boundary."""

    objective: str
    entries: tuple[Breakpoint, ...]
    graph_order: tuple[str, ...]  # node names in topological order, for stable output

    def __post_init__(self) -> None:
        object.__setattr__(self, "_lows", [e.min_mbps for e in self.entries])

    def lookup(self, bandwidth_mbps: float) -> Breakpoint:
        """The optimal entry at this bandwidth (clamped to the table's range)."""
        i = bisect.bisect_right(self._lows, bandwidth_mbps) - 1  # type: ignore[attr-defined]
        return self.entries[min(max(i, 0), len(self.entries) - 1)]

    def to_json(self) -> dict[str, object]:
        order = {name: i for i, name in enumerate(self.graph_order)}
        return {
            "objective": self.objective,
            "breakpoints": [
                {
                    "min_mbps": e.min_mbps,
                    "max_mbps": e.max_mbps,
                    "edge_nodes": sorted(e.edge_nodes, key=order.__getitem__),
                    "total_ms_at_min": e.value(e.min_mbps),
                    "total_ms_at_max": e.value(e.max_mbps),
                    "objective_at_min": e.value(e.min_mbps),
                    "objective_at_max": e.value(e.max_mbps),
                }
                for e in self.entries
            ],
        }

    @classmethod
    def from_json(cls, data: dict, graph_order: tuple[str, ...] = ()) -> BreakpointTable:
        entries = []
        for e in data["breakpoints"]:
            lo, hi = float(e["min_mbps"]), float(e["max_mbps"])
            v_lo, v_hi = float(e["objective_at_min"]), float(e["objective_at_max"])
            # Recover the line from its two ends: v = fixed + per / B.
            per = (v_lo - v_hi) / (1 / lo - 1 / hi) if hi != lo else 0.0
            entries.append(Breakpoint(lo, hi, frozenset(e["edge_nodes"]), v_lo - per / lo, per))
        return cls(str(data.get("objective", "latency")), tuple(entries), graph_order)


def _line(
    graph: Graph, fixed: LinearCost, per: LinearCost, edge: frozenset[str]
) -> tuple[float, float]:
    """(F, G) of one cut: its objective is F + G / B."""
    mask = graph.mask(edge)[None, :]
    cross = graph.crossing_mask(mask)
    return float(fixed.evaluate(mask, cross)[0]), float(per.evaluate(mask, cross)[0])


def build_table(
    cost: CostModel,
    min_mbps: float,
    max_mbps: float,
    *,
    objective: str = "latency",
    solver: str = "auto",
) -> BreakpointTable:
    if not (min_mbps > 0 and max_mbps > min_mbps):
        raise EdgecutError(f"bandwidth range must satisfy 0 < LO < HI, got {min_mbps}:{max_mbps}")
    if objective == "throughput":
        raise EdgecutError(
            "breakpoint tables are built for latency and energy, whose cost is linear in "
            "1/bandwidth; throughput is not"
        )
    graph = cost.graph
    fixed, per = cost.linear_parts(objective)
    solve_fn = SOLVERS.get(solver)
    stages = cost.stages()

    def best_at(x: float) -> tuple[frozenset[str], float, float]:
        lin = fixed + per.scaled(x)
        edge = solve_fn(CutProblem(graph, objective, lin, stages))
        f, g = _line(graph, fixed, per, edge)
        return edge, f, g

    x_lo, x_hi = 1.0 / max_mbps, 1.0 / min_mbps  # x = 1/B grows as bandwidth falls
    breaks: dict[float, tuple[frozenset[str], float, float]] = {}
    left = best_at(x_lo)
    right = best_at(x_hi)
    _explore(x_lo, left, x_hi, right, best_at, breaks, depth=0)
    # Assemble entries from high bandwidth (small x) to low.
    points = sorted(breaks.items())
    segments: list[tuple[float, float, tuple[frozenset[str], float, float]]] = []
    start, current = x_lo, left
    for x, nxt in points:
        segments.append((start, x, current))
        start, current = x, nxt
    segments.append((start, x_hi, current))
    merged: list[tuple[float, float, tuple[frozenset[str], float, float]]] = []
    for seg in segments:
        if merged and merged[-1][2][0] == seg[2][0]:
            merged[-1] = (merged[-1][0], seg[1], merged[-1][2])
        elif seg[1] > seg[0] or not merged:
            merged.append(seg)
    entries = [
        Breakpoint(1.0 / xb, 1.0 / xa, line[0], line[1], line[2])
        for xa, xb, line in reversed(merged)
    ]
    return BreakpointTable(objective, tuple(entries), tuple(n.name for n in graph.nodes))


_Line = tuple[frozenset[str], float, float]


def _explore(
    xa: float,
    a: _Line,
    xb: float,
    b: _Line,
    best_at: Callable[[float], _Line],
    breaks: dict[float, _Line],
    depth: int,
) -> None:
    if a[0] == b[0] or depth > 60:
        return
    _, fa, ga = a
    _, fb, gb = b
    if np.isclose(ga, gb, rtol=1e-12, atol=0.0):
        # Parallel lines optimal at both ends: the cheaper one everywhere between.
        breaks[xb] = b
        return
    xm = (fb - fa) / (ga - gb)
    if not xa < xm < xb:
        xm = min(max(xm, xa), xb)
    m = best_at(xm)
    value_m = m[1] + m[2] * xm
    value_ab = fa + ga * xm
    if value_m >= value_ab - 1e-9 * max(1.0, abs(value_ab)) or m[0] in (a[0], b[0]):
        breaks[xm] = b  # from xm on (lower bandwidth) b is optimal
        return
    _explore(xa, a, xm, m, best_at, breaks, depth + 1)
    _explore(xm, m, xb, b, best_at, breaks, depth + 1)
