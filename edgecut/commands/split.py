"""``edgecut split``: turn a plan into head.pt2, tail.pt2 and manifest.json."""

from __future__ import annotations

import argparse

from edgecut.args import PLAN_FILE, add_plan_args, output_dir


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("split", help="export the head and tail of a plan as a split artifact")
    add_plan_args(p)
    p.add_argument(
        "--plan",
        type=PLAN_FILE,
        metavar="JSON",
        help="a plan from `edgecut plan --out` (else plan now)",
    )
    p.add_argument("--cut-after", metavar="NODE", help="split after NODE instead of solving")
    p.add_argument(
        "--out",
        required=True,
        type=output_dir("the split artifact"),
        metavar="DIR",
        help="directory to write the artifact to",
    )
    p.add_argument("--json", action="store_true", help="print the manifest as JSON")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from edgecut import api
    from edgecut.args import make_planner
    from edgecut.output import console, human_bytes, print_json

    plan = api.load_plan(args.plan) if args.plan else None  # cheap: before the capture
    result = api.split(
        make_planner(args),
        args.out,
        plan=plan,
        cut_after=args.cut_after,
        objective=args.objective,
        solver=args.solver,
        model_spec=args.model,
    )
    out, manifest = result.path, result.manifest
    if args.json:
        print_json(manifest)
        return 0
    files = ", ".join(
        f"{name} ({human_bytes(meta['bytes'])})" for name, meta in manifest["files"].items()
    )
    cut = ", ".join(t["name"] for t in manifest["crossing"]) or "nothing (edge-only)"
    console().print(f"Wrote {out}: {files}; crossing: {cut}")
    return 0
