"""Device profiles: how long each node takes on a named device, and what it draws.

A preset is a calibrated roofline per op class: a node takes a fixed per-op
overhead plus the larger of its compute time (FLOPs over the dtype's peak times
the op class's efficiency) and its memory time (bytes moved over memory
bandwidth). A handful of parameters per device, fitted to published figures
(see :data:`CALIBRATION`), not one per model. ``host`` is measured on this
machine instead (:mod:`partitioner.pricing.host`).

    >>> profile = DEVICES.get("rpi4")
    >>> profile.node_ms(node, "float32")
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from partitioner.errors import EdgecutError
from partitioner.model.graph import Graph, Loop, Node
from partitioner.model.ops import OP_CLASSES
from partitioner.registry import Registry

# Compute dtypes a profile can price. Bytes moved scale with the element size.
DTYPE_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2, "int8": 1}
# Op classes that cost nothing at run time (metadata-only views, the input itself).
FREE_CLASSES = frozenset({"view", "input"})
# Quantized kernels fold batch norm into the convolution's weights and fuse the
# activation into its epilogue (qnnpack, and PT2E's x86 lowering alike), so at
# int8 these ops cost nothing of their own.
FUSED_AT_INT8 = frozenset(
    {
        "batch_norm",
        "_native_batch_norm_legit_no_training",
        "relu",
        "relu6",
        "hardtanh",
        "clamp",
        "clamp_min",
    }
)


@dataclass(frozen=True)
class SegmentCorrection:
    """A segment (an exported head or tail, run as one module) against its nodes' times.

    ``segment_ms = factor * sum(node_ms) + overhead_ms``: the factor is what running the
    ops back to back in one module saves or costs against timing each alone (interpreter
    and timer overhead per node, caches warm from the previous op), the overhead what
    calling a loaded half costs once (its argument flattening, parameter lookups, the
    inference-mode switch). The identity for the roofline presets, which were fitted to
    whole-model figures; fitted for ``host`` from its measured halves
    (:func:`partitioner.pricing.calibration.fit_segment_correction`).
    """

    factor: float = 1.0
    overhead_ms: float = 0.0

    def __post_init__(self) -> None:
        if not (0 < self.factor < math.inf and 0 <= self.overhead_ms < math.inf):
            raise ValueError(
                f"segment correction: expected factor > 0 and overhead_ms >= 0, both finite; "
                f"got {self.factor}, {self.overhead_ms}"
            )

    def segment_ms(self, nodes_ms: float) -> float:
        """The time of a segment whose nodes' times sum to ``nodes_ms``."""
        return self.factor * nodes_ms + self.overhead_ms


@dataclass(frozen=True)
class LoopRate:
    """What one sequential step of a recurrent op costs on a device, by cell kind.

    A step waits on the previous one, so the roofline's "FLOPs at a class efficiency"
    misses two things: a fixed ``step_us`` (the cell's small ops dispatched one by one,
    about 40 ATen calls per step in torch's own loop, or one fused kernel's step, as
    oneDNN runs an fp32 LSTM on CPU) and the rate ``gbps`` at which the step re-reads
    its hidden-to-hidden weights, which stay in cache between steps. Measured on the
    host by :func:`partitioner.pricing.host.measure_loop_rates`.
    """

    step_us: float
    gbps: float

    def __post_init__(self) -> None:
        if not (0 <= self.step_us < math.inf and 0 < self.gbps < math.inf):
            raise ValueError(
                f"loop rate: expected step_us >= 0 and gbps > 0, both finite; "
                f"got {self.step_us}, {self.gbps}"
            )


