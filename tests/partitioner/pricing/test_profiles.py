"""Device presets: the published figures, held-out predictions, and the roofline's shape."""

from __future__ import annotations

import pytest

from partitioner.errors import EdgecutError
from partitioner.model.graph import Node
from partitioner.pricing.calibration import FIGURES
from partitioner.pricing.profiles import DEVICES

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
