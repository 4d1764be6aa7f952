"""The pipelined edge node: a window of frames in flight, results in order, every frame counted.

The cloud is the in-process one of conftest, made slow by the client's emulated uplink: a
fixed delay per call (a sleep on the calling thread, as a long round trip would be), so a
window of 4 overlaps four calls and window 1 waits for each. Assertions compare counts and
rates with wide margins, never tight timings.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

from edge_node.client import CloudClient
from edge_node.heads import EdgeModel
from edge_node.node import EdgeConfig, EdgeNode, FrameResult
from edge_node.sources import SyntheticSource
from edge_node.throttle import TokenBucket
from edgecut.cli import main
from partitioner.errors import EdgecutError

SHAPE = (1, 1, 8, 8)
DELAY_MS = 60.0  # added to every call: far above the digits CNN's compute


def _run(
    edge_model: EdgeModel, cloud: str, config: EdgeConfig, source: SyntheticSource
) -> tuple[list[FrameResult], dict[str, Any]]:
    results: list[FrameResult] = []
    with CloudClient(cloud, uplink=TokenBucket(None, delay_ms=DELAY_MS)) as client:
        node = EdgeNode(edge_model, client, config)
        summary = node.run(source, results.append)
    return results, summary


def _accounted(summary: dict[str, Any]) -> bool:
    parts = ("answered", "skipped", "missed", "failed")
    return sum(summary[k] for k in parts) == summary["captured"]


def test_window_1_is_stop_and_wait_and_answers_like_process(
    repo: Any, edge_model: EdgeModel, cloud: str
) -> None:
    source = SyntheticSource(SHAPE, frames=6, seed=3)
    results, summary = _run(edge_model, cloud, EdgeConfig(version="1"), source)
    # The old loop: one blocking process() per frame.
    with CloudClient(cloud) as client:
        node = EdgeNode(edge_model, client, EdgeConfig(version="1"))
        old = [node.process(f) for f in source]
    assert [r.frame_id for r in results] == [r.frame_id for r in old] == list(range(6))
    assert [(r.where, r.version, r.reason) for r in results] == [
        (r.where, r.version, r.reason) for r in old
    ]
    for new, ref in zip(results, old, strict=True):
        assert np.array_equal(new.outputs["fc2"], ref.outputs["fc2"])
    # Stop-and-wait: no answer comes before the previous frame's.
    answered = [r.answered_s for r in results]
    assert answered == sorted(answered)
    assert summary["window"] == 1 and summary["late"] == "queue"
    assert summary["captured"] == summary["answered"] == 6 and _accounted(summary)


def test_window_4_keeps_order_and_outpaces_stop_and_wait(
    repo: Any, edge_model: EdgeModel, cloud: str
) -> None:
    n = 16
    source = SyntheticSource(SHAPE, frames=n, seed=4)
    _, s1 = _run(edge_model, cloud, EdgeConfig(version="2", window=1), source)
    four, s4 = _run(edge_model, cloud, EdgeConfig(version="2", window=4), source)
    assert [r.frame_id for r in four] == list(range(n))
    assert all(r.where == "cloud" for r in four), [r.error for r in four]
    for frame, result in zip(source, four, strict=True):
        want = repo.reference(frame.data)
        assert float(np.abs(result.outputs["fc2"] - want).max() / np.abs(want).max()) < 1e-4
    # Window 1 needs at least n delays; window 4 overlaps them (ideally 4x): ask for 2x.
    assert s1["wall_s"] >= n * DELAY_MS / 1e3
    assert s4["fps"] > 2 * s1["fps"], (s1["fps"], s4["fps"])
    assert s4["captured"] == s4["answered"] == n and _accounted(s4)


def test_drop_skips_frames_captured_while_the_window_is_full_and_counts_them(
    edge_model: EdgeModel, cloud: str
) -> None:
    # 50 fps is a frame every 20 ms; a call takes 60+ ms.
    n = 30
    source = SyntheticSource(SHAPE, frames=n, fps=50, seed=5)
    one, s1 = _run(edge_model, cloud, EdgeConfig(version="2", late="drop"), source)
    four, s4 = _run(edge_model, cloud, EdgeConfig(version="2", late="drop", window=4), source)
    for results, summary in ((one, s1), (four, s4)):
        assert [r.frame_id for r in results] == list(range(n))  # skipped ones too, in order
        assert summary["captured"] == n and _accounted(summary)
        skipped = [r for r in results if r.where == "skipped"]
        assert len(skipped) == summary["skipped"] and all(not r.outputs for r in skipped)
        assert summary["frames"] == n - summary["skipped"]
    # Stop-and-wait can take at most one frame per call: about a third of them.
    assert s1["skipped"] >= n // 3
    assert s4["skipped"] < s1["skipped"]


def test_queue_takes_every_frame_and_counts_those_past_the_deadline_as_missed(
    edge_model: EdgeModel, cloud: str
) -> None:
    n = 12
    source = SyntheticSource(SHAPE, frames=n, fps=50, seed=6)
    config = EdgeConfig(version="2", late="queue", deadline_ms=200.0)
    results, summary = _run(edge_model, cloud, config, source)
    assert [r.frame_id for r in results] == list(range(n))
    assert all(r.where == "cloud" for r in results), [r.error for r in results]
    assert summary["skipped"] == 0 and _accounted(summary)
    # The backlog grows by 40+ ms a frame: the last frames wait far past 200 ms.
    assert summary["missed"] == sum(r.missed for r in results) >= n // 3
    assert results[-1].missed and results[-1].latency_ms > 200.0


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [("window", 0, "window must be an integer >= 1"), ("late", "skip", "late must be one of")],
)
def test_bad_window_or_late_policy_is_one_clear_error(field: str, value: Any, message: str) -> None:
    with pytest.raises(EdgecutError, match=message):
        EdgeConfig(**{field: value})


def test_edge_run_takes_window_and_late_and_reports_the_accounting(
    repo: Any, cloud: str, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["edge", "run", "--repository", str(repo.root), "--cloud", cloud, "--frames", "6"]
    assert main([*argv, "--version", "2", "--window", "3", "--late", "drop", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert (summary["window"], summary["late"], summary["captured"]) == (3, "drop", 6)
    assert _accounted(summary)
    for bad, message in (("--window=0", "--window: must be >= 1"), ("--late=skip", "--late")):
        with pytest.raises(SystemExit) as exit_info:
            main([*argv, bad])
        err = capsys.readouterr().err
        assert exit_info.value.code == 2 and message in err and err.count("\n") == 1


def test_requests_queued_behind_each_other_do_not_lower_the_uplink_estimate(
    edge_model: EdgeModel, cloud: str
) -> None:
    # Four requests in flight share a 0.5 Mbit/s uplink: each waits for the ones ahead of
    # it. Counted as its own, that wait would put the estimate near 0.5 / 4.
    bucket = TokenBucket(0.5, burst_bytes=1500)
    with CloudClient(cloud, uplink=bucket) as client:
        node = EdgeNode(edge_model, client, EdgeConfig(version="2", window=4))
        summary = node.run(SyntheticSource(SHAPE, frames=12, seed=8))
    assert summary["answered"] == 12 and summary["bytes_sent"] / 12 > 2000
    assert 0.3 < summary["estimate_mbps"] < 0.65, summary["estimate_mbps"]


def test_a_lost_cloud_falls_back_frame_by_frame_with_frames_in_flight(
    edge_model: EdgeModel, closed_port: str
) -> None:
    with CloudClient(closed_port) as client:
        config = EdgeConfig(version="1", retry_interval_s=0.0, window=4)
        node = EdgeNode(edge_model, client, config, check_cloud=False)
        results: list[FrameResult] = []
        summary = node.run(SyntheticSource(SHAPE, frames=8, seed=9), results.append)
    assert [r.frame_id for r in results] == list(range(8))
    assert {r.where for r in results} == {"local"} and summary["fallbacks"] == 8
    assert summary["captured"] == summary["answered"] == 8 and _accounted(summary)
