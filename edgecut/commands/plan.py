"""``edgecut plan``: the best cut of a model for a device pair and a network."""

from __future__ import annotations

import argparse

from edgecut.args import (
    add_host_threads_arg,
    add_plan_args,
    bandwidth_range,
    input_file,
    non_negative_float,
    output_file,
)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("plan", help="find the best edge/cloud split")
    add_plan_args(p)
    add_host_threads_arg(p)
    p.add_argument(
        "--cut-after",
        metavar="NODE",
        help="evaluate the cut keeping NODE and its predecessors on the edge",
    )
    p.add_argument(
        "--sweep-bandwidth",
        type=bandwidth_range,
        metavar="LO:HI",
        help="print the breakpoint table: the best cut for every bandwidth in LO:HI Mbit/s",
    )
    p.add_argument(
        "--accuracy-budget",
        type=non_negative_float,
        metavar="PTS",
        help="search cut x head compression x feature codec for the fastest combination "
        "losing at most PTS points of measured accuracy (implies --compress auto)",
    )
    p.add_argument(
        "--compress",
        metavar="METHODS",
        help="with --accuracy-budget: auto (every method, and none) or a list such as int8,prune",
    )
    p.add_argument(
        "--config",
        type=input_file("a YAML compression config file"),
        metavar="YAML",
        help="compression settings for --compress (docs/compression.md)",
    )
    p.add_argument(
        "--plot",
        type=output_file("the plot", suffix=".png"),
        metavar="PNG",
        help="draw latency per cut and against bandwidth",
    )
    p.add_argument(
        "--out",
        type=output_file("the plan (JSON)"),
        metavar="JSON",
        help="also write the plan (JSON) to this file",
    )
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from edgecut import api
    from edgecut.args import make_planner
    from edgecut.output import print_json

    compressing = args.compress is not None or args.accuracy_budget is not None
    if compressing:
        if args.sweep_bandwidth:
            from partitioner.errors import EdgecutError

            raise EdgecutError("--accuracy-budget searches the cut itself; drop --sweep-bandwidth")
        api.compress_methods(args.accuracy_budget, args.compress, args.cut_after, args.objective)
    planner = make_planner(args)
    if compressing:
        from edgecut.output import Progress

        with Progress(prefix="edgecut plan") as progress:
            result = api.plan(
                planner,
                accuracy_budget=args.accuracy_budget,
                compress=args.compress,
                compress_config=args.config,
                progress=progress,
            )
        _write_out(args, result)
        if args.json:
            print_json(result.to_json())
        else:
            _print_search(planner, result.search)
        return 0
    if args.sweep_bandwidth:
        lo, hi = args.sweep_bandwidth
        table = api.breakpoints(planner, lo, hi, objective=args.objective, solver=args.solver)
        if args.plot:
            _plot(planner, args, table.table)
        if args.json:
            print_json(table.to_json())
        else:
            _print_table(planner, table.table)
        return 0
    result = api.plan(
        planner, objective=args.objective, solver=args.solver, cut_after=args.cut_after
    )
    _write_out(args, result)
    if args.plot:
        result.plot(args.plot)
    if args.json:
        print_json(result.to_json())
    else:
        print_plan(planner, result.plan)
    return 0


def _write_out(args: argparse.Namespace, result) -> None:
    if args.out:
        result.write(args.out)  # atomically: a reader never sees half a plan


def _print_search(planner, result) -> None:
    from edgecut.output import console, table

    plan = result.plan
    c = plan.extra["compression"]
    p = plan.predicted
    out = console()
    out.print(
        f"[bold]{plan.model}[/]  {plan.edge_device} -> {plan.network} {plan.bandwidth_mbps:g} "
        f"Mbit/s -> {plan.cloud_device}: cut {c['cut']}, head {result.method}, codec "
        f"{result.codec} ({c['candidates']} combinations priced, {len(c['trials'])} measured, "
        f"{plan.solve_ms / 1e3:.1f} s)"
    )
    out.print(
        table(
            "Predicted per frame",
            ["edge ms", "serialise ms", "transfer ms", "RTT ms", "cloud ms", "total ms"],
            [[p.edge_ms, p.serialize_ms, p.transfer_ms, p.rtt_ms, p.cloud_ms, p.total_ms]],
            right=set(range(6)),
        )
    )
    out.print(
        f"Measured accuracy ({c['data']['name']}, {c['data']['test']} test samples): "
        f"{result.accuracy_before:.2f}% -> {result.accuracy_after:.2f}% "
        f"(validation {result.val_accuracy_before:.2f}% -> {result.val_accuracy_after:.2f}%, "
        f"budget {result.accuracy_budget:g} points); uncompressed edge-only "
        f"{plan.edge_only_ms:.2f} ms, cloud-only {plan.cloud_only_ms:.2f} ms"
    )
    if c.get("reason"):
        out.print(f"Why: {c['reason']}")


