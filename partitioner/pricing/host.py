"""Measuring a captured model on this machine, node by node (the ``host`` device).

The graph module is run node by node with an FX interpreter, timing each op;
after warm-up runs, each node's time is the median over the repeats. The sum is
a little above an uninterrupted forward (interpreter overhead is a few µs per
node), which is why ``total_ms`` is also measured as a whole forward.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import Any

import torch
import torch.fx as fx

from partitioner.model.capture import CapturedModel
from partitioner.pricing.profiles import DEVICES, DeviceProfile


@dataclass(frozen=True)
class HostMeasurement:
    node_ms: dict[str, float]  # graph node name -> median ms
    total_ms: float  # median of whole forwards
    repeats: int
    threads: int


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
) -> HostMeasurement:
    """Per-node and whole-forward medians of ``captured`` on this machine, at batch 1."""
    if repeats < 1:
        raise ValueError("repeats must be >= 1")
    x = example if example is not None else torch.randn(captured.input_shape)
    module = captured.module
    samples: dict[str, list[float]] = {}
    with torch.inference_mode():
        for _ in range(warmup):
            module(x)
        interp = _TimingInterpreter(module, samples)
        for _ in range(repeats):
            interp.run(x)
        totals = []
        for _ in range(repeats):
            start = time.perf_counter()
            module(x)
            totals.append((time.perf_counter() - start) * 1e3)
    by_graph = {
        name: statistics.median(samples.get(fx_name, [0.0]))
        for name, fx_name in captured.fx_names.items()
    }
    return HostMeasurement(by_graph, statistics.median(totals), repeats, torch.get_num_threads())


def host_profile(captured: CapturedModel, *, repeats: int = 10) -> DeviceProfile:
    """The ``host`` preset answering with this machine's measured node times."""
    measurement = measure_host(captured, repeats=repeats)
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
