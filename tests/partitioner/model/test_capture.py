"""Graph capture: nodes, shapes, FLOPs, DAG structure, and clear errors."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from partitioner.errors import CaptureError
from partitioner.model.capture import capture


class Branchy(nn.Module):
    """Residual add, a tuple-valued op, a reused module, a size-based view, two outputs."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(8, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.relu = nn.ReLU(inplace=True)
        self.fc = nn.Linear(8 * 8 * 8, 10)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        y = self.relu(self.bn(self.conv(x)))
        y += x
        a, b = torch.chunk(y, 2, dim=1)
        z = self.relu(torch.cat([a, b * 2], 1))
        return self.fc(z.view(z.size(0), -1)), a.mean((1, 2, 3))


@pytest.fixture(scope="module")
def branchy():
    model = Branchy().eval()
    return model, capture(model, torch.randn(1, 8, 8, 8), name="branchy")


def test_nodes_have_names_shapes_and_flops(branchy) -> None:
    _, cap = branchy
    g = cap.graph
    conv = g.node("conv")
    assert conv.op == "conv2d" and conv.op_class == "conv"
    assert (
        conv.shape == (1, 8, 8, 8) and conv.dtype == "float32" and conv.out_bytes == 8 * 8 * 8 * 4
    )
    # 2 * outputs * (Cin * 3 * 3): torch's flop counter, which counts no bias adds
    assert conv.flops == 2 * 512 * 8 * 9
    assert conv.param_bytes == (8 * 8 * 9 + 8) * 4
    fc = g.node("fc")
    assert fc.flops == 2 * 10 * 512 and fc.is_output
    # the reused ReLU gets a numbered name, the functional ops their module path + op
    assert {"relu", "relu_1", "add", "cat", "mul"} <= set(g.index)


def test_dag_structure_inputs_outputs_and_ties(branchy) -> None:
    _, cap = branchy
    g = cap.graph
    assert g.inputs == ("x",) and g.outputs == ("fc", "mean")
    assert set(g.node("x").users) == {"conv", "add"}  # a residual: x read twice
    # torch.export functionalises chunk into one split per piece used, replayed where it is read
    assert ("split", "split[1]") in g.ties and ("split_1", "split_1[0]") in g.ties
    assert g.node("cat").inputs == ("split_1[0]", "mul")
    assert not g.is_chain
    for node in g.nodes:
        for user in node.users:
            assert node.name in g.node(user).inputs


def test_closure_and_crossing(branchy) -> None:
    _, cap = branchy
    g = cap.graph
    edge = g.close(["relu"])
    assert edge == {"x", "conv", "bn", "relu"}
    assert g.is_closed(edge) and not g.is_closed({"x", "relu"})
    # x is read by the cloud-side add as well as by conv: both x and relu cross
    assert [n.name for n in g.crossing(edge)] == ["x", "relu"]
    assert g.crossing(set(g.index)) == []
    assert g.close(["split"]) >= {"split[1]"}  # ties pull the getitems along


def test_tuple_valued_ops_and_byte_counts(branchy) -> None:
    _, cap = branchy
    g = cap.graph
    split = g.node("split")
    # A tuple-valued op has no shape of its own; its bytes are its parts'.
    assert (split.dtype, split.shape, split.out_bytes) == ("tuple", (), 2 * 1024)
    assert g.node("split[1]").shape == (1, 4, 8, 8) and g.node("split[1]").out_bytes == 1024
    assert g.node("add").in_bytes == 2 * 2048  # the residual reads relu and x
    assert g.node("bn").param_bytes == 4 * 8 * 4  # weight, bias, running mean and variance
    assert g.node("relu").flops == g.node("relu_1").flops == 512


def test_fx_names_point_at_the_nodes_read(branchy) -> None:
    _, cap = branchy
    assert set(cap.fx_names) == set(cap.graph.index)
    assert len(set(cap.fx_names.values())) == len(cap.fx_names)
    for node in cap.graph.nodes:
        val = cap.fx_node(node.name).meta["val"]
        if isinstance(val, torch.Tensor):
            assert tuple(val.shape[1:]) == node.shape[1:], node.name


