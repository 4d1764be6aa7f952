"""How well edgecut predicts: every cut measured over a kernel-shaped link against the
planner's prediction and the simulator's (issue 12 part 4; needs root).

For each model (resnet18, googlenet) on the ``host`` profile, the cloud node
(`edgecut cloud serve`, 1 thread) runs in a network namespace behind a tc-tbf-shaped veth
(edgecut.testbed.link) and the edge node runs in this process (1 thread), at 1, 5, 20 and
100 Mbit/s:

(a) the end-to-end latency (median of N frames) of every cut of the breakpoint table, a
    sample of other layer-boundary cuts, edge-only and cloud-only;
(b) the planner's prediction of each (CostModel.predict): MAPE per bandwidth, and the ratio
    measured/predicted of each term (edge, transfer+RTT, cloud) to say which one is off;
(c) the planner's cut against the best measured cut (the oracle), and its speed-up over
    cloud-only and edge-only;
(d) the simulator (one camera, same profiles, link, frame rate) against the measured mean and
    p95, fixed cuts and adaptive, at a light load and near saturation;
(e) a real uplink trace replayed on the link (1 s steps) with the adaptive edge node against
    the simulator's adaptive policy on the same steps;
(f) a JSON report and one PNG per model (measured vs predicted per cut per bandwidth).

Edge and cloud are the same CPU here, so with identical profiles the planner keeps
everything on the edge at every bandwidth (nothing to gain by sending). To make the split
matter, the edge is emulated ``--edge-slowdown`` times slower than this host: every head (and
the local model) is followed by a sleep of (K-1) times its own measured run, and the planner
and simulator price the edge with the host's measured node times times K. K = 1 is the pure
same-machine experiment.

    sudo .venv/bin/python benchmarks/fidelity.py --quick            # ~10 min on 2 busy cores
    sudo .venv/bin/python benchmarks/fidelity.py --out docs/figures # the full run
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np
import torch

from edge_node.client import CloudClient
from edge_node.heads import EdgeModel
from edge_node.node import EdgeConfig, EdgeNode
from edge_node.sources import SyntheticSource
from edgecut.testbed.link import Link
from edgecut.testbed.run import node_env, signals_raise, stop_process
from edgecut.testbed.trace import TraceReplay
from partitioner.deploy.repository import open_model
from partitioner.model.capture import capture
from partitioner.model.spec import load_model
from partitioner.planner import Planner
from partitioner.pricing.host import measure_host
from partitioner.pricing.network import NETWORKS, load_trace
from partitioner.pricing.profiles import DEVICES, DeviceProfile
from partitioner.publish import build_repository

BANDWIDTHS = (1.0, 5.0, 20.0, 100.0)
TRACE = "TMobile-LTE-short"  # 0.6..30 Mbit/s over 140 s: the adaptive node has to move


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------- the edge


class Dilated:
    """A head's module made ``k`` times slower: after each run, sleep (k-1) times its time."""

    def __init__(self, module: Any, k: float) -> None:
        self.module, self.k = module, k

    def __call__(self, *args: Any) -> Any:
        start = time.perf_counter()
        out = self.module(*args)
        if self.k > 1:
            time.sleep((self.k - 1) * (time.perf_counter() - start))
        return out


def dilate(model: EdgeModel, k: float) -> None:
    for head in [*model.heads.values(), *([model.local] if model.local else [])]:
        head.module = Dilated(head.module, k)


def profiles(name: str, captured: Any, k: float, repeats: int) -> tuple[DeviceProfile, ...]:
    """(edge, cloud) profiles: this host's node times (1 thread), the edge's times k."""
    measured = measure_host(captured, repeats=repeats)
    host = DEVICES.get("host")
    cloud = dataclasses.replace(
        host.with_measurements(measured.node_ms), name=f"fidelity-cloud-{name}"
    )
    edge = dataclasses.replace(
        host.with_measurements({n: k * ms for n, ms in measured.node_ms.items()}),
        name=f"fidelity-edge-{name}",
    )
    for profile in (edge, cloud):  # the simulator finds devices by name
        if profile.name not in DEVICES:
            DEVICES.register(profile)
    return edge, cloud


# ------------------------------------------------------------------------------ the cuts


