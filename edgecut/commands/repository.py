"""``edgecut repository build|show|keygen|sign|export``: the model repository both nodes read.

``build`` sweeps the bandwidth range, writes one split artifact per distinct cut of the
breakpoint table (versions 1..k), the table itself, and the whole model for local fallback.
``show`` lists it after checking every version the way the nodes do. ``keygen`` makes an
Ed25519 key pair and ``sign`` signs every version with it, for nodes started with
``--trust-key`` (``docs/contracts.md``, "Signatures"). ``export --format triton`` writes the
tails as a Triton model repository (``docs/triton.md``).
"""

from __future__ import annotations

import argparse
from typing import Any

from edgecut.args import (
    add_plan_args,
    bandwidth_range,
    input_dir,
    int_in_range,
    non_negative_float,
    output_dir,
    output_file,
)


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
    build.add_argument(
        "--out",
        required=True,
        type=output_dir("the model repository"),
        metavar="DIR",
        help="repository directory",
    )
    build.add_argument(
        "--name",
        help="model name in the repository (default: the zoo name, or FACTORY for "
        "--model file.py:FACTORY or pkg.module:FACTORY)",
    )
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

    keygen = actions.add_parser("keygen", help="make an Ed25519 key pair for signing versions")
    keygen.add_argument(
        "--out",
        required=True,
        type=output_file("the private key"),
        metavar="KEY.pem",
        help="private key (mode 0600); KEY.pub.pem",
    )
    keygen.set_defaults(run=run_keygen)

    sign = actions.add_parser("sign", help="sign every version of a repository with a key")
    sign.add_argument("--repository", required=True, metavar="DIR")
    sign.add_argument("--key", required=True, metavar="KEY.pem", help="Ed25519 private key")
    sign.set_defaults(run=run_sign)

    export = actions.add_parser(
        "export", help="write the tails as a Triton model repository (config.pbtxt + TorchScript)"
    )
    export.add_argument(
        "repository", type=input_dir("a model repository directory"), metavar="REPOSITORY"
    )
    export.add_argument(
        "out", type=output_dir("the Triton model repository"), metavar="OUT", help="output"
    )
    export.add_argument(
        "--format", required=True, choices=["triton"], help="what to write (triton)"
    )
    export.add_argument("--model", help="export only this model (default: every one)")
    export.add_argument(
        "--version",
        action="append",
        default=[],
        metavar="V",
        help="export only this version (repeatable); one version per model keeps its name, "
        "so an edge node talks to Triton unchanged",
    )
    export.add_argument(
        "--max-batch",
        type=int_in_range(1, 4096),
        default=16,
        help="Triton's max_batch_size (default 16; 1: no dynamic batching)",
    )
    export.add_argument(
        "--batch-timeout-ms",
        type=non_negative_float,
        default=1.0,
        help="dynamic batching's queue delay in ms (default 1, like `cloud serve`)",
    )
    export.add_argument(
        "--instances",
        type=int_in_range(1, 64),
        default=1,
        help="instance_group count: copies of each tail (default 1)",
    )
    export.add_argument("--json", action="store_true", help="print what was written")
    export.set_defaults(run=run_export)


def run_build(args: argparse.Namespace) -> int:
    from edgecut import api
    from edgecut.args import make_planner
    from edgecut.output import Progress, print_json
    from partitioner.model.spec import short_name

    # Each step takes seconds: a bar on a terminal, a log line per step otherwise.
    with Progress(prefix="edgecut repository build") as progress:
        progress("steps", 0, 3, f"capture and price {args.model}")
        model = api.repository(
            make_planner(args),
            args.out,
            sweep_bandwidth=args.sweep_bandwidth,
            cut_after=args.cut_after,
            cloud_only=args.cloud_only,
            name=args.name or short_name(args.model),
            with_local=not args.no_local,
            objective=args.objective,
            solver=args.solver,
            model_spec=args.model,
            progress=progress,
        ).model
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


def _signers(model: Any, manifests: dict[Any, dict[str, Any]]) -> dict[str, str | None]:
    """Artifact name (version or "local") -> the sha256 of the key that signed it, or None."""
    return {
        d.name: (manifests[d].get("signature") or {}).get("public_key_sha256")
        for d in _artifact_dirs(model)
    }


def run_show(args: argparse.Namespace) -> int:
    from edgecut.output import print_json

    models, manifests = _checked_models(args.repository)
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
                        "signed_by": _signers(m, manifests),
                    }
                    for m in models.values()
                ]
            }
        )
        return 0
    for model in models.values():
        print_model(model)
        signers = _signers(model, manifests)
        keys = sorted({k for k in signers.values() if k}, key=str)
        unsigned = [name for name, k in signers.items() if not k]
        signed = [
            f"key {k[:16]}: {', '.join(n for n, s in signers.items() if s == k)}" for k in keys
        ]
        print(
            f"signatures: {'; '.join(signed) or 'none'}"
            f"{'; unsigned: ' + ', '.join(unsigned) if unsigned and signed else ''}"
        )
    return 0


def run_keygen(args: argparse.Namespace) -> int:
    from partitioner.deploy.signing import generate_key_pair, load_signing_key

    private, public = generate_key_pair(args.out)
    key_id = load_signing_key(private).key_id
    print(f"private key {private} (keep it secret), public key {public} (key {key_id[:16]})")
    return 0


def run_sign(args: argparse.Namespace) -> int:
    from partitioner.deploy.artifact import MANIFEST
    from partitioner.deploy.files import write_json_atomic
    from partitioner.deploy.signing import load_signing_key

    key = load_signing_key(args.key)
    models, manifests = _checked_models(args.repository)  # never sign what a node would refuse
    for directory, manifest in manifests.items():
        write_json_atomic(directory / MANIFEST, key.sign(manifest))
    signed = len(manifests)
    print(
        f"signed {signed} artifact{'s' * (signed != 1)} of {len(models)} "
        f"model{'s' * (len(models) != 1)} in {args.repository} with key {key.key_id[:16]}"
    )
    return 0


def run_export(args: argparse.Namespace) -> int:
    from edgecut.output import print_json
    from partitioner.triton_export import TritonOptions, export_triton

    options = TritonOptions(
        max_batch=args.max_batch,
        batch_delay_us=round(args.batch_timeout_ms * 1000),
        instances=args.instances,
    )
    written = export_triton(
        args.repository, args.out, model=args.model, versions=args.version, options=options
    )
    if args.json:
        print_json({"format": args.format, "models": [m.to_json() for m in written]})
        return 0
    for m in written:
        batching = f"max_batch_size {m.max_batch_size}" if m.max_batch_size else "no batching"
        print(
            f"{m.path}: Triton model {m.name!r} version {m.version} from {m.source} "
            f"({', '.join(t['name'] for t in m.inputs)} -> "
            f"{', '.join(t['name'] for t in m.outputs)}; {batching}; TorchScript within "
            f"{m.max_abs_error:.2g} of the tail)"
        )
    return 0
