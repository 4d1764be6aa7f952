"""Fleet simulator at scale, on this machine: wall time, frames per second, peak memory.

(a) scenarios/smart-city.yaml: 10,000 cameras x 10 minutes at 5 fps on the packaged
    cellular traces (30 M frames); goal <= 60 s.
(b) scenarios/metro-100k.yaml: 100,000 cameras x 1 minute at 1 fps (6 M frames);
    goal <= 30 s.

Each case runs in this process (``local``: the vectorised core, one shard) and on a local
Ray (``ray``: one camera shard per CPU plus a cloud-site actor). Printed per run:
``compile`` (capture and price the models, load the traces), ``warm-up`` (numba's
kernels, in every process that runs them: the JSON's ``compile_s``), ``simulate`` (the
window loop: the JSON's ``wall_s``), ``summary`` (exact percentiles over every frame), frames per second of ``simulate`` and of the total, and peak memory: the
driver's peak RSS, and for Ray the peak of the summed RSS of the driver and every
process it started (raylet, workers; pages of the shared object store count in each
process that maps them, so this overstates). The local run first simulates a small
scenario (another model), so that the first case does not pay for loading numba's
compiled kernels from disk. Both cases run resnet18:
its capture (seconds of torch.export) is timed in the first case, cached for the next. For scale: PureEdgeSim, the fastest
published edge simulator, reports 10,000 devices x 10 minutes (1.13 M tasks) in 58 s.

    python benchmarks/sim_scale.py [--cases a,b] [--modes local,ray] [--shards N]
"""

from __future__ import annotations

import argparse
import os
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
CASES = {
    "a": (ROOT / "scenarios" / "smart-city.yaml", 60.0),
    "b": (ROOT / "scenarios" / "metro-100k.yaml", 30.0),
}
PAGE_BYTES = os.sysconf("SC_PAGE_SIZE")
PUREEDGESIM_TASKS_PER_S = 1.13e6 / 58


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        tree.setdefault(ppid, []).append(int(entry))
    return tree


def tree_rss_bytes(root: int) -> int:
    tree = _children()
    total, stack = 0, [root]
    while stack:
        pid = stack.pop()
        try:
            with open(f"/proc/{pid}/statm") as f:
                total += int(f.read().split()[1]) * PAGE_BYTES
        except (OSError, IndexError, ValueError):
            pass
        stack.extend(tree.get(pid, []))
    return total


def self_rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE_BYTES


class PeakRSS:
    """Peak RSS of this process, and of it plus its descendants, sampled in a thread."""

    def __init__(self, period_s: float = 0.05) -> None:
        self.period_s = period_s
        self.driver = 0
        self.tree = 0
        self._stop = threading.Event()

    def __enter__(self) -> PeakRSS:
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        self.driver = max(self.driver, self_rss_bytes())
        self.tree = max(self.tree, tree_rss_bytes(os.getpid()))

    def _poll(self) -> None:
        while not self._stop.is_set():
            self._sample()
            time.sleep(self.period_s)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()


def run_case(name: str, mode: str, shards: int | None) -> dict[str, Any]:
    from simulator.fleet import compile_scenario
    from simulator.scenario import load_scenario

    path, goal_s = CASES[name]
    scenario = load_scenario(path)
    with PeakRSS() as peak:
        t0 = time.perf_counter()
        plan = compile_scenario(scenario)
        t1 = time.perf_counter()
        if mode == "local":
            from simulator.engine import simulate

            result = simulate(plan, shards=1)
        else:
            from simulator import ray_transport

            result = ray_transport.simulate(plan, shards=shards)
        t2 = time.perf_counter()
        summary = result.to_json()
        t3 = time.perf_counter()
    return {
        "case": name,
        "scenario": path.name,
        "mode": mode,
        "shards": result.shards,
        "cameras": plan.n_cameras,
        "frames": summary["frames"],
        "compile_s": t1 - t0,
        "warmup_s": summary["compile_s"],
        "simulate_s": summary["wall_s"],
        "summary_s": t3 - t2,
        "total_s": t3 - t0,
        "frames_per_s": summary["frames"] / summary["wall_s"],
        "frames_per_s_total": summary["frames"] / (t3 - t0),
        "goal_s": goal_s,
        "driver_peak_rss_gb": peak.driver / 1e9,
        "tree_peak_rss_gb": peak.tree / 1e9,
        "p95_ms": summary["latency_ms"]["p95"],
        "miss_rate": summary["deadline_miss_rate"],
        "cloud_utilization": summary["cloud_utilization"],
    }


