"""Round trip of one tensor through the nodes' gRPC path vs a plain TCP socket echo.

    python benchmarks/transport.py [--repeats N]

Goals: at 1 MB and 4 MB the gRPC round trip is at most 2x the socket's; at 4 KB its p50
is at most 1 ms. Each server runs in its own process on loopback, measured in the same run:

* ``socket``: length-prefixed bytes echoed back on a TCP connection (the floor).
Every path keeps one connection for all its round trips, after 20 warm-up trips, and the
three paths take turns in blocks of 25 trips (the first 5 of each dropped) so all see the
same machine load. Edge and cloud are two machines in a deployment; here they share
one, so by default the clients run on the first CPU and every server on the last one
(``--no-pin`` lets the scheduler place them, and then the client and server threads of
one gRPC call compete for the same cores).

* ``grpc``: the edge node's client (``edge_node.client.CloudClient.infer``) sends a
  ModelInfer carrying the tensor as raw contents to a server built like the cloud node's
  (``protos.transport``, same limits and options; ModelInfer as spliced bytes, decoded by
  ``protos.splice``), which sends the same tensor back as the output.
* ``grpc bytes``: the same bytes echoed by a bare grpcio method, no protobuf: gRPC's floor.
* ``cloud node``: the same request through a real cloud node whose tail is an identity
  (validation against the manifest, the batcher's hand-off, a torch call): for reference.
"""

from __future__ import annotations

import argparse
import os
import socket
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SIZES = {"4 KB": 4 * 1024, "1 MB": 1024 * 1024, "4 MB": 4 * 1024 * 1024}
_HEADER = struct.Struct("<Q")


# ------------------------------------------------------------------- servers


def _recv_exactly(conn: socket.socket, n: int, buffer: bytearray) -> memoryview:
    view = memoryview(buffer)[:n]
    got = 0
    while got < n:
        k = conn.recv_into(view[got:], n - got)
        if not k:
            raise ConnectionError("peer closed")
        got += k
    return view


def serve_socket(port_file: Path) -> None:
    buffer = bytearray(max(SIZES.values()) + _HEADER.size)
    with socket.create_server(("127.0.0.1", 0)) as server:
        port_file.write_text(str(server.getsockname()[1]))
        while True:  # one client at a time, until the benchmark kills the process
            conn, _ = server.accept()
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with conn:
                while True:
                    try:
                        (n,) = _HEADER.unpack(_recv_exactly(conn, _HEADER.size, buffer))
                        payload = _recv_exactly(conn, n, buffer)
                    except ConnectionError:
                        break
                    conn.sendall(_HEADER.pack(n))
                    conn.sendall(payload)


def serve_grpc(port_file: Path) -> None:
    """An echo with the cloud node's transport and ModelInfer serde, and nothing else."""
    import grpc

    from protos import allocator, serde, splice, transport

    def echo(data: bytes, context: object) -> bytes:
        request = splice.request_from_wire(data)
        reply = serde.InferResponse(request.model_name, request.inputs, id=request.id)
        return splice.response_to_wire(reply)

    allocator.keep_freed_memory()
    server = transport.build_server(max_workers=4)
    handler = grpc.unary_unary_rpc_method_handler(echo)
    service = "inference.GRPCInferenceService"
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(service, {"ModelInfer": handler}),)
    )
    port = transport.add_port(server, "127.0.0.1:0")
    server.start()
    port_file.write_text(str(port))
    server.wait_for_termination()


def serve_grpc_bytes(port_file: Path) -> None:
    """The floor of gRPC itself: the request's bytes echoed back, no protobuf at all."""
    import grpc

    from protos import allocator, transport

    allocator.keep_freed_memory()
    server = transport.build_server(max_workers=4)
    handler = grpc.unary_unary_rpc_method_handler(lambda data, context: data)
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler("echo.Bytes", {"Echo": handler}),)
    )
    port = transport.add_port(server, "127.0.0.1:0")
    server.start()
    port_file.write_text(str(port))
    server.wait_for_termination()


# CPUs for the servers _start launches; None: the scheduler's choice.
_SERVER_CPUS: set[int] | None = None


def _pin(client_cpus: set[int], server_cpus: set[int]) -> None:
    """Run this process on ``client_cpus`` and servers started after this on ``server_cpus``."""
    global _SERVER_CPUS
    _SERVER_CPUS = server_cpus
    os.sched_setaffinity(0, client_cpus)  # threads started later (gRPC's) inherit it


