"""The planner facade: its arguments are checked once, before the capture, and its
answers are those of the lower-level functions it wires together."""

from __future__ import annotations

from typing import Any

import pytest

import partitioner.planner as planner_module
from partitioner.errors import EdgecutError
from partitioner.model.capture import capture
from partitioner.model.spec import load_model
from partitioner.planner import Planner
from partitioner.pricing.cost import OBJECTIVES, CostModel
from partitioner.pricing.network import NETWORKS
from partitioner.pricing.profiles import DEVICES
from partitioner.solve import SOLVERS
from partitioner.solve.breakpoints import build_table
from partitioner.solve.plan import evaluate_cut, make_plan


class Captured(Exception):
    """Raised instead of loading the model: the arguments got past validation."""


@pytest.fixture
def no_capture(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise Captured

    monkeypatch.setattr(planner_module, "load_model", refuse)
    monkeypatch.setattr(planner_module, "capture", refuse)


@pytest.mark.parametrize(
    "bad, message",
    [
        ({"edge": "rpi5"}, "unknown device 'rpi5'"),
        ({"cloud": "a1000"}, "unknown device 'a1000'"),
        ({"edge_dtype": "float64"}, "device rpi4 has no float64 compute"),
        ({"cloud_dtype": "int4"}, "device x86-server has no int4 compute"),
        ({"network": "ltee"}, "unknown network 'ltee'"),
        ({"network": "no/such/trace.up"}, "unknown network 'no/such/trace.up'"),
        ({"bandwidth_mbps": 0.0}, "bandwidth must be a finite number > 0 Mbit/s, got 0"),
        ({"bandwidth_mbps": -3.0}, "bandwidth must be a finite number > 0 Mbit/s, got -3"),
        ({"bandwidth_mbps": float("nan")}, "bandwidth must be a finite number > 0 Mbit/s, got nan"),
        ({"bandwidth_mbps": float("inf")}, "bandwidth must be a finite number > 0 Mbit/s, got inf"),
        ({"rtt_ms": -1.0}, "RTT must be a finite number >= 0 ms, got -1"),
        ({"rtt_ms": float("inf")}, "RTT must be a finite number >= 0 ms, got inf"),
        ({"codec": "int9"}, "unknown codec 'int9'"),
    ],
)
def test_each_bad_argument_is_one_line_before_the_capture(
    no_capture: None, bad: dict[str, Any], message: str
) -> None:
    with pytest.raises(EdgecutError) as info:
        Planner.create("digits_cnn", **bad)
    text = str(info.value)
    assert message in text and "\n" not in text


def test_good_arguments_reach_the_capture(no_capture: None) -> None:
    # The control for the test above: with nothing wrong, the model is loaded.
    with pytest.raises(Captured):
        Planner.create(
            "digits_cnn",
            edge="host",
            cloud="a100",
            network="Verizon-LTE-short",
            bandwidth_mbps=3.0,
            rtt_ms=0.0,
            codec="int8+zstd",
            edge_dtype="int8",
        )


EDGE, CLOUD, NETWORK, CODEC = "jetson-nano", "a100", "wifi", "int8"


@pytest.fixture(scope="module")
def planner() -> Planner:
    return Planner.create(
        "digits_cnn",
        edge=EDGE,
        cloud=CLOUD,
        network=NETWORK,
        bandwidth_mbps=3.0,
        rtt_ms=7.0,
        codec=CODEC,
    )


@pytest.fixture(scope="module")
def lower() -> tuple[CostModel, tuple[int, ...]]:
    """The same question asked without the planner, piece by piece."""
    loaded = load_model("digits_cnn")
    captured = capture(loaded.module, loaded.example_input(), name=loaded.name)
    network = NETWORKS.get(NETWORK).with_bandwidth(3.0).with_rtt(7.0)
    cost = CostModel(captured.graph, DEVICES.get(EDGE), DEVICES.get(CLOUD), network, CODEC)
    return cost, loaded.input_shape


def _plan_json(plan: Any) -> dict[str, Any]:
    data = plan.to_json()
    data.pop("solve_ms")
    return data


def test_the_planner_prices_what_it_was_given(planner: Planner) -> None:
    cost = planner.cost
    assert (cost.edge.name, cost.cloud.name, cost.codec.name) == (EDGE, CLOUD, CODEC)
    assert (cost.network.name, cost.network.uplink_mbps, cost.network.rtt_ms) == (
        NETWORK,
        3.0,
        7.0,
    )
    assert cost.edge_dtype == DEVICES.get(EDGE).default_dtype


@pytest.mark.parametrize("objective", OBJECTIVES)
@pytest.mark.parametrize("solver", SOLVERS.names())
def test_plan_agrees_with_make_plan(
    planner: Planner, lower: Any, objective: str, solver: str
) -> None:
    cost, input_shape = lower
    assert planner.graph == cost.graph
    got = planner.plan(objective=objective, solver=solver)
    want = make_plan(cost, objective=objective, solver=solver, input_shape=input_shape)
    assert _plan_json(got) == _plan_json(want)
    assert got.bandwidth_mbps == 3.0 and got.rtt_ms == 7.0


@pytest.mark.parametrize("node", ["relu1", "pool2", "fc2"])
def test_cut_after_agrees_with_evaluate_cut(planner: Planner, lower: Any, node: str) -> None:
    cost, input_shape = lower
    got = planner.cut_after(node, objective="energy", bandwidth_mbps=12.0)
    want = evaluate_cut(
        cost, node, objective="energy", bandwidth_mbps=12.0, input_shape=input_shape
    )
    assert _plan_json(got) == _plan_json(want)
    assert got.edge_nodes[-1] == node


# Over this range the latency optimum stays edge-only; the energy optimum moves to the cloud.
@pytest.mark.parametrize("objective, n_entries", [("latency", 1), ("energy", 2)])
def test_sweep_agrees_with_build_table(
    planner: Planner, lower: Any, objective: str, n_entries: int
) -> None:
    cost, _ = lower
    got = planner.sweep(0.05, 500.0, objective=objective)
    assert got.to_json() == build_table(cost, 0.05, 500.0, objective=objective).to_json()
    assert len(got.entries) == n_entries


def test_a_captured_model_priced_by_name_is_the_same_planner(planner: Planner) -> None:
    # The simulator's path: names and a resolved network, no second capture.
    again = Planner.for_captured(
        planner.loaded,
        planner.captured,
        edge=EDGE,
        cloud=CLOUD,
        network=planner.cost.network,
        codec=CODEC,
    )
    assert _plan_json(again.plan()) == _plan_json(planner.plan())


def test_a_packaged_trace_is_a_network() -> None:
    planner = Planner.create("digits_cnn", network="Verizon-LTE-short", rtt_ms=12.0)
    network = planner.cost.network
    assert network.name == "Verizon-LTE-short" and network.trace is not None
    assert network.uplink_mbps == pytest.approx(network.trace.mean_mbps)
    assert network.rtt_ms == 12.0
