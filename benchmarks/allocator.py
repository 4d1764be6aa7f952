"""What glibc's default of returning freed memory costs a forward, and what keeping it saves.

    python benchmarks/allocator.py [--models mobilenet_v2,resnet18,googlenet] [--processes 3]

For each zoo model, fresh processes run it at 224x224 on 1 thread. Half call
protos.allocator.keep_freed_memory first, as the CLI does; half keep glibc's defaults. Each
process runs 3 warm-up forwards, then 20 timed ones. Printed per model and setting: the
median forward (thread CPU time), the kernel's share of it, and the minor page faults per
forward, each as min..max over the processes.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

PROBE = """
import json, resource, statistics, sys, time, torch
from protos.allocator import keep_freed_memory
if sys.argv[2] == "kept":
    assert keep_freed_memory()
torch.set_num_threads(1)
import partitioner.model.zoo as zoo
model, x = zoo.create_model(sys.argv[1]).eval(), torch.randn(1, 3, 224, 224)
with torch.inference_mode():
    for _ in range(3):
        model(x)
    usage, times = resource.getrusage(resource.RUSAGE_THREAD), []
    for _ in range(20):
        start = time.thread_time()
        model(x)
        times.append(time.thread_time() - start)
    end = resource.getrusage(resource.RUSAGE_THREAD)
print(json.dumps({
    "ms": statistics.median(times) * 1e3,
    "sys_share": (end.ru_stime - usage.ru_stime) / sum(times),
    "faults": (end.ru_minflt - usage.ru_minflt) / 20,
}))
"""


def probe(model: str, setting: str) -> dict[str, float]:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, model, setting],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def span(values: list[float], fmt: str) -> str:
    return f"{min(values):{fmt}}..{max(values):{fmt}}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--models", default="mobilenet_v2,resnet18,googlenet")
    parser.add_argument("--processes", type=int, default=3)
    args = parser.parse_args()
    print(f"{'model':14s} {'freed memory':13s} {'forward ms':>13s} {'kernel share':>13s} "
          f"{'faults/forward':>15s}")  # fmt: skip
    for model in args.models.split(","):
        for setting in ("returned", "kept"):
            runs = [probe(model, setting) for _ in range(args.processes)]
            ms = span([r["ms"] for r in runs], ".1f")
            share = span([100 * r["sys_share"] for r in runs], ".0f")
            faults = span([r["faults"] for r in runs], ".0f")
            print(f"{model:14s} {setting:13s} {ms:>13s} {share + ' %':>13s} {faults:>15s}")


if __name__ == "__main__":
    main()
