"""``edgecut repository build|show``: the model repository both nodes read.

``build`` sweeps the bandwidth range, writes one split artifact per distinct cut of the
breakpoint table (versions 1..k), the table itself, and the whole model for local fallback.
``show`` lists it after checking every version the way the nodes do.
"""

from __future__ import annotations

import argparse
from typing import Any

from edgecut.args import add_plan_args, bandwidth_range


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("repository", help="build or inspect a model repository for the nodes")
    actions = p.add_subparsers(dest="action", metavar="ACTION", parser_class=type(p))
    actions.required = True

    build = actions.add_parser(
        "build", help="write one split per cut of the breakpoint table, the table, a local model"
    )
    add_plan_args(build)
    build.add_argument(
        "--sweep-bandwidth",
        type=bandwidth_range,
        default=(0.5, 500.0),
        metavar="LO:HI",
        help="uplink range in Mbit/s the table covers (default 0.5:500)",
    )
    build.add_argument("--out", required=True, metavar="DIR", help="repository directory")
    build.add_argument("--name", help="model name in the repository (default: the model's)")
    build.add_argument(
        "--cut-after",
        action="append",
        default=[],
        metavar="NODE",
        help="also serve the cut after NODE as a version (repeatable)",
    )
    build.add_argument(
        "--cloud-only", action="store_true", help="also serve the whole model as a version"
    )
    build.add_argument(
        "--no-local", action="store_true", help="do not write the local (edge-only) model"
    )
    build.add_argument("--json", action="store_true", help="print model.json")
    build.set_defaults(run=run_build)

    show = actions.add_parser("show", help="list the models, cuts and bands of a repository")
    show.add_argument("--repository", required=True, metavar="DIR")
    show.add_argument("--json", action="store_true")
    show.set_defaults(run=run_show)


def run_build(args: argparse.Namespace) -> int:
    from edgecut.args import make_planner
    from edgecut.output import print_json
    from partitioner.publish import build_repository

    planner = make_planner(args)
    lo, hi = args.sweep_bandwidth
    table = planner.sweep(lo, hi, objective=args.objective, solver=args.solver)
    plans = [planner.cut_after(node, objective=args.objective) for node in args.cut_after]
    if args.cloud_only:
        plans.append(planner.cut_after(planner.graph.inputs[0], objective=args.objective))
    model = build_repository(
        planner,
        args.out,
        table=table,
        plans=plans,
        name=args.name,
        model_spec=args.model,
        default_bandwidth_mbps=planner.cost.network.uplink_mbps,
        with_local=not args.no_local,
    )
    if args.json:
        print_json(model.meta)
        return 0
    print_model(model)
    return 0


def _describe(meta: dict[str, Any], version: str | None) -> str:
    if version is None:
        return "edge-only (local)"
    info = meta.get("versions", {}).get(version, {})
    if info.get("cloud_only"):
        return "cloud-only"
    return ", ".join(info.get("crossing", [])) or "?"


def print_model(model: Any) -> None:
    from edgecut.output import console, fmt, table

    meta = model.meta
    rows = [
        [
            f"{b.min_mbps:g}",
            f"{b.max_mbps:g}",
            b.version or "-",
            _describe(meta, b.version),
            b.total_ms_at_min,
            b.total_ms_at_max,
        ]
        for b in model.bands
    ]
    out = console()
    out.print(
        table(
            f"{model.name} in {model.path.parent}: versions {', '.join(model.versions) or 'none'}"
            f" (default {model.default_version or '-'}), codec {model.codec}, local model: "
            f"{'yes' if model.local else 'no'}",
            ["from Mbit/s", "to Mbit/s", "version", "crossing", "ms at from", "ms at to"],
            rows,
            right={0, 1, 4, 5},
        )
    )
    extra = [v for v in model.versions if all(b.version != v for b in model.bands)]
    for version in extra:
        out.print(f"version {version} (not in the table): crossing {_describe(meta, version)}")
    if not rows and not extra:
        out.print(fmt("(no breakpoint table)"))


def _checked_models(repository: str) -> tuple[dict[str, Any], dict[Any, dict[str, Any]]]:
    """The repository's models and the manifest of each artifact directory (versions and local
    models), every one checked as a node checks it before loading (manifest, files, archives).
    Any failure is one error line."""
    from partitioner.deploy.artifact import check_split
    from partitioner.deploy.repository import RepositoryError, scan_repository

    models = scan_repository(repository)
    if not models:
        raise RepositoryError(
            f"repository {repository} holds no model: expected <model>/<version>/"
            "manifest.json directories (see `edgecut repository build`)"
        )
    manifests = {d: check_split(d) for m in models.values() for d in _artifact_dirs(m)}
    return models, manifests


def _artifact_dirs(model: Any) -> list[Any]:
    dirs = [model.version_dir(v) for v in model.versions]
    return dirs + ([model.local] if model.local is not None else [])


def run_show(args: argparse.Namespace) -> int:
    from edgecut.output import print_json

    models, _ = _checked_models(args.repository)
    if args.json:
        print_json(
            {
                "models": [
                    {
                        "name": m.name,
                        "versions": list(m.versions),
                        "default_version": m.default_version,
                        "local": m.local is not None,
                        "codec": m.codec,
                        "breakpoints": [b.to_json() for b in m.bands],
                    }
                    for m in models.values()
                ]
            }
        )
        return 0
    for model in models.values():
        print_model(model)
    return 0
