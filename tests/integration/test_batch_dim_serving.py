"""A transformer split inside a layer and served with dynamic batching (issue 11 part 3).

``nn.TransformerEncoder`` sequence first (inside a layer its tensors are (S, B, E): the batch
in dim 1) and batch first, cut right after the first layer's feed-forward ReLU, so the
crossing tensors are the layer's first norm and its hidden activation. Edge nodes send one
frame each (batch 1 in that dim); concurrent callers meet in the cloud node's batches, which
stack their frames along each tensor's own batch dim. Every answer equals the whole model
(1e-4 relative), and batches of more than one frame really ran.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from edge_node.client import CloudClient
from edge_node.heads import EdgeModel
from edge_node.node import EdgeConfig, EdgeNode
from edge_node.sources import Frame
from partitioner.deploy.repository import open_model
from partitioner.model.capture import capture
from partitioner.model.spec import LoadedModel
from partitioner.planner import Planner
from partitioner.pricing.network import resolve_network
from partitioner.publish import build_repository

SEQUENCE, WIDTH = 8, 16
STREAMS, FRAMES_EACH = 6, 3


class SequenceFirst(nn.Module):
    """A sequence-first encoder fed batch-first frames (B, S, E): inside it, (S, B, E)."""

    def __init__(self, encoder: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x.transpose(0, 1)).transpose(0, 1)


def _encoder(batch_first: bool) -> nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        layer = nn.TransformerEncoderLayer(
            WIDTH, 2, dim_feedforward=2 * WIDTH, batch_first=batch_first
        )
        encoder = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
    return (encoder if batch_first else SequenceFirst(encoder)).eval()


def _repository(batch_first: bool, root: Path) -> tuple[nn.Module, str, list[int | None]]:
    """The model, the cut's node, and the batch dims of what crosses; the repository in root."""
    name = "encoder_bf" if batch_first else "encoder_sf"
    module = _encoder(batch_first)
    loaded = LoadedModel(name, module, (1, SEQUENCE, WIDTH), "module")
    captured = capture(module, loaded.example_input(), name=name)
    planner = Planner.for_captured(
        loaded, captured, edge="rpi4", cloud="x86-server", network=resolve_network("lte")
    )
    relu = next(n for n in planner.graph.nodes if n.op == "relu")  # layer 0's feed-forward
    plan = planner.cut_after(relu.name)
    build_repository(planner, root, plans=[plan], with_local=False)
    return module, name, [t.batch_dim for t in plan.cut]


@pytest.mark.parametrize("batch_first", [False, True], ids=["sequence-first", "batch-first"])
def test_a_cut_inside_a_layer_serves_batched_frames(
    batch_first: bool, tmp_path: Path, start_cloud: Callable[..., Any]
) -> None:
    module, name, dims = _repository(batch_first, tmp_path)
    # Sequence first, the layer's tensors hold the batch in dim 1; batch first, in dim 0.
    assert dims == ([0, 0] if batch_first else [1, 1])
    node, target = start_cloud(tmp_path, max_batch=16, batch_timeout_ms=200, workers=32)
    model = EdgeModel.load(open_model(tmp_path), local=False)
    (version,) = model.heads
    rng = np.random.default_rng(1)
    frames = {
        i: [rng.standard_normal((1, SEQUENCE, WIDTH), dtype=np.float32) for _ in range(FRAMES_EACH)]
        for i in range(STREAMS)
    }
    barrier = threading.Barrier(STREAMS)
    answers: dict[int, list[Any]] = {}
    failures: list[BaseException] = []

    def stream(i: int) -> None:
        try:
            with CloudClient(target) as client:
                edge = EdgeNode(model, client, EdgeConfig(version=version, deadline_ms=60_000))
                barrier.wait(timeout=120)
                answers[i] = [
                    edge.process(Frame(j, data, time.monotonic()))
                    for j, data in enumerate(frames[i])
                ]
        except BaseException as exc:  # reported below
            failures.append(exc)
            barrier.abort()

    threads = [threading.Thread(target=stream, args=(i,)) for i in range(STREAMS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not failures, failures
    assert sorted(answers) == list(range(STREAMS))
    # ListCuts tells a client where the batch goes: -1 in each crossing tensor's batch dim.
    with CloudClient(target) as client:
        (cut,) = client.list_cuts(name).models[0].cuts
    assert [list(t.shape).index(-1) for t in cut.crossing] == dims
    assert all(list(t.shape).count(-1) == 1 for t in cut.crossing)
    for i, results in answers.items():
        for data, result in zip(frames[i], results, strict=True):
            assert result.where == "cloud", (i, result.error)
            (got,) = result.outputs.values()
            with torch.inference_mode():
                want = module(torch.from_numpy(data)).numpy()
            assert got.shape == want.shape == (1, SEQUENCE, WIDTH)
            assert float(np.abs(got - want).max() / np.abs(want).max()) < 1e-4, i
    # The callers really shared batches: fewer batches ran than frames, the largest of several.
    histogram = node.metrics.batch_size.labels(model=name, version=version)
    frames_run = histogram._sum.get()
    batches = sum(b.get() for b in histogram._buckets)
    assert frames_run == STREAMS * FRAMES_EACH and batches < frames_run
