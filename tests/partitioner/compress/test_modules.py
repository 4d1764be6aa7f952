"""The head as nn modules: same function, protected cut channels, and pruning through
residual adds (resnet18), concatenations (googlenet) and depthwise convs (mobilenet_v2)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from partitioner.compress.lowrank import factorize
from partitioner.compress.modules import modularize, protected_layers
from partitioner.compress.prune import prune_channels
from partitioner.deploy.split import split_module

CASES = [
    ("digits_cnn", "pool2"),
    ("resnet18", "layer2.1.relu2"),  # residual adds couple every conv2 and the downsample
    ("googlenet", "inception3b.cat"),  # branches concatenated at the cut
    ("mobilenet_v2", "features.5.add"),  # depthwise convs and inverted residuals
]


def _head(captured_zoo, model: str, cut: str):
    _, cap = captured_zoo(model)
    assert cut in cap.graph.index, sorted(cap.graph.index)[:40]
    halves = split_module(cap, cap.graph.close([cut]))
    x = torch.randn((2, *cap.input_shape[1:]), generator=torch.Generator().manual_seed(0))
    return halves, x


@pytest.mark.parametrize("model, cut", CASES)
def test_modularized_head_computes_the_same(model, cut, captured_zoo) -> None:
    halves, x = _head(captured_zoo, model, cut)
    module = modularize(halves.head)
    kinds = {type(m) for m in module.modules()}
    assert nn.Conv2d in kinds and nn.BatchNorm2d in kinds
    with torch.no_grad():
        for want, got in zip(halves.head(x), module(x), strict=True):
            torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)
    # the captured model's weights are copies, not shared: training the head cannot touch them
    ours = {p.data_ptr() for p in module.parameters()}
    assert not ours & {p.data_ptr() for p in halves.head.parameters()}


@pytest.mark.parametrize("model, cut", CASES)
def test_pruning_keeps_the_crossing_tensors_and_removes_channels(model, cut, captured_zoo) -> None:
    halves, x = _head(captured_zoo, model, cut)
    module = modularize(halves.head)
    with torch.no_grad():
        shapes = [t.shape for t in module(x)]
    note = prune_channels(module, x, 0.5)
    assert note["channels_after"] < note["channels_before"]
    with torch.no_grad():
        out = module(x)
    assert [t.shape for t in out] == shapes  # so the tail still fits
    n_params = sum(p.numel() for p in module.parameters())
    assert n_params < sum(p.numel() for p in modularize(halves.head).parameters())


def test_protected_layers_are_those_feeding_the_cut(captured_zoo) -> None:
    halves, _ = _head(captured_zoo, "resnet18", "layer2.1.relu2")
    module = modularize(halves.head)
    names = {n for n, m in module.named_modules() if any(m is p for p in protected_layers(module))}
    assert names == {"layer2.0.conv2", "layer2.0.downsample.0", "layer2.1.conv2"}


@pytest.mark.parametrize("decomposition", ["svd", "tucker2"])
def test_factorisation_is_exact_on_low_rank_weights(decomposition) -> None:
    torch.manual_seed(0)
    conv = nn.Conv2d(32, 48, 3, padding=1, stride=2)
    with torch.no_grad():  # rank 4 along both channel modes
        mix_out, core, mix_in = torch.randn(48, 4), torch.randn(4, 4, 3, 3), torch.randn(4, 32)
        conv.weight.copy_(torch.einsum("or,rshw,si->oihw", mix_out, core, mix_in))
    holder = nn.Sequential(conv)
    factors = factorize(holder, decomposition, 0.9999)
    assert factors["ranks"]["0"][-1] == 4 and isinstance(holder[0], nn.Sequential)
    x = torch.randn(2, 32, 9, 9)
    with torch.no_grad():
        torch.testing.assert_close(holder(x), conv(x), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("decomposition", ["svd", "tucker2"])
def test_factorised_head_error_shrinks_with_energy(decomposition, captured_zoo) -> None:
    halves, x = _head(captured_zoo, "digits_cnn", "pool2")
    errors = []
    for energy in (0.5, 0.7, 0.9):
        module = modularize(halves.head)
        assert factorize(module, decomposition, energy)["ranks"]
        with torch.no_grad():
            want, got = halves.head(x)[0], module(x)[0]
        errors.append(float((got - want).norm() / want.norm()))
    assert errors[0] > errors[1] > errors[2]
