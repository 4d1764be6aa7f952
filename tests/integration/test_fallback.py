"""Fallback: the cloud node process is killed mid-stream and restarted on the same port.

Every frame must end as a cloud or a local result (the whole model on the edge), each once
and in order, and frames must return to the cloud once it is back. Waits are bounded.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from edge_node.client import CloudClient
from edge_node.heads import EdgeModel
from edge_node.node import EdgeConfig, EdgeNode
from edge_node.sources import SyntheticSource
from partitioner.deploy.repository import open_model


def test_killing_the_cloud_leaves_every_frame_answered_and_a_restart_brings_them_back(
    resnet_repo: Any, spawn_cloud: Callable[..., Any], free_port: Callable[[], int]
) -> None:
    port = free_port()
    args = ["--repository", str(resnet_repo.root), "--host", "127.0.0.1", "--port", str(port)]
    first = spawn_cloud(args)
    model = EdgeModel.load(open_model(resnet_repo.root), versions=["2"])
    frames = iter(SyntheticSource(resnet_repo.input_shape, frames=100_000, seed=9))
    sent, results = [], []
    config = EdgeConfig(version="2", deadline_ms=5_000, retry_interval_s=0.2)
    with CloudClient(f"127.0.0.1:{port}") as client:
        node = EdgeNode(model, client, config)

        def stream_until(done: Callable[[], bool], limit_s: float) -> None:
            deadline = time.monotonic() + limit_s
            while not done():
                assert time.monotonic() < deadline, f"gave up after {limit_s} s"
                frame = next(frames)
                sent.append(frame)
                results.append(node.process(frame))

        stream_until(lambda: len(results) >= 5, 120)
        # Kill it while frames keep flowing: whatever is in flight then must still end well.
        killer = threading.Timer(0.05, first.kill)
        killer.start()
        stream_until(lambda: sum(r.where == "local" for r in results) >= 5, 120)
        killer.join()
        assert first.proc.poll() is not None
        second = spawn_cloud(args)
        assert second.port == port
        stream_until(lambda: results[-1].where == "cloud", 120)
        stream_until(lambda: sum(r.where == "cloud" for r in results[-3:]) == 3, 60)

    summary = node.summary()
    assert [r.frame_id for r in results] == [f.id for f in sent] == list(range(len(sent)))
    assert {r.where for r in results} == {"cloud", "local"} and summary["error_frames"] == 0
    first_local = next(i for i, r in enumerate(results) if r.where == "local")
    assert all(r.where == "cloud" for r in results[:first_local])
    assert summary["fallbacks"] == summary["local_frames"] >= 5
    assert summary["cloud_lost"] >= 1 and summary["cloud_back"] >= 1
    assert summary["frames"] == summary["cloud_frames"] + summary["local_frames"]
    for frame, result in zip(sent, results, strict=True):
        want = resnet_repo.reference(frame.data)
        assert float(np.abs(result.outputs["fc"] - want).max() / np.abs(want).max()) < 1e-4
