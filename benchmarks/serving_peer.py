"""edgecut's cloud node against MLServer and a real Triton (PyTriton), same tail, same client.

    python benchmarks/serving_peer.py [--streams 1,8,32] [--rounds 2] [--seconds 8]
        [--mlserver-python PY] [--pytriton-python PY] [--engine pt2|torchscript]

Goal (issue 14): edgecut serves >= 1.5x MLServer's frames/s at 8 and 32 streams, batching on.

The resnet18 tail after ``layer2.1.relu2`` (a 224x224 frame: 128x28x28 fp32, 401 KB on the
wire) is built once, exported with ``edgecut repository export --format triton``, and served
by each server with dynamic batching at the same size and window (16 frames, 1 ms) and one
torch thread. Every server is pinned to one core and the client to the other (taskset);
the client is tritonclient.grpc, unchanged, one channel per stream in a closed loop
(``peers/oip_load.py``). Servers take turns in rounds whose order flips every round
(A B C, C B A, ...), so a neighbour's load on this shared machine falls on all of them; the
table gives each server's median over rounds and the median (and range) of the ratios taken
within each round.

MLServer and PyTriton live in virtual environments of their own (PyTriton pins numpy<2 and
protobuf<7, which edgecut's environment cannot take)::

    python3.11 -m venv /tmp/ec-mlserver && /tmp/ec-mlserver/bin/pip install mlserver \\
        torch==2.13.0 'tritonclient[grpc]'
    python3.11 -m venv /tmp/ec-pytriton && /tmp/ec-pytriton/bin/pip install nvidia-pytriton \\
        torch==2.13.0

and are found through ``--mlserver-python``/``--pytriton-python`` or the environment
variables ``EDGECUT_MLSERVER_PYTHON``/``EDGECUT_PYTRITON_PYTHON``; a server without one is
left out and the run says so. ``--engine pt2`` (the default) has the peers run the split's
``tail.pt2`` through torch.export, as the edgecut node does, so the comparison measures the
serving stacks; ``torchscript`` has them run the export's ``model.pt``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

PEERS = Path(__file__).with_name("peers")
MODEL = "resnet18"
CUT = "layer2.1.relu2"


@dataclass
class Server:
    label: str
    proc: subprocess.Popen[bytes]
    url: str


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pinned(core: int | None) -> list[str]:
    return ["taskset", "-c", str(core)] if core is not None else []


def wait_until(ready: Callable[[], bool], proc: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + 240
    while not ready():
        if proc.poll() is not None:
            raise SystemExit(f"{what} exited with {proc.returncode} before it was ready")
        if time.monotonic() > deadline:
            raise SystemExit(f"{what} was not ready within 240 s")
        time.sleep(0.3)


def http_ready(port: int) -> Callable[[], bool]:
    def check() -> bool:
        url = f"http://127.0.0.1:{port}/v2/models/{MODEL}/versions/1/ready"
        try:
            with urllib.request.urlopen(url, timeout=2) as reply:
                return bool(reply.status == 200)
        except OSError:
            return False

    return check


def build(root: Path) -> tuple[Path, Path, Path]:
    """The repository, the Triton export's model directory, and one frame's crossing tensors."""
    import torch

    from partitioner.deploy.artifact import load_split
    from partitioner.planner import Planner
    from partitioner.publish import build_repository
    from partitioner.triton_export import export_triton

    planner = Planner.create(MODEL, input_shape=(1, 3, 224, 224))
    repo = root / "repository"
    build_repository(planner, repo, plans=[planner.cut_after(CUT)], with_local=False)
    (exported,) = export_triton(repo, root / "triton")
    artifact = load_split(repo / MODEL / "1")
    x = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    crossing = {
        t.name: a.numpy() for t, a in zip(artifact.crossing, artifact.run_head(x), strict=True)
    }
    np.savez(root / "frame.npz", **crossing)  # type: ignore[arg-type]
    return repo, exported.path, root / "frame.npz"


def start_edgecut(repo: Path, root: Path, core: int | None, args: argparse.Namespace) -> Server:
    port_file = root / "edgecut.port"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE"}
    proc = subprocess.Popen(
        [
            *pinned(core), sys.executable, "-m", "edgecut.cli", "cloud", "serve",
            "--repository", str(repo), "--port", "0", "--port-file", str(port_file),
            "--threads", "1", "--max-batch", str(args.max_batch),
            "--batch-timeout-ms", str(args.batch_timeout_ms), "--log-level", "WARNING",
        ],
        env=env,
    )  # fmt: skip
    wait_until(port_file.exists, proc, "edgecut cloud serve")
    return Server("edgecut", proc, f"127.0.0.1:{int(port_file.read_text())}")


def start_mlserver(
    python: str, model_dir: Path, tail: Path | None, root: Path, core: int | None,
    args: argparse.Namespace,
) -> Server:  # fmt: skip
    grpc_port, http_port = free_port(), free_port()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE"}
    log = (root / "mlserver.log").open("wb")
    proc = subprocess.Popen(
        [
            *pinned(core), python, str(PEERS / "mlserver_serve.py"), str(model_dir),
            "--grpc-port", str(grpc_port), "--http-port", str(http_port), "--threads", "1",
            "--max-batch", str(args.max_batch), "--batch-timeout-ms", str(args.batch_timeout_ms),
            "--workdir", str(root / "mlserver"), *(["--tail", str(tail)] if tail else []),
        ],
        env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    wait_until(http_ready(http_port), proc, f"MLServer (log: {root / 'mlserver.log'})")
    return Server("MLServer", proc, f"127.0.0.1:{grpc_port}")


def start_pytriton(
    python: str, model_dir: Path, tail: Path | None, root: Path, core: int | None
) -> Server:
    grpc_port = free_port()
    ready = root / "pytriton.ready"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE"}
    log = (root / "pytriton.log").open("wb")
    proc = subprocess.Popen(
        [
            *pinned(core), python, str(PEERS / "pytriton_serve.py"), str(model_dir),
            "--grpc-port", str(grpc_port), "--http-port", str(free_port()),
            "--metrics-port", str(free_port()), "--threads", "1", "--ready-file", str(ready),
            *(["--tail", str(tail)] if tail else []),
        ],
        env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    wait_until(ready.exists, proc, f"PyTriton (log: {root / 'pytriton.log'})")
    return Server("PyTriton", proc, f"127.0.0.1:{grpc_port}")


def measure(
    server: Server, frame: Path, streams: int, root: Path, core: int | None,
    args: argparse.Namespace,
) -> dict[str, Any]:  # fmt: skip
    config = root / f"load-{server.label}-{streams}.json"
    config.write_text(
        json.dumps(
            {
                "url": server.url,
                "model": MODEL,
                "version": "1",
                "inputs": str(frame),
                "streams": streams,
                "warmup_s": args.warmup,
                "seconds": args.seconds,
            }
        )
    )
    proc = subprocess.run(
        [*pinned(core), sys.executable, str(PEERS / "oip_load.py"), str(config)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    if proc.returncode != 0:
        raise SystemExit(f"the client failed against {server.label}: {proc.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    if result["errors"]:
        raise SystemExit(f"{server.label} refused requests: {result['errors']}")
    return result


def stop(server: Server) -> None:
    server.proc.send_signal(signal.SIGTERM)
    try:
        server.proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        server.proc.kill()
        server.proc.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", default="1,8,32", help="concurrent streams, comma-separated")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=8.0, help="measured window per run")
    parser.add_argument("--warmup", type=float, default=2.0, help="unmeasured start per run")
    parser.add_argument("--max-batch", type=int, default=16)
    parser.add_argument("--batch-timeout-ms", type=float, default=1.0)
    parser.add_argument("--engine", choices=["pt2", "torchscript"], default="pt2")
    parser.add_argument("--mlserver-python", default=os.environ.get("EDGECUT_MLSERVER_PYTHON"))
    parser.add_argument("--pytriton-python", default=os.environ.get("EDGECUT_PYTRITON_PYTHON"))
    parser.add_argument("--no-pin", action="store_true", help="do not pin with taskset")
    args = parser.parse_args()
    stream_counts = [int(s) for s in args.streams.split(",")]

    cores = sorted(os.sched_getaffinity(0))
    pin = not args.no_pin and len(cores) >= 2 and shutil.which("taskset") is not None
    server_core, client_core = (cores[-1], cores[0]) if pin else (None, None)
    with tempfile.TemporaryDirectory(prefix="edgecut-serving-peer-") as tmp:
        root = Path(tmp)
        repo, model_dir, frame = build(root)
        tail = repo / MODEL / "1" / "tail.pt2" if args.engine == "pt2" else None
        kb = sum(a.nbytes for a in np.load(frame).values()) / 1000
        print(
            f"resnet18 tail after {CUT}: {kb:.0f} KB per frame; batching {args.max_batch} "
            f"frames / {args.batch_timeout_ms:g} ms; 1 torch thread; peers run "
            f"{'tail.pt2 (torch.export)' if tail else 'model.pt (TorchScript)'}; "
            + (f"server on core {server_core}, client on core {client_core}" if pin else "unpinned")
        )
        servers = [start_edgecut(repo, root, server_core, args)]
        if args.mlserver_python:
            servers.append(
                start_mlserver(args.mlserver_python, model_dir, tail, root, server_core, args)
            )
        else:
            print("MLServer left out: give --mlserver-python (see the module doc)")
        if args.pytriton_python:
            servers.append(start_pytriton(args.pytriton_python, model_dir, tail, root, server_core))
        else:
            print("PyTriton left out: give --pytriton-python (see the module doc)")
        results: dict[tuple[str, int], list[dict[str, Any]]] = {}
        try:
            for r in range(args.rounds):
                order = servers if r % 2 == 0 else servers[::-1]
                for streams in stream_counts:
                    for server in order:
                        result = measure(server, frame, streams, root, client_core, args)
                        results.setdefault((server.label, streams), []).append(result)
                        batch = result["mean_batch"]
                        print(
                            f"round {r + 1} {server.label:9s} {streams:3d} streams: "
                            f"{result['frames_per_s']:7.1f} frames/s, p50 "
                            f"{result['p50_ms']:7.1f} ms, p99 {result['p99_ms']:7.1f} ms, "
                            f"mean batch {'-' if batch is None else f'{batch:.1f}'}",
                            flush=True,
                        )
        finally:
            for server in servers:
                stop(server)
        report(servers, stream_counts, results)


def report(
    servers: list[Server], stream_counts: list[int], results: dict[tuple[str, int], list[Any]]
) -> None:
    """Median frames/s per server over rounds, and the median of each round's own ratio
    (edgecut against a peer measured seconds apart, so both saw about the same machine)."""
    labels = [s.label for s in servers]
    others = [label for label in labels if label != "edgecut"]
    print("\nmedian frames/s over rounds (mean batch), and the median of the rounds' ratios:")
    header = f"{'streams':>7s} " + " ".join(f"{label:>18s}" for label in labels)
    header += "".join(f" {'edgecut/' + o:>18s}" for o in others)
    print(header)
    for streams in stream_counts:
        cells = []
        for label in labels:
            runs = results[(label, streams)]
            fps = statistics.median(x["frames_per_s"] for x in runs)
            batches = [x["mean_batch"] for x in runs if x["mean_batch"]]
            batch = f"({statistics.mean(batches):.1f})" if batches else "(-)"
            cells.append(f"{fps:11.1f} {batch:>6s}")
        ratios = []
        for other in others:
            paired = [
                e["frames_per_s"] / o["frames_per_s"]
                for e, o in zip(
                    results[("edgecut", streams)], results[(other, streams)], strict=True
                )
            ]
            ratios.append(
                f"{statistics.median(paired):8.2f}x ({min(paired):.2f}-{max(paired):.2f})"
            )
        print(f"{streams:7d} " + " ".join(cells) + "".join(f" {r:>18s}" for r in ratios))


if __name__ == "__main__":
    main()
