"""Adaptive split: the uplink is throttled fast -> slow -> fast and the edge follows the table.

The throttle is the edge's in-process token bucket on its send path. The table (conftest)
says layer1's cut (16 KB per frame) above 4 Mbit/s and layer3's (4 KB) below. Each phase
streams frames until the node has switched (bounded), so nothing here depends on timing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from edge_node.client import CloudClient
from edge_node.heads import EdgeModel
from edge_node.node import EdgeConfig, EdgeNode
from edge_node.sources import SyntheticSource
from edge_node.throttle import TokenBucket
from partitioner.deploy.repository import open_model

SLOW_MBPS = 0.5
MAX_FRAMES_PER_PHASE = 60


def test_switches_cut_each_time_the_uplink_crosses_a_breakpoint_without_losing_a_frame(
    resnet_repo: Any, start_cloud: Callable[..., Any]
) -> None:
    _, target = start_cloud(resnet_repo.root)
    model = EdgeModel.load(open_model(resnet_repo.root))
    bucket = TokenBucket(None, burst_bytes=1500)
    frames = iter(SyntheticSource(resnet_repo.input_shape, frames=10_000, seed=5))
    results, sent = [], []
    with CloudClient(target, uplink=bucket) as client:
        node = EdgeNode(
            model,
            client,
            EdgeConfig(adaptive=True, deadline_ms=30_000, initial_mbps=100.0, ping_interval_s=0.2),
        )

        def stream(count: int | None = None, until_switches: int | None = None) -> None:
            for _ in range(count or MAX_FRAMES_PER_PHASE):
                frame = next(frames)
                sent.append(frame)
                results.append(node.process(frame))
                if until_switches is not None and node.summary()["cut_switches"] >= until_switches:
                    return
            assert until_switches is None, f"no switch within {MAX_FRAMES_PER_PHASE} frames"

        stream(count=5)  # fast: layer1's cut
        bucket.set_rate(SLOW_MBPS)
        stream(until_switches=1)
        stream(count=3)
        bucket.set_rate(None)
        stream(until_switches=2)
        stream(count=3)

    summary = node.summary()
    switches = summary["switches"]
    assert [(s["from"], s["to"]) for s in switches] == [("2", "1"), ("1", "2")]
    assert switches[0]["estimate_mbps"] < 4.0 < switches[1]["estimate_mbps"]
    # Every frame answered once, in order, by the cloud, with the whole model's result.
    assert [r.frame_id for r in results] == [f.id for f in sent] == list(range(len(sent)))
    assert all(r.where == "cloud" for r in results), [r.error for r in results if r.error]
    assert summary["frames"] == len(sent) and summary["fallbacks"] == 0
    versions = [r.version for r in results]
    assert versions[:5] == ["2"] * 5 and versions[-3:] == ["2"] * 3 and "1" in versions
    for frame, result in zip(sent, results, strict=True):
        want = resnet_repo.reference(frame.data)
        assert float(np.abs(result.outputs["fc"] - want).max() / np.abs(want).max()) < 1e-4
