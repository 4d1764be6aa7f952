"""Run-to-run spread of a host profile: the same measurement in three fresh processes.

    python benchmarks/host_spread.py [--model resnet18] [--threads 1] [--runs 3]

Runs ``edgecut profile --model M --device host --threads N --json`` ``--runs`` times, one
process after the other (each pays its own start-up, capture and warm-up, as a user's runs
do), and prints each run's whole-model figure (``total_ms``: the median of the timed whole
forwards), its quartiles, and the sum of the per-node medians (what a plan adds up), then
the spread across runs: (max - min) / min. The goal (issue 12): within 10% at 1 thread.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

GOAL = 0.10  # runs agree within 10%


def profile_once(model: str, threads: int) -> dict:
    command = [
        sys.executable, "-m", "edgecut.cli", "profile", "--model", model, "--device", "host",
        "--threads", str(threads), "--json",
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(done.stdout)


def spread(values: list[float]) -> float:
    return (max(values) - min(values)) / min(values)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet18")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    print(
        f"edgecut profile --model {args.model} --device host --threads {args.threads}, "
        f"{args.runs} runs"
    )
    print(f"{'run':>4}{'total_ms':>10}{'q1':>9}{'q3':>9}{'blocks':>8}{'sum of layers':>15}")
    totals, sums = [], []
    for run in range(1, args.runs + 1):
        data = profile_once(args.model, args.threads)
        t = data["total_spread"]
        totals.append(data["total_ms"])
        sums.append(data["sum_of_layers_ms"])
        print(
            f"{run:>4}{data['total_ms']:>10.2f}{t['q1_ms']:>9.2f}{t['q3_ms']:>9.2f}"
            f"{t['samples']:>8}{data['sum_of_layers_ms']:>15.2f}"
        )
    for label, values in (("whole model (total_ms)", totals), ("sum of layers", sums)):
        s = spread(values)
        verdict = "within" if s <= GOAL else "NOT within"
        print(
            f"{label}: {min(values):.2f}..{max(values):.2f} ms, spread (max-min)/min "
            f"{s * 100:.1f}% ({verdict} {GOAL * 100:.0f}%)"
        )


if __name__ == "__main__":
    main()
