"""Measuring on this machine (the ``host`` device): a captured model node by node, and any
runnable module (an exported half) as a whole.

Every measurement runs under a fixed torch thread count (:data:`HOST_THREADS` unless told
otherwise), restored afterwards, after warm-up runs, and reads the clock :func:`clock_for`
picks for that count. Whole forwards are timed with
``torch.utils.benchmark.Timer.blocked_autorange``; the spread of its blocks (:class:`Timing`)
says how far one run of the measurement can be from the next. Node times come from an FX
interpreter run ``repeats`` times (each node's median); their sum is a little above a
whole forward (interpreter overhead is a few µs per node), which is one reason a segment
is corrected (:class:`~partitioner.pricing.calibration.SegmentCorrection`).
"""

from __future__ import annotations

import contextlib
import math
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
import torch
import torch.fx as fx

from partitioner.model.capture import CapturedModel
from partitioner.model.ops import RECURRENT_GATES
from partitioner.pricing.profiles import DEVICES, DeviceProfile, LoopRate
from protos.allocator import keep_freed_memory

# Torch threads a measurement uses unless told otherwise. One: the figure then does not
# depend on how many cores happen to be idle (with all of them, three runs of resnet18 on a
# busy 2-core host gave 201, 654 and 47 ms), so runs agree; a node run with --threads N is
# priced by measuring with the same N.
HOST_THREADS = 1
# Least time blocked_autorange spends timing whole forwards (s): a few dozen resnet18 runs.
MIN_RUN_S = 1.0
# What a measurement can read: the calling thread's CPU time, or the wall clock.
CLOCKS: dict[str, Callable[[], float]] = {"thread-cpu": time.thread_time, "wall": time.perf_counter}


def clock_for(threads: int) -> str:
    """The clock a measurement with ``threads`` torch threads reads (a name in :data:`CLOCKS`).

    One thread runs every op in the calling thread, so that thread's CPU time is the time
    the work takes on a core, without the wait for a free core that a shared machine adds
    (resnet18 here, 1 thread, with ten runnable processes on 2 cores: 27.6-28.3 ms of CPU
    time against 97-102 ms of wall time; 25 ms either way on an idle machine). With more
    threads the work runs in the pool's threads too, whose CPU time (spinning included)
    adds up rather than overlaps: wall time.
    """
    return "thread-cpu" if threads == 1 else "wall"


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
    clock: str  # a name in CLOCKS: what the times are (clock_for(threads))
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
    the Timer's blocks. Freed buffers are kept in the process first
    (:func:`protos.allocator.keep_freed_memory`): a forward that refaults its activations
    every call times the allocator's history, not the model."""
    from torch.utils.benchmark import Timer

    keep_freed_memory()
    threads = threads or HOST_THREADS
    clock = CLOCKS[clock_for(threads)]
    with torch_threads(threads), torch.inference_mode():
        for _ in range(warmup):
            forward()
        timer = Timer(
            stmt="forward()", globals={"forward": forward}, timer=clock, num_threads=threads
        )
        measured = timer.blocked_autorange(min_run_time=min_run_time_s)
    return Timing.of([t * 1e3 for t in measured.times])


class _TimingInterpreter(fx.Interpreter):
    def __init__(
        self, module: fx.GraphModule, samples: dict[str, list[float]], clock: Callable[[], float]
    ) -> None:
        super().__init__(module)
        self.samples = samples
        self.clock = clock

    def run_node(self, n: fx.Node) -> Any:
        if n.op != "call_function":
            return super().run_node(n)
        start = self.clock()
        out = super().run_node(n)
        self.samples.setdefault(n.name, []).append((self.clock() - start) * 1e3)
        return out


def measure_nodes(
    captured: CapturedModel,
    *,
    repeats: int = 10,
    warmup: int = 3,
    example: torch.Tensor | None = None,
    threads: int | None = None,
    min_run_time_s: float = MIN_RUN_S,
) -> tuple[dict[str, float], Timing]:
    """Each node's median time in ms (graph node name -> ms) of ``captured`` run at batch 1
    in a timing interpreter, and the spread of the per-run sums, with ``threads`` torch
    threads (None: :data:`HOST_THREADS`; restored afterwards).

    The model runs at least ``repeats`` times and for at least ``min_run_time_s`` of the
    clock, so that a burst of load on a shared machine shorter than half of that time
    cannot move a node's median (ten back-to-back runs of resnet18 all fit in one burst).
    """
    if repeats < 1:
        raise ValueError("repeats must be >= 1")
    threads = threads or HOST_THREADS
    clock = CLOCKS[clock_for(threads)]
    x = example if example is not None else torch.randn(captured.input_shape)
    module = captured.module
    samples: dict[str, list[float]] = {}
    runs = 0
    with torch_threads(threads), torch.inference_mode():
        for _ in range(warmup):
            module(x)
        interp = _TimingInterpreter(module, samples, clock)
        start = clock()
        while runs < repeats or clock() - start < min_run_time_s:
            interp.run(x)
            runs += 1
    by_graph = {
        name: statistics.median(samples.get(fx_name, [0.0]))
        for name, fx_name in captured.fx_names.items()
    }
    sums = [sum(s[i] for s in samples.values()) for i in range(runs)]
    return by_graph, Timing.of(sums)


