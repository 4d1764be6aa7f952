"""Every compression method on the resnet18 head at 224x224: head latency before and after.

    python benchmarks/compress.py [--cut layer2.1.relu2] [--threads 1] [--repeats 30]
                                  [--methods int8,prune,lowrank,distill,mixed]

Random weights (the zoo's seeded init) and synthetic inputs labelled by the model:
this measures speed, not accuracy (the tests measure accuracy on real digits).
Training is cut to one short epoch per method; the structure, hence the speed, is
what the full run would produce. Goals on this host: int8 >= 2x faster,
50%-pruned >= 1.5x faster. Times are medians of batch-1 forward passes of the head
as loaded from its split artifact (the int8 head lowered to oneDNN kernels).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

GOALS = {"int8": 2.0, "prune": 1.5}
TRAIN = {"epochs": 1, "batch_size": 16}
CONFIG = {
    "data": "synthetic",
    "train_samples": 64,
    "eval_samples": 32,
    "prune": {"ratio": 0.5, "train": TRAIN},
    "lowrank": {"train": TRAIN},
    "distill": {"train": TRAIN},
    "int8": {"calibration_samples": 32},
    "mixed": {
        "steps": [
            {"prune": {"ratio": 0.5, "train": {"epochs": 0}}},
            {"distill": {"student": "self", "train": TRAIN}},
            "int8",
        ]
    },
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet18")
    parser.add_argument("--cut", default="layer2.1.relu2", help="last node on the edge")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--methods", default="int8,prune,lowrank,distill,mixed")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from partitioner.compress import config_from_dict
    from partitioner.compress.compressor import compress
    from partitioner.planner import Planner

    planner = Planner.create(args.model, edge="rpi4", network="lte")
    plan = planner.cut_after(args.cut)
    print(
        f"{args.model} head up to {args.cut} ({len(plan.edge_nodes) - 1} ops), input "
        f"{list(planner.loaded.input_shape)}, {args.threads} thread(s), "
        f"median of {args.repeats} batch-1 passes"
    )
    header = (
        f"{'method':<9}{'ms before':>10}{'ms after':>10}{'speedup':>9}{'FLOPs':>8}"
        f"{'tensors':>9}{'goal':>12}  runtime"
    )
    print(header)
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.methods.split(","):
            config = config_from_dict(
                {**CONFIG, "method": name, "timing_repeats": args.repeats}, "benchmark"
            )
            start = time.perf_counter()
            report = compress(
                planner.captured,
                plan,
                config,
                Path(tmp) / name,
                model_spec=args.model,
                model=planner.loaded.module,
            )
            r = report.to_json()
            speedup = r["head_ms_before"] / r["head_ms_after"]
            goal = GOALS.get(name)
            verdict = (
                "" if goal is None else f"{goal:g}x " + ("met" if speedup >= goal else "MISSED")
            )
            print(
                f"{name:<9}{r['head_ms_before']:>10.2f}{r['head_ms_after']:>10.2f}"
                f"{speedup:>8.2f}x{r['head_flops_before'] / r['head_flops_after']:>7.2f}x"
                f"{r['head_param_bytes_before'] / r['head_param_bytes_after']:>8.2f}x"
                f"{verdict:>12}  {r['runtime']} ({time.perf_counter() - start:.0f} s)"
            )


if __name__ == "__main__":
    main()