def sample_cuts(planner: Planner, n: int) -> list[frozenset[str]]:
    """``n`` layer-boundary cuts spread evenly between cloud-only and edge-only."""
    cuts = planner.graph.prefix_cuts()[1:-1]
    if not cuts or n <= 0:
        return []
    idx = np.unique(np.linspace(0, len(cuts) - 1, n + 2).round().astype(int))[1:-1]
    return [frozenset(cuts[i]) for i in idx]


def label(planner: Planner, edge: frozenset[str]) -> str:
    graph = planner.graph
    if len(edge) == len(graph):
        return "edge-only"
    crossing = graph.crossing(edge)
    if all(n.name in graph.inputs for n in crossing):
        return "cloud-only"
    return "+".join(n.name for n in crossing)


def plan_of(planner: Planner, edge: frozenset[str], bw: float) -> Any:
    return planner.cost.predict(edge, bw)


# ---------------------------------------------------------------------------- measuring


def start_cloud(link: Link, repo: Path, workdir: Path) -> tuple[subprocess.Popen[str], int]:
    port_file = workdir / f"cloud-{repo.name}.port"
    logf = port_file.with_suffix(".log").open("w")
    argv = [
        sys.executable, "-m", "edgecut.cli", "cloud", "serve", "--repository", str(repo),
        "--host", link.cloud_address, "--port", "0", "--port-file", str(port_file),
        "--threads", "1", "--max-batch", "1", "--grace-s", "0",
    ]  # fmt: skip
    proc = subprocess.Popen(
        link.exec_argv(argv, "cloud"), stdout=logf, stderr=logf, text=True, env=node_env(1)
    )
    deadline = time.monotonic() + 300
    while not port_file.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(
                f"cloud node failed: {port_file.with_suffix('.log').read_text()[-2000:]}"
            )
        time.sleep(0.1)
    return proc, int(port_file.read_text())


def measure_cut(
    model: EdgeModel, client: CloudClient, version: str | None, frames: int, seed: int
) -> dict[str, Any]:
    """Median latency and terms of ``frames`` frames (one warm-up first); None: edge-only."""
    shape = model.input_shape
    source = iter(SyntheticSource(shape, frames=frames + 1, seed=seed))
    if version is None:
        assert model.local is not None
        times = []
        for i, frame in enumerate(source):
            start = time.perf_counter()
            model.local.run(frame.data)
            if i:
                times.append((time.perf_counter() - start) * 1e3)
        return {"latency_ms": statistics.median(times), "edge_ms": statistics.median(times),
                "transfer_ms": 0.0, "cloud_ms": 0.0, "frames": len(times),
                "min_latency_ms": min(times)}  # fmt: skip
    node = EdgeNode(
        model,
        client,
        EdgeConfig(version=version, deadline_ms=600_000, fallback=False),
        check_cloud=False,
    )
    rows = []
    for i, frame in enumerate(source):
        r = node.process(frame)
        if r.where != "cloud":
            raise RuntimeError(f"frame {r.frame_id} of version {version}: {r.where} {r.error}")
        if i:
            rows.append((r.latency_ms, r.edge_ms, r.transfer_ms, r.cloud_ms))
    a = np.array(rows)
    med = np.median(a, axis=0)
    return {
        "latency_ms": float(med[0]),
        "edge_ms": float(med[1]),
        "transfer_ms": float(med[2]),
        "cloud_ms": float(med[3]),
        "frames": len(rows),
        "bytes_sent": r.bytes_sent,
        "min_latency_ms": float(a[:, 0].min()),
    }


def paced_run(
    model: EdgeModel, client: CloudClient, config: EdgeConfig, fps: float, seconds: float
) -> dict[str, Any]:
    """The edge node (``config.window`` frames in flight) at ``fps`` for ``seconds``."""
    n = max(5, round(fps * seconds))
    node = EdgeNode(model, client, config, check_cloud=False)
    results: list[Any] = []
    node.run(SyntheticSource(model.input_shape, frames=n, fps=fps, seed=7), results.append)
    lat = np.array([r.latency_ms for r in results if r.where in ("cloud", "local")])
    summary = node.summary()
    return {
        "fps": fps,
        "window": config.window,
        "frames_offered": n,
        "frames_answered": len(lat),
        **{k: summary.get(k) for k in ("captured", "answered", "skipped", "missed", "failed")},
        "mean_ms": float(lat.mean()),
        "p95_ms": float(np.percentile(lat, 95)),
        "versions": summary["versions"],
        "cut_switches": summary["cut_switches"],
        "wall_s": summary["wall_s"],
    }


