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


def policy_overrides(text: str | None, scenario: Any) -> list[tuple[str | None, Any]]:
    """(label, scenario) to run: one per ``--policy`` entry, or the scenario itself."""
    from dataclasses import replace

    from partitioner.errors import EdgecutError
    from simulator.fields import FieldError
    from simulator.policies import PolicyConfig

    if not text:
        return [(None, scenario)]
    out: list[tuple[str | None, Any]] = []
    for item in [t.strip() for t in text.split(",") if t.strip()]:
        name, _, node = item.partition(":")
        base = scenario.policy if scenario.policy.name == name else PolicyConfig(name="edge-only")
        try:
            policy = replace(base, name=name, cut_after=node or None)
        except FieldError as exc:
            raise EdgecutError(f"--policy {item}: {exc}") from None
        fleet = tuple(replace(g, policy=None) for g in scenario.fleet)
        out.append((item, replace(scenario, policy=policy, fleet=fleet)))
    return out


def run(args: argparse.Namespace) -> int:
    from dataclasses import replace
    from pathlib import Path

    from edgecut.output import print_json, progress_bar
    from partitioner.errors import EdgecutError
    from simulator.fields import FieldError
    from simulator.fleet import compile_scenario
    from simulator.scenario import load_scenario

    if args.address and args.no_ray:
        raise EdgecutError("--address and --no-ray exclude each other")
    scenario = load_scenario(args.scenario)
    try:
        if args.seed is not None:
            scenario = replace(scenario, seed=args.seed)
        if args.duration_s is not None:
            scenario = replace(scenario, duration_s=args.duration_s)
    except FieldError as exc:
        raise EdgecutError(f"--{exc.field_name.replace('_', '-')}: {exc.message}") from None
    labels, variants = zip(*policy_overrides(args.policy, scenario), strict=True)
    models: dict = {}
    plans = [compile_scenario(v, models=models) for v in variants]  # all checked before any run

    results = []
    for variant, plan in zip(variants, plans, strict=True):
        bar, on_window = progress_bar(
            not (args.quiet or args.json), variant.policy.name, "windows", len(plan.windows)
        )
        with bar:
            if args.no_ray:
                from simulator.engine import simulate

                result = simulate(plan, shards=args.shards or 1, on_window=on_window)
            else:
                from simulator import ray_transport

                result = ray_transport.simulate(
                    plan, shards=args.shards, address=args.address, on_window=on_window
                )
        results.append(result)

    if args.out:
        _write(results, labels, Path(args.out))
    summaries = [r.to_json() for r in results]
    if args.json:
        if len(summaries) == 1:
            print_json(summaries[0])
        else:
            print_json({"policies": dict(zip(labels, summaries, strict=True))})
    else:
        for label, summary in zip(labels, summaries, strict=True):
            print_summary(summary, label)
        if len(summaries) > 1:
            print_comparison(dict(zip(labels, summaries, strict=True)))
    return 0


def _write(results: list[Any], labels: tuple[str | None, ...], out: Any) -> None:
    if len(results) == 1:
        results[0].write(out)
        return
    from simulator.plots import plot_latency_cdf

    for label, result in zip(labels, results, strict=True):
        result.write(out / str(label).replace(":", "_"), plots=True)
    plot_latency_cdf(
        {str(label): r.all_samples() for label, r in zip(labels, results, strict=True)},
        out / "latency_cdf.png",
        deadline_ms=results[0].plan.scenario.deadline_ms,
    )


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
