"""Breakpoint tables: one solve per breakpoint, agreeing with solving at every bandwidth."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from partitioner.errors import EdgecutError
from partitioner.pricing.cost import CostModel
from partitioner.pricing.network import NETWORKS
from partitioner.pricing.profiles import DEVICES
from partitioner.solve import solve
from partitioner.solve.breakpoints import BreakpointTable, build_table

GRID = np.geomspace(0.1, 1000.0, 120)
ROOT = Path(__file__).resolve().parents[3]


def _agrees_with_grid(cost: CostModel, table: BreakpointTable, objective: str = "latency") -> None:
    for bw in GRID:
        entry = table.lookup(bw)
        best = solve(cost, objective, "auto", bw).value
        assert entry.value(bw) == pytest.approx(best, rel=1e-9), f"at {bw:.3g} Mbit/s"
        # the line stored for the entry is that cut's own predicted objective
        predicted = cost.objective_value(cost.predict(entry.edge_nodes, bw), objective)
        assert entry.value(bw) == pytest.approx(predicted, rel=1e-9)


@pytest.mark.parametrize("name", ["alexnet", "vgg16"])
@pytest.mark.parametrize("edge", ["rpi4", "jetson-nano"])
def test_chain_models_move_work_to_the_edge_as_bandwidth_falls(
    captured_zoo, name: str, edge: str
) -> None:
    _, cap = captured_zoo(name, (1, 3, 224, 224))
    assert cap.graph.is_chain
    cost = CostModel(
        cap.graph, DEVICES.get(edge), DEVICES.get("x86-server"), NETWORKS.get("lte"), "int8"
    )
    table = build_table(cost, float(GRID[0]), float(GRID[-1]))
    sizes = [len(e.edge_nodes) for e in table.entries]  # ordered by rising bandwidth
    assert sizes == sorted(sizes, reverse=True)
    for a, b in zip(table.entries, table.entries[1:], strict=False):
        assert a.edge_nodes >= b.edge_nodes  # nested: the cut only ever moves one way
        assert a.max_mbps == pytest.approx(b.min_mbps)
    previous = None
    for bw in GRID[::-1]:  # falling bandwidth
        cut = solve(cost, "latency", "chain", bw).edge_nodes
        if previous is not None:
            assert cut >= previous
        previous = cut
    _agrees_with_grid(cost, table)


@pytest.mark.parametrize("name", ["resnet18", "googlenet"])
@pytest.mark.parametrize("objective", ["latency", "energy"])
def test_dag_tables_agree_with_solving_on_a_fine_grid(
    captured_zoo, name: str, objective: str
) -> None:
    _, cap = captured_zoo(name, (1, 3, 224, 224))
    # A short round trip, so the cloud wins at high bandwidth and the edge at low.
    cost = CostModel(
        cap.graph,
        DEVICES.get("jetson-nano"),
        DEVICES.get("a100"),
        NETWORKS.get("wifi").with_rtt(2.0),
        "int8",
    )
    table = build_table(cost, float(GRID[0]), float(GRID[-1]), objective=objective)
    if objective == "latency":
        assert len(table.entries) >= 2
    _agrees_with_grid(cost, table, objective)


def test_lookup_finds_the_entry_holding_the_bandwidth_and_round_trips_json(captured_zoo) -> None:
    _, cap = captured_zoo("resnet18", (1, 3, 224, 224))
    cost = CostModel(
        cap.graph, DEVICES.get("rpi4"), DEVICES.get("a100"), NETWORKS.get("lte"), "int8"
    )
    table = build_table(cost, 0.1, 1000.0)
    assert len(table.entries) >= 2  # so that finding the right entry is a real question
    again = BreakpointTable.from_json(table.to_json(), table.graph_order)
    for bw in GRID:
        assert again.lookup(bw).edge_nodes == table.lookup(bw).edge_nodes
        assert again.lookup(bw).value(bw) == pytest.approx(table.lookup(bw).value(bw), rel=1e-9)
        entry = table.lookup(bw)
        assert entry.min_mbps <= bw <= entry.max_mbps  # the entry whose range holds bw
    # Outside the table's range the nearest end answers. How fast a lookup is (the 50 µs
    # goal) is measured by benchmarks/solve_time.py, not asserted here.
    assert table.lookup(1e-6) is table.entries[0] and table.lookup(1e9) is table.entries[-1]


def test_bad_ranges_and_objective(captured_zoo) -> None:
    _, cap = captured_zoo("alexnet")
    cost = CostModel(cap.graph, DEVICES.get("rpi4"), DEVICES.get("a100"), NETWORKS.get("lte"))
    with pytest.raises(EdgecutError, match="0 < LO < HI"):
        build_table(cost, 10.0, 1.0)
    with pytest.raises(EdgecutError, match="0 < LO < HI"):
        build_table(cost, 0.0, 1.0)
    with pytest.raises(EdgecutError, match="throughput"):
        build_table(cost, 1.0, 10.0, objective="throughput")


def test_table_json_has_exactly_the_documented_fields(captured_zoo) -> None:
    text = (ROOT / "docs" / "contracts.md").read_text()
    section = text.split("## `edgecut plan ... --sweep-bandwidth LO:HI --json`\n", 1)[1]
    block = section.split("```\n", 2)[1]  # the first fenced block of the section
    entry = re.search(r'"breakpoints":\s*\[\{(.*?)\}\]', block, re.S)
    assert entry, "the breakpoint entries are no longer documented as a list of objects"
    documented_entry = set(re.findall(r'"(\w+)"', entry.group(1)))
    documented_top = set(re.findall(r'"(\w+)"', block.replace(entry.group(1), "")))
    assert {"min_mbps", "max_mbps", "edge_nodes", "total_ms_at_min", "total_ms_at_max"} <= (
        documented_entry
    )  # DESIGN.md's contract

    _, cap = captured_zoo("resnet18", (1, 3, 224, 224))
    cost = CostModel(
        cap.graph, DEVICES.get("rpi4"), DEVICES.get("a100"), NETWORKS.get("lte"), "int8"
    )
    data = json.loads(json.dumps(build_table(cost, 0.1, 1000.0).to_json(), allow_nan=False))
    assert set(data) | {"model"} == documented_top  # the CLI adds the model's name
    assert len(data["breakpoints"]) >= 2
    for e in data["breakpoints"]:
        assert set(e) == documented_entry
        assert e["edge_nodes"][0] == "x"  # topological order: the input first
