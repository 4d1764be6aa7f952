"""Calibration: fitting device presets to published whole-model latencies.

Each :class:`PublishedFigure` is one measured model time on one device, with its
source. A figure's ``role`` says what it is used for: ``design`` figures are the
ones the presets must reproduce within ±10%, ``fit`` figures join them in the
least-squares fit, ``held-out`` figures are never fitted and show how well the
model predicts networks it was not calibrated on. :func:`fit_device` fits two
parameters per device (an efficiency scale and the per-op overhead) by
minimising squared log error; ``benchmarks/calibration.py`` reruns the fit and
prints every figure's error.

Segments are calibrated the same way, from measurements instead of publications: a
:class:`SegmentSample` is one exported half measured as a whole against the sum of its
nodes' times, and :func:`fit_segment_correction` fits the two parameters of a
:class:`~partitioner.pricing.profiles.SegmentCorrection` to them
(``benchmarks/segment_correction.py`` measures, fits and prints the errors).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from partitioner.model.graph import Graph
from partitioner.pricing.profiles import DeviceProfile, SegmentCorrection

_RPI_TUTORIAL = (
    "PyTorch tutorial 'Real Time Inference on Raspberry Pi 4 (30 fps!)', model time per "
    "frame, Raspberry Pi 4 Model B, 4 threads"
)
_TORCH2TRT = "NVIDIA-AI-IOT/torch2trt benchmarks/JETSON_NANO.md, PyTorch fp16 latency, batch 1"


@dataclass(frozen=True)
class PublishedFigure:
    device: str  # preset name
    dtype: str  # compute dtype the figure was measured at
    model: str  # zoo name
    ms: float  # model time per 224x224 frame, batch 1
    role: str  # "design" | "fit" | "held-out"
    source: str


FIGURES: tuple[PublishedFigure, ...] = (
    PublishedFigure("rpi4", "float32", "resnet18", 100.3, "design", _RPI_TUTORIAL),
    PublishedFigure("rpi4", "int8", "mobilenet_v2", 26.4, "design", _RPI_TUTORIAL + " (qnnpack)"),
    PublishedFigure("jetson-nano", "float16", "resnet18", 34.7, "design", _TORCH2TRT),
    # googlenet (198 small ops) pins the per-op overhead that resnet18 alone cannot.
    PublishedFigure("rpi4", "float32", "googlenet", 132.0, "fit", _RPI_TUTORIAL),
    PublishedFigure("jetson-nano", "float16", "vgg16", 201.0, "fit", _TORCH2TRT),
    PublishedFigure("rpi4", "float32", "resnet50", 225.2, "held-out", _RPI_TUTORIAL),
    PublishedFigure("jetson-nano", "float16", "alexnet", 22.1, "held-out", _TORCH2TRT),
    PublishedFigure("jetson-nano", "float16", "resnet34", 64.8, "held-out", _TORCH2TRT),
    PublishedFigure("jetson-nano", "float16", "resnet50", 81.7, "held-out", _TORCH2TRT),
)


def figures_for(device: str, roles: Sequence[str] = ("design", "fit")) -> list[PublishedFigure]:
    return [f for f in FIGURES if f.device == device and f.role in roles]


def predicted_ms(profile: DeviceProfile, graph: Graph, dtype: str) -> float:
    return profile.graph_ms(graph, dtype)


def scaled(
    profile: DeviceProfile,
    dtype: str,
    scale: float,
    overhead_us: float,
    mem_bandwidth_gbps: float | None = None,
) -> DeviceProfile:
    """The profile with ``dtype``'s peak times ``scale``, the given per-op overhead and,
    if given, memory bandwidth."""
    peaks = dict(profile.peak_gflops)
    peaks[dtype] = peaks[dtype] * scale
    bandwidth = profile.mem_bandwidth_gbps if mem_bandwidth_gbps is None else mem_bandwidth_gbps
    return replace(
        profile, peak_gflops=peaks, op_overhead_us=overhead_us, mem_bandwidth_gbps=bandwidth
    )


def fit_device(
    profile: DeviceProfile,
    dtype: str,
    figures: Sequence[PublishedFigure],
    graphs: Mapping[str, Graph],
    *,
    fit_overhead: bool = True,
    fit_bandwidth: bool = False,
) -> DeviceProfile:
    """Fit ``dtype``'s effective peak (and the per-op overhead, and the memory bandwidth) to
    ``figures``.

    Minimises the sum of squared log errors with Nelder–Mead over log-parameters,
    so none can go negative. The op classes' relative efficiencies are not fitted.
    """
    from scipy.optimize import minimize

    targets = [(graphs[f.model], f.ms) for f in figures if f.dtype == dtype]
    if not targets:
        raise ValueError(f"no figures for {profile.name} at {dtype}")

    def unpack(theta: Sequence[float]) -> DeviceProfile:
        overhead = math.exp(theta[1]) if fit_overhead else profile.op_overhead_us
        bandwidth = math.exp(theta[-1]) if fit_bandwidth else None
        return scaled(profile, dtype, math.exp(theta[0]), overhead, bandwidth)

    def loss(theta: Sequence[float]) -> float:
        p = unpack(theta)
        return sum(math.log(predicted_ms(p, g, dtype) / ms) ** 2 for g, ms in targets)

    # (log scale, log overhead or a placeholder[, log bandwidth]): the presets' fit is unchanged.
    start = [0.0, math.log(max(profile.op_overhead_us, 1.0)) if fit_overhead else 0.0]
    if fit_bandwidth:
        start.append(math.log(profile.mem_bandwidth_gbps))
    result = minimize(
        loss,
        start,
        method="Nelder-Mead",
        options={"xatol": 1e-6, "fatol": 1e-12, "maxiter": 4000},
    )
    return unpack(result.x)


@dataclass(frozen=True)
class SegmentSample:
    """One half of a cut measured as a whole, against the sum of its nodes' measured times."""

    model: str
    side: str  # "head" | "tail"
    cut: str  # the node the cut keeps last on the edge
    nodes_ms: float  # sum of the half's per-node times: the uncorrected prediction
    measured_ms: float  # the exported half, timed as one module


def fit_segment_correction(
    samples: Sequence[SegmentSample], *, fit_factor: bool = True
) -> SegmentCorrection:
    """The factor and per-segment overhead that best turn node sums into measured halves.

    Minimises the sum of squared relative errors, ``((factor * nodes + overhead) /
    measured - 1) ** 2``, a linear least-squares problem once each row is divided by its
    measurement, solved with both parameters kept non-negative (scipy's ``nnls``). Without
    ``fit_factor`` the factor stays 1 and only the overhead is fitted.
    """
    import numpy as np
    from scipy.optimize import nnls

    rows = [(s.nodes_ms, s.measured_ms) for s in samples]
    if len(rows) < 2 or any(not (m > 0 and n >= 0) for n, m in rows):
        raise ValueError("expected at least two samples, each measured > 0 ms and nodes >= 0 ms")
    nodes, measured = np.array(rows).T
    if not fit_factor:  # the overhead alone: (1/m) * overhead ~ 1 - nodes/m
        (overhead_ms,), _ = nnls((1.0 / measured)[:, None], 1.0 - nodes / measured)
        return SegmentCorrection(1.0, float(overhead_ms))
    design = np.column_stack([nodes / measured, 1.0 / measured])  # (N, 2)
    (factor, overhead_ms), _ = nnls(design, np.ones(len(rows)))
    if factor <= 0:
        raise ValueError("the samples do not determine a factor: their node sums are all 0")
    return SegmentCorrection(float(factor), float(overhead_ms))
