"""An edge spreads its frames over several cloud replicas and loses none when one is killed.

The edge is given every replica's address (``--cloud a:p,b:q,c:r``); gRPC balances the calls
(``round_robin``), skips a replica whose health is not SERVING, and retries a call whose replica
died under it on another one.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edge_node.client import CloudClient
from edge_node.heads import EdgeModel
from edge_node.node import EdgeConfig, EdgeNode, FrameResult
from edge_node.sources import SyntheticSource
from partitioner.deploy.repository import open_model
from partitioner.errors import EdgecutError
from partitioner.planner import Planner
from partitioner.publish import build_repository

MODEL = "digits_cnn"
SHAPE = (1, 1, 8, 8)
STREAMS = 4


@pytest.fixture(scope="module")
def digits(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any]:
    planner = Planner.create(MODEL)
    root = tmp_path_factory.mktemp("replicas-repository")
    build_repository(planner, root, plans=[planner.cut_after("pool2")], with_local=False)
    return root, planner.loaded.module


def _reference(module: Any, x: np.ndarray) -> np.ndarray:
    import torch

    with torch.inference_mode():
        return module(torch.from_numpy(x)).numpy()


def _served(node: Any) -> float:
    value = node.metrics.registry.get_sample_value(
        "edgecut_frames_total", {"model": MODEL, "version": "1"}
    )
    return float(value or 0.0)


class Streams:
    """``STREAMS`` edge nodes sharing one client, each sending its own numbered frames."""

    def __init__(self, root: Path, client: CloudClient) -> None:
        model = EdgeModel.load(open_model(root), versions=["1"])
        # Frames must be answered by the cloud or fail: no local answer may hide a lost frame.
        # Pings only once: a ping that meets the replica frozen below would time out and mark
        # the whole cloud down, which is the edge's policy for a silent cloud, not a replica's.
        config = EdgeConfig(version="1", fallback=False, deadline_ms=30_000, ping_interval_s=3600)
        self.nodes = [EdgeNode(model, client, config) for _ in range(STREAMS)]
        self.sources = [
            iter(SyntheticSource(SHAPE, frames=100_000, seed=i)) for i in range(STREAMS)
        ]
        self.sent: list[list[Any]] = [[] for _ in range(STREAMS)]
        self.results: list[list[FrameResult]] = [[] for _ in range(STREAMS)]
        self.seconds: list[list[float]] = [[] for _ in range(STREAMS)]
        self.calling: list[float | None] = [None] * STREAMS  # when each current frame began
        self.stop = threading.Event()
        self.errors: list[BaseException] = []
        self._threads = [threading.Thread(target=self._run, args=(i,)) for i in range(STREAMS)]

    def _run(self, i: int) -> None:
        try:
            while not self.stop.is_set():
                frame = next(self.sources[i])
                self.sent[i].append(frame)
                started = self.calling[i] = time.monotonic()
                self.results[i].append(self.nodes[i].process(frame))
                self.calling[i] = None
                self.seconds[i].append(time.monotonic() - started)
        except BaseException as exc:  # surfaced by join()
            self.errors.append(exc)

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def wait_for(self, done: Callable[[], bool], limit_s: float) -> None:
        deadline = time.monotonic() + limit_s
        while not done():
            assert not self.errors, self.errors
            assert time.monotonic() < deadline, f"gave up after {limit_s} s"
            time.sleep(0.01)

    def held_s(self) -> float:
        """How long the longest-waiting frame in flight has waited so far."""
        now = time.monotonic()
        return max((now - t for t in self.calling if t is not None), default=0.0)

    def answered(self) -> int:
        return min(len(r) for r in self.results)

    def join(self) -> None:
        self.stop.set()
        for thread in self._threads:
            thread.join(60)
        assert not self.errors, self.errors


def test_frames_are_spread_over_replicas_and_avoid_one_not_serving(
    digits: tuple[Path, Any], start_cloud: Callable[..., tuple[Any, str]]
) -> None:
    root, module = digits
    clouds = [start_cloud(root) for _ in range(3)]
    with CloudClient(",".join(address for _node, address in clouds)) as client:
        streams = Streams(root, client)
        streams.start()
        try:
            streams.wait_for(lambda: all(_served(node) >= 3 for node, _ in clouds), 60)
            # The first replica drains: health NOT_SERVING while it still takes calls. The
            # edges' health checks see it and send it nothing more.
            draining = clouds[0][0]
            stopper = threading.Thread(target=draining.stop, kwargs={"drain_s": 3.0})
            stopper.start()
            time.sleep(1.0)  # the health watch reports NOT_SERVING within a round trip
            before = _served(draining)
            mark = streams.answered()
            streams.wait_for(lambda: streams.answered() >= mark + 20, 60)
            assert _served(draining) == before
            stopper.join(30)
        finally:
            streams.join()
    for sent, results in zip(streams.sent, streams.results, strict=True):
        assert [r.frame_id for r in results] == [f.id for f in sent]
        assert all(r.where == "cloud" and r.error is None for r in results)
        for frame, result in zip(sent, results, strict=True):
            want = _reference(module, frame.data)
            assert float(np.abs(result.outputs["fc2"] - want).max() / np.abs(want).max()) < 1e-4


def test_a_replica_killed_mid_stream_loses_and_duplicates_no_frame(
    digits: tuple[Path, Any],
    spawn_cloud: Callable[..., Any],
    start_cloud: Callable[..., tuple[Any, str]],
) -> None:
    root, module = digits
    args = ["--repository", str(root), "--port", "0", "--log-level", "WARNING"]
    # The victim is an `edgecut cloud serve` process, to be killed for real; the two replicas
    # that survive run in this process, which starts them in a fraction of the time.
    with ThreadPoolExecutor(1) as pool:
        spawning = pool.submit(spawn_cloud, args)
        survivors = [start_cloud(root)[1] for _ in range(2)]
        victim = spawning.result()
    addresses = [survivors[0], f"127.0.0.1:{victim.port}", survivors[1]]
    with CloudClient(",".join(addresses)) as client:
        streams = Streams(root, client)
        streams.start()
        try:
            streams.wait_for(lambda: streams.answered() >= 10, 60)
            # Freeze the victim so the calls round_robin sends it stay in flight there, then
            # kill it: each of them must be retried on a live replica and answered once.
            os.kill(victim.proc.pid, signal.SIGSTOP)
            streams.wait_for(lambda: streams.held_s() >= 0.5, 60)
            victim.kill()
            mark = streams.answered()
            streams.wait_for(lambda: streams.answered() >= mark + 20, 60)
        finally:
            streams.join()
    assert victim.proc.poll() is not None
    held = 0
    for sent, results, seconds in zip(streams.sent, streams.results, streams.seconds, strict=True):
        # Every frame sent is answered exactly once, in order, by the cloud, correctly.
        assert [r.frame_id for r in results] == [f.id for f in sent] == list(range(len(sent)))
        assert [r.where for r in results] == ["cloud"] * len(results)
        assert all(r.error is None for r in results)
        for frame, result in zip(sent, results, strict=True):
            want = _reference(module, frame.data)
            assert float(np.abs(result.outputs["fc2"] - want).max() / np.abs(want).max()) < 1e-4
        held += sum(s >= 0.5 for s in seconds)
    # The kill caught frames in flight on the victim: they waited out the freeze, then were
    # answered by another replica.
    assert held >= 1


@pytest.mark.parametrize(
    ("cloud", "message"),
    [
        ("127.0.0.1:5001,localhost:5002", "'localhost:5002' names a host"),
        ("127.0.0.1:5001,[::1]:5002", "mixes IPv4 and IPv6"),
        ("127.0.0.1:5001,127.0.0.1:5001", "lists '127.0.0.1:5001' twice"),
        ("127.0.0.1:5001,", "has an empty entry"),
    ],
)
def test_a_bad_list_of_replicas_is_refused_in_one_line(cloud: str, message: str) -> None:
    with pytest.raises(EdgecutError, match=message):
        CloudClient(cloud)
