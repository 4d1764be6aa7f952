"""``edgecut compress``: make the edge head of a plan smaller, and measure what it cost."""

from __future__ import annotations

import argparse
from typing import Any

from edgecut.args import (
    PLAN_FILE,
    add_model_args,
    input_dir,
    input_file,
    output_dir,
    read_plan_json,
    threads,
)

# For --help only: the registry imports torch, which --help must not wait for; errors
# list the registry's own names.
METHODS = "int8|prune|lowrank|distill|mixed"


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
    import warnings

    import torch

    from edgecut.output import print_json
    from partitioner.compress import METHODS as REGISTRY  # not to shadow --help's METHODS
    from partitioner.compress import CompressConfig, load_config
    from partitioner.compress.compressor import compress
    from partitioner.errors import EdgecutError
    from partitioner.planner import Planner
    from partitioner.solve.plan import Plan

    if bool(args.plan) == bool(args.cut_after):
        raise EdgecutError(
            "expected exactly one of --plan plan.json (from `edgecut plan --out`) or "
            f"--cut-after NODE; got {'both' if args.plan else 'neither'}"
        )
    config = load_config(args.config) if args.config else CompressConfig()
    plan_data = read_plan_json(args.plan) if args.plan else {}
    chosen = plan_data.get("compression") or {}
    method = args.method or config.method or chosen.get("method")
    if not method:
        raise EdgecutError(
            f"expected --method {'|'.join(REGISTRY.names())} (or method: in --config, or a plan from "
            "`edgecut plan --compress`); got none"
        )
    REGISTRY.get(method)
    codec = args.codec or config.codec or chosen.get("codec")
    config = CompressConfig(
        method=method,
        seed=config.seed,
        codec=codec,
        data=config.data,
        train_samples=config.train_samples,
        eval_samples=config.eval_samples,
        timing_repeats=config.timing_repeats,
        sections=config.sections,
    )
    if args.threads:
        torch.set_num_threads(args.threads)
    planner = Planner.create(args.model, input_shape=args.input_shape)
    plan = Plan.from_json(plan_data) if args.plan else planner.cut_after(args.cut_after)

    with warnings.catch_warnings(), ProgressBar() as progress:
        warnings.simplefilter("ignore", FutureWarning)
        report = compress(
            planner.captured,
            plan,
            config,
            args.out,
            model_spec=args.model,
            model=planner.loaded.module,
            baseline=args.baseline,
            progress=progress,
        )
    if args.json:
        print_json(report.to_json())
    else:
        _print_report(report.to_json())
    return 0


class ProgressBar:
    """A rich progress bar on stderr (stdout stays clean for --json), one row per task."""

    def __enter__(self) -> Any:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        self.bar = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=Console(stderr=True),
            transient=True,
        )
        self.bar.__enter__()
        tasks: dict[str, Any] = {}

        def update(task: str, done: int, total: int) -> None:
            if task not in tasks:
                tasks[task] = self.bar.add_task(task, total=total)
            self.bar.update(tasks[task], completed=done, total=total)

        return update

    def __exit__(self, *exc: object) -> None:
        self.bar.__exit__(None, None, None)


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