def warm_up() -> None:
    """Load numba's cached kernels outside the timed runs, on a model the cases do not use
    (so that capturing theirs is timed, in the first case that needs it)."""
    from simulator.engine import simulate
    from simulator.fleet import compile_scenario
    from simulator.scenario import scenario_from_dict

    group = {"name": "g", "count": 20, "fps": 10, "arrival": "poisson", "model": "digits_cnn"}
    scenario = {
        "name": "warm-up",
        "duration_s": 5,
        "policy": "adaptive",
        "fleet": [
            {**group, "network": {"traces": ["Verizon-LTE-short"], "rtt_ms": 0.5}},
            {**group, "name": "h", "network": {"mbps": 3, "rtt_ms": 0.5}, "edge_queue_limit": 1},
        ],
        "cloud": [{"name": "dc", "service": "exponential", "batching": {"max_batch": 2}}],
    }
    simulate(compile_scenario(scenario_from_dict(scenario)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", default="a,b", help="comma-separated: a, b")
    parser.add_argument("--modes", default="local,ray", help="comma-separated: local, ray")
    parser.add_argument("--shards", type=int, help="Ray camera shards (default: one per CPU)")
    args = parser.parse_args()
    cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    print(
        f"machine: {os.cpu_count()} CPUs; PureEdgeSim: 1.13 M tasks in 58 s "
        f"({PUREEDGESIM_TASKS_PER_S:,.0f} tasks/s)"
    )
    warm_up()
    rows = []
    for mode in modes:
        ray_start_s = None
        if mode == "ray":
            from simulator import ray_transport

            t = time.perf_counter()
            session = ray_transport.ray_session()
            session.__enter__()
            ray_start_s = time.perf_counter() - t
            print(f"ray: local cluster started in {ray_start_s:.1f} s (not included below)")
        for case in cases:
            row = run_case(case, mode, args.shards)
            rows.append(row)
            verdict = "meets" if row["total_s"] <= row["goal_s"] else "MISSES"
            print(
                f"({row['case']}) {row['scenario']} [{mode}, {row['shards']} shards]: "
                f"{row['cameras']:,} cameras, {row['frames']:,} frames; "
                f"compile {row['compile_s']:.1f} s + warm-up {row['warmup_s']:.1f} s "
                f"+ simulate {row['simulate_s']:.1f} s "
                f"+ summary {row['summary_s']:.1f} s = {row['total_s']:.1f} s "
                f"({verdict} the {row['goal_s']:.0f} s goal); "
                f"{row['frames_per_s']:,.0f} frames/s simulating, "
                f"{row['frames_per_s_total']:,.0f} frames/s overall "
                f"({row['frames_per_s_total'] / PUREEDGESIM_TASKS_PER_S:,.0f}x PureEdgeSim); "
                f"peak RSS driver {row['driver_peak_rss_gb']:.2f} GB, "
                f"process tree {row['tree_peak_rss_gb']:.2f} GB; "
                f"p95 {row['p95_ms']:.0f} ms, miss rate {row['miss_rate']:.3f}, "
                f"cloud utilisation {row['cloud_utilization']:.2f}",
                flush=True,
            )
        if mode == "ray":
            session.__exit__(None, None, None)


if __name__ == "__main__":
    main()
