"""The cost model: stage sums, transfer against bandwidth, the energy formula, and crossing."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from partitioner.errors import EdgecutError
from partitioner.model.graph import Graph, Node
from partitioner.model.synthetic import random_dag
from partitioner.pricing.cost import OBJECTIVES, CostModel, check_objective
from partitioner.pricing.network import NETWORKS, NetworkProfile
from partitioner.pricing.profiles import DEVICES
from partitioner.solve.problem import make_problem


def _node(name: str, out_bytes: int, inputs: tuple[str, ...], users: tuple[str, ...]) -> Node:
    return Node(
        name=name,
        op="input" if not inputs else "conv2d",
        op_class="input" if not inputs else "conv",
        shape=(1, out_bytes // 4),
        dtype="float32",
        out_bytes=out_bytes,
        flops=0,
        param_bytes=0,
        in_bytes=0,
        inputs=inputs,
        users=users,
        is_output=not users,
    )


# x -> a -> b, plus a skip x -> b: the cut {x, a} sends both x and a.
SKIP = Graph(
    model="skip",
    nodes=(
        _node("x", 1000, (), ("a", "b")),
        _node("a", 500, ("x",), ("b",)),
        _node("b", 40, ("a", "x"), ()),
    ),
    inputs=("x",),
    outputs=("b",),
)
EDGE_MS = {"x": 0.0, "a": 2.0, "b": 1.0}
CLOUD_MS = {"x": 0.0, "a": 0.25, "b": 0.5}
# 8 Mbit/s: 1000 bytes take exactly 1 ms.
NET = NetworkProfile("test", 8.0, 10.0, radio_nj_per_bit=100.0, radio_base_mw=500.0)


def hand_cost(codec: str = "none", network: NetworkProfile = NET) -> CostModel:
    """Measured node times (exact numbers) on devices with round powers: 6 W busy, 2 W idle."""
    edge = replace(DEVICES.get("rpi4"), active_power_w=6.0, idle_power_w=2.0)
    cloud = DEVICES.get("a100")
    return CostModel(
        SKIP,
        edge.with_measurements(EDGE_MS),
        cloud.with_measurements(CLOUD_MS),
        network,
        codec,
    )


def test_stage_sums_of_one_cut() -> None:
    cost = hand_cost("int8")
    p = cost.predict({"x", "a"})
    assert p.edge_ms == EDGE_MS["x"] + EDGE_MS["a"]
    assert p.cloud_ms == CLOUD_MS["b"]
    assert p.rtt_ms == NET.rtt_ms
    int8 = cost.codec
    assert p.wire_bytes == int8.wire_bytes(1000, (1, 250)) + int8.wire_bytes(500, (1, 125))
    edge_bw, cloud_bw = cost.edge.mem_bandwidth_gbps, cost.cloud.mem_bandwidth_gbps
    assert p.serialize_ms == pytest.approx(
        int8.encode_ms(1500, edge_bw) + int8.decode_ms(1500, cloud_bw), rel=1e-12
    )
    assert p.serialize_ms > 0
    assert p.transfer_ms == pytest.approx(p.wire_bytes * 8 / 8e3, rel=1e-12)
    assert p.total_ms == pytest.approx(
        p.edge_ms + p.serialize_ms + p.transfer_ms + p.rtt_ms + p.cloud_ms, rel=1e-12
    )


def test_edge_only_pays_no_network_and_cloud_only_sends_the_input() -> None:
    cost = hand_cost()
    edge_only = cost.predict(cost.edge_only())
    assert edge_only.total_ms == sum(EDGE_MS.values())
    assert edge_only.wire_bytes == 0 and edge_only.rtt_ms == 0 and edge_only.cloud_ms == 0
    cloud_only = cost.predict(cost.cloud_only())
    assert cloud_only.wire_bytes == 1000 and cloud_only.transfer_ms == pytest.approx(1.0)
    assert cloud_only.edge_ms == 0 and cloud_only.cloud_ms == CLOUD_MS["a"] + CLOUD_MS["b"]


@pytest.mark.parametrize("edge", [{"x"}, {"x", "a"}])
def test_only_transfer_scales_with_inverse_bandwidth(edge: set[str]) -> None:
    cost = hand_cost("int8")
    slow, fast = cost.predict(edge, 2.0), cost.predict(edge, 20.0)
    assert fast.transfer_ms == pytest.approx(slow.transfer_ms / 10, rel=1e-12)
    for field in ("edge_ms", "serialize_ms", "rtt_ms", "cloud_ms", "wire_bytes"):
        assert getattr(fast, field) == getattr(slow, field)
    assert slow.total_ms - fast.total_ms == pytest.approx(0.9 * slow.transfer_ms, rel=1e-12)


def test_energy_formula_by_hand() -> None:
    cost = hand_cost()
    # Cut {x, a}: the edge computes 2 ms at 6 W; x and a (1500 B = 12000 bits) take 1.5 ms
    # to send; then the edge idles through the 10 ms round trip and 0.5 ms of cloud.
    # Codec none reads each tensor once on each side at the devices' memory bandwidth.
    encode_ms = 1500 / (cost.edge.mem_bandwidth_gbps * 1e6)
    decode_ms = 1500 / (cost.cloud.mem_bandwidth_gbps * 1e6)
    expected_mj = (
        6.0 * (2.0 + encode_ms)  # busy: W * ms = mJ
        + 2.0 * (1.5 + 10.0 + decode_ms + 0.5)  # idle while sending and waiting
        + 100.0 * 12000 * 1e-6  # radio: nJ per bit
        + 500.0 * 1.5 * 1e-3  # radio: mW while sending
    )
    assert cost.predict({"x", "a"}).edge_energy_mj == pytest.approx(expected_mj, rel=1e-12)
    # Edge-only: busy the whole time, nothing else.
    assert cost.predict(cost.edge_only()).edge_energy_mj == pytest.approx(6.0 * 3.0, rel=1e-12)


def test_a_radio_that_costs_nothing_leaves_only_device_power() -> None:
    free_radio = replace(NET, radio_nj_per_bit=0.0, radio_base_mw=0.0)
    paid = hand_cost().predict({"x"}).edge_energy_mj
    free = hand_cost(network=free_radio).predict({"x"}).edge_energy_mj
    # The cut {x} sends x alone: 1000 B = 8000 bits over 1 ms.
    assert paid - free == pytest.approx(100.0 * 8000 * 1e-6 + 500.0 * 1.0 * 1e-3, rel=1e-9)


def _cuts(graph: Graph, rng: np.random.Generator, n: int) -> list[frozenset[str]]:
    cuts = list(graph.prefix_cuts())
    for _ in range(n):
        cuts.append(graph.close(node.name for node in graph.nodes if rng.random() < 0.2))
    return cuts


@pytest.mark.parametrize("seed", range(8))
def test_solver_prices_equal_the_prediction_at_any_bandwidth(seed: int) -> None:
    rng = np.random.default_rng(seed)
    graph = random_dag(int(rng.integers(4, 30)), rng, output_prob=0.2)
    cost = CostModel(
        graph, DEVICES.get("rpi4"), DEVICES.get("x86-server"), NETWORKS.get("lte"), "int8"
    )
    read = {
        "latency": "total_ms",
        "energy": "edge_energy_mj",
        "throughput": "frame_period_ms",
    }
    for bandwidth in (0.5, 5.0, 500.0):
        for objective in OBJECTIVES:
            problem = make_problem(cost, objective, bandwidth)
            for cut in _cuts(graph, rng, 10):
                predicted = getattr(cost.predict(cut, bandwidth), read[objective])
                assert problem.value(graph.mask(cut)) == pytest.approx(predicted, rel=1e-9)


def _reference_crossing(graph: Graph, edge: set[str]) -> list[str]:
    """The rule in words: produced on the edge, and read on the cloud or a model output;
    nothing crosses when everything runs on the edge."""
    if edge == set(graph.index):
        return []
    return [
        n.name
        for n in graph.nodes
        if n.name in edge and (n.name in graph.outputs or any(u not in edge for u in n.users))
    ]


@pytest.mark.parametrize("seed", range(10))
def test_crossing_agrees_everywhere_on_random_dags(seed: int) -> None:
    rng = np.random.default_rng(100 + seed)
    graph = random_dag(int(rng.integers(3, 40)), rng, output_prob=0.3)
    cost = CostModel(graph, DEVICES.get("rpi4"), DEVICES.get("a100"), NETWORKS.get("wifi"))
    cuts = _cuts(graph, rng, 20)
    # Any set of nodes, closed or not: the rule does not assume a closed cut.
    cuts += [
        frozenset(n.name for n in graph.nodes if rng.random() < 0.5) | {"x"} for _ in range(20)
    ]
    batch = graph.crossing_mask(np.stack([graph.mask(c) for c in cuts]))
    for cut, batch_row in zip(cuts, batch, strict=True):
        expected = _reference_crossing(graph, set(cut))
        assert [n.name for n in graph.crossing(cut)] == expected
        single = cost.crossing_mask(cost.mask(cut))
        assert [graph.nodes[i].name for i in np.flatnonzero(single)] == expected
        assert (batch_row == single).all()
        wire = sum(cost.codec.wire_bytes(n.out_bytes, n.shape) for n in graph.crossing(cut))
        assert cost.predict(cut).wire_bytes == wire


def test_objectives_are_checked_in_one_place() -> None:
    assert check_objective("energy") == "energy"
    with pytest.raises(EdgecutError, match="unknown objective 'speed'.*latency, energy"):
        check_objective("speed")
    cost = hand_cost()
    with pytest.raises(EdgecutError, match="unknown objective"):
        cost.objective_value(cost.predict({"x"}), "speed")
    with pytest.raises(EdgecutError, match="not linear"):
        cost.linear_parts("throughput")


@pytest.mark.parametrize("bandwidth", [0.0, -1.0, float("nan")])
def test_a_bandwidth_that_is_not_positive_is_refused(bandwidth: float) -> None:
    cost = hand_cost()
    with pytest.raises(EdgecutError, match="bandwidth must be a finite number > 0"):
        cost.predict({"x"}, bandwidth)
    with pytest.raises(EdgecutError, match="bandwidth must be a finite number > 0"):
        NET.with_bandwidth(bandwidth)
