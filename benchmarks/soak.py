"""Many edges against one batching cloud node: every frame answered once, correctly.

    python benchmarks/soak.py [--edges 64] [--frames 200] [--cut layer1.0.relu1] [--codec none]

Model: resnet18 at 32x32 (its test shape), cut inside its first residual block, so two tensors
cross (maxpool and layer1.0.relu1, 16 KiB each per frame in fp32) and the batcher must keep the
rows of both inputs together. The real network and a real DAG cut, yet about 37 MFLOP a frame:
12,800 frames, each run as head + tail and again as the local reference, take a few minutes on
2 shared cores, where resnet18 at 224x224 (1.8 GFLOP) would take an hour.

The cloud node is `edgecut cloud serve` in its own process on a loopback port (defaults: max
batch 16, batch timeout 1 ms, 64 gRPC workers; --server-threads torch threads). Each edge is an
``edge_node.EdgeNode`` (the object `edgecut edge run` drives: its head, the feature codec,
``CloudClient``'s spliced ModelInfer with a deadline, the answer's checks) with its own channel,
on its own thread of this process and its own TCP connection, fed by its own seeded
``SyntheticSource`` as fast as it answers; local fallback is off, so a frame the cloud does not answer is an error, not hidden.
The client records each call's request and response ids.

Afterwards every answer is compared with the repository's local whole model run here on the
same frame (max |cloud - local| <= --rtol x max |local|), and every (edge, frame id) must have
exactly one answer, carrying its own id. Printed: frames sent, lost, mismatched, duplicated or
misrouted, latency p50/p99, and the server's RSS, threads and open descriptors (/proc) before
the edges connect, at their peak while they run, and after they disconnect.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
from node_process import NodeProcess, ProcessStats

INPUT_SHAPE = (1, 3, 32, 32)


def build(root: Path, cut: str) -> None:
    from partitioner.planner import Planner
    from partitioner.publish import build_repository

    planner = Planner.create("resnet18", input_shape=INPUT_SHAPE)
    build_repository(planner, root, plans=[planner.cut_after(cut)], with_local=True)


def recording_client(target: str, edge: int) -> Any:
    """A CloudClient that keeps (request id, response id, batch frames) of every ModelInfer.

    gRPC gives channels of one process with equal arguments one shared TCP connection (its
    global subchannel pool); a message limit one byte apart per edge gives each edge its own
    connection, as separate devices have.
    """
    from edge_node.client import CloudClient
    from protos.transport import DEFAULT_MAX_MESSAGE_BYTES

    class RecordingClient(CloudClient):
        def __init__(self, target: str) -> None:
            super().__init__(target, max_message_bytes=DEFAULT_MAX_MESSAGE_BYTES + edge)
            self.calls: list[tuple[str, str, int]] = []

        def infer(self, request: Any, timeout_s: float) -> Any:
            response, timing = super().infer(request, timeout_s)
            self.calls.append((request.id, response.id, timing.batch_frames))
            return response, timing

    return RecordingClient(target)


class Sampler:
    """Reads the server's /proc figures every ``period_s`` and keeps the largest of each."""

    def __init__(self, node: NodeProcess, period_s: float = 0.5) -> None:
        self.node, self.period_s = node, period_s
        self.peak = node.stats()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.period_s):
            s = self.node.stats()
            p = self.peak
            self.peak = ProcessStats(
                max(p.rss_mb, s.rss_mb), max(p.hwm_mb, s.hwm_mb),
                max(p.threads, s.threads), max(p.fds, s.fds),
            )  # fmt: skip

    def stop(self) -> ProcessStats:
        self._stop.set()
        self._thread.join()
        return self.peak


