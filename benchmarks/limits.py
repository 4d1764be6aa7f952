"""Memory of a cloud node under requests that lie about their size or invent names.

    python benchmarks/limits.py [--frames 4000] [--lies 8] [--bomb-mib 256] [--names 10000]

Goals (DESIGN.md, "Trust boundaries"): --lies concurrent zstd requests of a few hundred bytes,
each claiming --frames frames (more than the queue holds), are refused and the server's RSS
grows < 50 MB; so are --lies requests declaring one frame whose zstd stream announces
--bomb-mib MiB; --names requests for invented --name-kib KiB model names grow it < 20 MB and
leave /metrics < 100 KB; a 1 MiB model name is answered NOT_FOUND; a valid batch over the
queue limit is refused naming that limit. The node (digits_cnn cut after relu1: 8 KiB per
frame) runs in its own process with JSON logs, one fresh node per scenario, warmed up first;
VmRSS (now) and VmHWM (peak) are read from its /proc/PID/status.
"""

from __future__ import annotations

import argparse
import json
import struct
import subprocess
import sys
import tempfile
import threading
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

MODEL = "digits_cnn"
SERVER = """
import json, sys
from cloud_node.logs import configure
from cloud_node.server import CloudConfig, CloudNode
configure("INFO")
node = CloudNode(CloudConfig(repository=sys.argv[1], port=0, metrics_port=0, threads=1))
port = node.start()
print(json.dumps({"port": port, "metrics_port": node.metrics_port}), flush=True)
sys.stdin.read()
node.stop(grace_s=0)
"""


def build(root: Path) -> Any:
    from partitioner.deploy.artifact import load_split
    from partitioner.planner import Planner
    from partitioner.publish import build_repository

    planner = Planner.create(MODEL)
    build_repository(planner, root, plans=[planner.cut_after("relu1")], with_local=False)
    return load_split(root / MODEL / "1").crossing


