"""The pipelined edge node: frames per second against the window, over a slow round trip.

An in-process cloud node serves the digits CNN split after pool2; the edge client's
emulated uplink (edge_node.throttle.TokenBucket) adds ``--delay-ms`` to every call and
limits it to ``--mbps``. For each window the node streams ``--frames`` frames unpaced
(the rate it sustains), then paced at ``--fps`` with ``--late drop`` (what it skips), and
prints one row per window, beside what the simulator's camera with the same window, late
policy, frame rate and link answers (rpi4 and x86-server presets for the tiny compute; the
round trip is the added delay). The accounting must close: captured = answered + skipped +
missed + failed.

    python benchmarks/edge_pipeline.py --delay-ms 50 --windows 1,2,4,8
"""

from __future__ import annotations

import argparse
import tempfile

from cloud_node.server import CloudConfig, CloudNode
from edge_node.client import CloudClient
from edge_node.heads import EdgeModel
from edge_node.node import EdgeConfig, EdgeNode
from edge_node.sources import SyntheticSource
from edge_node.throttle import TokenBucket
from partitioner.deploy.repository import open_model
from partitioner.planner import Planner
from partitioner.publish import build_repository, manual_table


def simulated_answers(args: argparse.Namespace, window: int) -> tuple[int, int]:
    """(answered, captured) of the simulator's camera in the paced run's configuration."""
    from simulator.engine import simulate
    from simulator.fleet import compile_scenario
    from simulator.scenario import scenario_from_dict

    group = {
        "name": "cam",
        "count": 1,
        "fps": args.fps,
        "model": "digits_cnn",
        "device": "rpi4",
        "network": {"mbps": args.mbps, "rtt_ms": args.delay_ms},
        "window": window,
        "late": "drop",
    }
    data = {
        "name": "edge-pipeline",
        "duration_s": args.frames / args.fps,
        "deadline_ms": 2000,
        "policy": {"name": "fixed", "cut_after": "pool2"},
        "fleet": [group],
        "cloud": [{"name": "dc", "servers": 1}],
    }
    result = simulate(compile_scenario(scenario_from_dict(data)))
    captured = int(result.stats.generated[0])
    return captured - int(result.stats.dropped[0]), captured


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--frames", type=int, default=100)
    parser.add_argument("--delay-ms", type=float, default=50.0)
    parser.add_argument("--mbps", type=float, default=20.0)
    parser.add_argument("--fps", type=float, default=40.0)
    parser.add_argument("--windows", default="1,2,4,8")
    args = parser.parse_args()
    windows = [int(w) for w in args.windows.split(",")]

    planner = Planner.create("digits_cnn")
    with tempfile.TemporaryDirectory() as root:
        table = manual_table(planner, [(0.1, 1000.0, "pool2")])
        build_repository(planner, root, table=table, default_bandwidth_mbps=5.0)
        model = EdgeModel.load(open_model(root))
        cloud = CloudNode(CloudConfig(repository=root, port=0, threads=1))
        port = cloud.start()
        try:
            print(
                f"digits_cnn, {args.delay_ms:g} ms added per call, {args.mbps:g} Mbit/s; "
                f"{args.frames} frames unpaced, then paced at {args.fps:g} fps, late drop"
            )
            print(
                f"{'window':>6} {'fps':>8} {'p50 ms':>8} {'p95 ms':>8} | "
                f"{'paced: answered':>15} {'skipped':>8} {'missed':>7} {'captured':>9} | "
                f"{'simulated: answered':>19} {'captured':>9}"
            )
            for window in windows:
                bucket = TokenBucket(args.mbps, delay_ms=args.delay_ms)
                with CloudClient(f"127.0.0.1:{port}", uplink=bucket) as client:
                    free = EdgeNode(model, client, EdgeConfig(window=window)).run(
                        SyntheticSource(model.input_shape, frames=args.frames)
                    )
                    paced = EdgeNode(model, client, EdgeConfig(window=window, late="drop")).run(
                        SyntheticSource(model.input_shape, frames=args.frames, fps=args.fps)
                    )
                for s in (free, paced):
                    parts = s["answered"] + s["skipped"] + s["missed"] + s["failed"]
                    assert parts == s["captured"] == args.frames, s
                lat = free["latency_ms"]
                sim = simulated_answers(args, window)
                print(
                    f"{window:>6} {free['fps']:>8.1f} {lat['p50']:>8.1f} {lat['p95']:>8.1f} | "
                    f"{paced['answered']:>15} {paced['skipped']:>8} {paced['missed']:>7} "
                    f"{paced['captured']:>9} | {sim[0]:>19} {sim[1]:>9}"
                )
        finally:
            cloud.stop(grace_s=0)


if __name__ == "__main__":
    main()
