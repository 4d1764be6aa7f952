"""Measuring a head: accuracy through the tail, bytes at the cut, FLOPs, tensor bytes, time.

Everything here is measured, never assumed: accuracy runs the real data through
head, feature codec (one frame at a time, as the edge sends them) and tail; bytes
at the cut are what the codec produced; time is the median of timed forward
passes on this host. The same functions measure the uncompressed and the
compressed artifact, both loaded by :func:`partitioner.deploy.artifact.load_split`.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from partitioner.codecs import CODECS, Codec
from partitioner.compress.head import as_tuple
from partitioner.model.capture import capture

HeadFn = Callable[[torch.Tensor], Sequence[torch.Tensor]]
TailFn = Callable[..., Sequence[torch.Tensor]] | None

EVAL_BATCH = 256


def _through_codec(cut: Sequence[torch.Tensor], codec: Codec) -> tuple[torch.Tensor, ...]:
    """Each frame of each crossing tensor encoded and decoded on its own."""
    if codec.name == "none":
        return tuple(cut)
    out = []
    for tensor in cut:
        frames = tensor.detach().cpu().numpy()
        decoded = [codec.decode(codec.encode(frames[i : i + 1])) for i in range(frames.shape[0])]
        out.append(torch.from_numpy(np.concatenate(decoded)).to(tensor.dtype))
    return tuple(out)


def accuracy(
    head: HeadFn, tail: TailFn, x: torch.Tensor, y: torch.Tensor, codec: Codec | str = "none"
) -> float:
    """Top-1 accuracy in percent of head -> codec -> tail on ``x`` against ``y``."""
    codec = CODECS.get(codec) if isinstance(codec, str) else codec
    correct = 0
    with torch.inference_mode():
        for start in range(0, x.shape[0], EVAL_BATCH):
            cut = _through_codec(as_tuple(head(x[start : start + EVAL_BATCH])), codec)
            out = as_tuple(tail(*cut)) if tail is not None else cut
            correct += int((out[0].argmax(dim=1) == y[start : start + EVAL_BATCH]).sum())
    return 100.0 * correct / max(1, x.shape[0])


def cut_bytes(
    head: HeadFn, x: torch.Tensor, codec: Codec | str, *, frames: int = 64
) -> tuple[float, float]:
    """(wire bytes, payload bytes) per frame at the cut, averaged over ``frames`` frames."""
    codec = CODECS.get(codec) if isinstance(codec, str) else codec
    sample = x[:frames]
    total = payload = 0
    with torch.inference_mode():
        cut = as_tuple(head(sample))
    for tensor in cut:
        values = tensor.detach().cpu().numpy()
        for i in range(values.shape[0]):
            enc = codec.encode(values[i : i + 1])
            total += enc.nbytes
            payload += len(enc.payload)
    n = max(1, sample.shape[0])
    return total / n, payload / n


def head_ms(
    heads: Sequence[HeadFn], x1: torch.Tensor, *, repeats: int = 20, warmup: int = 3
) -> list[float]:
    """Median wall time in ms of one batch-1 forward pass of each head, on this host.

    The heads take turns, pass by pass, so that a load change on a shared machine
    slows all of them alike instead of skewing their ratio.
    """
    times: list[list[float]] = [[] for _ in heads]
    with torch.inference_mode():
        for _ in range(warmup):
            for head in heads:
                head(x1)
        for _ in range(repeats):
            for head, samples in zip(heads, times, strict=True):
                start = time.perf_counter()
                head(x1)
                samples.append((time.perf_counter() - start) * 1e3)
    return [statistics.median(samples) for samples in times]


def head_flops(structure: nn.Module, x1: torch.Tensor) -> int:
    """FLOPs of one frame, counted on the captured graph like the planner counts them."""
    was_training = structure.training
    try:
        return capture(structure, x1, name="head").graph.total_flops()
    finally:
        structure.train(was_training)


def shipped_tensor_bytes(path: Path) -> int:
    """Bytes of every weight, buffer and constant stored in a saved half (``.pt2``)."""
    exported = torch.export.load(path)
    tensors = list(exported.state_dict.values()) + list(exported.constants.values())
    seen: set[tuple[int, object]] = set()
    total = 0
    for t in tensors:
        if not isinstance(t, torch.Tensor):
            continue
        key = (t.untyped_storage().data_ptr(), t.storage_offset())
        if key in seen:
            continue
        seen.add(key)
        total += t.numel() * t.element_size()
    return total
