"""Plans: the JSON contract of ``edgecut plan --json``, its round trip, named cuts priced
exactly as the cost model prices them, and node names resolved with helpful errors."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from partitioner.errors import EdgecutError
from partitioner.model.graph import TensorSpec
from partitioner.pricing.cost import OBJECTIVES, CostModel
from partitioner.pricing.network import NETWORKS
from partitioner.pricing.profiles import DEVICES
from partitioner.solve.plan import Plan, evaluate_cut, make_plan, plan_for_cut, resolve_node

ROOT = Path(__file__).resolve().parents[3]

# The fields DESIGN.md promises to everyone who reads `edgecut plan --json`.
DESIGN_TOP = {
    "model", "solver", "objective", "edge_nodes", "cut", "predicted", "objective_value",
    "edge_only_ms", "cloud_only_ms", "solve_ms",
}  # fmt: skip
DESIGN_PREDICTED = {"edge_ms", "transfer_ms", "cloud_ms", "total_ms", "edge_energy_mj"}
DESIGN_CUT = {"name", "shape", "dtype", "bytes"}


def _cost(cap, network: str = "lte", codec: str = "none") -> CostModel:
    return CostModel(
        cap.graph, DEVICES.get("rpi4"), DEVICES.get("x86-server"), NETWORKS.get(network), codec
    )


# --- the JSON contract ---------------------------------------------------------------------


def _documented_plan_fields() -> tuple[set[str], set[str], set[str], set[str]]:
    """(top-level, predicted, cut entry, objective values) as docs/contracts.md lists them."""
    text = (ROOT / "docs" / "contracts.md").read_text()
    section = text.split("## `edgecut plan ... --json`\n", 1)[1]
    block = section.split("```\n", 2)[1]  # the first fenced block of the section
    block = "\n".join(line.split("#", 1)[0] for line in block.splitlines())
    alternatives = re.search(r'"\w+"(?:\s*\|\s*"\w+")+', block)
    assert alternatives, "the objective's values are no longer listed as alternatives"
    objectives = set(re.findall(r'"(\w+)"', alternatives.group()))
    block = block.replace(alternatives.group(), "")
    predicted = re.search(r'"predicted":\s*\{(.*?)\}', block, re.S)
    cut = re.search(r'"cut":\s*\[\{(.*?)\}\]', block, re.S)
    assert predicted and cut, "the predicted or cut fields are no longer nested as before"
    top = block.replace(predicted.group(1), "").replace(cut.group(1), "")
    names = lambda s: set(re.findall(r'"(\w+)"', s))  # noqa: E731
    return names(top), names(predicted.group(1)), names(cut.group(1)), objectives


def test_the_documented_contract_keeps_designs_fields() -> None:
    top, predicted, cut, objectives = _documented_plan_fields()
    assert DESIGN_TOP <= top
    assert DESIGN_PREDICTED <= predicted
    assert DESIGN_CUT <= cut
    assert objectives == set(OBJECTIVES)


@pytest.mark.parametrize("objective", OBJECTIVES)
def test_plan_json_has_exactly_the_documented_fields(captured_zoo, objective: str) -> None:
    _, cap = captured_zoo("googlenet")  # a DAG: its best cuts cross several tensors
    plan = make_plan(_cost(cap), objective=objective, input_shape=cap.input_shape)
    data = json.loads(json.dumps(plan.to_json(), allow_nan=False))
    top, predicted, cut, _ = _documented_plan_fields()
    assert set(data) == top, "docs/contracts.md and Plan.to_json disagree"
    assert set(data["predicted"]) == predicted
    for entry in data["cut"]:
        assert set(entry) == cut
        assert isinstance(entry["name"], str) and isinstance(entry["dtype"], str)
        assert all(isinstance(d, int) for d in entry["shape"]) and isinstance(entry["bytes"], int)
    assert data["objective"] == objective
    assert all(isinstance(n, str) for n in data["edge_nodes"]) and data["edge_nodes"][0] == "x"
    assert all(isinstance(v, int | float) for v in data["predicted"].values())


@pytest.mark.parametrize("objective", OBJECTIVES)
@pytest.mark.parametrize("codec", ["none", "int8+zstd"])
def test_plan_round_trips_through_json(captured_zoo, objective: str, codec: str) -> None:
    _, cap = captured_zoo("googlenet")
    plan = make_plan(_cost(cap, "wifi", codec), objective=objective, input_shape=cap.input_shape)
    again = Plan.from_json(json.loads(json.dumps(plan.to_json())))
    assert again == plan
    assert again.to_json() == plan.to_json()
    assert len(again.cut) >= 1 and all(isinstance(t, TensorSpec) for t in again.cut)


def test_a_malformed_plan_is_refused_with_the_field_named(captured_zoo) -> None:
    _, cap = captured_zoo("digits_cnn")
    data = make_plan(_cost(cap)).to_json()
    del data["predicted"]["total_ms"]
    with pytest.raises(EdgecutError, match="not a plan: .*total_ms"):
        Plan.from_json(data)
    data = make_plan(_cost(cap)).to_json()
    data["objective_value"] = "fast"
    with pytest.raises(EdgecutError, match="not a plan"):
        Plan.from_json(data)


# --- named cuts priced by the cost model ---------------------------------------------------


@pytest.mark.parametrize("name", ["digits_cnn", "resnet18"])  # a chain and a DAG
def test_every_named_cut_is_priced_as_the_cost_model_prices_it(captured_zoo, name: str) -> None:
    _, cap = captured_zoo(name)
    graph, cost, bw = cap.graph, _cost(cap), 3.0
    edge_only = cost.predict(cost.edge_only(), bw).total_ms
    cloud_only = cost.predict(cost.cloud_only(), bw).total_ms
    assert edge_only != cloud_only  # so that swapping them would show
    for node in graph.nodes:
        edge = graph.close([node.name])
        plan = evaluate_cut(cost, node.name, objective="energy", bandwidth_mbps=bw)
        want = cost.predict(edge, bw)
        assert plan.predicted == want, node.name
        assert plan.objective_value == cost.objective_value(want, "energy")
        assert plan.edge_nodes == tuple(n.name for n in graph.nodes if n.name in edge)
        assert plan.cut == tuple(
            TensorSpec(n.name, n.shape, n.dtype, n.out_bytes) for n in graph.crossing(edge)
        )
        assert (plan.edge_only_ms, plan.cloud_only_ms) == (edge_only, cloud_only)
        assert plan.solver == "fixed" and plan.objective == "energy"
        assert (plan.bandwidth_mbps, plan.n_nodes) == (bw, len(graph))
        assert plan.is_edge_only == (edge == frozenset(graph.index))


def test_plan_for_cut_records_what_the_plan_was_made_for(captured_zoo) -> None:
    _, cap = captured_zoo("digits_cnn")
    cost = _cost(cap, "wifi", "int8")
    edge = cap.graph.close(["pool1"])
    plan = plan_for_cut(
        cost,
        edge,
        solver="mine",
        objective="throughput",
        bandwidth_mbps=7.5,
        solve_ms=1.25,
        input_shape=(1, 1, 8, 8),
    )
    assert plan.predicted == cost.predict(edge, 7.5)
    assert plan.objective_value == plan.predicted.frame_period_ms
    assert (plan.edge_device, plan.cloud_device, plan.network, plan.codec) == (
        "rpi4",
        "x86-server",
        "wifi",
        "int8",
    )
    assert (plan.solver, plan.solve_ms, plan.rtt_ms) == ("mine", 1.25, NETWORKS.get("wifi").rtt_ms)
    assert plan.input_shape == (1, 1, 8, 8) and plan.model == "digits_cnn"


@pytest.mark.parametrize("objective", OBJECTIVES)
def test_a_solved_plan_is_no_worse_than_any_named_cut(captured_zoo, objective: str) -> None:
    _, cap = captured_zoo("resnet18")
    cost = _cost(cap)
    plan = make_plan(cost, objective=objective)  # at the network's own uplink
    assert plan.bandwidth_mbps == NETWORKS.get("lte").uplink_mbps
    assert plan.predicted == cost.predict(plan.edge_nodes, plan.bandwidth_mbps)
    named = [evaluate_cut(cost, n.name, objective=objective) for n in cap.graph.nodes]
    assert plan.objective_value <= min(p.objective_value for p in named) * (1 + 1e-9)


# --- node names ------------------------------------------------------------------------------


def test_resolve_node_names_the_model_and_suggests_close_names(captured_zoo) -> None:
    _, cap = captured_zoo("digits_cnn")
    assert resolve_node(cap.graph, "relu2") == "relu2"
    with pytest.raises(
        EdgecutError,
        match=r"no node named 'relu9' in digits_cnn \(17 nodes; `edgecut profile` lists them\); "
        r"close matches: relu\d, relu\d, relu\d$",
    ):
        resolve_node(cap.graph, "relu9")
    with pytest.raises(EdgecutError, match=r"lists them\)$"):  # nothing close: no suggestion
        resolve_node(cap.graph, "zzzzzz")


def test_evaluate_cut_refuses_bad_names_objectives_and_bandwidths(captured_zoo) -> None:
    _, cap = captured_zoo("digits_cnn")
    cost = _cost(cap)
    with pytest.raises(EdgecutError, match="no node named 'conv9'"):
        evaluate_cut(cost, "conv9")
    with pytest.raises(EdgecutError, match="objective"):
        evaluate_cut(cost, "relu2", objective="speed")
    for bad in (0.0, -1.0):
        with pytest.raises(EdgecutError, match="bandwidth"):
            evaluate_cut(cost, "relu2", bandwidth_mbps=bad)
