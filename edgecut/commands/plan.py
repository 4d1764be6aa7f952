"""``edgecut plan``: the best cut of a model for a device pair and a network."""

from __future__ import annotations

import argparse
from pathlib import Path

from edgecut.args import add_plan_args, bandwidth_range


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("plan", help="find the best edge/cloud split")
    add_plan_args(p)
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
    p.add_argument("--plot", metavar="PNG", help="draw latency per cut and against bandwidth")
    p.add_argument("--out", metavar="JSON", help="also write the plan (JSON) to this file")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from edgecut.args import make_planner
    from edgecut.output import print_json
    from partitioner.errors import EdgecutError

    if args.plot and not args.plot.lower().endswith(".png"):
        raise EdgecutError(f"--plot expects a .png path, got {args.plot!r}")
    planner = make_planner(args)
    if args.sweep_bandwidth:
        lo, hi = args.sweep_bandwidth
        table = planner.sweep(lo, hi, objective=args.objective, solver=args.solver)
        if args.plot:
            _plot(planner, args, table)
        if args.json:
            print_json({"model": planner.graph.model, **table.to_json()})
        else:
            _print_table(planner, table)
        return 0
    if args.cut_after:
        plan = planner.cut_after(args.cut_after, objective=args.objective)
    else:
        plan = planner.plan(objective=args.objective, solver=args.solver)
    if args.out:
        import json

        try:
            Path(args.out).write_text(json.dumps(plan.to_json(), indent=2) + "\n")
        except OSError as exc:
            raise EdgecutError(f"cannot write --out {args.out}: {exc.strerror}") from None
    if args.plot:
        bw = plan.bandwidth_mbps
        _plot(planner, args, planner.sweep(bw / 30, bw * 30, objective="latency"), plan)
    if args.json:
        print_json(plan.to_json())
    else:
        print_plan(planner, plan)
    return 0


def _plot(planner, args, table, plan=None) -> None:
    from partitioner.plot import plot_plan

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
    console().print(
        table(
            f"{graph.model}: best cut by bandwidth ({table_.objective}; "
            f"{planner.cost.edge.name} -> {planner.cost.cloud.name})",
            ["from Mbit/s", "to Mbit/s", "cut", "crossing", "at from", "at to"],
            rows,
            right={0, 1, 3, 4, 5},
        )
    )
