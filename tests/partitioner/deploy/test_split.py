"""head then tail equals the whole model, for every zoo model and every layer-boundary cut."""

from __future__ import annotations

import pytest
import torch

import partitioner.model.zoo as zoo
from partitioner.deploy.split import split_module
from partitioner.errors import EdgecutError

REL_TOL = 1e-4


def _max_rel_err(got: tuple[torch.Tensor, ...], want: tuple[torch.Tensor, ...]) -> float:
    assert len(got) == len(want)
    err = 0.0
    for a, b in zip(got, want, strict=True):
        assert a.shape == b.shape
        err = max(err, float((a - b).abs().max() / b.abs().max().clamp_min(1e-12)))
    return err


@pytest.mark.parametrize("name", [e.name for e in zoo.MODELS.list()])
def test_every_cut_reproduces_the_model(captured_zoo, name: str) -> None:
    model, cap = captured_zoo(name)
    shape = zoo.MODELS.get(name).test_input_shape
    x = torch.randn((3, *shape[1:]), generator=torch.Generator().manual_seed(1))  # batch 3
    with torch.inference_mode():
        out = model(x)
        want = tuple(out) if isinstance(out, (tuple, list)) else (out,)
        cuts = cap.graph.prefix_cuts()
        everything = frozenset(cap.graph.index)
        multi = 0
        for cut in cuts:
            halves = split_module(cap, cut)
            mid = tuple(halves.head(x))
            if halves.tail is None:  # edge-only: the head computes the model's outputs itself
                assert cut == everything and halves.crossing == []
                got = mid
            else:  # one tensor per crossing node, in order, of the shape the graph declared
                assert [tuple(t.shape) for t in mid] == [
                    (3, *node.shape[1:]) for node in halves.crossing
                ]
                got = tuple(halves.tail(*mid))
            err = _max_rel_err(got, want)
            assert err <= REL_TOL, f"{name}: cut after {len(cut)} nodes: rel err {err:.2e}"
            multi += len(halves.crossing) > 1
    assert len(cuts) == len(cap.graph) - len(cap.graph.inputs) + 1
    if name == "googlenet":
        assert multi > 10  # inception cuts cross several tensors at once


def test_split_refuses_an_open_edge_set(captured_zoo) -> None:
    _, cap = captured_zoo("resnet18")
    with pytest.raises(EdgecutError, match="not closed"):
        split_module(cap, {"x", "layer1.0.conv2"})
    with pytest.raises(EdgecutError, match="unknown node"):
        split_module(cap, {"x", "no.such.node"})
