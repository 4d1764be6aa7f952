"""Device presets: the published figures, held-out predictions, and the roofline's shape."""

from __future__ import annotations

from dataclasses import replace

import pytest

from partitioner.errors import EdgecutError
from partitioner.model.graph import Loop, Node
from partitioner.pricing.calibration import FIGURES
from partitioner.pricing.profiles import DEVICES, DeviceProfile, LoopRate

REQUIRED = {"rpi4", "jetson-nano", "jetson-orin-nano", "x86-server", "a100", "host"}


@pytest.mark.parametrize(
    "figure",
    [f for f in FIGURES if f.role == "design"],
    ids=lambda f: f"{f.device}-{f.model}-{f.dtype}",
)
def test_presets_reproduce_the_design_figures(captured_zoo, figure) -> None:
    _, cap = captured_zoo(figure.model, (1, 3, 224, 224))
    predicted = DEVICES.get(figure.device).graph_ms(cap.graph, figure.dtype)
    assert predicted == pytest.approx(figure.ms, rel=0.10)


@pytest.mark.parametrize(
    "figure",
    [f for f in FIGURES if f.role == "held-out"],
    ids=lambda f: f"{f.device}-{f.model}-{f.dtype}",
)
def test_held_out_models_are_predicted_within_20_percent(captured_zoo, figure) -> None:
    # These figures were never fitted: they show the cost model generalises.
    _, cap = captured_zoo(figure.model, (1, 3, 224, 224))
    predicted = DEVICES.get(figure.device).graph_ms(cap.graph, figure.dtype)
    assert predicted == pytest.approx(figure.ms, rel=0.20)


def test_required_presets_exist() -> None:
    assert REQUIRED <= {d.name for d in DEVICES.list()}


def _conv(flops: int, channels: int = 256) -> Node:
    return Node(
        "c",
        "conv2d",
        "conv",
        (1, channels, 14, 14),
        "float32",
        channels * 196 * 4,
        flops,
        10_000,
        100_000,
        ("x",),
        (),
    )


@pytest.mark.parametrize("device", [d.name for d in DEVICES.list()])
def test_roofline_is_positive_and_grows_with_work(device: str) -> None:
    profile = DEVICES.get(device)
    small, big = profile.node_ms(_conv(10**6)), profile.node_ms(_conv(10**9))
    assert 0 < small < big
    view = Node("v", "flatten", "view", (1, 10), "float32", 40, 0, 0, 40, ("c",), ())
    assert profile.node_ms(view) == 0.0


def test_int8_fuses_batch_norm_and_is_faster() -> None:
    rpi = DEVICES.get("rpi4")
    bn = Node(
        "bn",
        "batch_norm",
        "norm",
        (1, 64, 56, 56),
        "float32",
        802816,
        401408,
        1024,
        802816,
        ("c",),
        (),
    )
    assert rpi.node_ms(bn, "int8") == 0.0 and rpi.node_ms(bn, "float32") > 0
    assert rpi.node_ms(_conv(10**9), "int8") < rpi.node_ms(_conv(10**9), "float32")


def test_unknown_device_and_dtype_are_clear() -> None:
    with pytest.raises(EdgecutError, match="unknown device 'rpi5'.*did you mean 'rpi4'"):
        DEVICES.get("rpi5")
    with pytest.raises(EdgecutError, match="no float16 compute"):
        DEVICES.get("rpi4").dtype("float16")


def _lstm(steps: int = 100) -> Node:
    # 1 layer, 256 hidden over 80 features: each step re-reads W_hh (1 MiB) and does 0.53
    # MFLOP; the input projection is 16.4 MFLOP over all steps at once.
    step = Loop("lstm", steps, step_flops=527_616, step_bytes=4 * 1024 * 256)
    projection = 2 * 1024 * 80 * steps
    return Node(
        "rnn", "lstm", "recurrent", (), "tuple", 256 * 4 * (steps + 2),
        projection + steps * step.step_flops, 4 * 1024 * (80 + 256 + 2), 80 * 4 * steps,
        ("x",), (), loop=step,
    )  # fmt: skip


def _roofline(**loops: LoopRate) -> DeviceProfile:
    return replace(
        DEVICES.get("host"),
        peak_gflops={"float32": 200.0},
        op_overhead_us=5.0,
        mem_bandwidth_gbps=40.0,
        loops=loops,
    )


def test_a_recurrent_op_pays_each_step_and_its_weights_at_the_loop_rate() -> None:
    node = _lstm()
    profile = _roofline(lstm=LoopRate(step_us=2.0, gbps=100.0))
    gemm = 200.0 * profile.efficiency["matmul"] * 1e6  # FLOP per ms
    projection_ms = 2 * 1024 * 80 * 100 / gemm
    # Each step: 2 us fixed, then 1 MiB at 100 GB/s (10.5 us), which beats its FLOPs (5.3 us).
    step_ms = 2.0e-3 + (4 * 1024 * 256) / 100e6
    expected = 5.0e-3 + projection_ms + 100 * step_ms
    assert profile.node_ms(node) == pytest.approx(expected, rel=1e-9)
    # Twice the steps: the projection and every step double, the op's overhead does not.
    assert profile.node_ms(_lstm(200)) == pytest.approx(2 * expected - 5.0e-3, rel=1e-9)


def test_a_batch_shares_each_steps_weights_and_fixed_cost() -> None:
    profile = _roofline(lstm=LoopRate(step_us=2.0, gbps=100.0))
    node = _lstm()
    one, eight = profile.node_ms(node, batch=1), profile.node_ms(node, batch=8)
    # Eight frames: the step's GEMM work (8 x 0.53 MFLOP = 42 us) now outweighs re-reading
    # its weights (10.5 us), so a batch costs more than one frame but far less than 8.
    assert one < eight < 8 * one
    gemm = 200.0 * profile.efficiency["matmul"] * 1e6
    step_ms = 2.0e-3 + 8 * 527_616 / gemm
    projection_ms = 8 * 2 * 1024 * 80 * 100 / gemm
    assert eight == pytest.approx(5.0e-3 + projection_ms + 100 * step_ms, rel=1e-9)


def test_a_kind_without_a_loop_rate_is_one_op_at_the_class_efficiency() -> None:
    node = _lstm()
    gru_only = _roofline(gru=LoopRate(step_us=6.0, gbps=70.0))
    flat = _roofline()
    assert gru_only.node_ms(node) == flat.node_ms(node)
    compute_ms = node.flops / (200.0 * flat.efficiency["recurrent"] * 1e6)
    assert flat.node_ms(node) == pytest.approx(5.0e-3 + compute_ms, rel=1e-9)


@pytest.mark.parametrize(("step_us", "gbps"), [(-1.0, 10.0), (1.0, 0.0), (float("inf"), 1.0)])
def test_a_loop_rate_must_be_finite_and_positive(step_us: float, gbps: float) -> None:
    with pytest.raises(ValueError, match="loop rate: expected"):
        LoopRate(step_us, gbps)
