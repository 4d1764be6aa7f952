"""Throughput of one resnet18 tail with and without dynamic batching, 16 concurrent callers.

    python benchmarks/batching.py [--cut layer2.1.relu2] [--codec none] [--clients 16]

Goal: batching gives at least 1.5x the frames per second of batch-1 serving on this host.
The cloud node runs as `edgecut cloud serve` in its own process (torch on --threads
threads); each client is a thread with its own channel that sends precomputed crossing
tensors of a 224x224 frame, encoded with --codec, in a closed loop: only serving is measured.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np


def build(root: Path, cut: str) -> tuple[list, list[np.ndarray]]:
    import torch

    from partitioner.deploy.artifact import load_split
    from partitioner.planner import Planner
    from partitioner.publish import build_repository

    planner = Planner.create("resnet18", input_shape=(1, 3, 224, 224))
    build_repository(planner, root, plans=[planner.cut_after(cut)], with_local=False)
    art = load_split(root / "resnet18" / "1")
    x = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    return art.crossing, [t.numpy() for t in art.run_head(x)]


def serve(
    root: Path, max_batch: int, timeout_ms: float, threads: int, *extra: str
) -> tuple[subprocess.Popen[bytes], int]:
    """``edgecut cloud serve`` of ``root`` in its own process (``extra``: more flags)."""
    port_file = root / f"port-{max_batch}-{'-'.join(extra)}"
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "OMP_WAIT_POLICY": "PASSIVE"}
    proc = subprocess.Popen(
        [
            sys.executable, "-m", "edgecut.cli", "cloud", "serve", "--repository", str(root),
            "--port", "0", "--port-file", str(port_file), "--threads", str(threads),
            "--max-batch", str(max_batch), "--batch-timeout-ms", str(timeout_ms),
            "--log-level", "WARNING", *extra,
        ],
        env=env,
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while not port_file.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit("the cloud node did not start")
        time.sleep(0.1)
    return proc, int(port_file.read_text())


def request(crossing: list, arrays: list[np.ndarray], codec: str) -> Any:
    """The ModelInfer request of one frame's crossing tensors, encoded with ``codec``."""
    from partitioner.deploy.crossing import encode_inputs
    from protos import allocator, serde

    allocator.keep_freed_memory()
    inputs, params = encode_inputs(arrays, crossing, codec)
    return serde.request_to_proto(
        serde.InferRequest("resnet18", inputs, model_version="1", input_parameters=params)
    )


def load(
    port: int,
    crossing: list,
    arrays: list[np.ndarray],
    codec: str,
    clients: int,
    seconds: float,
    on_start: Callable[[], None] | None = None,
) -> dict:
    """``clients`` closed-loop callers for ``seconds`` after a warm-up (``on_start`` is called
    between the two)."""
    from protos import transport
    from protos.inference import grpc_service_pb2_grpc as pb_grpc

    msg = request(crossing, arrays, codec)
    stubs = [
        pb_grpc.GRPCInferenceServiceStub(transport.build_channel(f"127.0.0.1:{port}"))
        for _ in range(clients)
    ]
    for stub in stubs:  # warm up: connect, load, first batches
        stub.ModelInfer(msg, timeout=120)
    if on_start is not None:
        on_start()
    stop = time.monotonic() + seconds
    latencies: list[list[float]] = [[] for _ in range(clients)]
    batches: list[list[int]] = [[] for _ in range(clients)]
    barrier = threading.Barrier(clients)

    def client(i: int) -> None:
        barrier.wait()
        while time.monotonic() < stop:
            start = time.perf_counter()
            reply = stubs[i].ModelInfer(msg, timeout=120)
            latencies[i].append(time.perf_counter() - start)
            batches[i].append(int(reply.parameters["edgecut.batch_frames"].int64_param))

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.monotonic() - started
    flat = [x for lat in latencies for x in lat]
    return {
        "frames_per_s": len(flat) / wall,
        "p50_ms": float(np.percentile(flat, 50)) * 1e3,
        "p95_ms": float(np.percentile(flat, 95)) * 1e3,
        "p99_ms": float(np.percentile(flat, 99)) * 1e3,
        "mean_batch": float(np.mean([b for bs in batches for b in bs])),
        "frames": len(flat),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cut", default="layer2.1.relu2", help="resnet18 node the cut follows")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--threads", type=int, default=2, help="torch threads on the server")
    parser.add_argument("--max-batch", type=int, default=16)
    parser.add_argument("--timeout-ms", type=float, default=2.0)
    parser.add_argument("--codec", default="none", help="feature codec on the wire (none: fp32)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="edgecut-batching-") as tmp:
        root = Path(tmp)
        crossing, arrays = build(root, args.cut)
        kb = sum(a.nbytes for a in arrays) / 1024
        print(
            f"resnet18 tail after {args.cut} ({kb:.0f} KiB per frame before the {args.codec} "
            f"codec), {args.clients} clients, "
            f"{args.seconds:g} s each, server torch threads {args.threads}, "
            f"{os.cpu_count()} cores (shared)"
        )
        results = {}
        for label, max_batch in (
            ("no batching (max-batch 1)", 1),
            (f"batching (max-batch {args.max_batch})", args.max_batch),
        ):
            proc, port = serve(root, max_batch, args.timeout_ms, args.threads)
            try:
                results[label] = load(
                    port, crossing, arrays, args.codec, args.clients, args.seconds
                )
            finally:
                proc.terminate()
                proc.wait(timeout=60)
        print(f"{'':<28}{'frames/s':>10}{'p50 ms':>9}{'p95 ms':>9}{'mean batch':>12}{'frames':>8}")
        for label, r in results.items():
            print(
                f"{label:<28}{r['frames_per_s']:>10.1f}{r['p50_ms']:>9.1f}{r['p95_ms']:>9.1f}"
                f"{r['mean_batch']:>12.1f}{r['frames']:>8}"
            )
        base, batched = results.values()
        ratio = batched["frames_per_s"] / base["frames_per_s"]
        print(f"speed-up {ratio:.2f}x (goal >= 1.5x: {'ok' if ratio >= 1.5 else 'MISSED'})")


if __name__ == "__main__":
    main()
