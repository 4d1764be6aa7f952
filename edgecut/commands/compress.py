"""``edgecut compress``: make the edge head of a plan smaller, and measure what it cost."""

from __future__ import annotations

import argparse
from typing import Any

from edgecut.args import (
    PLAN_FILE,
    add_model_args,
    input_dir,
    input_file,
    non_negative_float,
    output_dir,
    threads,
)

# For --help only: the registry imports torch, which --help must not wait for; errors
# list the registry's own names.
METHODS = "int8|prune|lowrank|distill|nas|mixed"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "compress",
        help="make the edge head of a plan smaller; measure the accuracy it costs",
    )
    add_model_args(p)
    p.add_argument(
        "--plan", type=PLAN_FILE, metavar="JSON", help="a plan from `edgecut plan --out`: the cut"
    )
    p.add_argument("--cut-after", metavar="NODE", help="compress the head ending at NODE instead")
    p.add_argument(
        "--method",
        help=f"{METHODS} (default: the config's method, else the one `plan --compress` chose)",
    )
    p.add_argument(
        "--config",
        type=input_file("a YAML compression config file"),
        metavar="YAML",
        help="method settings, seed, data, codec (docs/compression.md)",
    )
    p.add_argument(
        "--codec",
        help="feature codec for the crossing tensors, e.g. int8+zstd (default: config, else plan)",
    )
    p.add_argument(
        "--accuracy-budget",
        type=non_negative_float,
        metavar="PTS",
        help="nas: keep the fastest searched head losing at most PTS points of validation "
        "accuracy (default: the config's nas.accuracy_budget, 1)",
    )
    p.add_argument(
        "--baseline",
        type=input_dir("a split artifact directory"),
        metavar="DIR",
        help="the deployed `edgecut split` of this plan: its tail.pt2 is reused byte for byte",
    )
    p.add_argument(
        "--out",
        required=True,
        type=output_dir("the split artifact"),
        metavar="DIR",
        help="where to write the split artifact",
    )
    p.add_argument(
        "--threads", type=threads, help="torch threads for training and timing (default: all)"
    )
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from edgecut import api
    from edgecut.output import Progress, print_json

    config = args.config if args.accuracy_budget is None else _nas_budget(args)
    with Progress(prefix="edgecut compress") as progress:
        result = api.compress(
            args.model,
            args.out,
            plan=args.plan,
            cut_after=args.cut_after,
            method=args.method,
            config=config,
            codec=args.codec,
            baseline=args.baseline,
            threads=args.threads,
            input_shape=args.input_shape,
            progress=progress,
        )
    if args.json:
        print_json(result.to_json())
    else:
        _print_report(result.to_json())
    return 0


def _nas_budget(args: argparse.Namespace) -> Any:
    """The config with --accuracy-budget as nas's budget; an error for any other method."""
    from dataclasses import replace

    from partitioner.compress import CompressConfig, load_config, method_config
    from partitioner.errors import EdgecutError

    config = load_config(args.config) if args.config else CompressConfig()
    method = args.method or config.method
    if method != "nas":
        raise EdgecutError(
            f"--accuracy-budget applies to --method nas (its search); got --method {method}"
        )
    nas = replace(method_config(config, "nas"), accuracy_budget=args.accuracy_budget)
    return replace(config, sections={**config.sections, "nas": nas})


def _print_report(r: dict[str, Any]) -> None:
    from edgecut.output import console, human_bytes, table

    def ratio(before: float, after: float) -> str:
        return f"{before / after:.2f}x smaller" if after else "-"

    rows = [
        [
            "accuracy (test, %)",
            r["accuracy_before"],
            r["accuracy_after"],
            f"{r['accuracy_after'] - r['accuracy_before']:+.2f} points",
        ],
        [
            "head tensors",
            human_bytes(r["head_param_bytes_before"]),
            human_bytes(r["head_param_bytes_after"]),
            ratio(r["head_param_bytes_before"], r["head_param_bytes_after"]),
        ],
        [
            "head FLOPs",
            r["head_flops_before"],
            r["head_flops_after"],
            ratio(r["head_flops_before"], r["head_flops_after"]),
        ],
        [
            "head ms (this host)",
            r["head_ms_before"],
            r["head_ms_after"],
            f"{r['head_ms_before'] / r['head_ms_after']:.2f}x faster"
            if r["head_ms_after"]
            else "-",
        ],
        [
            f"bytes at the cut ({r['codec']})",
            human_bytes(r["cut_bytes_before"]),
            human_bytes(r["cut_bytes_after"]),
            ratio(r["cut_bytes_before"], r["cut_bytes_after"]),
        ],
    ]
    out = console()
    out.print(
        table(
            f"{r['method']} on the head cut at {', '.join(r['cut'])} "
            f"({r['data']['name']} data, {r['data']['test']} test samples)",
            ["", "before", "after", "change"],
            rows,
            right={1, 2, 3},
        )
    )
    out.print(
        f"Wrote {r['out']} (head runtime: {r['runtime']}; tail unchanged: {r['tail_unchanged']})"
    )
    for path in r.get("files", []):
        out.print(f"Wrote {path}")
