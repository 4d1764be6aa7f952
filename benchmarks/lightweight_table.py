"""The survey table: size, work, predicted and measured latency, and published accuracy.

    python benchmarks/lightweight_table.py [--repeats N] [model ...]

For every ImageNet network of the zoo at 224x224, batch 1: parameters; the
multiply-accumulates of its conv and linear layers (what papers call FLOPs) and the
graph's own FLOPs (two per MAC plus norms, activations and pooling, per
partitioner.model.ops); the cost model's predicted time on ``rpi4`` (fp32, 4 threads)
and ``jetson-nano`` (fp16); the time measured on this machine with torch on one
thread (a whole forward of the captured module, median of ``--repeats``); and the
published top-1 accuracy, quoted with its source (nothing is trained or evaluated).
"""

from __future__ import annotations

import argparse
import os

import torch

import partitioner.model.zoo as zoo
from partitioner.model.capture import capture
from partitioner.model.zoo.published import PUBLISHED, conv_linear_macs
from partitioner.pricing.host import measure_host
from partitioner.pricing.profiles import DEVICES

HOST_THREADS = 1
PREDICTED_DEVICES = ("rpi4", "jetson-nano")
CLASSIC = ("alexnet", "vgg16", "resnet18", "resnet34", "resnet50", "mobilenet_v2", "googlenet")
LIGHTWEIGHT = (
    "squeezenet1_1",
    "shufflenet_v2",
    "mobilenet_v3_small",
    "mobilenet_v3_large",
    "ghostnet",
    "efficientnet_b0",
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*", default=[*CLASSIC, *LIGHTWEIGHT])
    parser.add_argument("--repeats", type=int, default=5, help="timed forwards per model on host")
    args = parser.parse_args()

    torch.set_num_threads(HOST_THREADS)
    load_1min = os.getloadavg()[0]
    print(
        f"torch {torch.__version__}, host measured with torch.set_num_threads({HOST_THREADS}), "
        f"median of {args.repeats} forwards after 3 warm-up; load average at start {load_1min:.1f}"
    )
    for device in PREDICTED_DEVICES:
        profile = DEVICES.get(device)
        print(f"{device}: {profile.description} ({profile.source})")
    header = (
        f"{'model':<20}{'params M':>9}{'MACs G':>8}{'graph GFLOP':>12}"
        + "".join(f"{d + ' ms':>15}" for d in PREDICTED_DEVICES)
        + f"{'host ms':>9}{'top-1 %':>9}  source"
    )
    print(header)
    print("-" * len(header))
    sources: list[str] = []
    for name in args.models:
        entry = zoo.MODELS.get(name)
        model = zoo.create_model(name)
        x = torch.randn(entry.input_shape, generator=torch.Generator().manual_seed(0))
        cap = capture(model, x, name=name)
        params = sum(p.numel() for p in model.parameters())
        predicted = [DEVICES.get(d).graph_ms(cap.graph) for d in PREDICTED_DEVICES]
        host = measure_host(cap, repeats=args.repeats, example=x)
        published = PUBLISHED[name]
        if published.top1_source not in sources:
            sources.append(published.top1_source)
        note = sources.index(published.top1_source) + 1
        print(
            f"{name:<20}{params / 1e6:>9.2f}{conv_linear_macs(cap.graph) / 1e9:>8.3f}"
            f"{cap.graph.total_flops() / 1e9:>12.3f}"
            + "".join(f"{ms:>15.1f}" for ms in predicted)
            + f"{host.total_ms:>9.1f}{published.top1_percent:>9.1f}  [{note}]",
            flush=True,
        )
    print("\ntop-1 sources (quoted, not measured: there is no ImageNet here):")
    for i, source in enumerate(sources, 1):
        print(f"  [{i}] {source}")


if __name__ == "__main__":
    main()
