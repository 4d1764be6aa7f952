"""The batcher stacks requests along each tensor's batch dim and hands each caller its own part."""

from __future__ import annotations

import threading
from collections.abc import Sequence

import numpy as np

from cloud_node.batcher import Batcher, Stacking


def test_requests_stack_along_each_tensors_batch_dim() -> None:
    """Inputs (S, B, E) and (B, E); outputs (S, B, E) and a folded (2*B, E) with 2 entries a
    frame: each caller gets back exactly what its own frames computed."""
    gate = threading.Event()
    seen: list[tuple[int, ...]] = []

    def run(inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
        assert gate.wait(30)
        seq, flat = inputs  # (S, B, E), (B, E)
        seen.append(seq.shape)
        folded = np.repeat(flat, 2, axis=0) + np.tile([0, 100], flat.shape[0])[:, None]
        return [seq + flat[None], folded]

    stacking = Stacking(input_dims=(1, 0), output_dims=(1, 0), output_per_frame=(1, 2))
    batcher = Batcher(max_batch=16, timeout_s=1e-4)
    try:
        first = batcher.submit("t", _request(-1, 1), run, stacking=stacking)
        futures = []
        for i in range(4):
            with_room = batcher.reserve(1 + i % 2)
            request = _request(i, 1 + i % 2)
            futures.append(
                batcher.submit("t", request, run, reservation=with_room, stacking=stacking)
            )
        gate.set()
        _check(first.result(30).outputs, -1, 1)
        for i, future in enumerate(futures):
            result = future.result(30)
            _check(result.outputs, i, 1 + i % 2)
        assert max(s[1] for s in seen) > 2  # requests were stacked: no one request has 3 frames
    finally:
        batcher.close()


def _request(value: float, frames: int) -> list[np.ndarray]:
    seq = np.full((5, frames, 3), value, dtype=np.float32)
    seq[:, :, 0] = np.arange(frames)  # frames differ
    flat = np.full((frames, 3), 10 * value, dtype=np.float32)
    return [seq, flat]


def _check(outputs: list[np.ndarray], value: float, frames: int) -> None:
    seq, flat = _request(value, frames)
    want_seq = seq + flat[None]
    want_folded = np.repeat(flat, 2, axis=0) + np.tile([0, 100], frames)[:, None]
    assert outputs[0].shape == (5, frames, 3) and np.array_equal(outputs[0], want_seq)
    assert outputs[1].shape == (2 * frames, 3) and np.array_equal(outputs[1], want_folded)
