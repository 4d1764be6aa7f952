"""The lightweight zoo: each network is the published one, and it plans and splits exactly.

Sizes are checked at 224x224, where capture costs seconds (export traces with fake
tensors). Splits are planned on that 224x224 graph (the real problem: rpi4 edge,
x86-server cloud, every optimal cut of the 0.5-1000 Mbit/s wifi breakpoint table)
and then cut and run on the test-shape capture, whose nodes have the same names.
Every layer-boundary cut of every zoo model is checked in
tests/partitioner/deploy/test_split.py; here the cuts are the planner's and ones
inside blocks (fire modules, shuffle units, SE gates, Ghost modules).
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import nn

import partitioner.model.zoo as zoo
from partitioner.deploy.split import split_module
from partitioner.model import ops
from partitioner.model.capture import CapturedModel
from partitioner.model.zoo.published import PUBLISHED, conv_linear_macs
from partitioner.pricing.cost import CostModel
from partitioner.pricing.network import resolve_network
from partitioner.pricing.profiles import DEVICES
from partitioner.solve.breakpoints import build_table

Captured = Callable[..., tuple[nn.Module, CapturedModel]]

LIGHTWEIGHT = (
    "squeezenet1_1",
    "shufflenet_v2",
    "mobilenet_v3_small",
    "mobilenet_v3_large",
    "ghostnet",
    "efficientnet_b0",
)
FULL_SHAPE = (1, 3, 224, 224)
REL_TOL = 1e-4
SIZE_TOL = 0.02  # the published figures are rounded to 2-3 significant digits

# torchvision's documented num_params for the same architectures: equal to the
# parameter, not within 2%, because the definitions follow the same tables.
# (GhostNet is not in torchvision; its paper's 5.2M is checked below.)
TORCHVISION_NUM_PARAMS = {
    "squeezenet1_1": 1_235_496,
    "shufflenet_v2": 2_278_604,
    "mobilenet_v3_small": 2_542_856,
    "mobilenet_v3_large": 5_483_032,
    "efficientnet_b0": 5_288_548,
}

# Nodes inside a block: cutting after one leaves more than one tensor crossing.
INSIDE_BLOCKS = {
    "squeezenet1_1": ("fire2.expand1x1_relu", "fire9.expand3x3"),
    # a downsampling unit's finished left branch; the middle of a basic unit's right branch
    "shufflenet_v2": ("stage3.0.left.4", "stage3.1.right.3"),
    # the SE gate of a residual block; its expansion
    "mobilenet_v3_small": ("features.5.block.2.gate", "features.5.block.0.2"),
    "mobilenet_v3_large": ("features.5.block.2.reduce", "features.14.block.1.2"),
    # the cheap (ghost) half of a Ghost module; an SE gate; a projection shortcut
    "ghostnet": ("features.2.ghost1.cheap.2", "features.5.se.gate", "features.2.shortcut.0.1"),
    "efficientnet_b0": ("features.2.1.block.2.gate", "features.6.1.block.1.2"),
}


def _max_rel_err(got: tuple[torch.Tensor, ...], want: torch.Tensor) -> float:
    (out,) = got
    assert out.shape == want.shape
    return float((out - want).abs().max() / want.abs().max().clamp_min(1e-12))


def _check_split(model: nn.Module, cap: CapturedModel, edge: frozenset[str]) -> int:
    """Run head then tail on a batch of 3 and compare with the whole model; returns #crossing."""
    shape = zoo.MODELS.get(cap.graph.model).test_input_shape
    x = torch.randn((3, *shape[1:]), generator=torch.Generator().manual_seed(2))
    halves = split_module(cap, edge)
    with torch.inference_mode():
        want = model(x)
        mid = tuple(halves.head(x))
        got = mid if halves.tail is None else tuple(halves.tail(*mid))
    err = _max_rel_err(got, want)
    assert err <= REL_TOL, f"{cap.graph.model}: {len(edge)} edge nodes: rel err {err:.2e}"
    return len(halves.crossing)


