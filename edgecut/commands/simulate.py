"""``edgecut simulate``: play a fleet scenario (YAML) on Ray, or in this process."""

from __future__ import annotations

import argparse
from typing import Any

from edgecut.args import SCENARIO_FILE, output_dir, positive_int


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("simulate", help="simulate a camera fleet scenario (YAML) on Ray")
    p.add_argument(
        "scenario",
        type=SCENARIO_FILE,
        metavar="SCENARIO.yaml",
        help="fleet scenario (see scenarios/)",
    )
    p.add_argument(
        "--address", help="Ray cluster to join (auto: the running one); default: a local Ray"
    )
    p.add_argument("--no-ray", action="store_true", help="run in this process, without Ray")
    p.add_argument(
        "--shards",
        type=positive_int,
        help="camera shards (default: one per Ray CPU; 1 without Ray)",
    )
    p.add_argument(
        "--policy",
        metavar="NAME[,NAME...]",
        help="override every group's policy (edge-only, cloud-only, planned, adaptive, "
        "fixed:NODE); several run one after another and are compared",
    )
    p.add_argument("--seed", type=int, help="override the scenario's seed")
    p.add_argument("--duration-s", type=float, help="override the scenario's duration")
    p.add_argument(
        "--out",
        type=output_dir("the simulation's results"),
        metavar="DIR",
        help="write summary.json, cameras.csv/.parquet and plots",
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
    with ExitStack() as bars:
        updates: dict[str, Any] = {}

        def on_window(policy: str, done: int, total: int) -> None:
            # A bar per policy, opened when its run starts (its total known).
            if policy not in updates:
                bars.close()
                bar, updates[policy] = progress_bar(
                    not (args.quiet or args.json), policy, "windows", total
                )
                bars.enter_context(bar)
            if updates[policy] is not None:
                updates[policy](done, total)

        result = api.simulate(
            args.scenario,
            policy=args.policy,
            seed=args.seed,
            duration_s=args.duration_s,
            ray=not args.no_ray,
            address=args.address,
            shards=args.shards,
            progress=on_window,
        )
    if args.out:
        result.write(args.out)
    summaries = result.summaries
    if args.json:
        print_json(result.to_json())
    else:
        for label, summary in summaries.items():
            print_summary(summary, label)
        if len(summaries) > 1:
            print_comparison(summaries)
    return 0


def print_summary(summary: dict[str, Any], label: str | None = None) -> None:
    from edgecut.output import console, table

    out = console()
    title = f"{summary['scenario']}" + (f" — policy {label}" if label else "")
    out.print(
        f"[bold]{title}[/]: {summary['cameras']:,} cameras, {summary['duration_s']:g} s, "
        f"deadline {summary['deadline_ms']:g} ms, seed {summary['seed']}; "
        f"{summary['frames']:,} frames in {summary['wall_s']:.2f} s "
        f"({summary['frames_per_s']:,.0f} frames/s, {summary['transport']}, "
        f"{summary['shards']} shards)"
    )
    rows = []
    for name, s in [("all", summary), *summary["groups"].items()]:
        lat = s["latency_ms"]
        cuts = s.get("cuts") or {}
        rows.append(
            [
                name,
                s["frames"],
                lat["p50"],
                lat["p95"],
                lat["p99"],
                lat["mean"],
                s["deadline_miss_rate"] * 100,
                s["dropped_frames"],
                s["throughput_fps"],
                s["uplink_bytes"] / 1e6,
                s["edge_energy_mj_per_frame"],
                ", ".join(f"{k} {v:.0%}" for k, v in cuts.items() if v > 0),
            ]
        )
    out.print(
        table(
            "Per-frame latency and costs",
            [
                "group",
                "frames",
                "p50 ms",
                "p95 ms",
                "p99 ms",
                "mean ms",
                "miss rate %",
                "dropped frames",
                "throughput fps",
                "uplink MB",
                "edge mJ/frame",
                "cuts",
            ],
            rows,
            right=set(range(1, 11)),
        )
    )
    if summary["sites"]:
        out.print(
            table(
                f"Cloud sites (utilisation {summary['cloud_utilization']:.1%} overall)",
                [
                    "site",
                    "servers",
                    "frames",
                    "utilisation %",
                    "mean queue frames",
                    "mean batch frames",
                ],
                [
                    [
                        name,
                        s["servers"],
                        s["frames"],
                        s["utilization"] * 100,
                        s["mean_queue"],
                        s["mean_batch"],
                    ]
                    for name, s in summary["sites"].items()
                ],
                right={1, 2, 3, 4, 5},
            )
        )


# (header, a run's value, which is best: min, max or None): one column per measure.
COMPARISON = (
    ("p50 ms", lambda s: s["latency_ms"]["p50"], min),
    ("p95 ms", lambda s: s["latency_ms"]["p95"], min),
    ("p99 ms", lambda s: s["latency_ms"]["p99"], min),
    ("mean ms", lambda s: s["latency_ms"]["mean"], min),
    ("miss rate %", lambda s: s["deadline_miss_rate"] * 100, min),
    ("throughput fps", lambda s: s["throughput_fps"], max),
    ("uplink MB", lambda s: s["uplink_bytes"] / 1e6, min),
    ("edge energy J", lambda s: s["edge_energy_j"], min),
    ("cloud busy %", lambda s: s["cloud_utilization"] * 100, None),
)


def print_comparison(summaries: dict[str | None, dict[str, Any]]) -> None:
    """One table, a row per policy; on a terminal the best of each column is bold."""
    from edgecut.output import console, fmt, table

    out = console()
    values = [[get(s) for _, get, _ in COMPARISON] for s in summaries.values()]
    best = []
    for j, (_, _, pick) in enumerate(COMPARISON):
        known = [row[j] for row in values if row[j] is not None]
        best.append(pick(known) if pick and known and out.is_terminal else None)
    rows = [
        [
            str(label),
            *(
                "-" if v is None else f"[bold]{fmt(v)}[/]" if v == b else fmt(v)
                for v, b in zip(row, best, strict=True)
            ),
        ]
        for label, row in zip(summaries, values, strict=True)
    ]
    first = next(iter(summaries.values()))
    out.print(
        table(
            f"Policies compared: {first['scenario']}, {first['cameras']:,} cameras, "
            f"{first['duration_s']:g} s, deadline {first['deadline_ms']:g} ms"
            + (" (bold: best)" if out.is_terminal else ""),
            ["policy", *(header for header, _, _ in COMPARISON)],
            rows,
            right=set(range(1, len(COMPARISON) + 1)),
        )
    )