@dataclass(frozen=True)
class DeviceProfile:
    """A roofline model of one device running PyTorch (eager) at batch 1."""

    name: str
    description: str
    peak_gflops: Mapping[str, float]  # per compute dtype
    efficiency: Mapping[str, float]  # per op class: achieved fraction of peak
    mem_bandwidth_gbps: float  # GB/s the ops actually stream at
    op_overhead_us: float  # fixed cost per executed op (dispatch, kernel launch)
    default_dtype: str
    active_power_w: float  # board power while computing
    idle_power_w: float  # board power while waiting on the network
    # GEMM kernels tile the output channels: with N channels a dense conv or matmul
    # reaches N / (N + half) of its efficiency (few channels leave lanes idle).
    gemm_half_channels: float = 0.0
    source: str = ""  # where the figures come from
    measured_ms: Mapping[str, float] | None = field(default=None, compare=False)
    segment: SegmentCorrection = SegmentCorrection()  # a fused half against its nodes' sum
    # Per recurrent kind ("lstm", "gru", ...): its steps' fixed cost and weight rate. A kind
    # without one is priced as one op at the "recurrent" class efficiency.
    loops: Mapping[str, LoopRate] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for dtype, peak in self.peak_gflops.items():
            if dtype not in DTYPE_BYTES:
                raise ValueError(f"{self.name}: unknown dtype {dtype!r}")
            if peak <= 0:
                raise ValueError(f"{self.name}: peak_gflops[{dtype}] must be > 0, got {peak}")
        for op_class, eff in self.efficiency.items():
            if op_class not in OP_CLASSES:
                raise ValueError(f"{self.name}: unknown op class {op_class!r}")
            if not 0 < eff <= 1:
                raise ValueError(
                    f"{self.name}: efficiency[{op_class}] must be in (0, 1], got {eff}"
                )
        if self.default_dtype not in self.peak_gflops:
            raise ValueError(f"{self.name}: default dtype {self.default_dtype} has no peak")
        if self.mem_bandwidth_gbps <= 0 or self.op_overhead_us < 0:
            raise ValueError(f"{self.name}: memory bandwidth must be > 0 and overhead >= 0")
        object.__setattr__(self, "peak_gflops", MappingProxyType(dict(self.peak_gflops)))
        object.__setattr__(self, "efficiency", MappingProxyType(dict(self.efficiency)))
        object.__setattr__(self, "loops", MappingProxyType(dict(self.loops)))

    def dtype(self, dtype: str | None) -> str:
        dtype = dtype or self.default_dtype
        if dtype not in self.peak_gflops:
            raise EdgecutError(
                f"device {self.name} has no {dtype} compute; it supports {sorted(self.peak_gflops)}"
            )
        return dtype

    def node_ms(self, node: Node, dtype: str | None = None, batch: int = 1) -> float:
        """Predicted time of one node for a batch of ``batch`` frames, in ms.

        The roofline: a fixed per-op overhead, paid once per batch, plus the larger of
        compute (``batch`` times the frame's FLOPs at the op class's efficiency) and
        memory traffic (``batch`` times the activations plus the weights once). A
        measured profile has no roofline: its batch takes ``batch`` times the frame.
        """
        if self.measured_ms is not None:
            return batch * float(self.measured_ms.get(node.name, 0.0))
        if node.op_class in FREE_CLASSES:
            return 0.0
        dtype = self.dtype(dtype)
        if dtype == "int8" and node.op in FUSED_AT_INT8:
            return 0.0
        scale = DTYPE_BYTES[dtype] / 4  # graph bytes are counted at float32
        bytes_moved = (batch * (node.in_bytes + node.out_bytes) + node.param_bytes) * scale
        memory_ms = bytes_moved / (self.mem_bandwidth_gbps * 1e6)
        loop = node.loop
        rate = self.loops.get(loop.kind) if loop is not None else None
        if loop is not None and rate is not None:
            return self.op_overhead_us / 1e3 + self._loop_ms(
                loop, rate, node.flops, dtype, batch, memory_ms
            )
        efficiency = self.efficiency.get(node.op_class, self.efficiency.get("other", 0.1))
        if node.op_class in ("conv", "matmul") and len(node.shape) >= 2 and self.gemm_half_channels:
            channels = node.shape[1] if node.op_class == "conv" else node.shape[-1]
            efficiency *= channels / (channels + self.gemm_half_channels)
        compute_ms = batch * node.flops / (self.peak_gflops[dtype] * efficiency * 1e6)
        return self.op_overhead_us / 1e3 + max(compute_ms, memory_ms)

    def _loop_ms(
        self, loop: Loop, rate: LoopRate, flops: int, dtype: str, batch: int, memory_ms: float
    ) -> float:
        """A recurrent op of ``flops`` per frame: its input projections as one GEMM over
        all steps (or its bytes moved, ``memory_ms``), then its steps one after another,
        each a fixed cost plus the larger of its GEMM work for the batch and re-reading
        its weights at the loop's rate."""
        gemm = self.peak_gflops[dtype] * self.efficiency.get("matmul", 0.5) * 1e6  # FLOP/ms
        projection = batch * max(flops - loop.steps * loop.step_flops, 0)
        step_bytes = loop.step_bytes * DTYPE_BYTES[dtype] / 4
        step_ms = rate.step_us / 1e3 + max(
            batch * loop.step_flops / gemm, step_bytes / (rate.gbps * 1e6)
        )
        return max(projection / gemm, memory_ms) + loop.steps * step_ms

    def graph_ms(self, graph: Graph, dtype: str | None = None) -> float:
        return sum(self.node_ms(n, dtype) for n in graph.nodes)

    def with_measurements(self, measured_ms: Mapping[str, float]) -> DeviceProfile:
        """This profile answering from per-node measurements (the ``host`` device)."""
        return DeviceProfile(
            **{**self.__dict__, "measured_ms": MappingProxyType(dict(measured_ms))}
        )