# ---------------------------------------------------------------------------- simulating


def simulate(
    name: str,
    input_shape: tuple[int, ...],
    edge: DeviceProfile,
    cloud: DeviceProfile,
    *,
    fps: float,
    seconds: float,
    network: dict[str, Any],
    policy: Any,
    fixed_cut: frozenset[str] | None = None,
    window: int = 1,
    table: tuple[float, float] = (0.5, 200.0),
) -> dict[str, Any]:
    """The simulator's one camera; ``fixed_cut`` overrides the policy with that cut."""
    from simulator.engine import simulate as run_sim
    from simulator.fleet import compile_scenario
    from simulator.scenario import scenario_from_dict

    if isinstance(policy, dict) and policy.get("name") == "adaptive":
        policy = {**policy, "min_mbps": table[0], "max_mbps": table[1]}
    scenario = scenario_from_dict(
        {
            "name": f"fidelity-{name}",
            "duration_s": seconds,
            "seed": 1,
            "deadline_ms": 600_000,
            "policy": policy,
            "fleet": [
                {
                    "name": "camera",
                    "count": 1,
                    "fps": fps,
                    "arrival": "periodic",
                    "device": edge.name,
                    "model": name,
                    "input_shape": list(input_shape),
                    "codec": "none",
                    "window": window,
                    "network": network,
                }
            ],
            "cloud": [
                {
                    "name": "cloud",
                    "servers": 1,
                    "device": cloud.name,
                    "batching": {"max_batch": 1, "window_ms": 0},
                }
            ],
        }
    )
    fixed = {"camera": fixed_cut} if fixed_cut is not None else None
    result = run_sim(compile_scenario(scenario, fixed_cuts=fixed)).to_json()
    lat = result["latency_ms"]
    return {
        "mean_ms": lat["mean"],
        "p95_ms": lat["p95"],
        "frames": result["frames"],
        "cuts": result["groups"]["camera"]["cuts"],
    }


# ---------------------------------------------------------------------------- one model


