"""``edgecut demo``: the whole path on one machine, with defaults.

Plan a zoo model for a network preset, build a model repository from its breakpoint table,
quantize the served head to int8, start a cloud node on a free loopback port (a separate
process), stream frames through an edge node over an emulated uplink of the preset's rate
and round trip, print predicted vs measured latency, and stop everything.

The defaults (mobilenet_v2 from a Raspberry Pi 4 over Wi-Fi to an x86 server, int8 on
the cut) are a case where splitting wins: the planner cuts after ``features.4.conv.2``
at 53 ms per frame, against 84 ms edge-only and 78 ms cloud-only.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from edgecut.args import output_dir, positive_float, positive_int
from edgecut.commands.cloud import quiet_openmp


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="plan, split, serve and stream a zoo model end to end")
    p.add_argument("--model", default="mobilenet_v2", help="zoo model (default mobilenet_v2)")
    p.add_argument("--edge", default="rpi4", help="edge preset (default rpi4)")
    p.add_argument("--cloud", default="x86-server", help="cloud preset (default x86-server)")
    p.add_argument("--network", default="wifi", help="network preset to plan for (default wifi)")
    p.add_argument(
        "--no-int8", action="store_true", help="serve the float head instead of an int8 one"
    )
    p.add_argument("--codec", default="int8", help="feature codec on the cut (default int8)")
    p.add_argument("--frames", type=positive_int, default=100, help="frames to stream (100)")
    p.add_argument("--fps", type=positive_float, help="pace the frames (default: unpaced)")
    p.add_argument(
        "--no-emulate", action="store_true", help="plain loopback instead of the preset's link"
    )
    p.add_argument(
        "--keep",
        type=output_dir("the demo's model repository"),
        metavar="DIR",
        help="build the repository here and keep it",
    )
    p.add_argument("--json", action="store_true", help="print plan, summary and table as JSON")
    p.set_defaults(run=run)


def _wait_for_port(proc: Any, port_file: Path, log: Path, timeout_s: float) -> int:
    import time

    from partitioner.errors import EdgecutError

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if port_file.exists():
            return int(port_file.read_text())
        if proc.poll() is not None:
            lines = log.read_text().strip().splitlines()
            last = lines[-1] if lines else "no output"
            raise EdgecutError(f"the cloud node exited with code {proc.returncode}: {last}")
        time.sleep(0.1)
    raise EdgecutError(f"the cloud node did not start within {timeout_s:.0f} s")


def _stop(proc: Any) -> None:
    import signal
    import subprocess

    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def run(args: argparse.Namespace) -> int:
    quiet_openmp()
    import time

    import torch

    from edgecut.output import Progress, console

    started = time.monotonic()
    # Edge and cloud share this machine: one torch thread each keeps them off each other.
    torch.set_num_threads(1)
    # Each step (plan, repository, int8 head, cloud start, frames) takes seconds: one bar
    # on a terminal, a log line per step otherwise; stdout stays the results (or --json).
    with Progress(prefix="edgecut demo") as progress:
        return _run(args, progress, console(), started)


def _run(args: argparse.Namespace, progress: Any, out: Any, started: float) -> int:
    import subprocess
    import sys
    import tempfile
    import time

    from edge_node.client import CloudClient
    from edge_node.heads import EdgeModel
    from edge_node.node import EdgeConfig, EdgeNode
    from edge_node.sources import SyntheticSource
    from edge_node.throttle import TokenBucket
    from edgecut.output import print_json
    from partitioner.planner import Planner
    from partitioner.publish import build_repository

    steps = [
        f"plan {args.model} for {args.network} (capture, price, breakpoint table)",
        "build the model repository",
        *([] if args.no_int8 else ["quantize the served head to int8"]),
        "start the cloud node",
        f"stream {args.frames} frames",
    ]

    def step(what: str) -> None:
        progress("steps", steps.index(what), len(steps), what)

    step(steps[0])
    planner = Planner.create(
        args.model, edge=args.edge, cloud=args.cloud, network=args.network, codec=args.codec
    )
    network = planner.cost.network
    plan = planner.plan()
    table = planner.sweep(0.5, 1000.0)
    plans = [] if plan.is_edge_only else [plan]
    everything = frozenset(n.name for n in planner.graph.nodes)
    if not plans and all(e.edge_nodes == everything for e in table.entries):
        # Edge-only at every bandwidth: serve the whole network so there is a cloud path.
        plans = [planner.cut_after(planner.graph.inputs[0])]
    with tempfile.TemporaryDirectory(prefix="edgecut-demo-") as tmp:
        root = Path(args.keep or tmp)
        step("build the model repository")
        entry = build_repository(
            planner,
            root,
            table=table,
            plans=plans,
            model_spec=args.model,
            default_bandwidth_mbps=network.uplink_mbps,
        )
        if not args.json:
            from edgecut.commands.repository import print_model

            print_model(entry)
        version = entry.default_version
        compression = None
        if not args.no_int8:
            step("quantize the served head to int8")
        if version and not args.no_int8:
            compression = _int8_head(planner, entry, version, network, args.model, progress)
            if compression and not args.json:
                _print_compression(out, compression, args.edge)
        note = ""
        if plan.is_edge_only:
            note = (
                f"the plan for {network.name} is edge-only; streaming through the nearest cloud "
                f"cut (version {version}) to show the split path"
            )
        step("start the cloud node")
        port_file = root / "cloud.port"
        port_file.unlink(missing_ok=True)
        cmd = [
            sys.executable, "-m", "edgecut.cli", "cloud", "serve",
            "--repository", str(root), "--host", "127.0.0.1", "--port", "0",
            "--port-file", str(port_file), "--threads", "1", "--log-level", "WARNING",
        ]  # fmt: skip
        log = root / "cloud.log"
        with log.open("w") as log_file:  # a file, not a pipe: a full pipe would stall the node
            proc = subprocess.Popen(cmd, stderr=log_file, stdout=subprocess.DEVNULL, text=True)
        try:
            port = _wait_for_port(proc, port_file, log, timeout_s=120)
            model = EdgeModel.load(entry, versions=[version] if version else [])
            uplink = (
                None
                if args.no_emulate
                else TokenBucket(network.uplink_mbps, delay_ms=network.rtt_ms)
            )
            client = CloudClient(f"127.0.0.1:{port}", uplink=uplink)
            try:
                step(steps[-1])
                node = EdgeNode(model, client, EdgeConfig(version=version, deadline_ms=10_000))
                streamed = iter(range(1, args.frames + 1))
                summary = node.run(
                    SyntheticSource(
                        tuple(entry.meta["input_shape"]), frames=args.frames, fps=args.fps or 0.0
                    ),
                    lambda _result: progress("frames", next(streamed), args.frames),
                )
                progress("steps", len(steps), len(steps), "done")
            finally:
                client.close()
        finally:
            _stop(proc)
        served = node.model.heads[version].manifest["plan"] if version else plan.to_json()
    # The figures at the preset's bandwidth, for the cut that was streamed.
    served = {
        **served,
        "bandwidth_mbps": network.uplink_mbps,
        "predicted": planner.cost.predict(
            frozenset(served["edge_nodes"]), network.uplink_mbps
        ).to_json(),
    }
    rows = _comparison(served, summary, network, emulated=not args.no_emulate)
    if args.json:
        print_json(
            {
                "plan": served,
                "summary": summary,
                "comparison": rows,
                "note": note,
                "compression": compression,
            }
        )
    else:
        _print(out, args, served, summary, rows, note, network, time.monotonic() - started)
    return 0 if summary["error_frames"] == 0 and summary["cloud_frames"] > 0 else 1


def _int8_head(
    planner: Any, entry: Any, version: str, network: Any, model_spec: str, progress: Any = None
) -> dict[str, Any] | None:
    """Quantize the served version's head to int8 in place (the tail stays byte for byte)."""
    import shutil
    import tempfile

    from partitioner.compress import config_from_dict
    from partitioner.compress.compressor import compress
    from partitioner.deploy.artifact import read_manifest
    from partitioner.pricing.cost import CostModel
    from partitioner.solve.plan import Plan

    version_dir = entry.version_dir(version)
    manifest = read_manifest(version_dir)
    if manifest.get("cloud_only"):
        return None  # the head is an identity: nothing runs on the edge to quantize
    plan = Plan.from_json(manifest["plan"])
    # Few samples: the demo's zoo weights are random, so calibration only needs the ranges.
    config = config_from_dict(
        {"method": "int8", "train_samples": 32, "eval_samples": 32, "timing_repeats": 5},
        source="edgecut demo",
    )
    with tempfile.TemporaryDirectory(dir=entry.path) as tmp:
        report = compress(
            planner.captured,
            plan,
            config,
            Path(tmp) / "int8",
            model_spec=model_spec,
            model=planner.loaded.module,
            baseline=version_dir,
            progress=progress,
        )
        shutil.rmtree(version_dir)
        shutil.move(str(Path(tmp) / "int8"), version_dir)
    cost = planner.cost
    edge_nodes = frozenset(plan.edge_nodes)
    result = {**report.to_json(), "version": version}
    result["predicted_head_ms_float"] = cost.predict(edge_nodes, network.uplink_mbps).edge_ms
    if "int8" in cost.edge.peak_gflops:
        int8 = CostModel(
            cost.graph, cost.edge, cost.cloud, cost.network, cost.codec, edge_dtype="int8"
        )
        result["predicted_head_ms_int8"] = int8.predict(edge_nodes, network.uplink_mbps).edge_ms
    return result