def memory_mb(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) of a process in MB: resident now, and its peak."""
    fields = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
    )
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


def call(stub: Any, msg: Any) -> tuple[str, str]:
    import grpc

    try:
        stub.ModelInfer(msg, timeout=120)
    except grpc.RpcError as exc:
        return exc.code().name, exc.details() or ""
    return "OK", ""


def concurrently(stub: Any, messages: list[Any], threads: int) -> list[tuple[str, str]]:
    results: list[tuple[str, str]] = [("", "")] * len(messages)

    def work(offset: int) -> None:
        for i in range(offset, len(messages), threads):
            results[i] = call(stub, messages[i])

    workers = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return results


class Node:
    """The cloud node in its own process: its stub, VmRSS, /metrics and JSON log file."""

    def __init__(self, root: Path, warm_up: Any, *, warm_threads: int) -> None:
        self.root, self.warm_up, self.warm_threads = root, warm_up, warm_threads
        self.log_path = root / "server.log"

    def __enter__(self) -> Node:
        from protos import transport
        from protos.inference import grpc_service_pb2_grpc as pb_grpc

        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", SERVER, str(self.root)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
            )
        assert self.proc.stdout is not None
        self.ports = json.loads(self.proc.stdout.readline())
        channel = transport.build_channel(f"127.0.0.1:{self.ports['port']}")
        self.stub = pb_grpc.GRPCInferenceServiceStub(channel)
        # Warm up: the handler threads that serve the scenario have each run once.
        concurrently(self.stub, [self.warm_up] * 64, self.warm_threads)
        return self

    def __exit__(self, *exc: object) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(timeout=60)

    def memory_mb(self) -> tuple[float, float]:
        return memory_mb(self.proc.pid)

    def flood(self, label: str, messages: list[Any], threads: int, goal_mb: float) -> list:
        """Send ``messages`` from ``threads`` threads; print the codes and the memory growth."""
        (rss0, peak0) = self.memory_mb()
        replies = concurrently(self.stub, messages, threads)
        (rss1, peak1) = self.memory_mb()
        print(
            f"{label}: {dict(Counter(code for code, _ in replies))}, RSS {rss0:.1f} -> "
            f"{rss1:.1f} MB (+{rss1 - rss0:.1f}), peak {peak0:.1f} -> {peak1:.1f} MB "
            f"(+{peak1 - peak0:.1f}; goal < {goal_mb:g})"
        )
        print(f"  reply: {replies[0][1][:160]!r} ({len(replies[0][1])} chars)")
        return replies

    def metrics(self) -> bytes:
        import urllib.request

        url = f"http://127.0.0.1:{self.ports['metrics_port']}/metrics"
        return bytes(urllib.request.urlopen(url, timeout=60).read())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=4000, help="frames each lie claims")
    parser.add_argument("--lies", type=int, default=8, help="concurrent lying requests")
    parser.add_argument("--bomb-mib", type=int, default=256, help="what each zstd bomb announces")
    parser.add_argument("--names", type=int, default=10_000, help="requests with invented names")
    parser.add_argument("--name-kib", type=int, default=8, help="length of each invented name")
    args = parser.parse_args()

    import zstandard

    from partitioner.deploy.crossing import encode_inputs
    from protos import serde

    def request(inputs: dict, model: str = MODEL, **kwargs: Any) -> Any:
        return serde.request_to_proto(serde.InferRequest(model, inputs, **kwargs))

    with tempfile.TemporaryDirectory(prefix="edgecut-limits-") as tmp:
        root = Path(tmp)
        crossing = build(root)
        name, shape = crossing[0].name, (1, *crossing[0].shape[1:])
        good = request({name: np.zeros(shape, np.float32)})
        print(f"digits_cnn after relu1 {list(shape[1:])} FP32; each scenario on a fresh node")

        with Node(root, good, warm_threads=args.lies) as node:
            zeros = np.zeros((args.frames, *shape[1:]), np.float32)
            inputs, params = encode_inputs([zeros], crossing, "zstd")
            lie = request(inputs, input_parameters=params)
            label = (
                f"{args.lies} zstd requests of {lie.ByteSize()} bytes claiming {args.frames} frames"
            )
            node.flood(label, [lie] * args.lies, args.lies, goal_mb=50)

        with Node(root, good, warm_threads=args.lies) as node:
            _, params = encode_inputs([np.zeros(shape, np.float32)], crossing, "zstd")
            # The zstd stage's header (flags 0: dense, body bytes: one frame), then one zstd
            # frame whose own header announces --bomb-mib MiB of content.
            bomb = zstandard.ZstdCompressor(level=1).compress(bytes(args.bomb_mib << 20))
            payload = struct.pack("<BI", 0, int(np.prod(shape)) * 4) + bomb
            lie = request({name: np.frombuffer(payload, np.uint8)}, input_parameters=params)
            label = (
                f"{args.lies} requests of one frame ({lie.ByteSize()} bytes) whose zstd stream "
                f"announces {args.bomb_mib} MiB"
            )
            node.flood(label, [lie] * args.lies, args.lies, goal_mb=50)

        with Node(root, good, warm_threads=4) as node:
            invented = [
                request(
                    {name: np.zeros(shape, np.float32)},
                    model=f"{i:08d}".ljust(1024 * args.name_kib, "x"),
                )
                for i in range(args.names)
            ]
            label = f"{args.names} requests with invented {args.name_kib} KiB model names"
            node.flood(label, invented, 4, goal_mb=20)
            del invented
            print(f"  /metrics {len(node.metrics()) / 1024:.1f} KiB (goal < 100)")

            one = {name: np.zeros(shape, np.float32)}
            code, details = call(node.stub, request(one, model="m" * 2**20))
            print(f"1 MiB model name: {code} ({len(details)} chars) {details[:120]!r}")

            batch = np.zeros((1025, *shape[1:]), np.float32)
            code, details = call(node.stub, request({name: batch}))
            print(f"valid batch of 1025 frames (queue limit 1024): {code}: {details}")
        lines = node.log_path.read_bytes().splitlines()
        print(f"server log: {len(lines)} lines, longest {max(map(len, lines)) / 1024:.1f} KiB")


if __name__ == "__main__":
    main()