def _start(mode: str, extra: list[str] | None = None) -> tuple[subprocess.Popen[bytes], int]:
    port_file = Path(tempfile.mkdtemp()) / "port"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE"}
    if mode == "cloud":
        cmd = [
            sys.executable, "-m", "edgecut.cli", "cloud", "serve", "--port", "0",
            "--port-file", str(port_file), "--threads", "1", "--log-level", "WARNING",
            "--batch-timeout-ms", "0", *(extra or []),
        ]  # fmt: skip
    else:
        cmd = [sys.executable, __file__, "--serve", mode, str(port_file)]
    cpus = _SERVER_CPUS
    proc = subprocess.Popen(
        cmd, env=env, preexec_fn=(lambda: os.sched_setaffinity(0, cpus)) if cpus else None
    )
    deadline = time.monotonic() + 120
    while not port_file.exists() or not port_file.read_text():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"{mode} server did not start")
        time.sleep(0.05)
    time.sleep(0.05)
    return proc, int(port_file.read_text())


# --------------------------------------------------------------------- clients
# Each client keeps one connection for all its round trips, as a real edge node keeps
# its channel: a fresh HTTP/2 connection starts with a small flow-control window that
# gRPC widens over the first transfers, which would measure connection set-up instead.


class SocketClient:
    def __init__(self, port: int, nbytes: int) -> None:
        self.payload = np.random.default_rng(0).bytes(nbytes)
        self.buffer = bytearray(nbytes + _HEADER.size)
        self.conn = socket.create_connection(("127.0.0.1", port))
        self.conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def once(self) -> None:
        self.conn.sendall(_HEADER.pack(len(self.payload)))
        self.conn.sendall(self.payload)
        (n,) = _HEADER.unpack(_recv_exactly(self.conn, _HEADER.size, self.buffer))
        assert len(_recv_exactly(self.conn, n, self.buffer)) == len(self.payload)

    def close(self) -> None:
        self.conn.close()