def _print_compression(out: Any, c: dict[str, Any], edge: str) -> None:
    predicted = (
        f"; predicted on {edge}: {c['predicted_head_ms_float']:.1f} -> "
        f"{c['predicted_head_ms_int8']:.1f} ms"
        if "predicted_head_ms_int8" in c
        else ""
    )
    out.print(
        f"Head of version {c['version']} quantized to int8 ({c['runtime']}): tensors "
        f"{c['head_param_bytes_before']:,} -> {c['head_param_bytes_after']:,} B; head on this "
        f"host {c['head_ms_before']:.1f} -> {c['head_ms_after']:.1f} ms{predicted}; top-1 "
        f"agreement with the float model on {c['data']['test']} synthetic frames "
        f"{c['accuracy_after']:.0f}% (random weights: a smoke check, not an accuracy)."
    )


def _comparison(
    plan: dict[str, Any], summary: dict[str, Any], network: Any, *, emulated: bool
) -> list[dict[str, Any]]:
    p = plan["predicted"]
    m = summary["breakdown_ms"]
    return [
        {"stage": "edge: head + encode", "predicted_ms": p["edge_ms"], "measured_ms": m["edge"]},
        {
            "stage": "network: transfer + round trip",
            "predicted_ms": p["transfer_ms"] + p.get("rtt_ms", network.rtt_ms),
            "measured_ms": m["transfer"],
        },
        {"stage": "cloud: decode + tail", "predicted_ms": p["cloud_ms"], "measured_ms": m["cloud"]},
        {
            "stage": "total per frame (p50 measured)",
            "predicted_ms": p["total_ms"],
            "measured_ms": summary["latency_ms"]["p50"],
        },
    ]


