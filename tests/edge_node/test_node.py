"""The edge node: cuts, codecs, fallback, probing and switching, with every frame accounted for."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edge_node.client import CloudClient
from edge_node.heads import EdgeModel
from edge_node.node import EdgeConfig, EdgeNode
from edge_node.sources import Frame, SyntheticSource
from partitioner.deploy.repository import open_model
from partitioner.errors import EdgecutError

SHAPE = (1, 1, 8, 8)
SUMMARY_FIELDS = {
    "model", "cloud", "codec", "adaptive", "frames", "cloud_frames", "local_frames",
    "error_frames", "latency_ms", "breakdown_ms", "bytes_sent", "cut_switches", "switches",
    "fallbacks", "probes", "cloud_errors", "versions", "estimate_mbps", "rtt_ms", "wall_s", "fps",
}  # fmt: skip


def _run(node: EdgeNode, n: int, seed: int = 0) -> tuple[list[Any], list[Frame]]:
    frames = list(SyntheticSource(SHAPE, frames=n, seed=seed))
    return [node.process(f) for f in frames], frames


def _max_rel(repo: Any, results: list[Any], frames: list[Frame]) -> float:
    worst = 0.0
    for r, f in zip(results, frames, strict=True):
        want = repo.reference(f.data)
        worst = max(worst, float(np.abs(r.outputs["fc2"] - want).max() / np.abs(want).max()))
    return worst


@pytest.mark.parametrize("version", ["1", "2"])
def test_fixed_cut_answers_every_frame_in_order_like_the_whole_model(
    repo: Any, edge_model: EdgeModel, cloud: str, version: str
) -> None:
    with CloudClient(cloud) as client:
        node = EdgeNode(edge_model, client, EdgeConfig(version=version))
        results, frames = _run(node, 8)
    assert [r.frame_id for r in results] == list(range(8))
    assert {r.where for r in results} == {"cloud"} and {r.version for r in results} == {version}
    assert _max_rel(repo, results, frames) < 1e-4
    summary = node.summary()
    assert SUMMARY_FIELDS <= set(summary)
    assert summary["frames"] == summary["cloud_frames"] == 8 and summary["fallbacks"] == 0
    assert summary["versions"] == {version: 8}
    assert summary["bytes_sent"] == sum(r.bytes_sent for r in results) > 0
    assert summary["latency_ms"]["p50"] <= summary["latency_ms"]["p99"]
    assert summary["estimate_mbps"] > 0


def test_a_lossy_codec_sends_fewer_bytes_and_stays_close(
    repo: Any, edge_model: EdgeModel, cloud: str
) -> None:
    with CloudClient(cloud) as client:
        plain = EdgeNode(edge_model, client, EdgeConfig(version="2"))
        plain_results, _ = _run(plain, 4)
        int8 = EdgeNode(edge_model, client, EdgeConfig(version="2", codec="int8"))
        int8_results, frames = _run(int8, 4)
    assert int8.summary()["codec"] == "int8"
    assert int8.summary()["bytes_sent"] < plain.summary()["bytes_sent"] / 3
    assert all(r.where == "cloud" for r in int8_results)
    assert _max_rel(repo, int8_results, frames) < 0.05
    assert _max_rel(repo, plain_results, frames) < 1e-4


def test_no_cloud_means_local_answers_and_counted_fallbacks(
    repo: Any, edge_model: EdgeModel, closed_port: str
) -> None:
    # The start-up check would refuse an absent cloud (tests/edge_node/test_startup.py); these
    # are the frames of a cloud lost after a good start.
    with CloudClient(closed_port) as client:
        config = EdgeConfig(version="1", retry_interval_s=0.0)
        node = EdgeNode(edge_model, client, config, check_cloud=False)
        results, frames = _run(node, 5)
    assert [r.where for r in results] == ["local"] * 5
    assert _max_rel(repo, results, frames) < 1e-5
    summary = node.summary()
    assert summary["local_frames"] == summary["fallbacks"] == 5 and summary["cloud_frames"] == 0


def test_without_a_local_model_or_with_fallback_off_frames_are_explicit_errors(
    repo: Any, edge_model: EdgeModel, closed_port: str
) -> None:
    no_local = EdgeModel(edge_model.entry, edge_model.heads, None)
    with CloudClient(closed_port) as client:
        for model, config in [
            (no_local, EdgeConfig(version="1")),
            (edge_model, EdgeConfig(version="1", fallback=False)),
        ]:
            node = EdgeNode(model, client, config, check_cloud=False)
            results, _ = _run(node, 3)
            assert [r.where for r in results] == ["error"] * 3
            assert all(r.error for r in results) and node.summary()["error_frames"] == 3


def test_bad_frames_are_explicit_errors(edge_model: EdgeModel, cloud: str) -> None:
    with CloudClient(cloud) as client:
        node = EdgeNode(edge_model, client, EdgeConfig(version="1"))
        unreadable = node.process(Frame(0, None, 0.0, "x.png", error="cannot read image x.png"))
        wrong = node.process(Frame(1, np.zeros((1, 1, 4, 4), np.float32), 0.0))
        fine = node.process(Frame(2, np.zeros(SHAPE, np.float32), 0.0))
    assert (unreadable.where, unreadable.error) == ("error", "cannot read image x.png")
    assert wrong.where == "error" and "the model takes [1, 1, 8, 8]" in wrong.error
    assert fine.where == "cloud"


def test_an_edge_only_band_probes_the_uplink_and_switches_up(
    repo: Any, edge_model: EdgeModel, cloud: str
) -> None:
    config = EdgeConfig(adaptive=True, initial_mbps=0.5, probe_interval_s=1e-6)
    with CloudClient(cloud) as client:
        node = EdgeNode(edge_model, client, config)
        results, frames = _run(node, 6)
    # Frame 0 runs on the edge (the edge-only band); a later frame probes over the nearest
    # cloud cut, measures loopback speed, and the node switches up to the cloud cut whose band
    # holds what it measured: version 2 (above 10 Mbit/s) on an idle machine, version 1 when a
    # loaded one makes a small frame's round trip slow. Either way it leaves the edge.
    assert results[0].where == "local" and results[0].reason == "edge_only"
    probes = [r for r in results if r.reason == "probe"]
    assert probes and probes[0].where == "cloud" and probes[0].version == "1"
    summary = node.summary()
    switches = summary["switches"]
    assert summary["cut_switches"] >= 1 and switches[0]["from"] == "local"
    assert switches[-1]["to"] in {"1", "2"} and summary["probes"] >= 1
    for switch in switches:
        band = edge_model.entry.band_for(switch["estimate_mbps"])
        assert switch["to"] == (band.version or "local"), switch
    assert results[-1].where == "cloud" and results[-1].version == switches[-1]["to"]
    assert _max_rel(repo, results, frames) < 1e-4
    assert summary["frames"] == 6 and summary["error_frames"] == 0


def test_an_edge_whose_heads_differ_from_the_clouds_is_refused(
    repo: Any, cloud: str, tmp_path: Path
) -> None:
    copy = tmp_path / "edge-copy"
    shutil.copytree(repo.root, copy)
    model_dir = copy / "digits_cnn"
    shutil.rmtree(model_dir / "1")
    shutil.copytree(model_dir / "2", model_dir / "1")  # version 1 now holds another cut's head
    edge = EdgeModel.load(open_model(copy))
    with (
        CloudClient(cloud) as client,
        pytest.raises(EdgecutError, match="differs between edge and cloud"),
    ):
        EdgeNode(edge, client, EdgeConfig(version="1"))


def test_adaptive_needs_a_table(repo: Any, edge_model: EdgeModel, tmp_path: Path) -> None:
    copy = tmp_path / "no-table"
    shutil.copytree(repo.root, copy)
    (copy / "digits_cnn" / "model.json").unlink()
    edge = EdgeModel.load(open_model(copy))
    with pytest.raises(EdgecutError, match="no breakpoint table"):
        EdgeNode(edge, None, EdgeConfig(adaptive=True))