# The presets by name (``host`` is a placeholder until measured).
DEVICES: Registry[DeviceProfile] = Registry("device")


# Relative efficiencies of op classes on CPUs running PyTorch eager: dense conv and
# GEMM reach a good fraction of peak; depthwise conv has little reuse per byte;
# elementwise ops and pooling are bound by memory. Shared by the CPU presets so a
# device is fitted with its peak, bandwidth and overhead only. Fused attention runs
# two GEMMs per head whose inner dimension is the head size (64), with a softmax
# between them: below a dense GEMM. A recurrent layer is priced by its loop where the
# device has a LoopRate for its kind (``host``: measured on one-layer cells by
# partitioner.pricing.host.measure_loop_rates): its input projections as one GEMM at the
# matmul efficiency, then each step's fixed cost and weight re-read. The kernel path sets
# both: at fp32 on CPU torch runs an LSTM as one fused oneDNN kernel per layer (0.4 us a
# step here), a GRU or RNN as its own loop of ~40 small ATen calls a step (6 us a step);
# at equal FLOPs that is a 2x gap no single efficiency covers. Devices without measured
# rates (the presets: no published recurrent figures) price the op whole at the
# "recurrent" efficiency below, 0.20 of peak, read off the held-out LSTM/GRU of
# benchmarks/cost_generalisation.py: a placeholder, not a calibration.
# Embeddings and unpriced ops have no FLOPs to price: only their bytes count.
_CPU_EFFICIENCY = {
    "conv": 0.60,
    "dwconv": 0.08,
    "matmul": 0.50,
    "attention": 0.30,
    "recurrent": 0.20,
    "norm": 0.15,
    "embedding": 0.15,
    "elementwise": 0.15,
    "pool": 0.15,
    "memory": 0.15,
    "other": 0.10,
}
# The same on GPUs running PyTorch eager (cuDNN): dense conv reaches less of the
# (much higher) peak at batch 1; everything else is launch- or memory-bound.
_GPU_EFFICIENCY = {
    "conv": 0.40,
    "dwconv": 0.05,
    "matmul": 0.30,
    "attention": 0.15,
    "recurrent": 0.02,
    "norm": 0.10,
    "embedding": 0.10,
    "elementwise": 0.10,
    "pool": 0.10,
    "memory": 0.10,
    "other": 0.05,
}

# -- presets --------------------------------------------------------------------------
# Fitted presets: ``peak_gflops`` of the fitted dtype and ``op_overhead_us`` come
# out of partitioner.pricing.calibration.fit_device on the figures in
# partitioner.pricing.calibration.FIGURES (rerun: python benchmarks/calibration.py); the
# other numbers are datasheet values or class constants chosen once.

DEVICES.register(
    DeviceProfile(
        name="rpi4",
        description="Raspberry Pi 4 Model B, 4x Cortex-A72 @ 1.5 GHz, PyTorch eager, 4 threads",
        # Fitted effective peaks: fp32 on resnet18 + googlenet, int8 (qnnpack) on mobilenet_v2.
        # Datasheet fp32 peak: 4 cores x 1.5 GHz x 16 FLOP/cycle = 96 GFLOP/s.
        peak_gflops={"float32": 131.909, "int8": 391.766},
        efficiency=_CPU_EFFICIENCY,
        mem_bandwidth_gbps=6.0,  # LPDDR4-3200, 32-bit bus: 12.8 GB/s peak, about half achieved
        op_overhead_us=320.28,  # fitted: per-op dispatch and 4-thread fork/join on A72 cores
        default_dtype="float32",
        active_power_w=6.4,  # typical board power under full CPU load
        idle_power_w=2.7,  # typical idle board power
        gemm_half_channels=64.0,
        source="calibrated: PyTorch 'Real Time Inference on Raspberry Pi 4' tutorial",
    )
)

