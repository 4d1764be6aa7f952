"""Instances and the lone caller: frames/s of `--instances 2` against 1, and one stream's p99
with batching on against off.

    python benchmarks/instances.py [--streams 32] [--seconds 8] [--rounds 3]

Goals (issue 14): `--instances 2` serves >= 1.4x the frames/s of `--instances 1` at 32 streams
on this 2-core host, one torch thread per instance; one stream's p99 with batching on
(max-batch 16, the 1 ms default window) is within 15% of batching off (max-batch 1).

The same resnet18 tail as benchmarks/batching.py (cut after layer2.1.relu2, 401 KB of fp32
per frame), each node an `edgecut cloud serve` process. The two nodes of a comparison run
side by side, idle while the other is measured, and are measured in turn for --rounds rounds
(A B, B A, A B, ...), so drift of a shared machine falls on both; the figure quoted is the median
of the rounds' ratios. For one stream the two nodes take turns request by request.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from batching import build, load, request, serve  # a sibling script, not a package


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` and its threads so far (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def compare(
    root: Path,
    crossing: list,
    arrays: list,
    label: str,
    nodes: dict[str, tuple[int, float, int, tuple[str, ...]]],
    streams: int,
    seconds: float,
    rounds: int,
) -> dict[str, list[dict]]:
    """Start every node of ``nodes`` (name -> max_batch, timeout_ms, threads, flags), then
    load them in turn ``rounds`` times with ``streams`` closed-loop streams."""
    running = {name: serve(root, *spec[:3], *spec[3]) for name, spec in nodes.items()}
    results: dict[str, list[dict]] = {name: [] for name in nodes}
    try:
        for r in range(rounds):
            order = list(running.items())
            for name, (proc, port) in order if r % 2 == 0 else order[::-1]:  # A B, B A, ...
                mark: list[float] = []
                result = load(
                    port, crossing, arrays, "none", streams, seconds,
                    on_start=lambda pid=proc.pid, mark=mark: mark.extend(
                        (cpu_s(pid), time.monotonic())
                    ),
                )  # fmt: skip
                # The server's CPU over the timed run: how many cores it got.
                result["server_cores"] = (cpu_s(proc.pid) - mark[0]) / (time.monotonic() - mark[1])
                results[name].append(result)
                print(
                    f"  {label} round {r + 1}: {name:<26} {result['frames_per_s']:7.1f} frames/s"
                    f"  p50 {result['p50_ms']:6.1f}  p99 {result['p99_ms']:6.1f} ms"
                    f"  mean batch {result['mean_batch']:4.1f}"
                    f"  server cores {result['server_cores']:4.2f}",
                    flush=True,
                )
    finally:
        for proc, _port in running.values():
            proc.terminate()
            proc.wait(timeout=60)
    return results


def lone_stream(root: Path, crossing: list, arrays: list, args: argparse.Namespace) -> None:
    """One stream's latency with batching off and on: one caller alternates its requests
    between the two nodes (off, on, off, on ...), so both meet the same moments of a shared
    machine; the p99 of each over the whole run, and per round."""
    import numpy as np

    from protos import transport
    from protos.inference import grpc_service_pb2_grpc as pb_grpc

    nodes = {
        "off (max-batch 1)": serve(root, 1, args.timeout_ms, 1),
        f"on (max-batch {args.max_batch})": serve(root, args.max_batch, args.timeout_ms, 1),
    }
    msg = request(crossing, arrays, "none")
    try:
        stubs = {
            name: pb_grpc.GRPCInferenceServiceStub(transport.build_channel(f"127.0.0.1:{port}"))
            for name, (_proc, port) in nodes.items()
        }
        latencies: dict[str, list[list[float]]] = {name: [] for name in nodes}
        for _ in range(args.rounds):
            for series in latencies.values():
                series.append([])
            for stub in stubs.values():  # warm up
                stub.ModelInfer(msg, timeout=120)
            stop = time.monotonic() + args.lone_seconds
            while time.monotonic() < stop:
                for name, stub in stubs.items():
                    started = time.perf_counter()
                    stub.ModelInfer(msg, timeout=120)
                    latencies[name][-1].append(time.perf_counter() - started)
    finally:
        for proc, _port in nodes.values():
            proc.terminate()
            proc.wait(timeout=60)
    p99 = {
        name: [float(np.percentile(r, 99)) * 1e3 for r in rounds]
        for name, rounds in latencies.items()
    }
    for name, rounds in latencies.items():
        every = [x for r in rounds for x in r]
        print(
            f"  1 stream, batching {name:<18} p50 {np.percentile(every, 50) * 1e3:6.1f}  "
            f"p99 {np.percentile(every, 99) * 1e3:6.1f} ms over {len(every)} requests in "
            f"{args.rounds} rounds of {args.lone_seconds:g} s; p99 per "
            f"round {', '.join(f'{x:.1f}' for x in p99[name])} ms"
        )
    off, on = p99.values()
    ratios = [b / a for a, b in zip(off, on, strict=True)]
    ratio = statistics.median(ratios)
    print(
        f"one stream p99 on/off per round {', '.join(f'{x:.2f}' for x in ratios)}; median "
        f"{ratio:.2f} (goal <= 1.15: {'ok' if ratio <= 1.15 else 'MISSED'})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cut", default="layer2.1.relu2", help="resnet18 node the cut follows")
    parser.add_argument("--streams", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=8.0, help="per measurement")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--max-batch", type=int, default=16)
    parser.add_argument("--timeout-ms", type=float, default=1.0, help="the batching window")
    parser.add_argument("--lone-seconds", type=float, default=10.0)
    parser.add_argument("--skip", choices=["instances", "lone"], help="measure only the other")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="edgecut-instances-") as tmp:
        root = Path(tmp)
        crossing, arrays = build(root, args.cut)
        kb = sum(a.nbytes for a in arrays) / 1024
        print(
            f"resnet18 tail after {args.cut} ({kb:.0f} KiB per frame), {os.cpu_count()} cores "
            f"(shared), {args.rounds} rounds of {args.seconds:g} s"
        )
        if args.skip != "instances":
            mb, window = args.max_batch, args.timeout_ms
            nodes = {
                "--instances 1 --threads 1": (mb, window, 1, ("--instances", "1")),
                "--instances 2 --threads 1": (mb, window, 1, ("--instances", "2")),
            }
            one, two = compare(
                root, crossing, arrays, f"{args.streams} streams", nodes, args.streams,
                args.seconds, args.rounds,
            ).values()  # fmt: skip
            ratios = [b["frames_per_s"] / a["frames_per_s"] for a, b in zip(one, two, strict=True)]
            ratio = statistics.median(ratios)
            print(
                f"instances 1: {statistics.median(r['frames_per_s'] for r in one):.1f} frames/s, "
                f"instances 2: {statistics.median(r['frames_per_s'] for r in two):.1f} frames/s "
                f"(medians); ratio per round {', '.join(f'{x:.2f}' for x in ratios)}; median "
                f"{ratio:.2f}x (goal >= 1.4x: {'ok' if ratio >= 1.4 else 'MISSED'})"
            )
        if args.skip != "lone":
            lone_stream(root, crossing, arrays, args)


if __name__ == "__main__":
    main()