def _print(
    out: Any,
    args: argparse.Namespace,
    plan: dict[str, Any],
    summary: dict[str, Any],
    rows: list[dict[str, Any]],
    note: str,
    network: Any,
    elapsed_s: float,
) -> None:
    from edgecut.commands.edge import print_summary
    from edgecut.output import table

    cut = ", ".join(t["name"] for t in plan["cut"]) or "nothing"
    if note:
        out.print(note)
    print_summary(summary)
    link = (
        "plain loopback"
        if args.no_emulate
        else f"loopback shaped to {network.uplink_mbps:g} Mbit/s + {network.rtt_ms:g} ms"
    )
    out.print(
        table(
            f"{plan['model']}: predicted ({args.edge} -> {args.cloud}, {network.name}) vs measured "
            f"(this host, {link}); cut: {cut}",
            ["stage", "predicted ms", "measured ms"],
            [[r["stage"], r["predicted_ms"], r["measured_ms"]] for r in rows],
            right={1, 2},
        )
    )
    out.print(
        f"Edge and cloud compute were measured on this host, not on the {args.edge} and "
        f"{args.cloud} presets; the network was {link}. {summary['frames']} frames, "
        f"{summary['cloud_frames']} answered by the cloud, {summary['error_frames']} errors; "
        f"demo took {elapsed_s:.0f} s."
    )