def measure_host(
    captured: CapturedModel,
    *,
    repeats: int = 10,
    warmup: int = 3,
    example: torch.Tensor | None = None,
    threads: int | None = None,
    min_run_time_s: float = MIN_RUN_S,
) -> HostMeasurement:
    """Per-node medians (:func:`measure_nodes`) and whole forwards (:func:`time_forward`) of
    ``captured`` on this machine, at batch 1, with ``threads`` torch threads (freed buffers
    kept in the process, as for :func:`time_forward`)."""
    keep_freed_memory()
    threads = threads or HOST_THREADS
    x = example if example is not None else torch.randn(captured.input_shape)
    node_ms, layer_sums = measure_nodes(
        captured,
        repeats=repeats,
        warmup=warmup,
        example=x,
        threads=threads,
        min_run_time_s=min_run_time_s,
    )
    total = time_forward(
        lambda: captured.module(x), threads=threads, warmup=warmup, min_run_time_s=min_run_time_s
    )
    return HostMeasurement(
        node_ms, total.median_ms, repeats, threads, clock_for(threads), total, layer_sums
    )


def host_profile(
    captured: CapturedModel, *, repeats: int = 10, threads: int | None = None
) -> DeviceProfile:
    """The ``host`` preset answering with this machine's measured node times."""
    node_ms, _ = measure_nodes(captured, repeats=repeats, threads=threads)
    return DEVICES.get("host").with_measurements(node_ms)


def measure_memory_bandwidth_gbps(megabytes: int = 64, repeats: int = 5) -> float:
    """Bytes read plus written per second by a large tensor copy on this host, in GB/s.

    The roofline's memory term for ``host``: what an op that streams activations
    through DRAM sustains with the current torch thread count (median of ``repeats``).
    """
    src = torch.ones(megabytes * 2**20 // 4)
    dst = torch.empty_like(src)
    dst.copy_(src)  # warm: pages mapped
    clock = CLOCKS[clock_for(torch.get_num_threads())]  # as the nodes are timed
    times = []
    for _ in range(repeats):
        start = clock()
        dst.copy_(src)
        times.append(clock() - start)
    return 2 * src.numel() * 4 / statistics.median(times) / 1e9


# The loop micro-benchmark's wide cell re-reads this many bytes of hidden-to-hidden
# weights (gates x H x H floats) per step: more than L1, within this host's L2.
_LOOP_STEP_BYTES = 512 * 1024


def measure_loop_rates(
    threads: int = 1, steps: int = 400, min_run_time_s: float = 0.05
) -> dict[str, LoopRate]:
    """Each recurrent kind's per-step cost on this host (:class:`LoopRate`).

    A one-layer cell with one input feature runs ``steps`` steps at hidden size 1 (its
    fixed cost per step: dispatching the cell's ops, or a fused kernel's step) and at a
    width whose weights are 512 KiB (the extra time per step, over those bytes, is the
    rate at which a step re-reads its weights), each timed by :func:`time_forward`. The
    op runs as torch dispatches it here (fp32 on CPU: oneDNN's fused LSTM, torch's own
    step loop for GRU and RNN), so the path is measured, not assumed. A micro-benchmark
    of the machine, like the memory bandwidth: never a model the rates then price.
    """
    rates: dict[str, LoopRate] = {}
    x = torch.randn(steps, 1, 1)
    for kind, gates in RECURRENT_GATES.items():
        wide = round(math.sqrt(_LOOP_STEP_BYTES / 4 / gates))
        per_step_ms = []
        for hidden in (1, wide):
            cell = _cell(kind, hidden)
            timing = time_forward(partial(cell, x), threads=threads, min_run_time_s=min_run_time_s)
            per_step_ms.append(timing.median_ms / steps)
        weight_bytes = gates * wide * wide * 4
        extra_s = max(per_step_ms[1] - per_step_ms[0], 1e-6) / 1e3  # noise cannot make it free
        rates[kind] = LoopRate(step_us=per_step_ms[0] * 1e3, gbps=weight_bytes / extra_s / 1e9)
    return rates


def _cell(kind: str, hidden: int) -> torch.nn.Module:
    if kind == "lstm":
        return torch.nn.LSTM(1, hidden).eval()
    if kind == "gru":
        return torch.nn.GRU(1, hidden).eval()
    return torch.nn.RNN(1, hidden, nonlinearity=kind.removeprefix("rnn_")).eval()