def test_the_lightweight_networks_are_registered() -> None:
    for name in LIGHTWEIGHT:
        entry = zoo.MODELS.get(name)
        assert entry.input_shape == FULL_SHAPE and entry.num_classes == 1000
        assert entry.test_input_shape[2] < 224  # a reduced shape keeps the split tests fast


@pytest.mark.parametrize("name", LIGHTWEIGHT)
def test_parameters_match_the_published_count(name: str) -> None:
    params = sum(p.numel() for p in zoo.create_model(name).parameters())
    published = PUBLISHED[name]
    assert published.params is not None
    # e.g. MobileNetV3-Small 2,542,856 vs the paper's 2.5M: +1.7%.
    assert abs(params / published.params - 1) <= SIZE_TOL, (params, published.params_source)
    if name in TORCHVISION_NUM_PARAMS:
        assert params == TORCHVISION_NUM_PARAMS[name]


@pytest.mark.parametrize("name", LIGHTWEIGHT)
def test_macs_match_the_published_count(captured_zoo: Captured, name: str) -> None:
    """Published "FLOPs"/"MAdds" are conv + FC multiply-accumulates at 224x224; so is
    conv_linear_macs (the graph's conv/linear FLOPs halved, bias adds dropped). The
    graph's total FLOPs / 2 also counts BN, activations, SE multiplies and pooling,
    which the papers leave out: 1-6% more here."""
    _, cap = captured_zoo(name, FULL_SHAPE)
    published = PUBLISHED[name]
    assert published.macs is not None
    macs = conv_linear_macs(cap.graph)
    assert abs(macs / published.macs - 1) <= SIZE_TOL, (macs, published.macs_source)
    assert macs <= cap.graph.total_flops() / 2 <= 1.06 * macs


@pytest.mark.parametrize("name", LIGHTWEIGHT)
def test_every_op_but_unflatten_has_a_pricing_rule(captured_zoo: Captured, name: str) -> None:
    """Hard-swish, hard-sigmoid, SiLU, sigmoid, the SE multiply and adaptive pooling are
    priced by rules of their own; only the unflatten of ShuffleNet's channel shuffle
    falls back to the default (1 FLOP per element, class "other") until ops.py lists it."""
    _, cap = captured_zoo(name, FULL_SHAPE)
    used = {node.op for node in cap.graph.nodes}
    assert {n.op for n in cap.graph.nodes if n.op_class == "other"} <= {"unflatten"}
    for op in used & {"hardswish", "hardsigmoid", "silu", "sigmoid", "mul"}:
        assert ops.rule_for(op).op_class == "elementwise", op
    assert ops.rule_for("adaptive_avg_pool2d").op_class == "pool"


@pytest.mark.parametrize("name", LIGHTWEIGHT)
def test_planned_cuts_split_exactly(captured_zoo: Captured, name: str) -> None:
    _, full = captured_zoo(name, FULL_SHAPE)
    model, small = captured_zoo(name)
    assert [n.name for n in full.graph.nodes] == [n.name for n in small.graph.nodes]
    cost = CostModel(
        full.graph, DEVICES.get("rpi4"), DEVICES.get("x86-server"), resolve_network("wifi")
    )
    table = build_table(cost, 0.5, 1000.0)
    sizes = {len(entry.edge_nodes) for entry in table.entries}
    # Edge-only on a slow link, then real splits as the link gets faster.
    assert max(sizes) == len(full.graph)
    assert any(len(full.graph.inputs) < n < len(full.graph) for n in sizes)
    for entry in table.entries:
        _check_split(model, small, frozenset(entry.edge_nodes))


@pytest.mark.parametrize("name", LIGHTWEIGHT)
def test_cuts_inside_blocks_split_exactly(captured_zoo: Captured, name: str) -> None:
    model, cap = captured_zoo(name)
    for node in INSIDE_BLOCKS[name]:
        crossing = _check_split(model, cap, cap.graph.close([node]))
        assert crossing > 1, f"{name}: cutting after {node} is not inside a block"
