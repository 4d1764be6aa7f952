"""Dynamic batching: concurrent requests share batches and each gets its own rows back."""

from __future__ import annotations

import threading
from collections.abc import Sequence

import numpy as np
import pytest

from cloud_node.batcher import Batcher, BatcherClosed, BatchTooLarge, QueueFull


class Recorder:
    """A run function that doubles its input and remembers every batch it saw."""

    def __init__(self, gate: threading.Event | None = None) -> None:
        self.batches: list[int] = []
        self.gate = gate
        self.entered = threading.Event()

    def __call__(self, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
        self.entered.set()
        if self.gate is not None:
            assert self.gate.wait(30)
        self.batches.append(int(inputs[0].shape[0]))
        return [inputs[0] * 2, inputs[0].sum(axis=1)]


def _rows(value: float, n: int = 1) -> list[np.ndarray]:
    return [np.full((n, 3), value, dtype=np.float32)]


def test_concurrent_requests_run_as_one_batch_and_get_their_own_rows() -> None:
    gate = threading.Event()
    run = Recorder(gate)
    batcher = Batcher(max_batch=16, timeout_s=1e-4)
    try:
        first = batcher.submit("tail", _rows(-1), run)  # occupies the worker at the gate
        assert run.entered.wait(30)
        futures = [batcher.submit("tail", _rows(i, n=1 + i % 3), run) for i in range(10)]
        gate.set()
        assert first.result(30).outputs[0].tolist() == [[-2, -2, -2]]
        for i, future in enumerate(futures):
            result = future.result(30)
            n = 1 + i % 3
            assert result.outputs[0].shape == (n, 3) and np.all(result.outputs[0] == 2 * i)
            assert result.outputs[1].tolist() == [3.0 * i] * n
        # The ten queued while the first ran: 19 frames, at most 16 per batch -> 2 batches.
        assert run.batches[0] == 1 and sum(run.batches[1:]) == 19 and len(run.batches) == 3
        assert max(run.batches) <= 16
    finally:
        batcher.close()


def test_max_batch_one_turns_batching_off() -> None:
    gate = threading.Event()
    run = Recorder(gate)
    batcher = Batcher(max_batch=1, timeout_s=1e-45)
    try:
        futures = [batcher.submit("tail", _rows(i), run) for i in range(5)]
        gate.set()
        assert [f.result(30).batch_frames for f in futures] == [1] * 5
        assert run.batches == [1] * 5
    finally:
        batcher.close()


def test_a_request_larger_than_max_batch_runs_alone() -> None:
    run = Recorder()
    batcher = Batcher(max_batch=4, timeout_s=1e-4)
    try:
        result = batcher.submit("tail", _rows(1, n=9), run).result(30)
        assert result.outputs[0].shape == (9, 3) and result.batch_frames == 9
    finally:
        batcher.close()


def test_per_key_limit_and_keys_never_mix() -> None:
    gate = threading.Event()
    run_a, run_b = Recorder(gate), Recorder(gate)
    batcher = Batcher(max_batch=8, timeout_s=1e-4)
    try:
        blocker = batcher.submit("a", _rows(0), run_a)
        assert run_a.entered.wait(30)
        a = [batcher.submit("a", _rows(1), run_a, max_batch=1) for _ in range(3)]
        b = [batcher.submit("b", _rows(2), run_b) for _ in range(3)]
        gate.set()
        blocker.result(30)
        assert all(f.result(30).batch_frames == 1 for f in a)
        assert all(np.all(f.result(30).outputs[0] == 4) for f in b)
        assert run_b.batches == [3]
    finally:
        batcher.close()


def test_a_failing_run_fails_every_caller_of_that_batch() -> None:
    def broken(inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
        raise RuntimeError("tail exploded")

    batcher = Batcher(max_batch=4, timeout_s=1e-4)
    try:
        with pytest.raises(RuntimeError, match="tail exploded"):
            batcher.submit("t", _rows(1), broken).result(30)
        # The worker survives: the next request is served.
        assert batcher.submit("t", _rows(1), Recorder()).result(30).outputs[0][0, 0] == 2
    finally:
        batcher.close()


def test_queue_limit_and_close() -> None:
    gate = threading.Event()
    run = Recorder(gate)
    batcher = Batcher(max_batch=2, timeout_s=1e-4, max_queue_frames=3)
    running = batcher.submit("t", _rows(0), run)
    assert run.entered.wait(30)
    queued = [batcher.submit("t", _rows(1), run) for _ in range(3)]
    with pytest.raises(QueueFull, match="limit 3"):
        batcher.submit("t", _rows(1), run)
    gate.set()
    batcher.close(drain=True, timeout_s=30)
    assert running.result(1).outputs and all(f.result(1).outputs for f in queued)
    with pytest.raises(BatcherClosed):
        batcher.submit("t", _rows(1), run)


def test_close_without_drain_fails_what_is_queued() -> None:
    gate = threading.Event()
    batcher = Batcher(max_batch=1, timeout_s=1e-4)
    first = Recorder(gate)
    running = batcher.submit("t", _rows(0), first)
    assert first.entered.wait(30)
    queued = batcher.submit("t", _rows(1), Recorder(gate))
    closer = threading.Thread(target=batcher.close, kwargs={"drain": False, "timeout_s": 30})
    closer.start()
    with pytest.raises(BatcherClosed):
        queued.result(30)
    gate.set()
    closer.join(30)
    assert running.result(30).outputs


def test_without_a_window_a_lone_request_runs_in_the_callers_thread() -> None:
    seen: list[str] = []

    def run(inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
        seen.append(threading.current_thread().name)
        return [inputs[0] + 1]

    batcher = Batcher(max_batch=8, timeout_s=0.0)
    try:
        future = batcher.submit("t", _rows(1), run)
        assert future.done() and future.result().outputs[0][0, 0] == 2
        assert seen == [threading.current_thread().name]
        # While one runs inline, others queue for the worker and batch together.
        gate = threading.Event()
        slow = Recorder(gate)
        caller = threading.Thread(target=lambda: batcher.submit("t", _rows(0), slow))
        caller.start()
        assert slow.entered.wait(30)
        queued = [batcher.submit("t", _rows(i), slow) for i in range(3)]
        gate.set()
        caller.join(30)
        assert [f.result(30).batch_frames for f in queued] == [3, 3, 3]
    finally:
        batcher.close()


def test_a_batch_larger_than_the_queue_is_refused_naming_the_limit_not_as_busy() -> None:
    batcher = Batcher(max_batch=2, timeout_s=1e-4, max_queue_frames=4)
    try:
        message = "batch of 5 frames exceeds the queue limit of 4 frames"
        with pytest.raises(BatchTooLarge, match=message):
            batcher.reserve(5)
        with pytest.raises(BatchTooLarge, match=message):
            batcher.submit("t", _rows(1, n=5), Recorder())
        # Exactly the limit fits an empty queue.
        assert batcher.submit("t", _rows(1, n=4), Recorder()).result(30).batch_frames == 4
    finally:
        batcher.close()


def test_reserved_frames_count_against_the_queue_until_submitted_or_released() -> None:
    gate = threading.Event()
    run = Recorder(gate)
    batcher = Batcher(max_batch=8, timeout_s=1e-4, max_queue_frames=4)
    try:
        running = batcher.submit("t", _rows(0), run)  # the worker is busy from here on
        assert run.entered.wait(30)
        held = batcher.reserve(3)  # a request still decoding its 3 frames
        with pytest.raises(QueueFull, match="3 frames are queued \\(limit 4\\)"):
            batcher.reserve(2)
        with pytest.raises(QueueFull):
            batcher.submit("t", _rows(1, n=2), run)
        with batcher.reserve(1) as unused:  # a request that fails to decode gives its room back
            assert unused.frames == 1
        with pytest.raises(ValueError, match="reservation of 3 frames for 2"):
            batcher.submit("t", _rows(1, n=2), run, reservation=held)
        queued = batcher.submit("t", _rows(1, n=3), run, reservation=held)
        assert batcher.queued_frames == 3
        with pytest.raises(ValueError, match="released, used"):
            batcher.submit("t", _rows(1, n=3), run, reservation=held)
        held.release()  # already used by submit: gives nothing back twice
        with pytest.raises(QueueFull, match="3 frames are queued"):
            batcher.reserve(2)
        gate.set()
        assert running.result(30).outputs and queued.result(30).batch_frames == 3
        with batcher.reserve(4):  # all of it is free again
            pass
    finally:
        gate.set()
        batcher.close()


@pytest.mark.parametrize("kwargs", [{"max_batch": 0}, {"timeout_s": -1}, {"max_queue_frames": 0}])
def test_bad_settings_are_refused(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        Batcher(**kwargs)
