"""``edgecut demo``: plan a zoo model on every network preset, split it, check the halves."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="plan, split and check a zoo model end to end")
    p.add_argument("--model", default="resnet18", help="zoo model (default resnet18)")
    p.add_argument("--edge", default="rpi4", help="edge preset (default rpi4)")
    p.add_argument("--cloud", default="x86-server", help="cloud preset (default x86-server)")
    p.add_argument("--out", help="keep the split artifact in this directory")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import tempfile

    import torch

    from edgecut.commands.plan import print_plan
    from edgecut.output import console, table
    from partitioner.artifact import load_split
    from partitioner.network import NETWORKS
    from partitioner.planner import Planner

    out = console()
    planner = Planner.create(
        args.model, edge=args.edge, cloud=args.cloud, network="lte", codec="int8"
    )
    rows = []
    for net in NETWORKS.values():
        cost = planner.cost
        cost.network = net
        plan = planner.plan(bandwidth_mbps=net.uplink_mbps)
        n_ops = len(plan.edge_nodes) - len(planner.graph.inputs)
        where = (
            "edge-only"
            if plan.is_edge_only
            else "cloud-only"
            if n_ops == 0
            else f"after {plan.edge_nodes[-1]}"
        )
        rows.append(
            [
                net.name,
                net.uplink_mbps,
                net.rtt_ms,
                where,
                plan.predicted.total_ms,
                plan.edge_only_ms,
                plan.cloud_only_ms,
                min(plan.edge_only_ms, plan.cloud_only_ms) / plan.predicted.total_ms,
            ]
        )
    out.print(
        table(
            f"{planner.graph.model}: best split per network ({args.edge} -> {args.cloud}, "
            "int8 codec on the cut)",
            [
                "network",
                "Mbit/s",
                "RTT ms",
                "cut",
                "split ms",
                "edge-only ms",
                "cloud-only ms",
                "speed-up",
            ],
            rows,
            right={1, 2, 4, 5, 6, 7},
        )
    )
    planner.cost.network = NETWORKS["lte"]
    plan = planner.plan()
    print_plan(planner, plan)
    with tempfile.TemporaryDirectory() as tmp:
        target = args.out or tmp
        path = planner.split(plan, target)
        artifact = load_split(path)
        x = planner.loaded.example_input(batch=2, seed=1)
        ref = planner.reference_output(x)
        got = artifact.run(x)
        err = max(
            float((a - b).abs().max() / b.abs().max().clamp_min(1e-12))
            for a, b in zip(got, ref, strict=True)
        )
        files = ", ".join(artifact.manifest["files"])
        out.print(
            f"Split written to {path if args.out else '(a temporary directory)'}: {files}; "
            f"head then tail vs whole model: max relative error {err:.2e}"
        )
    return 0 if err < 1e-4 and torch.isfinite(torch.tensor(err)) else 1