class NodeClient:
    """Round trips through the edge node's client (edge_node.client.CloudClient.infer)."""

    def __init__(self, port: int, nbytes: int, model: str = "echo") -> None:
        from edge_node.client import CloudClient
        from protos import serde

        array = np.random.default_rng(0).standard_normal(nbytes // 4, dtype=np.float32)
        if model != "echo":
            array = array.reshape(1, -1)
        self.request = serde.InferRequest(model, {"x": array})
        self.nbytes = array.nbytes
        self.client = CloudClient(f"127.0.0.1:{port}")

    def once(self) -> None:
        reply, _ = self.client.infer(self.request, timeout_s=60)
        (out,) = reply.outputs.values()
        assert out.nbytes == self.nbytes

    def close(self) -> None:
        self.client.close()


class BytesClient:
    """The same bytes through a bare grpcio method: gRPC's own floor."""

    def __init__(self, port: int, nbytes: int) -> None:
        from protos import allocator, transport

        allocator.keep_freed_memory()
        self.payload = np.random.default_rng(0).bytes(nbytes)
        self.channel = transport.build_channel(f"127.0.0.1:{port}")
        self.echo = self.channel.unary_unary("/echo.Bytes/Echo")

    def once(self) -> None:
        assert len(self.echo(self.payload, timeout=60)) == len(self.payload)

    def close(self) -> None:
        self.channel.close()


def interleaved(
    clients: list, repeats: int, warmup: int = 20, block: int = 25, block_warmup: int = 5
) -> list[list[float]]:
    """Round-trip seconds per client, taking turns block by block.

    Turns share the run's machine load between the paths. A turn is a block of trips,
    not a single trip: an edge node streams to one server, and alternating processes on
    every trip would measure two cores waking three servers from sleep in turn. The
    first trips of each block are discarded as that block's warm-up.
    """
    for client in clients:
        for _ in range(warmup):
            client.once()
    samples: list[list[float]] = [[] for _ in clients]
    while len(samples[0]) < repeats:
        for client, out in zip(clients, samples, strict=True):
            for i in range(block):
                start = time.perf_counter()
                client.once()
                if i >= block_warmup:
                    out.append(time.perf_counter() - start)
    return samples


def identity_repository(root: Path) -> Path:
    """A model repository whose one cut is cloud-only with an identity network: x -> x * 1."""
    import torch
    from torch import nn

    from partitioner.deploy.export import write_split
    from partitioner.model.capture import capture
    from partitioner.pricing.cost import CostModel
    from partitioner.pricing.network import NETWORKS
    from partitioner.pricing.profiles import DEVICES
    from partitioner.solve.plan import evaluate_cut

    class Identity(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x * 1.0

    for label, nbytes in SIZES.items():
        name = "id_" + label.replace(" ", "").lower()
        cap = capture(Identity(), torch.zeros(1, nbytes // 4), name=name)
        cost = CostModel(
            cap.graph, DEVICES.get("rpi4"), DEVICES.get("x86-server"), NETWORKS.get("lte")
        )
        plan = evaluate_cut(cost, cap.graph.inputs[0])
        write_split(cap, plan, root / name / "1")
    return root


# ------------------------------------------------------------------------ main


def _ms(samples: list[float], q: float) -> float:
    return float(np.percentile(samples, q)) * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=0, help="round trips per size (auto)")
    parser.add_argument("--no-node", action="store_true", help="skip the cloud node row")
    parser.add_argument(
        "--no-pin", action="store_true", help="do not keep clients and servers on separate CPUs"
    )
    parser.add_argument("--serve", nargs=2, metavar=("MODE", "PORT_FILE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        servers = {"socket": serve_socket, "grpc": serve_grpc, "grpc-bytes": serve_grpc_bytes}
        servers[args.serve[0]](Path(args.serve[1]))
        return

    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    pinned = not args.no_pin and len(cpus) >= 2
    if pinned:
        _pin({cpus[0]}, {cpus[-1]})
    rows = []
    sock, sport = _start("socket")
    grpc_proc, gport = _start("grpc")
    bytes_proc, bport = _start("grpc-bytes")
    try:
        for label, nbytes in SIZES.items():
            repeats = args.repeats or {"4 KB": 1000, "1 MB": 300, "4 MB": 100}[label]
            clients = [
                SocketClient(sport, nbytes),
                NodeClient(gport, nbytes),
                BytesClient(bport, nbytes),
            ]
            try:
                s_samples, g_samples, b_samples = interleaved(clients, repeats)
            finally:
                for client in clients:
                    client.close()
            rows.append((label, "socket echo", s_samples))
            rows.append((label, "grpc (nodes' transport + serde)", g_samples))
            rows.append((label, "grpc bytes echo (no protobuf)", b_samples))
    finally:
        for proc in (sock, grpc_proc, bytes_proc):
            proc.kill()
            proc.wait()
    if not args.no_node:
        with tempfile.TemporaryDirectory() as tmp:
            repo = identity_repository(Path(tmp))
            node, nport = _start("cloud", ["--repository", str(repo)])
            try:
                for label, nbytes in SIZES.items():
                    name = "id_" + label.replace(" ", "").lower()
                    repeats = args.repeats or {"4 KB": 300, "1 MB": 100, "4 MB": 40}[label]
                    client = NodeClient(nport, nbytes, name)
                    try:
                        (samples,) = interleaved([client], repeats)
                    finally:
                        client.close()
                    rows.append((label, "cloud node (identity tail)", samples))
            finally:
                node.terminate()
                node.wait()

    print(f"{'size':<7}{'path':<34}{'p50 ms':>9}{'p90 ms':>9}{'vs socket p50':>15}{'goal':>22}")
    socket_p50 = {label: _ms(s, 50) for label, path, s in rows if path == "socket echo"}
    for label, path, samples in rows:
        p50 = _ms(samples, 50)
        ratio = p50 / socket_p50[label]
        goal = ""
        if path.startswith("grpc (nodes"):
            goal = "<= 1 ms p50" if label == "4 KB" else "<= 2x socket"
            ok = p50 <= 1.0 if label == "4 KB" else ratio <= 2.0
            goal += " ok" if ok else " MISSED"
        print(f"{label:<7}{path:<34}{p50:>9.3f}{_ms(samples, 90):>9.3f}{ratio:>14.2f}x{goal:>22}")
    where = f"clients on CPU {cpus[0]}, servers on CPU {cpus[-1]}" if pinned else "not pinned"
    print(
        f"({len(rows[0][2])}+ round trips per row; loopback; {os.cpu_count()} cores, shared; "
        f"{where})"
    )


if __name__ == "__main__":
    main()
