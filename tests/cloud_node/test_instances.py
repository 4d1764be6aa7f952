"""Instances run batches at the same time; a lone caller does not wait out the batching window."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pytest
import torch

from cloud_node.batcher import Batcher, BatchResult
from cloud_node.server import CloudConfig
from partitioner.deploy import crossing
from partitioner.errors import EdgecutError
from protos import serde

# Long enough that a request which waited it out could not pass for one that did not.
WINDOW_S = 1.0


class Intervals:
    """A run function that records when each batch ran, and on which thread."""

    def __init__(self, inside: Callable[[], None] = lambda: None) -> None:
        self.inside = inside
        self.spans: list[tuple[float, float]] = []
        self.threads: list[str] = []
        self._lock = threading.Lock()

    def __call__(self, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
        start = time.monotonic()
        self.inside()
        with self._lock:
            self.spans.append((start, time.monotonic()))
            self.threads.append(threading.current_thread().name)
        return [inputs[0] + 1]


def _rows(value: float, n: int = 1) -> list[np.ndarray]:
    return [np.full((n, 2), value, dtype=np.float32)]


def _overlap(spans: list[tuple[float, float]]) -> bool:
    (a0, a1), (b0, b1) = spans
    return max(a0, b0) < min(a1, b1)


def test_two_instances_run_two_batches_at_the_same_time() -> None:
    # Each batch waits inside the tail until the other has started: only two batches running
    # at once get past the barrier, so a node running one batch at a time fails here.
    barrier = threading.Barrier(2, timeout=30)
    run = Intervals(barrier.wait)
    seen: list[int] = []
    batcher = Batcher(
        max_batch=1, timeout_s=1e-4, instances=2, on_batch=lambda *a: seen.append(a[-1])
    )
    try:
        futures = [batcher.submit("tail", _rows(i), run) for i in range(2)]
        results = [f.result(30) for f in futures]
    finally:
        batcher.close()
    assert [r.outputs[0][0, 0] for r in results] == [1, 2]
    assert _overlap(run.spans)
    assert sorted(seen) == [0, 1]  # one batch on each instance


def test_one_instance_runs_one_batch_at_a_time() -> None:
    run = Intervals(lambda: time.sleep(0.05))
    batcher = Batcher(max_batch=1, timeout_s=1e-4, instances=1)
    try:
        futures = [batcher.submit("tail", _rows(i), run) for i in range(2)]
        assert [f.result(30).outputs[0][0, 0] for f in futures] == [1, 2]
    finally:
        batcher.close()
    assert not _overlap(run.spans)


def test_batches_of_one_tail_go_to_whichever_instance_is_free() -> None:
    gate = threading.Event()
    blocked = Intervals(lambda: gate.wait(30))
    fast = Intervals()
    instances: list[int] = []
    batcher = Batcher(
        max_batch=4, timeout_s=1e-4, instances=2, on_batch=lambda *a: instances.append(a[-1])
    )
    try:
        stuck = batcher.submit("tail", _rows(0), blocked)  # a worker takes it: nobody waits
        deadline = time.monotonic() + 30
        while batcher.busy_instances < 1 and time.monotonic() < deadline:
            time.sleep(0.001)
        # Instance 0 is held by the first batch; the same tail's next batches run meanwhile.
        for i in range(3):
            assert batcher.submit("tail", _rows(i, n=2), fast).result(30).batch_frames == 2
        assert not stuck.done()
        gate.set()
        assert stuck.result(30).outputs[0][0, 0] == 1
    finally:
        gate.set()
        batcher.close()
    assert instances[:3] == [1, 1, 1] and instances[3] == 0


def test_a_lone_caller_is_served_without_waiting_out_the_window() -> None:
    run = Intervals()
    batcher = Batcher(max_batch=16, timeout_s=WINDOW_S)
    try:
        started = time.monotonic()
        result = batcher.submit("tail", _rows(1), run).result(30)
        elapsed = time.monotonic() - started
    finally:
        batcher.close()
    assert result.outputs[0][0, 0] == 2 and result.batch_frames == 1
    # It ran in the caller's own thread, straight away: no window, no hand-off to a worker.
    assert run.threads == [threading.current_thread().name]
    assert result.queue_s < WINDOW_S / 2 and elapsed < WINDOW_S / 2


def test_requests_that_find_the_node_busy_still_wait_for_company() -> None:
    gate = threading.Event()
    run = Intervals(lambda: gate.wait(30))
    batcher = Batcher(max_batch=16, timeout_s=WINDOW_S)
    results: list[BatchResult] = []
    try:
        lone = threading.Thread(
            target=lambda: results.append(batcher.submit("t", _rows(0), run).result(30))
        )
        lone.start()
        deadline = time.monotonic() + 30
        while batcher.busy_instances < 1 and time.monotonic() < deadline:
            time.sleep(0.001)
        queued = [batcher.submit("t", _rows(i), run) for i in range(3)]
        gate.set()
        lone.join(30)
        batched = [f.result(30) for f in queued]
    finally:
        gate.set()
        batcher.close()
    assert results[0].batch_frames == 1
    assert [r.batch_frames for r in batched] == [3, 3, 3]


def test_a_lone_request_nobody_waits_for_is_run_by_a_worker() -> None:
    run = Intervals()
    batcher = Batcher(max_batch=16, timeout_s=1e-3)
    try:
        future = batcher.submit("t", _rows(4), run)
        deadline = time.monotonic() + 30
        while not future.done() and time.monotonic() < deadline:
            time.sleep(0.001)  # not future.result(): that would run it here
        assert future.done() and run.threads == ["batcher-0"]
        assert future.result().outputs[0][0, 0] == 5
    finally:
        batcher.close()


def test_instances_must_be_positive() -> None:
    with pytest.raises(ValueError, match="instances must be >= 1, got 0"):
        Batcher(instances=0)


def test_a_node_with_instances_answers_a_lone_request_before_its_window(
    start_cloud: Callable[..., Any], repo: Any
) -> None:
    with pytest.raises(EdgecutError, match="instances = 0 is out of range"):
        CloudConfig(repository=repo.root, instances=0)
    running = start_cloud(instances=2, batch_timeout_ms=WINDOW_S * 1e3)
    x = np.random.default_rng(0).standard_normal((2, 1, 8, 8), dtype=np.float32)
    art = repo.artifact("1")
    mid = [t.numpy() for t in art.run_head(torch.from_numpy(x))]
    inputs, params = crossing.encode_inputs(mid, art.crossing, "none")
    request = serde.request_to_proto(
        serde.InferRequest("digits_cnn", inputs, model_version="1", input_parameters=params)
    )
    stub = running.stub()
    stub.ModelInfer(request, timeout=30)  # connects the channel: not what is measured
    started = time.monotonic()
    reply = serde.response_from_proto(stub.ModelInfer(request, timeout=30))
    elapsed = time.monotonic() - started
    full = repo.reference(x)
    assert float(np.abs(reply.outputs["fc2"] - full).max() / np.abs(full).max()) < 1e-4
    assert float(reply.parameters[crossing.QUEUE_MS_PARAM]) < WINDOW_S * 1e3 / 2
    assert elapsed < WINDOW_S / 2
    sample = running.node.metrics.registry.get_sample_value
    # Both ran on the first free instance, in the handler's thread, each in a batch of its own.
    assert sample("edgecut_instance_batches_total", {"instance": "0"}) == 2