def test_a_fixed_batch_capture_reads_the_same_graph(branchy) -> None:
    model, cap = branchy
    fixed = capture(model, torch.randn(1, 8, 8, 8), name="branchy", dynamic_batch=False)
    assert not fixed.dynamic_batch
    # The FX node names differ (a symbolic batch adds size nodes); the graphs do not.
    assert fixed.graph == cap.graph and fixed.fx_names.keys() == cap.fx_names.keys()


def test_inplace_ops_are_functionalised(branchy) -> None:
    model, cap = branchy
    targets = [str(n.target) for n in cap.module.graph.nodes if n.op == "call_function"]
    assert not any(t.split(".")[-2].endswith("_") for t in targets if t.startswith("aten."))
    x = torch.randn(3, 8, 8, 8)
    with torch.no_grad():
        for got, want in zip(cap.module(x), model(x), strict=True):
            torch.testing.assert_close(got, want)


def test_batch_is_symbolic(branchy) -> None:
    _, cap = branchy
    assert cap.dynamic_batch
    out = cap.module(torch.randn(5, 8, 8, 8))
    assert out[0].shape == (5, 10)


class DataDependent(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.sum() > 0:
            return x * 2
        return x


def test_untraceable_model_names_the_construct() -> None:
    with pytest.raises(CaptureError, match="data-dependent control flow"):
        capture(DataDependent(), torch.randn(1, 4))


class ReturnsNothing(nn.Module):
    def forward(self, x: torch.Tensor) -> int:
        return 3


def test_model_without_tensor_output_is_refused() -> None:
    with pytest.raises(CaptureError):
        capture(ReturnsNothing(), torch.randn(1, 4))


@pytest.mark.parametrize("name", ["resnet18", "googlenet", "mobilenet_v2", "vgg16", "alexnet"])
def test_zoo_flops_match_published_counts(captured_zoo, name: str) -> None:
    # Multiply-accumulates of the convolutions and linear layers per 224x224 frame, as
    # published for torchvision's models (x2 for FLOPs; biases make ours a hair higher).
    published_gmacs = {
        "resnet18": 1.81,
        "googlenet": 1.50,
        "mobilenet_v2": 0.30,
        "vgg16": 15.47,
        "alexnet": 0.71,
    }
    _, cap = captured_zoo(name, (1, 3, 224, 224))
    gemm = [n for n in cap.graph.nodes if n.op_class in ("conv", "dwconv", "matmul")]
    gflops = sum(n.flops for n in gemm) / 1e9
    assert gflops == pytest.approx(2 * published_gmacs[name], rel=0.02)


class WritesThroughViews(nn.Module):
    """In-place writes through views, as Swin's shifted-window mask builds itself."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(4, 4, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mask = torch.zeros_like(x)
        mask[:, :, :2].fill_(1.0)  # fill_ through a slice
        mask[:, 1].add_(2.0)  # add_ through a select
        y = self.conv(x)
        y[:, 0] += x[:, 0]  # an in-place add through a view of an activation
        return torch.relu_(y * mask)


def test_writes_through_views_are_functionalised_by_torch() -> None:
    model = WritesThroughViews().eval()
    cap = capture(model, torch.randn(1, 4, 6, 6))
    targets = [n.target for n in cap.module.graph.nodes if n.op == "call_function"]
    assert not [t for t in targets if isinstance(t, torch._ops.OpOverload) and t._schema.is_mutable]
    x = torch.randn(3, 4, 6, 6)
    with torch.no_grad():
        torch.testing.assert_close(cap.module(x), model(x))


class Inner(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * 2 if x.sum() > 0 else x


class Outer(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.block = nn.Sequential(nn.Linear(4, 4), Inner())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(x)


def test_a_refusal_names_the_module_it_happened_in() -> None:
    with pytest.raises(CaptureError, match=r"at block\.1 \(Inner\): data-dependent") as info:
        capture(Outer(), torch.randn(1, 4))
    assert "\n" not in str(info.value)


def test_a_channel_mismatch_names_the_layer_and_its_channels() -> None:
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU())
    with pytest.raises(CaptureError) as info:
        capture(model, torch.randn(1, 1, 16, 16))
    message = str(info.value)
    assert "\n" not in message
    assert "layer 0 (Conv2d) expects 3 input channels" in message and "1x1x16x16" in message