def run_model(name: str, args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    shape = (1, 3, args.size, args.size)
    log(f"{name} {shape}: capture and measure this host (1 thread); load {os.getloadavg()}")
    loaded = load_model(name, shape)
    captured = capture(loaded.module, loaded.example_input(), name=loaded.name)
    edge_p, cloud_p = profiles(name, captured, args.edge_slowdown, args.repeats)
    base_net = NETWORKS.get("ethernet").with_rtt(1.0)

    def planner_at(rtt_ms: float) -> Planner:
        return Planner.for_captured(
            loaded, captured, edge=edge_p, cloud=cloud_p, network=base_net.with_rtt(rtt_ms)
        )

    planner = planner_at(1.0)
    table = planner.sweep(0.5, 200.0)
    everything = frozenset(n.name for n in planner.graph.nodes)
    cloud_only = frozenset(planner.graph.close(()))
    candidates = {e.edge_nodes for e in table.entries}
    chosen0 = {frozenset(planner.plan(bandwidth_mbps=bw).edge_nodes) for bw in BANDWIDTHS}
    others = [c for c in sample_cuts(planner, args.sample) if c not in candidates]
    cuts = sorted(  # from cloud-only to edge-only, as the plots read
        dict.fromkeys([*candidates, *chosen0, *others, cloud_only, everything]), key=len
    )
    remote = [c for c in cuts if c != everything]
    repo = workdir / f"repo-{name}"
    plans = [evaluate_cut_plan(planner, c) for c in remote]
    build_repository(planner, repo, table=table, plans=plans, default_bandwidth_mbps=20.0)
    entry = open_model(repo)
    version_of = {}
    for version in entry.versions:
        manifest = json.loads((repo / name / version / "manifest.json").read_text())
        version_of[frozenset(manifest["plan"]["edge_nodes"])] = version
    model = EdgeModel.load(entry)
    dilate(model, args.edge_slowdown)
    log(f"{name}: {len(cuts)} cuts ({len(candidates)} in the table); starting the testbed")

    report: dict[str, Any] = {"model": name, "input_shape": list(shape), "cuts": {}}
    with Link.create(BANDWIDTHS[0], edge_in_root=True) as link:
        cloud, port = start_cloud(link, repo, workdir)
        try:
            with CloudClient(f"{link.cloud_address}:{port}") as client:
                EdgeNode(model, client, EdgeConfig(version=version_of[cloud_only]))  # checks
                rtts = [client.ping() * 1e3 for _ in range(20)]
                rtt_ms = statistics.median(rtts)
                planner = planner_at(rtt_ms)
                report["rtt_ms"] = rtt_ms
                report["bandwidths"] = measure_bandwidths(
                    planner, model, client, link, cuts, version_of, args
                )
                report["simulator"] = sim_checks(
                    name, shape, planner, model, client, link, version_of, edge_p, cloud_p,
                    rtt_ms, args, report["bandwidths"],
                )  # fmt: skip
                report["trace"] = trace_check(
                    name, shape, model, client, link, edge_p, cloud_p, rtt_ms, args, workdir
                )
        finally:
            stop_process(cloud)
    report["cuts"] = {label(planner, c): version_of.get(c, "local") for c in cuts}
    report["load_average_after"] = os.getloadavg()
    # How much this shared host itself drifted while the model was measured: the whole
    # forward (median) and the sum of the node times, before and after.
    after = measure_host(captured, repeats=args.repeats)
    report["host_drift"] = {
        "node_sum_ms_before": sum(cloud_p.measured_ms.values()),  # type: ignore[union-attr]
        "node_sum_ms_after": sum(after.node_ms.values()),
        "whole_forward_ms_after": after.total_ms,
    }
    log(f"{name}: host drift {report['host_drift']}")
    return report


def evaluate_cut_plan(planner: Planner, edge: frozenset[str]) -> Any:
    from partitioner.solve.plan import plan_for_cut

    return plan_for_cut(
        planner.cost,
        edge,
        solver="fixed",
        objective="latency",
        bandwidth_mbps=planner.cost.network.uplink_mbps,
        solve_ms=0.0,
        input_shape=planner.loaded.input_shape,
    )


def measure_bandwidths(
    planner: Planner,
    model: EdgeModel,
    client: CloudClient,
    link: Link,
    cuts: list[frozenset[str]],
    version_of: dict[frozenset[str], str],
    args: argparse.Namespace,
) -> dict[str, Any]:
    everything = frozenset(n.name for n in planner.graph.nodes)
    cloud_only = frozenset(planner.graph.close(()))
    out: dict[str, Any] = {}
    for bw in BANDWIDTHS:
        link.set_rate(bw)
        chosen = frozenset(planner.plan(bandwidth_mbps=bw).edge_nodes)
        rows = []
        for cut in cuts:
            pred = plan_of(planner, cut, bw)
            must = cut in (everything, cloud_only, chosen)
            if pred.total_ms > args.budget_ms and not must:
                continue  # far from the best; would take minutes
            frames = args.frames if pred.total_ms <= args.budget_ms else args.min_frames
            m = measure_cut(model, client, version_of.get(cut), frames, seed=len(rows))
            rows.append(
                {
                    "cut": label(planner, cut),
                    "measured": m,
                    "predicted": {
                        "total_ms": pred.total_ms,
                        "edge_ms": pred.edge_ms,
                        "transfer_ms": pred.transfer_ms + pred.rtt_ms,
                        "cloud_ms": pred.cloud_ms + pred.serialize_ms,
                        "wire_bytes": pred.wire_bytes,
                    },
                    "chosen": cut == chosen,
                }
            )
            log(
                f"  {bw:g} Mbit/s {rows[-1]['cut'][:40]:40s} measured {m['latency_ms']:8.1f} "
                f"predicted {pred.total_ms:8.1f} ms"
            )
        out[f"{bw:g}"] = summarise(rows)
    return out


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    errors = [abs(r["measured"]["latency_ms"] / r["predicted"]["total_ms"] - 1) for r in rows]
    # Best of N: what the frame takes when no other process on this shared host interferes.
    errors_min = [
        abs(r["measured"]["min_latency_ms"] / r["predicted"]["total_ms"] - 1) for r in rows
    ]
    oracle = min(rows, key=lambda r: r["measured"]["latency_ms"])
    chosen = next(r for r in rows if r["chosen"])
    by = {r["cut"]: r["measured"]["latency_ms"] for r in rows}

    def ratio(term: str) -> float | None:
        pairs = [
            (r["measured"][term], r["predicted"][term]) for r in rows if r["predicted"][term] > 0.5
        ]
        if not pairs:
            return None
        return float(sum(m for m, _ in pairs) / sum(p for _, p in pairs))

    return {
        "rows": rows,
        "mape": float(np.mean(errors)),
        "max_ape": float(np.max(errors)),
        "mape_best_of_n": float(np.mean(errors_min)),
        "measured_over_predicted": {t: ratio(t) for t in ("edge_ms", "transfer_ms", "cloud_ms")},
        "chosen": chosen["cut"],
        "chosen_ms": chosen["measured"]["latency_ms"],
        "oracle": oracle["cut"],
        "oracle_ms": oracle["measured"]["latency_ms"],
        "chosen_over_oracle": chosen["measured"]["latency_ms"] / oracle["measured"]["latency_ms"],
        "speedup_over_cloud_only": by["cloud-only"] / chosen["measured"]["latency_ms"],
        "speedup_over_edge_only": by["edge-only"] / chosen["measured"]["latency_ms"],
    }


def sim_checks(
    name: str,
    shape: tuple[int, ...],
    planner: Planner,
    model: EdgeModel,
    client: CloudClient,
    link: Link,
    version_of: dict[frozenset[str], str],
    edge_p: DeviceProfile,
    cloud_p: DeviceProfile,
    rtt_ms: float,
    args: argparse.Namespace,
    measured: dict[str, Any],
) -> list[dict[str, Any]]:
    """(d): one camera at a light load and near saturation, the planner's cut and adaptive."""
    out = []
    for bw in args.sim_bandwidths:
        link.set_rate(bw)
        # The planner's cut, or (when that is edge-only) the best predicted remote cut.
        remote = list(version_of)  # every cut the cloud serves
        chosen = min(remote, key=lambda c: plan_of(planner, c, bw).total_ms)
        pred = plan_of(planner, chosen, bw)
        measured_row = next(
            r for r in measured[f"{bw:g}"]["rows"] if r["cut"] == label(planner, chosen)
        )
        # The stop-and-wait node's round is the whole latency: its saturation rate.
        m_row = measured_row["measured"]
        # Saturation: the stop-and-wait node's round is the whole latency; a pipeline's
        # bottleneck is its slowest stage (edge, uplink+RTT, cloud).
        round_ms = m_row["latency_ms"]
        stage_ms = max(m_row["edge_ms"], m_row["transfer_ms"], m_row["cloud_ms"])
        net = {"mbps": bw, "rtt_ms": rtt_ms}
        runs = [
            ("fixed", 1, 0.5 * 1e3 / round_ms, 0.5),
            ("adaptive", 1, 0.5 * 1e3 / round_ms, 0.5),
            ("fixed", 1, 0.9 * 1e3 / round_ms, 0.9),
            ("adaptive", 1, 0.9 * 1e3 / round_ms, 0.9),
            ("fixed", 4, 0.9 * 1e3 / stage_ms, 0.9),
        ]
        for policy, window, fps, load in runs:
            config = EdgeConfig(
                version=version_of[chosen] if policy == "fixed" else None,
                adaptive=policy == "adaptive",
                deadline_ms=600_000,
                window=window,
            )
            m = paced_run(model, client, config, fps, args.sim_seconds)
            s = simulate(
                name, shape, edge_p, cloud_p, fps=fps, seconds=m["captured"] / fps,
                network=net, policy={"name": "adaptive"}, window=window,
                fixed_cut=chosen if policy == "fixed" else None,
            )  # fmt: skip
            out.append(
                {
                    "bandwidth_mbps": bw,
                    "cut": label(planner, chosen),
                    "policy": policy,
                    "window": window,
                    "load": load,
                    "predicted_round_ms": pred.total_ms,
                    "measured": m,
                    "simulated": s,
                    "mean_error": s["mean_ms"] / m["mean_ms"] - 1,
                    "p95_error": s["p95_ms"] / m["p95_ms"] - 1,
                }
            )
            log(
                f"  sim {bw:g} Mbit/s {policy:8s} window {window} load {load:.2f} ({fps:.1f} fps):"
                f" measured mean {m['mean_ms']:.1f} p95 {m['p95_ms']:.1f}, simulated mean "
                f"{s['mean_ms']:.1f} p95 {s['p95_ms']:.1f}; answered {m['answered']}/"
                f"{m['captured']}, simulated {s['frames']}; cuts {m['versions']} / {s['cuts']}"
            )
    return out


def trace_check(
    name: str,
    shape: tuple[int, ...],
    model: EdgeModel,
    client: CloudClient,
    link: Link,
    edge_p: DeviceProfile,
    cloud_p: DeviceProfile,
    rtt_ms: float,
    args: argparse.Namespace,
    workdir: Path,
) -> dict[str, Any]:
    """(e): the trace's 1 s steps on the link, the adaptive node, and the simulator on them."""
    trace = load_trace(TRACE)
    replay = TraceReplay(link, trace, step_s=1.0)
    steps = replay.rates_mbps[: int(args.trace_seconds) + 2]
    pairs = workdir / f"{TRACE}-steps.txt"  # exactly what the link replays, for the simulator
    pairs.write_text("".join(f"{i} {r:.6f}\n" for i, r in enumerate(steps)))
    config = EdgeConfig(adaptive=True, deadline_ms=600_000, window=1)
    with replay:
        m = paced_run(model, client, config, args.trace_fps, args.trace_seconds)
    s = simulate(
        name, shape, edge_p, cloud_p, fps=args.trace_fps, seconds=args.trace_seconds,
        network={"traces": [str(pairs)], "offset": "zero", "rtt_ms": rtt_ms},
        policy={"name": "adaptive"},
    )  # fmt: skip
    log(
        f"  trace {TRACE} adaptive at {args.trace_fps:g} fps: measured mean {m['mean_ms']:.1f} "
        f"p95 {m['p95_ms']:.1f}; simulated mean {s['mean_ms']:.1f} p95 {s['p95_ms']:.1f}; "
        f"cuts measured {m['versions']}, simulated {s['cuts']}"
    )
    return {
        "trace": TRACE,
        "step_s": 1.0,
        "seconds": args.trace_seconds,
        "fps": args.trace_fps,
        "rates_mbps": [float(r) for r in steps],
        "measured": m,
        "simulated": s,
        "mean_error": s["mean_ms"] / m["mean_ms"] - 1,
        "p95_error": s["p95_ms"] / m["p95_ms"] - 1,
    }


# ----------------------------------------------------------------------------- output


def plot(report: dict[str, Any], out: Path, suffix: str = "") -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    bws = list(report["bandwidths"])
    fig, axes = plt.subplots(1, len(bws), figsize=(4.2 * len(bws), 4.2), squeeze=False)
    for ax, bw in zip(axes[0], bws, strict=True):
        s = report["bandwidths"][bw]
        rows = s["rows"]
        x = np.arange(len(rows))
        ax.bar(x - 0.2, [r["measured"]["latency_ms"] for r in rows], 0.4, label="measured")
        ax.bar(x + 0.2, [r["predicted"]["total_ms"] for r in rows], 0.4, label="predicted")
        for i, r in enumerate(rows):
            if r["chosen"]:
                ax.annotate("chosen", (i, r["measured"]["latency_ms"]), ha="center",
                            va="bottom", fontsize=7)  # fmt: skip
        ax.set_xticks(x, [r["cut"][:18] for r in rows], rotation=75, fontsize=6)
        ax.set_yscale("log")
        ax.set_title(f"{bw} Mbit/s: MAPE {s['mape']:.0%}", fontsize=9)
        ax.set_ylabel("ms per frame")
    axes[0][0].legend(fontsize=8)
    fig.suptitle(f"{report['model']} {report['input_shape']}: measured vs predicted per cut")
    fig.tight_layout()
    path = out / f"fidelity_{report['model']}{suffix}.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def print_tables(reports: list[dict[str, Any]]) -> None:
    print("\nmodel       Mbit/s  MAPE   max APE  best-of-N MAPE  meas/pred edge  transfer  cloud   chosen"
          " ms  oracle ms  chosen/oracle  x cloud-only  x edge-only")  # fmt: skip
    for rep in reports:
        for bw, s in rep["bandwidths"].items():
            r = s["measured_over_predicted"]
            fmt = {k: f"{v:.2f}" if v is not None else "-" for k, v in r.items()}
            print(
                f"{rep['model']:11s} {bw:>6s}  {s['mape']:5.1%}  {s['max_ape']:6.1%}   "
                f"{s['mape_best_of_n']:13.1%}  "
                f"{fmt['edge_ms']:>13s}  {fmt['transfer_ms']:>8s}  {fmt['cloud_ms']:>5s}  "
                f"{s['chosen_ms']:9.1f}  {s['oracle_ms']:9.1f}  {s['chosen_over_oracle']:13.3f}"
                f"  {s['speedup_over_cloud_only']:12.2f}  {s['speedup_over_edge_only']:11.2f}"
            )
        print("  chosen/oracle cuts: " + "; ".join(
            f"{bw}: {s['chosen']} / {s['oracle']}" for bw, s in rep["bandwidths"].items()))  # fmt: skip
    print("\nsimulator vs measured (one camera; window 1 is the stop-and-wait node)")
    print("model       Mbit/s  policy    win  load  fps    meas mean  sim mean  err    meas p95"
          "  sim p95  err    answered/offered  sim frames")  # fmt: skip
    for rep in reports:
        for row in [*rep["simulator"], {**rep["trace"], "policy": "trace"}]:
            m, s = row["measured"], row["simulated"]
            bw = row.get("bandwidth_mbps", "trace")
            print(
                f"{rep['model']:11s} {bw!s:>6s}  {row['policy']:8s}  {row.get('window', 1):3d}  "
                f"{row.get('load', 0):.2f}  "
                f"{m['fps']:5.1f}  {m['mean_ms']:9.1f}  {s['mean_ms']:8.1f}  "
                f"{row['mean_error']:+5.0%}  {m['p95_ms']:8.1f}  {s['p95_ms']:7.1f}  "
                f"{row['p95_error']:+5.0%}  {m['answered']:>7d}/{m['captured']:<8d}"
                f"  {s['frames']:>10d}"
            )


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="112x112, 5 frames, fewer cuts")
    p.add_argument("--models", default="resnet18,googlenet")
    p.add_argument("--size", type=int, help="input height and width (default 224; quick 112)")
    p.add_argument("--frames", type=int, help="frames per cut and bandwidth (median)")
    p.add_argument("--sample", type=int, help="extra layer-boundary cuts beyond the table")
    p.add_argument("--edge-slowdown", type=float, default=4.0, help="edge = host x K (4)")
    p.add_argument("--repeats", type=int, default=20, help="host measurement repeats")
    p.add_argument(
        "--nice",
        type=int,
        default=0,
        help="run this process and the cloud node at this niceness (e.g. -10: other work on a "
        "shared host then slows the nodes less, as on dedicated devices)",
    )
    p.add_argument("--out", type=Path, default=Path("docs/figures"))
    args = p.parse_args()
    if os.geteuid() != 0:
        print("benchmarks/fidelity.py needs root (network namespaces and tc)", file=sys.stderr)
        return 2
    quick = args.quick
    args.size = args.size or (112 if quick else 224)
    args.frames = args.frames or (5 if quick else 15)
    args.min_frames = 3
    args.sample = args.sample if args.sample is not None else (2 if quick else 6)
    args.budget_ms = 1500.0 if quick else 4000.0
    args.sim_bandwidths = (5.0,) if quick else (5.0, 20.0)
    args.loads = (0.5, 0.9)
    args.sim_seconds = 10.0 if quick else 30.0
    args.trace_seconds = 30.0 if quick else 90.0
    args.trace_fps = 2.0
    torch.set_num_threads(1)
    if args.nice:
        os.nice(args.nice)  # the cloud node, a child, inherits it
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.time()
    reports = []
    # SIGTERM/SIGHUP unwind like Ctrl-C, so the links and the cloud node are removed.
    with signals_raise(), tempfile.TemporaryDirectory(prefix="edgecut-fidelity-") as tmp:
        for name in args.models.split(","):
            reports.append(run_model(name, args, Path(tmp)))
    doc = {
        "mode": "quick" if quick else "full",
        "edge_slowdown": args.edge_slowdown,
        "threads": 1,
        "nice": args.nice,
        "frames_per_cut": args.frames,
        "bandwidths_mbps": list(BANDWIDTHS),
        "wall_s": time.time() - started,
        "load_average": os.getloadavg(),
        "reports": reports,
    }
    suffix = "_quick" if quick else ""
    path = args.out / f"fidelity{suffix}.json"
    path.write_text(json.dumps(doc, indent=1))
    for rep in reports:
        plot(rep, args.out, suffix)
    print_tables(reports)
    print(f"\nwrote {path} and the PNGs in {args.out} ({doc['wall_s'] / 60:.1f} min)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
