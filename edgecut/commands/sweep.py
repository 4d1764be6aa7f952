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
    from pathlib import Path

    from edgecut.output import print_json, progress_bar
    from partitioner.errors import EdgecutError
    from simulator.scenario import load_scenario
    from simulator.sweep import sweep

    if args.address and args.no_ray:
        raise EdgecutError("--address and --no-ray exclude each other")
    scenario = load_scenario(args.scenario)
    cuts: Any = args.cuts.strip()
    if cuts != "all":
        cuts = [c.strip() for c in cuts.split(",") if c.strip()]
        if not cuts:
            raise EdgecutError("--cuts expects all or a comma-separated list of cuts")
    bar, on_done = progress_bar(not (args.quiet or args.json), "sweep", "cells", None)

    def run_grid(plans: list[Any]) -> list[Any]:
        from simulator.sweep import run_cell

        if on_done:  # the total from the start, not "0/None"
            on_done(0, len(plans))
        with bar:
            if args.no_ray:
                out = []
                for i, plan in enumerate(plans):
                    out.append(run_cell(plan))
                    if on_done:
                        on_done(i + 1, len(plans))
                return out
            from simulator import ray_transport

            return ray_transport.map_plans(run_cell, plans, address=args.address, on_done=on_done)

    result = sweep(
        scenario,
        cuts=cuts,
        bandwidths_mbps=args.bandwidths,
        fleet_sizes=args.fleet_sizes,
        metric=args.metric,
        run=run_grid,
    )
    data = result.to_json()
    if args.out:
        import json

        from simulator.plots import plot_sweep

        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "sweep.json").write_text(json.dumps(data, indent=2) + "\n")
        plot_sweep(data["cells"], _metric_label(args.metric), out / "sweep.png", data["cuts"])
    if args.json:
        print_json(data)
    else:
        _print(data)
    return 0


def _metric_label(metric: str) -> str:
    return "deadline-miss rate" if metric == "miss-rate" else f"{metric} latency (ms)"


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