def run_edges(model: Any, target: str, edges: int, frames: int, codec: str) -> tuple[list, list]:
    """Every edge's FrameResults and client calls (request id, response id, batch), run
    concurrently; a failing edge is printed and its missing frames count as lost."""
    from edge_node.node import EdgeConfig, EdgeNode
    from edge_node.sources import SyntheticSource

    clients = [recording_client(target, i) for i in range(edges)]
    config = EdgeConfig(version="1", codec=codec, fallback=False, deadline_ms=60_000)
    nodes = [EdgeNode(model, c, config) for c in clients]  # each checks the cloud first
    results: list[list[Any]] = [[] for _ in range(edges)]
    failures: list[str] = []
    barrier = threading.Barrier(edges)

    def edge(i: int) -> None:
        try:
            barrier.wait()
            source = SyntheticSource(INPUT_SHAPE, frames=frames, seed=1000 + i)
            nodes[i].run(source, results[i].append)
        except Exception as exc:  # reported and counted as lost frames, never hidden
            failures.append(f"edge {i}: {type(exc).__name__}: {exc}")

    threads = [threading.Thread(target=edge, args=(i,), name=f"edge-{i}") for i in range(edges)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for c in clients:
        c.close()
    for f in failures:
        print(f"  {f}")
    return results, [c.calls for c in clients]


def references(model: Any, edges: int, frames: int, chunk: int = 100) -> list[list[dict]]:
    """The local whole model's outputs for every frame of every edge (same seeded frames)."""
    from edge_node.sources import SyntheticSource

    out: list[list[dict]] = []
    for i in range(edges):
        data = np.concatenate(
            [f.data for f in SyntheticSource(INPUT_SHAPE, frames=frames, seed=1000 + i)]
        )
        rows: list[dict] = [{} for _ in range(frames)]
        for start in range(0, frames, chunk):
            outs = model.local.run(data[start : start + chunk])
            for name, o in zip(model.output_names, outs, strict=True):
                for j in range(o.shape[0]):
                    rows[start + j][name] = o[j : j + 1]
        out.append(rows)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--edges", type=int, default=64)
    parser.add_argument("--frames", type=int, default=200, help="frames per edge")
    parser.add_argument("--cut", default="layer1.0.relu1", help="resnet18 node the cut follows")
    parser.add_argument("--codec", default="none", help="lossless only: none, zstd, lz4")
    parser.add_argument("--rtol", type=float, default=1e-4)
    parser.add_argument("--server-threads", type=int, default=1, help="torch threads, server")
    args = parser.parse_args()

    import torch

    from edge_node.heads import EdgeModel
    from partitioner.deploy.repository import open_model

    torch.set_num_threads(1)  # 64 edge threads share the other core
    with tempfile.TemporaryDirectory(prefix="edgecut-soak-") as tmp:
        root = Path(tmp) / "repo"
        t0 = time.perf_counter()
        build(root, args.cut)
        model = EdgeModel.load(open_model(root, "resnet18"))
        crossing = model.head("1").crossing
        print(
            f"resnet18 {list(INPUT_SHAPE)} cut after {args.cut}: "
            + " + ".join(f"{s.name} {list(s.shape)}" for s in crossing)
            + f" cross ({sum(s.bytes for s in crossing) / 1024:.0f} KiB/frame before the "
            f"{args.codec} codec); built in {time.perf_counter() - t0:.0f} s; "
            f"{args.edges} edges x {args.frames} frames, {os.cpu_count()} cores (shared)"
        )
        with NodeProcess(root, Path(tmp), threads=args.server_threads) as node:
            before = node.stats()
            sampler = Sampler(node)
            started = time.perf_counter()
            results, calls = run_edges(model, node.target, args.edges, args.frames, args.codec)
            wall = time.perf_counter() - started
            peak = sampler.stop()
            time.sleep(2.0)  # the edges' connections close
            after = node.stats()
            alive = node.alive
        t1 = time.perf_counter()
        refs = references(model, args.edges, args.frames)
        ref_s = time.perf_counter() - t1

    sent = args.edges * args.frames
    seen: Counter[tuple[int, int]] = Counter()
    where: Counter[str] = Counter()
    errors: Counter[str] = Counter()
    mismatched, worst, latency = 0, 0.0, []
    for i, edge_results in enumerate(results):
        for r in edge_results:
            seen[(i, r.frame_id)] += 1
            where[r.where] += 1
            if r.where != "cloud":
                errors[(r.error or r.reason)[:120]] += 1
                continue
            latency.append(r.latency_ms)
            if seen[(i, r.frame_id)] > 1 or not 0 <= r.frame_id < args.frames:
                continue
            ref = refs[i][r.frame_id]
            rel = max(
                float(np.max(np.abs(r.outputs[k] - ref[k])))
                / max(float(np.max(np.abs(ref[k]))), 1e-12)
                for k in ref
            )
            worst = max(worst, rel)
            mismatched += rel > args.rtol
    expected = {(i, f) for i in range(args.edges) for f in range(args.frames)}
    answered = {key for key in seen if key in expected}
    duplicated = sum(n - 1 for n in seen.values()) + len(set(seen) - expected)
    lost = len(expected - answered) + sum(
        1 for i, rs in enumerate(results) for r in rs if r.where != "cloud"
    )
    misrouted = sum(1 for edge_calls in calls for req, resp, _ in edge_calls if req != resp)
    call_count = Counter((i, req) for i, edge_calls in enumerate(calls) for req, _, _ in edge_calls)
    repeated_calls = sum(n - 1 for n in call_count.values())
    batches = [b for edge_calls in calls for _, _, b in edge_calls]
    lat = np.asarray(latency) if latency else np.asarray([np.nan])

    print(f"\n{'frames sent':<38}{sent:>10}")
    print(f"{'answered by the cloud':<38}{where['cloud']:>10}")
    print(f"{'lost (no cloud answer)':<38}{lost:>10}")
    print(f"{f'mismatched (> rtol {args.rtol:g})':<38}{mismatched:>10}")
    print(f"{'duplicated (frame answered twice)':<38}{duplicated:>10}")
    print(f"{'calls sent twice for one frame':<38}{repeated_calls:>10}")
    print(f"{'misrouted (response id != request id)':<38}{misrouted:>10}")
    print(f"{'worst relative error':<38}{worst:>10.2e}")
    print(
        f"{'latency p50 / p99 ms':<38}{np.percentile(lat, 50):>10.1f}{np.percentile(lat, 99):>9.1f}"
    )
    print(f"{'throughput frames/s':<38}{where['cloud'] / wall:>10.1f}   ({wall:.1f} s wall)")
    print(f"{'mean batch on the server (frames)':<38}{np.mean(batches) if batches else 0:>10.1f}")
    print(f"{'reference (local whole model) time':<38}{ref_s:>9.1f}s")
    if errors:
        print(f"errors: {dict(errors.most_common(5))}")
    print(
        f"\n{'server (pid ' + str(node.proc.pid) + ')':<22}{'RSS MB':>9}{'peak MB':>9}{'threads':>9}{'fds':>6}"
    )
    for label, s in (
        ("before the edges", before),
        ("peak while running", peak),
        ("after they left", after),
    ):
        print(f"{label:<22}{s.rss_mb:>9.1f}{s.hwm_mb:>9.1f}{s.threads:>9}{s.fds:>6}")
    print(f"server alive at the end: {alive}")
    ok = alive and lost == 0 and mismatched == 0 and duplicated == 0 and misrouted == 0
    ok = ok and repeated_calls == 0 and len(answered) == sent
    print("every frame accounted for exactly once, correct" if ok else "SOAK FAILED")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
