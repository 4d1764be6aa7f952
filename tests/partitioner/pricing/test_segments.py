"""Segment correction: the fit's arithmetic, how the cost model applies it, and one real
measurement of exported halves on this host."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from partitioner.model.graph import Graph, Node
from partitioner.pricing.calibration import SegmentSample, fit_segment_correction
from partitioner.pricing.cost import CostModel
from partitioner.pricing.network import NetworkProfile
from partitioner.pricing.profiles import DEVICES, SegmentCorrection


def _node(name: str, inputs: tuple[str, ...], users: tuple[str, ...]) -> Node:
    return Node(
        name=name,
        op="input" if not inputs else "conv2d",
        op_class="input" if not inputs else "conv",
        shape=(1, 100),
        dtype="float32",
        out_bytes=400,
        flops=0,
        param_bytes=0,
        in_bytes=0,
        inputs=inputs,
        users=users,
        is_output=not users,
    )


# x -> a -> b -> c, a chain whose node times are round numbers.
CHAIN = Graph(
    model="chain",
    nodes=(
        _node("x", (), ("a",)),
        _node("a", ("x",), ("b",)),
        _node("b", ("a",), ("c",)),
        _node("c", ("b",), ()),
    ),
    inputs=("x",),
    outputs=("c",),
)
NODE_MS = {"x": 0.0, "a": 1.0, "b": 2.0, "c": 4.0}
NET = NetworkProfile("test", 8.0, 10.0, radio_nj_per_bit=100.0, radio_base_mw=500.0)


def _samples(pairs: list[tuple[float, float]]) -> list[SegmentSample]:
    return [SegmentSample("m", "head", str(i), n, m) for i, (n, m) in enumerate(pairs)]


def test_fit_recovers_a_known_correction() -> None:
    truth = SegmentCorrection(factor=0.9, overhead_ms=0.3)
    nodes = [0.0, 0.5, 2.0, 10.0, 40.0]
    fitted = fit_segment_correction(_samples([(n, truth.segment_ms(n)) for n in nodes]))
    assert fitted.factor == pytest.approx(0.9, rel=1e-9)
    assert fitted.overhead_ms == pytest.approx(0.3, rel=1e-9)


def test_fit_minimises_relative_error_and_keeps_the_overhead_non_negative() -> None:
    # Halves measured 20% faster than their sums and nothing per segment: a negative
    # overhead would fit a noisy version better, but a segment cannot take less than nothing.
    pairs = [(10.0, 8.1), (20.0, 15.9), (40.0, 32.2), (80.0, 63.8)]
    fitted = fit_segment_correction(_samples(pairs))
    assert fitted.overhead_ms >= 0 and fitted.factor == pytest.approx(0.8, rel=0.02)

    def loss(c: SegmentCorrection) -> float:
        return sum((c.segment_ms(n) / m - 1) ** 2 for n, m in pairs)

    for nudged in (
        replace(fitted, factor=fitted.factor * 1.01),
        replace(fitted, factor=fitted.factor * 0.99),
        replace(fitted, overhead_ms=fitted.overhead_ms + 0.05),
    ):
        assert loss(fitted) < loss(nudged)


@pytest.mark.parametrize("pairs", [[(1.0, 2.0)], [(1.0, 2.0), (2.0, 0.0)], [(-1.0, 1.0)] * 2])
def test_fit_refuses_too_few_or_impossible_samples(pairs) -> None:
    with pytest.raises(ValueError):
        fit_segment_correction(_samples(pairs))


@pytest.mark.parametrize("factor, overhead", [(0.0, 0.0), (1.0, -0.1), (float("inf"), 0.0)])
def test_a_correction_must_be_positive_and_finite(factor: float, overhead: float) -> None:
    with pytest.raises(ValueError):
        SegmentCorrection(factor, overhead)


def _cost(edge: SegmentCorrection, cloud: SegmentCorrection) -> CostModel:
    rpi4, a100 = DEVICES.get("rpi4"), DEVICES.get("a100")
    return CostModel(
        CHAIN,
        replace(rpi4, segment=edge).with_measurements(NODE_MS),
        replace(a100, segment=cloud).with_measurements(NODE_MS),
        NET,
    )


def test_cost_model_prices_each_half_as_a_corrected_segment() -> None:
    cost = _cost(SegmentCorrection(2.0, 1.5), SegmentCorrection(0.5, 0.25))
    cuts = {"cloud-only": {"x"}, "after a": {"x", "a"}, "edge-only": {"x", "a", "b", "c"}}
    expected = {  # (edge_ms, cloud_ms): the identity head of cloud-only still runs
        "cloud-only": (1.5, 0.5 * 7 + 0.25),
        "after a": (2.0 * 1 + 1.5, 0.5 * 6 + 0.25),
        "edge-only": (2.0 * 7 + 1.5, 0.0),
    }
    for label, edge in cuts.items():
        p = cost.predict(edge, bandwidth_mbps=8.0)
        assert (p.edge_ms, p.cloud_ms) == pytest.approx(expected[label]), label
        # The solvers price the same cut from the same per-node arrays.
        mask = cost.mask(edge)
        linear = cost.linear("latency", 8.0)
        total = linear.evaluate(mask[None, :], cost.crossing_mask(mask)[None, :])[0]
        assert total == pytest.approx(p.total_ms), label


def test_identity_correction_leaves_prices_as_the_sum() -> None:
    cost = _cost(SegmentCorrection(), SegmentCorrection())
    assert np.array_equal(cost.edge_node_ms, [NODE_MS[n] for n in CHAIN.index])
    assert np.array_equal(cost.cloud_node_ms, [NODE_MS[n] for n in CHAIN.index])


def test_presets_are_uncorrected_and_host_ships_a_fitted_correction() -> None:
    for profile in DEVICES.list():
        if profile.name != "host":
            assert profile.segment == SegmentCorrection(), profile.name
    assert DEVICES.get("host").segment != SegmentCorrection()


def test_shipped_host_correction_brings_predictions_closer_to_measured_halves() -> None:
    """One real measurement: digits_cnn's exported halves at two cuts, timed on this host.

    Its ops take microseconds, so a half's time is mostly what calling a loaded module
    costs: the plain sum of node times misses it by far more than any machine's noise
    (measured here: about -70% on the smallest halves), the corrected prediction much
    less. Compared as the mean absolute relative error, with a margin of 2x."""
    from partitioner.planner import Planner

    planner = Planner.create("digits_cnn", edge="host", cloud="host", threads=1)
    graph = planner.graph
    raw_host = replace(DEVICES.get("host"), segment=SegmentCorrection())
    raw = CostModel(
        graph,
        raw_host.with_measurements(planner.cost.edge.measured_ms or {}),
        raw_host.with_measurements(planner.cost.cloud.measured_ms or {}),
        planner.cost.network,
    )
    names = [n.name for n in graph.nodes]
    before, after = [], []
    for cut in (names[0], names[len(names) // 2]):
        plan = planner.cut_after(cut)
        head, tail = planner.measure_halves(plan, min_run_time_s=0.05)
        pairs = [(head.median_ms, "edge_ms")] + ([(tail.median_ms, "cloud_ms")] if tail else [])
        corrected, plain = planner.cost.predict(plan.edge_nodes), raw.predict(plan.edge_nodes)
        for measured, field in pairs:
            after.append(abs(getattr(corrected, field) / measured - 1))
            before.append(abs(getattr(plain, field) / measured - 1))
    assert np.mean(after) * 2 < np.mean(before), (before, after)