def _plot(planner, args, table, plan=None) -> None:
    from partitioner.solve.plot import plot_plan

    plan = plan or planner.plan(objective="latency", solver=args.solver)
    plot_plan(planner.cost, plan, table, args.plot)


def print_plan(planner, plan) -> None:
    from edgecut.output import console, human_bytes, table

    out = console()
    cost = planner.cost
    net = cost.network
    out.print(
        f"[bold]{plan.model}[/]  {cost.edge.name} ({cost.edge_dtype}) -> {net.name} "
        f"{plan.bandwidth_mbps:g} Mbit/s, RTT {net.rtt_ms:g} ms -> {cost.cloud.name}  "
        f"objective {plan.objective}, solver {plan.solver} ({plan.solve_ms:.2f} ms), codec {plan.codec}"
    )
    n_edge = len(plan.edge_nodes) - len(planner.graph.inputs)
    n_ops = len(planner.graph) - len(planner.graph.inputs)
    where = (
        "edge-only"
        if plan.is_edge_only
        else "cloud-only"
        if n_edge == 0
        else f"{n_edge} of {n_ops} ops on the edge, cut after {plan.edge_nodes[-1]}"
    )
    out.print(f"Plan: {where}")
    _warn_unpriced(planner)
    if plan.cut:
        out.print(
            table(
                "Tensors crossing the cut",
                ["name", "shape", "dtype", "bytes"],
                [
                    [t.name, "x".join(map(str, t.shape)), t.dtype, human_bytes(t.bytes)]
                    for t in plan.cut
                ],
                right={3},
            )
        )
    rows = []
    for label, cut in (
        ("this plan", frozenset(plan.edge_nodes)),
        ("edge-only", cost.edge_only()),
        ("cloud-only", cost.cloud_only()),
    ):
        p = cost.predict(cut, plan.bandwidth_mbps)
        rows.append(
            [
                label,
                p.edge_ms,
                p.serialize_ms,
                p.transfer_ms,
                p.rtt_ms,
                p.cloud_ms,
                p.total_ms,
                p.edge_energy_mj,
                p.frame_period_ms,
            ]
        )
    out.print(
        table(
            "Predicted per frame",
            [
                "cut",
                "edge ms",
                "serialise ms",
                "transfer ms",
                "RTT ms",
                "cloud ms",
                "total ms",
                "edge mJ",
                "ms/frame pipelined",
            ],
            rows,
            right=set(range(1, 9)),
        )
    )


def _warn_unpriced(planner) -> None:
    from edgecut.output import console
    from partitioner.model.ops import unpriced_warning

    warning = unpriced_warning(planner.graph)
    if warning:
        console().print(f"[yellow]{warning}[/]")


def _print_table(planner, table_) -> None:
    from edgecut.output import console, human_bytes, table

    graph = planner.graph
    rows = []
    for e in table_.entries:
        order = [n.name for n in graph.nodes if n.name in e.edge_nodes]
        n_ops = len(order) - len(graph.inputs)
        where = (
            "edge-only"
            if len(order) == len(graph)
            else "cloud-only"
            if n_ops == 0
            else f"after {order[-1]} ({n_ops} ops)"
        )
        crossing = graph.crossing(e.edge_nodes)
        rows.append(
            [
                f"{e.min_mbps:.3g}",
                f"{e.max_mbps:.3g}",
                where,
                human_bytes(sum(n.out_bytes for n in crossing)),
                e.value(e.min_mbps),
                e.value(e.max_mbps),
            ]
        )
    # What the table minimised, per frame: latency in ms, edge energy in mJ.
    unit = {"latency": "ms", "energy": "mJ"}.get(table_.objective, "value")
    console().print(
        table(
            f"{graph.model}: best cut by bandwidth ({table_.objective}; "
            f"{planner.cost.edge.name} -> {planner.cost.cloud.name})",
            ["from Mbit/s", "to Mbit/s", "cut", "crossing", f"{unit} at from", f"{unit} at to"],
            rows,
            right={0, 1, 3, 4, 5},
        )
    )
    _warn_unpriced(planner)