_JETSON_NANO = DEVICES.register(
    DeviceProfile(
        name="jetson-nano",
        description="Jetson Nano 4 GB, 128-core Maxwell GPU @ 921 MHz, PyTorch eager fp16",
        # Fitted fp16 effective peak on resnet18 + vgg16; datasheet fp16 472, fp32 236 GFLOP/s.
        peak_gflops={"float32": 236.0, "float16": 516.448},
        efficiency=_GPU_EFFICIENCY,
        mem_bandwidth_gbps=15.0,  # 25.6 GB/s LPDDR4 peak, shared with the CPU
        op_overhead_us=158.88,  # fitted: kernel launch plus dispatch on the A57 host cores
        default_dtype="float16",
        active_power_w=10.0,  # the 10 W power mode
        idle_power_w=1.5,
        gemm_half_channels=32.0,
        source="calibrated: NVIDIA-AI-IOT/torch2trt Jetson Nano benchmarks (PyTorch fp16)",
    )
)

DEVICES.register(
    DeviceProfile(
        name="jetson-orin-nano",
        description="Jetson Orin Nano 8 GB, 1024-core Ampere GPU @ 625 MHz, PyTorch eager fp16",
        # Not calibrated against a published figure: the Jetson Nano fit scaled by datasheet
        # ratios (fp16 peak 2.56 vs 0.472 TFLOP/s, memory 68 vs 25.6 GB/s, host CPU ~2.5x faster).
        peak_gflops={
            "float32": _JETSON_NANO.peak_gflops["float16"] * 1280.0 / 472.0,
            "float16": _JETSON_NANO.peak_gflops["float16"] * 2560.0 / 472.0,
        },
        efficiency=_GPU_EFFICIENCY,
        mem_bandwidth_gbps=_JETSON_NANO.mem_bandwidth_gbps * 68.0 / 25.6,
        op_overhead_us=_JETSON_NANO.op_overhead_us / 2.5,
        default_dtype="float16",
        active_power_w=15.0,
        idle_power_w=3.0,
        gemm_half_channels=32.0,
        source="derived: Jetson Nano fit scaled by datasheet ratios (uncalibrated)",
    )
)

DEVICES.register(
    DeviceProfile(
        name="x86-server",
        description="2-socket x86 server, 2x 20 cores @ 2.5 GHz with AVX-512, PyTorch eager fp32",
        # Datasheet: 40 cores x 2.5 GHz x 32 FLOP/cycle = 3.2 TFLOP/s fp32; int8 VNNI 4x.
        peak_gflops={"float32": 3200.0, "int8": 12800.0},
        efficiency=_CPU_EFFICIENCY,
        mem_bandwidth_gbps=200.0,  # 12 channels DDR4-2933, about 70% achieved
        op_overhead_us=20.0,  # eager dispatch plus OpenMP fork/join on many cores
        default_dtype="float32",
        active_power_w=400.0,
        idle_power_w=150.0,
        gemm_half_channels=64.0,
        source="datasheet (uncalibrated)",
    )
)

DEVICES.register(
    DeviceProfile(
        name="a100",
        description="NVIDIA A100 40 GB SXM, PyTorch eager fp16 on tensor cores",
        # Datasheet: fp32 19.5 TFLOP/s, fp16 tensor 312 TFLOP/s, int8 624 TOPS.
        peak_gflops={"float32": 19500.0, "float16": 312000.0, "int8": 624000.0},
        efficiency=_GPU_EFFICIENCY,
        mem_bandwidth_gbps=1555.0,
        op_overhead_us=10.0,  # kernel launch from a fast host: eager PyTorch is launch-bound
        default_dtype="float16",
        active_power_w=400.0,
        idle_power_w=60.0,
        gemm_half_channels=32.0,
        source="datasheet (uncalibrated)",
    )
)

# ``host`` is measured on this machine when a command needs it (partitioner.pricing.host);
# the roofline numbers below only describe it for `edgecut devices`.
DEVICES.register(
    DeviceProfile(
        name="host",
        description="this machine, measured per node (warmed, median of repeats)",
        peak_gflops={"float32": 100.0, "int8": 400.0},
        efficiency=_CPU_EFFICIENCY,
        mem_bandwidth_gbps=10.0,
        op_overhead_us=10.0,
        default_dtype="float32",
        active_power_w=65.0,
        idle_power_w=15.0,
        gemm_half_channels=64.0,
        source="measured on this host",
        # Fitted by benchmarks/segment_correction.py (1 thread, thread CPU time; zoo CNNs at
        # 224x224, 6 cuts each): an exported half runs its ops one by one like the
        # interpreter that timed them (eager kernels, nothing fused), so the sum of its
        # nodes is right within the measurement's noise (mean 5% on resnet18 and
        # googlenet's halves); calling a loaded half costs 0.05 ms more, which an identity
        # head (cloud-only) is all of. A fitted factor (1.03-1.04) did worse on held-out
        # models than the factor 1.
        segment=SegmentCorrection(factor=1.0, overhead_ms=0.050),
    )
)
