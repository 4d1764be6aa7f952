"""``edgecut sweep``: simulate a scenario for every cut x bandwidth (x fleet size) and pick
the best cut of each condition, beside the planner's cut simulated in the same condition."""

from __future__ import annotations

import argparse
import math
from typing import Any

from edgecut.args import SCENARIO_FILE, output_dir

# Cameras in one simulated fleet: a hundred times scenarios/metro-100k.yaml, and arrays of
# this length per camera still fit in memory.
MAX_FLEET_SIZE = 10_000_000


def _floats(text: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers such as 1,5,20, got {text!r}") from None
    if not values or any(not 0 < v < math.inf for v in values):
        raise argparse.ArgumentTypeError(f"expected positive numbers, all finite, got {text!r}")
    return values


def _ints(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected integers such as 100,1000, got {text!r}"
        ) from None
    if not values or any(not 1 <= v <= MAX_FLEET_SIZE for v in values):
        raise argparse.ArgumentTypeError(
            f"expected integers in 1..{MAX_FLEET_SIZE:,}, got {text!r}"
        )
    return values


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sweep", help="simulate every cut x bandwidth and pick the best cut")
    p.add_argument(
        "scenario",
        type=SCENARIO_FILE,
        metavar="SCENARIO.yaml",
        help="fleet scenario (see scenarios/)",
    )
    p.add_argument(
        "--cuts",
        default="all",
        help="all (every layer boundary) or a comma-separated list of node names, "
        "edge-only, cloud-only (default all)",
    )
    p.add_argument(
        "--bandwidths",
        type=_floats,
        required=True,
        metavar="LIST",
        help="uplinks in Mbit/s, e.g. 1,5,20,100",
    )
    p.add_argument("--fleet-sizes", type=_ints, metavar="LIST", help="total cameras, e.g. 100,1000")
    p.add_argument(
        "--metric",
        default="mean",
        choices=["mean", "p50", "p95", "p99", "miss-rate"],
        help="what the best cut minimises: per-frame latency (mean or a percentile) or the "
        "deadline-miss rate (default mean)",
    )
    p.add_argument(
        "--address",
        help="Ray cluster to join (auto: the one `ray start` started here last); default: "
        "RAY_ADDRESS if set, else a new local Ray",
    )
    p.add_argument("--no-ray", action="store_true", help="run the grid in this process")
    p.add_argument(
        "--out",
        type=output_dir("sweep.json and sweep.png"),
        metavar="DIR",
        help="write sweep.json and sweep.png",
    )
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from contextlib import ExitStack

    from edgecut import api
    from edgecut.output import print_json, progress_bar
    from partitioner.errors import EdgecutError

    if args.address and args.no_ray:
        raise EdgecutError("--address and --no-ray exclude each other")
    bar, on_done = progress_bar(not (args.quiet or args.json), "sweep", "cells", None)
    with ExitStack() as shown:

        def on_cell(done: int, total: int) -> None:
            if on_done is None:
                return
            if done == 0:  # the grid is compiled: the bar starts with its total, not "0/None"
                shown.enter_context(bar)
            on_done(done, total)

        result = api.sweep(
            args.scenario,
            cuts=args.cuts,
            bandwidths_mbps=args.bandwidths,
            fleet_sizes=args.fleet_sizes,
            metric=args.metric,
            ray=not args.no_ray,
            address=args.address,
            progress=on_cell,
        )
    if args.out:
        result.write(args.out)
    if args.json:
        print_json(result.to_json())
    else:
        _print(result.to_json())
    return 0


def _metric_label(metric: str) -> str:
    from edgecut.api import metric_label

    return metric_label(metric)


def _metric_column(metric: str) -> str:
    """A table header for the metric, with its unit."""
    return "miss rate" if metric == "miss-rate" else f"{metric} ms"


def _print(data: dict[str, Any]) -> None:
    from edgecut.output import console, table

    rows = []
    for b in data["best"]:
        rows.append(
            [
                b["bandwidth_mbps"],
                b["cameras"],
                b["cut"],
                b["value"],
                b["planner_cut"],
                b["planner_value"],
                b["planner_predicted_ms"],
                "yes" if b["matches_planner"] else "no",
            ]
        )
    metric = _metric_column(data["metric"])
    console().print(
        table(
            f"{data['scenario']}: best of {len(data['cuts'])} cuts by {_metric_label(data['metric'])} "
            f"({len(data['cells'])} cells in {data['wall_s']:.1f} s)",
            [
                "Mbit/s",
                "cameras",
                "best cut",
                metric,
                "planner's cut",
                f"planner's {metric} (simulated)",
                "planner's ms (predicted, idle cloud)",
                "same",
            ],
            rows,
            right={0, 1, 3, 5, 6},
        )
    )
