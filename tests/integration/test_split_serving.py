"""Edge and cloud nodes over loopback: every frame equals the whole model, for every cut.

resnet18 (a chain with residual adds) and googlenet (a cut crossed by two tensors of
different inception branches), fp32 on the wire, 1e-4 relative to the local model.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from edge_node.client import CloudClient
from edge_node.heads import EdgeModel
from edge_node.node import EdgeConfig, EdgeNode
from edge_node.sources import SyntheticSource
from partitioner.deploy.repository import open_model


def _rel(got: np.ndarray, want: np.ndarray) -> float:
    return float(np.abs(got - want).max() / np.abs(want).max())


@pytest.mark.parametrize("which", ["resnet_repo", "googlenet_repo"])
def test_every_frame_equals_the_whole_model(
    which: str, request: pytest.FixtureRequest, start_cloud: Callable[..., Any]
) -> None:
    repo = request.getfixturevalue(which)
    _, target = start_cloud(repo.root)
    model = EdgeModel.load(open_model(repo.root))
    assert model.local is not None
    for version in model.entry.versions:
        head = model.heads[version]
        if repo.name == "googlenet":
            assert [t.name for t in head.crossing] == ["maxpool2", "inception3a.branch2.1.relu"]
        with CloudClient(target) as client:
            node = EdgeNode(model, client, EdgeConfig(version=version, codec="none"))
            frames = list(SyntheticSource(repo.input_shape, frames=6, seed=int(version)))
            results = [node.process(f) for f in frames]
        assert [r.frame_id for r in results] == list(range(6))
        assert all(r.where == "cloud" and r.version == version for r in results)
        for r, f in zip(results, frames, strict=True):
            (name,) = r.outputs
            assert _rel(r.outputs[name], repo.reference(f.data)) < 1e-4, (version, r.frame_id)


def test_sixteen_concurrent_streams_on_one_tail_each_get_their_own_answers(
    resnet_repo: Any, start_cloud: Callable[..., Any]
) -> None:
    # A wide batch window and a start barrier make the 16 streams meet in batches.
    node, target = start_cloud(resnet_repo.root, max_batch=16, batch_timeout_ms=100, workers=64)
    model = EdgeModel.load(open_model(resnet_repo.root), versions=["2"])
    streams, frames_each = 16, 3
    barrier = threading.Barrier(streams)
    outcome: dict[int, list[Any]] = {}
    failures: list[BaseException] = []

    def stream(i: int) -> None:
        try:
            with CloudClient(target) as client:
                edge = EdgeNode(model, client, EdgeConfig(version="2", deadline_ms=60_000))
                frames = list(
                    SyntheticSource(resnet_repo.input_shape, frames=frames_each, seed=100 + i)
                )
                barrier.wait(timeout=120)
                outcome[i] = [(f, edge.process(f)) for f in frames]
        except BaseException as exc:  # reported below
            failures.append(exc)
            barrier.abort()

    threads = [threading.Thread(target=stream, args=(i,)) for i in range(streams)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not failures, failures
    assert sorted(outcome) == list(range(streams))
    for i, pairs in outcome.items():
        assert [r.frame_id for _, r in pairs] == list(range(frames_each))
        for frame, result in pairs:
            assert result.where == "cloud", (i, result.error)
            assert _rel(result.outputs["fc"], resnet_repo.reference(frame.data)) < 1e-4, i
    # The callers really shared batches: more frames than batches were run.
    histogram = node.metrics.batch_size.labels(model="resnet18", version="2")
    frames_run = histogram._sum.get()
    batches = sum(b.get() for b in histogram._buckets)
    assert frames_run == streams * frames_each and batches < frames_run
