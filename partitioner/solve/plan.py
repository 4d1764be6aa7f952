"""A plan: which nodes run on the edge, what crosses, and what it is predicted to cost.

:func:`make_plan` solves one (model, devices, network, objective) problem;
:func:`evaluate_cut` prices a cut the user names instead (``--cut-after``). A
:class:`Plan` serialises to the JSON contract of ``edgecut plan --json`` and is
what ``edgecut split`` and the nodes read back.
"""

from __future__ import annotations

import difflib
import time
from dataclasses import dataclass, field
from typing import Any

from partitioner.errors import EdgecutError
from partitioner.model.graph import Graph, TensorSpec
from partitioner.model.ops import unpriced_ops
from partitioner.pricing.cost import CostModel, Prediction
from partitioner.solve import solve
from partitioner.solve.problem import make_problem


@dataclass(frozen=True)
class Plan:
    model: str
    solver: str
    objective: str
    edge_nodes: tuple[str, ...]  # topological order
    cut: tuple[TensorSpec, ...]
    predicted: Prediction
    objective_value: float
    edge_only_ms: float
    cloud_only_ms: float
    solve_ms: float
    # Context: what the plan was made for.
    edge_device: str = ""
    cloud_device: str = ""
    network: str = ""
    bandwidth_mbps: float = 0.0
    rtt_ms: float = 0.0
    codec: str = "none"
    input_shape: tuple[int, ...] = ()
    n_nodes: int = 0
    # Ops of the model with no FLOP rule (torch's or the project's): priced by bytes only.
    unpriced_ops: tuple[str, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def is_edge_only(self) -> bool:
        return len(self.edge_nodes) == self.n_nodes

    def to_json(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "solver": self.solver,
            "objective": self.objective,
            "edge_nodes": list(self.edge_nodes),
            "cut": [t.to_json() for t in self.cut],
            "predicted": self.predicted.to_json(),
            "objective_value": self.objective_value,
            "edge_only_ms": self.edge_only_ms,
            "cloud_only_ms": self.cloud_only_ms,
            "solve_ms": self.solve_ms,
            "edge_device": self.edge_device,
            "cloud_device": self.cloud_device,
            "network": self.network,
            "bandwidth_mbps": self.bandwidth_mbps,
            "rtt_ms": self.rtt_ms,
            "codec": self.codec,
            "input_shape": list(self.input_shape),
            "n_nodes": self.n_nodes,
            "unpriced_ops": list(self.unpriced_ops),
            **self.extra,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Plan:
        try:
            p = data["predicted"]
            predicted = Prediction(
                edge_ms=float(p["edge_ms"]),
                serialize_ms=float(p.get("serialize_ms", 0.0)),
                transfer_ms=float(p["transfer_ms"]),
                rtt_ms=float(p.get("rtt_ms", 0.0)),
                cloud_ms=float(p["cloud_ms"]),
                total_ms=float(p["total_ms"]),
                edge_energy_mj=float(p["edge_energy_mj"]),
                wire_bytes=int(p.get("wire_bytes", 0)),
                frame_period_ms=float(p.get("frame_period_ms", 0.0)),
            )
            return cls(
                model=str(data["model"]),
                solver=str(data["solver"]),
                objective=str(data["objective"]),
                edge_nodes=tuple(data["edge_nodes"]),
                cut=tuple(TensorSpec.from_json(t) for t in data["cut"]),
                predicted=predicted,
                objective_value=float(data["objective_value"]),
                edge_only_ms=float(data["edge_only_ms"]),
                cloud_only_ms=float(data["cloud_only_ms"]),
                solve_ms=float(data["solve_ms"]),
                edge_device=str(data.get("edge_device", "")),
                cloud_device=str(data.get("cloud_device", "")),
                network=str(data.get("network", "")),
                bandwidth_mbps=float(data.get("bandwidth_mbps", 0.0)),
                rtt_ms=float(data.get("rtt_ms", 0.0)),
                codec=str(data.get("codec", "none")),
                input_shape=tuple(int(d) for d in data.get("input_shape", ())),
                n_nodes=int(data.get("n_nodes", 0)),
                unpriced_ops=tuple(str(op) for op in data.get("unpriced_ops", ())),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise EdgecutError(f"not a plan: missing or malformed field {exc}") from None


def plan_for_cut(
    cost: CostModel,
    edge_nodes: frozenset[str],
    *,
    solver: str,
    objective: str,
    bandwidth_mbps: float,
    solve_ms: float,
    input_shape: tuple[int, ...],
) -> Plan:
    """The plan of a given cut (``edge_nodes``), priced by ``cost`` at ``bandwidth_mbps``."""
    graph = cost.graph
    prediction = cost.predict(edge_nodes, bandwidth_mbps)
    ordered = tuple(n.name for n in graph.nodes if n.name in edge_nodes)
    cut = tuple(TensorSpec.of(n) for n in graph.crossing(edge_nodes))
    return Plan(
        model=graph.model,
        solver=solver,
        objective=objective,
        edge_nodes=ordered,
        cut=cut,
        predicted=prediction,
        objective_value=cost.objective_value(prediction, objective),
        edge_only_ms=cost.predict(cost.edge_only(), bandwidth_mbps).total_ms,
        cloud_only_ms=cost.predict(cost.cloud_only(), bandwidth_mbps).total_ms,
        solve_ms=solve_ms,
        edge_device=cost.edge.name,
        cloud_device=cost.cloud.name,
        network=cost.network.name,
        bandwidth_mbps=bandwidth_mbps,
        rtt_ms=cost.network.rtt_ms,
        codec=cost.codec.name,
        input_shape=input_shape,
        n_nodes=len(graph),
        unpriced_ops=tuple(unpriced_ops(graph)),
    )


def make_plan(
    cost: CostModel,
    *,
    objective: str = "latency",
    solver: str = "auto",
    bandwidth_mbps: float | None = None,
    input_shape: tuple[int, ...] = (),
) -> Plan:
    bw = cost.network.uplink_mbps if bandwidth_mbps is None else bandwidth_mbps
    solution = solve(cost, objective, solver, bw)
    return plan_for_cut(
        cost,
        solution.edge_nodes,
        solver=solution.solver,
        objective=objective,
        bandwidth_mbps=bw,
        solve_ms=solution.solve_ms,
        input_shape=input_shape,
    )


def resolve_node(graph: Graph, name: str) -> str:
    if name in graph.index:
        return name
    close = difflib.get_close_matches(name, list(graph.index), n=3)
    hint = f"; close matches: {', '.join(close)}" if close else ""
    raise EdgecutError(
        f"no node named {name!r} in {graph.model} ({len(graph)} nodes; `edgecut profile` lists "
        f"them){hint}"
    )


def evaluate_cut(
    cost: CostModel,
    cut_after: str,
    *,
    objective: str = "latency",
    bandwidth_mbps: float | None = None,
    input_shape: tuple[int, ...] = (),
) -> Plan:
    """The plan that keeps ``cut_after`` and everything it depends on on the edge."""
    graph = cost.graph
    bw = cost.network.uplink_mbps if bandwidth_mbps is None else bandwidth_mbps
    start = time.perf_counter()
    edge = graph.close([resolve_node(graph, cut_after)])
    make_problem(cost, objective, bw)  # validates objective and bandwidth
    solve_ms = (time.perf_counter() - start) * 1e3
    assert graph.is_closed(edge) and graph.mask(edge).any()
    return plan_for_cut(
        cost,
        edge,
        solver="fixed",
        objective=objective,
        bandwidth_mbps=bw,
        solve_ms=solve_ms,
        input_shape=input_shape,
    )
