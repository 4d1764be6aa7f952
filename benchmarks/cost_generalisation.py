"""Does the cost model predict kinds of network it never saw? Fit on CNNs, predict transformers.

    python benchmarks/cost_generalisation.py [--repeats 5] [--only hf_vit,lstm_classifier]

On this machine, with torch on 1 thread: the zoo's convolutional networks are captured at
224x224 and their whole forward measured (median of --repeats after warm-up); the ``host``
roofline's memory bandwidth is measured (a 256 MB copy) and its fp32 effective peak and
per-op overhead are fitted to those times (partitioner.pricing.calibration.fit_device, as
for the presets; --fit-bandwidth fits the bandwidth too); the op classes' relative
efficiencies stay the CPU presets' constants. A recurrent op's sequential steps are priced
with each cell kind's step cost and weight rate, measured on one-layer, one-feature cells
(partitioner.pricing.host.measure_loop_rates; the column "w/o loop terms" prices the op as
one node at the class efficiency instead), and a few single kernels' rates are printed
(3x3 against 1x1 convolutions, a linear layer, a max pool: the CNN fit's own misses). Then
the full-size transformer and
recurrent models of the corpus (tests/partitioner/model/test_corpus.py), which the fit
never saw, are captured, predicted and measured. Printed per model: predicted ms,
measured ms, error; and per op class, the predicted against the measured time (each
node timed in an FX interpreter, which adds a few µs per node), to say which term is off.
Goal: within ±25% (stretch ±15%).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
from collections import defaultdict
from dataclasses import replace
from pathlib import Path

import torch
from corpus import load_corpus  # benchmarks/corpus.py: the corpus the tests define
from torch.profiler import ProfilerActivity

import partitioner.model.zoo as zoo
from partitioner.model.capture import CapturedModel, capture
from partitioner.pricing.calibration import PublishedFigure, fit_device
from partitioner.pricing.host import (
    CLOCKS,
    clock_for,
    measure_host,
    measure_loop_rates,
    measure_memory_bandwidth_gbps,
)
from partitioner.pricing.profiles import DEVICES, DeviceProfile
from protos.allocator import keep_freed_memory

THREADS = 1
FIT_MODELS = ("alexnet", "resnet18", "resnet50", "mobilenet_v2", "googlenet")
HELD_OUT_CNNS = ("resnet34",)  # convolutional too, not fitted: the fit's own sanity check


def whole_forward_ms(cap: CapturedModel, x: torch.Tensor, repeats: int, warmup: int = 2) -> float:
    # The clock partitioner.pricing.host reads: at one thread, the thread's CPU time, which a
    # busy machine's wait for a core does not inflate (wall time did: under load the fit and
    # the per-node times disagreed by 2x).
    clock = CLOCKS[clock_for(THREADS)]
    with torch.inference_mode():
        for _ in range(warmup):
            start = clock()
            cap.module(x)
            once = clock() - start
        # A small model (a 4 ms LSTM) gets more repeats: at least 0.3 s of samples.
        repeats = max(repeats, min(100, int(0.3 / max(once, 1e-6))))
        times = []
        for _ in range(repeats):
            start = clock()
            cap.module(x)
            times.append((clock() - start) * 1e3)
    return statistics.median(times)


def kernels_run(cap: CapturedModel, x: torch.Tensor) -> str:
    """What one forward dispatches to, by ATen op (torch.profiler): a recurrent layer runs as
    one fused oneDNN kernel per layer (LSTM at fp32 on CPU) or as torch's own loop over the
    time steps, a GEMV and a dozen small elementwise kernels per step (GRU, RNN)."""
    with torch.inference_mode(), torch.profiler.profile(activities=[ProfilerActivity.CPU]) as p:
        cap.module(x)
    events = [e for e in p.key_averages() if e.key.startswith("aten::")]
    top = sorted(events, key=lambda e: -e.self_cpu_time_total)[:3]  # where the time goes
    calls = sum(e.count for e in events)
    return f"{calls} ATen calls, most time in " + ", ".join(f"{e.key} x{e.count}" for e in top)


def kernel_rates(repeats: int = 20) -> dict[str, float]:
    """GFLOP/s of single kernels at 1 thread: why one conv efficiency cannot fit every CNN.

    A 3x3 convolution (oneDNN's direct kernels) against a 1x1 convolution and a linear
    layer (GEMMs), and a max pool (1 FLOP per window element, as partitioner.model.ops
    counts it).
    """
    import torch.nn.functional as F

    gen = torch.Generator().manual_seed(0)
    probes = {}
    for channels, side in ((64, 56), (128, 28), (256, 14), (512, 7)):
        x = torch.randn(1, channels, side, side, generator=gen)
        w = torch.randn(channels, channels, 3, 3, generator=gen)
        flops = 2 * channels * channels * 9 * side * side
        probes[f"conv3x3 {channels}ch@{side}"] = (lambda x=x, w=w: F.conv2d(x, w, padding=1), flops)
    x, w = torch.randn(1, 256, 14, 14, generator=gen), torch.randn(1024, 256, 1, 1, generator=gen)
    probes["conv1x1 256->1024@14"] = (lambda: F.conv2d(x, w), 2 * 256 * 1024 * 14 * 14)
    a, b = torch.randn(197, 768, generator=gen), torch.randn(3072, 768, generator=gen)
    probes["linear 197x768->3072"] = (lambda: F.linear(a, b), 2 * 197 * 768 * 3072)
    p = torch.randn(1, 64, 112, 112, generator=gen)
    probes["maxpool3x3/2 64ch@112"] = (lambda: F.max_pool2d(p, 3, 2, 1), 64 * 56 * 56 * 9)
    clock = CLOCKS[clock_for(THREADS)]
    rates = {}
    with torch.inference_mode():
        for name, (run, flops) in probes.items():
            for _ in range(3):  # oneDNN builds its primitive on the first call
                run()
            times = []
            for _ in range(repeats):
                start = clock()
                run()
                times.append(clock() - start)
            rates[name] = flops / statistics.median(times) / 1e9
    return rates


def by_class(profile: DeviceProfile, cap: CapturedModel, measured: dict[str, float] | None):
    predicted: dict[str, float] = defaultdict(float)
    seen: dict[str, float] = defaultdict(float)
    for node in cap.graph.nodes:
        predicted[node.op_class] += profile.node_ms(node)
        if measured is not None:
            seen[node.op_class] += measured.get(node.name, 0.0)
    return predicted, seen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--only", help="comma list of corpus models (default: every one)")
    parser.add_argument(
        "--fit-bandwidth", action="store_true", help="fit the memory bandwidth, not measure it"
    )
    parser.add_argument("--out", type=Path, help="also write the figures to this JSON file")
    args = parser.parse_args()
    keep_freed_memory()  # steady-state forwards: no activation refaulted (protos/allocator.py)
    torch.set_num_threads(THREADS)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), fp32, batch 1")

    # -- fit on the zoo's CNNs
    graphs, figures, caps = {}, [], {}
    for name in (*FIT_MODELS, *HELD_OUT_CNNS):
        x = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(0))
        cap = capture(zoo.create_model(name), x, name=name)
        ms = whole_forward_ms(cap, x, args.repeats)
        caps[name], graphs[name] = (cap, x, ms), cap.graph
        role = "fit" if name in FIT_MODELS else "held-out"
        figures.append(PublishedFigure("host", "float32", name, ms, role, "measured here"))
        print(f"  measured {name:14s} {ms:9.1f} ms ({len(cap.graph)} nodes)", flush=True)
    base = DEVICES.get("host")
    if not args.fit_bandwidth:
        bandwidth = measure_memory_bandwidth_gbps(256)
        print(f"  measured memory bandwidth {bandwidth:.2f} GB/s (256 MB copy)")
        base = replace(base, mem_bandwidth_gbps=bandwidth)
    host = fit_device(
        base,
        "float32",
        [f for f in figures if f.role == "fit"],
        graphs,
        fit_bandwidth=args.fit_bandwidth,
    )
    print(
        f"host fit: fp32 effective peak {host.peak_gflops['float32']:.2f} GFLOP/s, "
        f"per-op overhead {host.op_overhead_us:.2f} µs, memory {host.mem_bandwidth_gbps:.2f} GB/s"
    )
    # The recurrent loop's terms: measured on one-layer cells with one input feature (the
    # machine's step cost and weight rate per kind), never on a corpus model.
    loops = measure_loop_rates(THREADS)
    for kind, rate in loops.items():
        print(f"  measured {kind} step: {rate.step_us:.2f} µs + weights at {rate.gbps:.1f} GB/s")
    rates = kernel_rates()
    print("  kernel rates (GFLOP/s): " + ", ".join(f"{k} {v:.1f}" for k, v in rates.items()))
    flat = host  # the roofline alone: a recurrent op is one op at the class efficiency
    host = replace(host, loops=loops)

    rows: list[tuple[str, str, float, float, float]] = []
    details = []
    for f in figures:
        predicted = host.graph_ms(graphs[f.model], "float32")
        rows.append(
            (f.model, f"zoo CNN ({f.role})", predicted, flat.graph_ms(graphs[f.model]), f.ms)
        )
        cap, x, _ = caps[f.model]
        nodes = measure_host(cap, repeats=max(2, args.repeats // 2), warmup=1, example=x)
        details.append((f.model, *by_class(host, cap, nodes.node_ms)))

    # -- predict the corpus's unseen kinds
    corpus = load_corpus()
    wanted = set(args.only.split(",")) if args.only else None
    for entry in corpus.CORPUS:
        if entry.kind == "convolutional" or (wanted and entry.name not in wanted):
            continue
        try:
            model, x = entry.build(True)
        except BaseException as exc:  # pytest.skip outside pytest: a missing package
            print(f"  {entry.name}: not built ({type(exc).__name__}: {exc})")
            continue
        cap = capture(model, x, name=entry.name)
        ms = whole_forward_ms(cap, x, args.repeats)
        predicted = host.graph_ms(cap.graph, "float32")
        without = flat.graph_ms(cap.graph, "float32")
        rows.append((entry.name, f"{entry.kind} ({entry.source})", predicted, without, ms))
        nodes = measure_host(cap, repeats=max(2, args.repeats // 2), warmup=1, example=x)
        details.append((entry.name, *by_class(host, cap, nodes.node_ms)))
        print(
            f"  {entry.name}: {cap.graph.total_flops() / 1e9:.2f} GFLOP, {len(cap.graph)} nodes, "
            f"predicted {predicted:.1f} ms, measured {ms:.1f} ms",
            flush=True,
        )
        if entry.kind == "recurrent":
            print(f"    runs {kernels_run(cap, x)}", flush=True)

    head = f"{'predicted ms':>13s} {'measured ms':>12s} {'error':>8s} {'w/o loop terms':>15s}"
    print(f"\n{'model':30s} {'kind':28s} {head}")
    for name, kind, predicted, without, measured in rows:
        err, flat_err = (predicted - measured) / measured, (without - measured) / measured
        cells = f"{predicted:13.1f} {measured:12.1f} {err:+8.1%} {flat_err:+15.1%}"
        print(f"{name:30s} {kind:28s} {cells}")
    print("\nper op class, predicted / measured in an interpreter (ms):")
    for name, predicted, seen in details:
        classes = sorted(predicted, key=lambda c: -max(predicted[c], seen[c]))
        cells = [
            f"{c} {predicted[c]:.1f}/{seen[c]:.1f}"
            for c in classes
            if max(predicted[c], seen[c]) >= 0.5
        ]
        print(f"  {name:30s} " + ", ".join(cells))
    if args.out:
        write_json(args.out, host, rows, rates)


def write_json(path: Path, host: DeviceProfile, rows: list, rates: dict[str, float]) -> None:
    """The run's fit, loop rates and per-model figures, for docs/figures and the README."""
    doc = {
        "command": "python benchmarks/cost_generalisation.py",
        "torch": torch.__version__,
        "threads": THREADS,
        "cpu": platform.processor() or platform.machine(),
        "load_average": os.getloadavg(),
        "fit": {
            "models": list(FIT_MODELS),
            "peak_gflops_fp32": host.peak_gflops["float32"],
            "op_overhead_us": host.op_overhead_us,
            "mem_bandwidth_gbps": host.mem_bandwidth_gbps,
        },
        "loop_rates": {k: {"step_us": r.step_us, "gbps": r.gbps} for k, r in host.loops.items()},
        "kernel_gflops": rates,
        "models": [
            {
                "model": name,
                "kind": kind,
                "predicted_ms": predicted,
                "predicted_without_loop_terms_ms": without,
                "measured_ms": measured,
                "error": (predicted - measured) / measured,
            }
            for name, kind, predicted, without, measured in rows
        ],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
