"""Measuring on this machine (the ``host`` device): a captured model node by node, and any
runnable module (an exported half) as a whole.

Every measurement runs under a fixed torch thread count (:data:`HOST_THREADS` unless told
otherwise), restored afterwards, after warm-up runs. Whole forwards are timed with
``torch.utils.benchmark.Timer.blocked_autorange``; the spread of its blocks (:class:`Timing`)
says how far one run of the measurement can be from the next. Node times come from an FX
interpreter run ``repeats`` times (each node's median); their sum is a little above a
whole forward (interpreter overhead is a few µs per node), which is one reason a segment
is corrected (:class:`~partitioner.pricing.calibration.SegmentCorrection`).
"""

from __future__ import annotations

import contextlib
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.fx as fx

from partitioner.model.capture import CapturedModel
from partitioner.pricing.profiles import DEVICES, DeviceProfile

# Torch threads a measurement uses unless told otherwise. One: the figure then does not
# depend on how many cores happen to be idle (with all of them, three runs of resnet18 on a
# busy 2-core host gave 201, 654 and 47 ms), so runs agree; a node run with --threads N is
# priced by measuring with the same N.
HOST_THREADS = 1
# Least time blocked_autorange spends timing whole forwards (s): a few dozen resnet18 runs.
MIN_RUN_S = 1.0


@dataclass(frozen=True)
class Timing:
    """Run-to-run spread of a timed forward: quartiles and extremes of its samples, in ms."""

    median_ms: float
    q1_ms: float
    q3_ms: float
    min_ms: float
    max_ms: float
    samples: int  # timed blocks (Timer) or repeats (interpreter)

    @classmethod
    def of(cls, samples_ms: Sequence[float]) -> Timing:
        if not samples_ms:
            raise ValueError("a timing needs at least one sample")
        q1, median, q3 = np.percentile(samples_ms, [25, 50, 75])
        return cls(
            float(median),
            float(q1),
            float(q3),
            float(min(samples_ms)),
            float(max(samples_ms)),
            len(samples_ms),
        )

    @property
    def iqr_ms(self) -> float:
        return self.q3_ms - self.q1_ms

    def to_json(self) -> dict[str, float | int]:
        return {
            "median_ms": self.median_ms,
            "q1_ms": self.q1_ms,
            "q3_ms": self.q3_ms,
            "iqr_ms": self.iqr_ms,
            "min_ms": self.min_ms,
            "max_ms": self.max_ms,
            "samples": self.samples,
        }


@dataclass(frozen=True)
class HostMeasurement:
    node_ms: dict[str, float]  # graph node name -> median ms
    total_ms: float  # median of whole forwards
    repeats: int
    threads: int
    total: Timing  # the whole forwards' spread (total_ms is its median)
    layer_sums: Timing  # spread of the per-repeat sums of node times


@contextlib.contextmanager
def torch_threads(threads: int) -> Iterator[None]:
    """Run the block with ``threads`` torch intra-op threads, then restore the previous count."""
    if threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def time_forward(
    forward: Callable[[], Any],
    *,
    threads: int | None = None,
    warmup: int = 3,
    min_run_time_s: float = MIN_RUN_S,
) -> Timing:
    """Time ``forward()`` (no arguments) with ``Timer.blocked_autorange`` at ``threads``
    threads (None: :data:`HOST_THREADS`), after ``warmup`` untimed calls; the spread is over
    the Timer's blocks."""
    from torch.utils.benchmark import Timer

    threads = threads or HOST_THREADS
    with torch_threads(threads), torch.inference_mode():
        for _ in range(warmup):
            forward()
        timer = Timer(stmt="forward()", globals={"forward": forward}, num_threads=threads)
        measured = timer.blocked_autorange(min_run_time=min_run_time_s)
    return Timing.of([t * 1e3 for t in measured.times])


class _TimingInterpreter(fx.Interpreter):
    def __init__(self, module: fx.GraphModule, samples: dict[str, list[float]]) -> None:
        super().__init__(module)
        self.samples = samples

    def run_node(self, n: fx.Node) -> Any:
        if n.op != "call_function":
            return super().run_node(n)
        start = time.perf_counter()
        out = super().run_node(n)
        self.samples.setdefault(n.name, []).append((time.perf_counter() - start) * 1e3)
        return out


def measure_host(
    captured: CapturedModel,
    *,
    repeats: int = 10,
    warmup: int = 3,
    example: torch.Tensor | None = None,
    threads: int | None = None,
    min_run_time_s: float = MIN_RUN_S,
) -> HostMeasurement:
    """Per-node medians and whole forwards of ``captured`` on this machine, at batch 1, with
    ``threads`` torch threads (None: :data:`HOST_THREADS`; restored afterwards)."""
    if repeats < 1:
        raise ValueError("repeats must be >= 1")
    threads = threads or HOST_THREADS
    x = example if example is not None else torch.randn(captured.input_shape)
    module = captured.module
    samples: dict[str, list[float]] = {}
    with torch_threads(threads), torch.inference_mode():
        for _ in range(warmup):
            module(x)
        interp = _TimingInterpreter(module, samples)
        for _ in range(repeats):
            interp.run(x)
    total = time_forward(
        lambda: module(x), threads=threads, warmup=warmup, min_run_time_s=min_run_time_s
    )
    fx_names = captured.fx_names
    by_graph = {
        name: statistics.median(samples.get(fx_name, [0.0])) for name, fx_name in fx_names.items()
    }
    timed = [s for s in samples.values() if len(s) == repeats]
    sums = [sum(s[i] for s in timed) for i in range(repeats)]
    return HostMeasurement(by_graph, total.median_ms, repeats, threads, total, Timing.of(sums))


def host_profile(
    captured: CapturedModel, *, repeats: int = 10, threads: int | None = None
) -> DeviceProfile:
    """The ``host`` preset answering with this machine's measured node times."""
    measurement = measure_host(captured, repeats=repeats, threads=threads)
    return DEVICES.get("host").with_measurements(measurement.node_ms)


def measure_memory_bandwidth_gbps(megabytes: int = 64, repeats: int = 5) -> float:
    """Bytes read plus written per second by a large tensor copy on this host, in GB/s.

    The roofline's memory term for ``host``: what an op that streams activations
    through DRAM sustains with the current torch thread count (median of ``repeats``).
    """
    src = torch.ones(megabytes * 2**20 // 4)
    dst = torch.empty_like(src)
    dst.copy_(src)  # warm: pages mapped
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        dst.copy_(src)
        times.append(time.perf_counter() - start)
    return 2 * src.numel() * 4 / statistics.median(times) / 1e9
