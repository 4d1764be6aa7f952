"""Bounded memory under lies: a request's size is decided from what it declares, before any
decoding, and the names clients send never become unbounded state.

The memory tests run the node in its own process and read its /proc/PID/status, so that the
client's own allocations do not count; they compare VmHWM (the peak) or VmRSS before and after
against bounds far from both the noise (< 1 MB here) and the growth before these limits
existed (hundreds of MB). benchmarks/limits.py prints the full-size figures.
"""

from __future__ import annotations

import io
import json
import os
import struct
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
import zstandard
from prometheus_client import generate_latest

import cloud_node
from partitioner.deploy import crossing
from protos import serde, transport
from protos.inference import grpc_service_pb2 as pb
from protos.inference import grpc_service_pb2_grpc as pb_grpc

MODEL = "digits_cnn"
# Version 2 of the test repository crosses after relu1: FP32 [-1, 32, 8, 8], 8 KiB per frame.
VERSION, TENSOR, FRAME = "2", "relu1", (32, 8, 8)
QUEUE_FRAMES = 1024  # CloudConfig's default max_queue_frames

SERVER = """
import json, sys
from cloud_node.logs import configure
from cloud_node.server import CloudConfig, CloudNode
configure("WARNING")
node = CloudNode(CloudConfig(repository=sys.argv[1], port=0, metrics_port=0, threads=1))
port = node.start()
print(json.dumps({"port": port, "metrics_port": node.metrics_port}), flush=True)
sys.stdin.read()  # serve until the test closes stdin
node.stop(grace_s=0)
"""


@dataclass
class NodeProcess:
    proc: subprocess.Popen[bytes]
    port: int
    metrics_port: int

    def stub(self) -> Any:
        channel = transport.build_channel(f"127.0.0.1:{self.port}")
        return pb_grpc.GRPCInferenceServiceStub(channel)

    def memory_mb(self) -> tuple[float, float]:
        """(VmRSS, VmHWM) in MB: resident now, and the peak since the process started."""
        status = Path(f"/proc/{self.proc.pid}/status").read_text().splitlines()
        fields = dict(line.split(":", 1) for line in status)
        return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024

    def metrics(self) -> str:
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        return str(urllib.request.urlopen(url, timeout=60).read().decode())


@pytest.fixture
def node_process(repo: Any, tmp_path: Path) -> Iterator[NodeProcess]:
    """A cloud node of the test repository in its own process (stderr in tmp_path/node.log)."""
    # The node runs the code under test: the checkout this cloud_node was imported from.
    checkout = str(Path(cloud_node.__file__).resolve().parents[1])
    path = os.pathsep.join(p for p in (checkout, os.environ.get("PYTHONPATH")) if p)
    with (tmp_path / "node.log").open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-c", SERVER, str(repo.root)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log,
            cwd=tmp_path,
            env={**os.environ, "PYTHONPATH": path},
        )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line, f"the node did not start: {(tmp_path / 'node.log').read_text()[-2000:]}"
        ports = json.loads(line)
        yield NodeProcess(proc, ports["port"], ports["metrics_port"])
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=60)


def request(inputs: dict[str, np.ndarray], *, model: str = MODEL, **kwargs: Any) -> Any:
    kwargs.setdefault("model_version", VERSION)
    return serde.request_to_proto(serde.InferRequest(model, inputs, **kwargs))


def one_frame() -> dict[str, np.ndarray]:
    return {TENSOR: np.zeros((1, *FRAME), np.float32)}


def call(stub: Any, msg: Any) -> tuple[grpc.StatusCode, str]:
    try:
        stub.ModelInfer(msg, timeout=120)
    except grpc.RpcError as exc:
        return exc.code(), exc.details() or ""
    return grpc.StatusCode.OK, ""


def concurrently(stub: Any, messages: list[Any], threads: int) -> list[tuple[Any, str]]:
    """Send ``messages`` from ``threads`` client threads at once; their codes and details."""
    results: list[tuple[Any, str]] = [(None, "")] * len(messages)
    start = threading.Barrier(threads)

    def work(first: int) -> None:
        start.wait(60)
        for i in range(first, len(messages), threads):
            results[i] = call(stub, messages[i])

    workers = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(300)
    return results


def warm_up(stub: Any, threads: int, failing: Any = None) -> None:
    """Every handler thread the test will use has served a request (and a refusal) once."""
    served = concurrently(stub, [request(one_frame())] * (4 * threads), threads)
    assert all(code == grpc.StatusCode.OK for code, _ in served), served[0]
    if failing is not None:
        concurrently(stub, [failing] * (4 * threads), threads)


# ------------------------------------------------------- sizes decided before decoding


def test_compressed_requests_claiming_thousands_of_frames_are_refused_undecoded(
    repo: Any, node_process: NodeProcess
) -> None:
    stub = node_process.stub()
    warm_up(stub, threads=8)
    # What an edge sends for 4000 frames of zeros with zstd: a few hundred bytes in all.
    zeros = np.zeros((4000, *FRAME), np.float32)
    inputs, params = crossing.encode_inputs([zeros], repo.artifact(VERSION).crossing, "zstd")
    lie = request(inputs, input_parameters=params)
    assert lie.ByteSize() < 1024
    _, peak_before = node_process.memory_mb()
    replies = concurrently(stub, [lie] * 8, threads=8)
    _, peak_after = node_process.memory_mb()
    for code, details in replies:
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED, details
        assert details == f"batch of 4000 frames exceeds the queue limit of {QUEUE_FRAMES} frames"
    # Decoded before they were refused, they took the node's peak up by 477 MB.
    assert peak_after - peak_before < 50, (peak_before, peak_after)


def test_a_zstd_stream_announcing_more_than_its_frame_is_refused_unread(
    repo: Any, node_process: NodeProcess
) -> None:
    stub = node_process.stub()
    warm_up(stub, threads=8)
    specs = repo.artifact(VERSION).crossing
    _, params = crossing.encode_inputs([np.zeros((1, *FRAME), np.float32)], specs, "zstd")
    # The zstd stage's header (flags 0: dense; 8 KiB: one frame), then a zstd frame of 8 KiB
    # whose own header announces 256 MiB of content.
    bomb = zstandard.ZstdCompressor(level=1).compress(bytes(256 << 20))
    payload = struct.pack("<BI", 0, int(np.prod(FRAME)) * 4) + bomb
    lie = request({TENSOR: np.frombuffer(payload, np.uint8)}, input_parameters=params)
    _, peak_before = node_process.memory_mb()
    replies = concurrently(stub, [lie] * 8, threads=8)
    _, peak_after = node_process.memory_mb()
    for code, details in replies:
        assert code == grpc.StatusCode.INVALID_ARGUMENT, details
        assert "zstd frame announces 268435456 bytes, the stage header 8192" in details
    # Believed, the frames took the node's peak up by about 2 GB (8 x 256 MiB).
    assert peak_after - peak_before < 50, (peak_before, peak_after)


def test_a_valid_batch_over_the_queue_limit_is_refused_naming_the_limit(
    start_cloud: Callable[..., Any],
) -> None:
    cloud = start_cloud(max_queue_frames=8)
    stub = cloud.stub()
    code, details = call(stub, request({TENSOR: np.ones((9, *FRAME), np.float32)}))
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert details == "batch of 9 frames exceeds the queue limit of 8 frames"
    assert "busy" not in details
    # The limit itself is served.
    assert call(stub, request({TENSOR: np.ones((8, *FRAME), np.float32)}))[0] == grpc.StatusCode.OK


# ------------------------------------------------- names never become unbounded state


def test_invented_model_names_share_one_metrics_series(node_process: NodeProcess) -> None:
    stub = node_process.stub()
    # 8 KiB names, each new; 2,000 of them here, 10,000 in benchmarks/limits.py.
    count, name_chars = 2000, 8 * 1024
    invented = [request(one_frame(), model=f"{i:08d}".ljust(name_chars, "x")) for i in range(count)]
    warm_up(stub, threads=4, failing=request(one_frame(), model="x" * name_chars))
    rss_before, _ = node_process.memory_mb()
    replies = concurrently(stub, invented, threads=4)
    rss_after, _ = node_process.memory_mb()
    for code, details in replies:
        assert code == grpc.StatusCode.NOT_FOUND, details
        assert len(details) < 200
    text = node_process.metrics()
    # Each name was a series of every metric: 10,000 names made /metrics 165 MB and RSS +86 MB.
    # The goal at 10,000 names is RSS < +20 MB and /metrics < 100 KB; for 2,000, +4 MB.
    assert len(text) < 100 * 1024, len(text)
    assert rss_after - rss_before < 20 * count / 10_000, (rss_before, rss_after)
    assert 'edgecut_requests_total{code="NOT_FOUND",model="_unknown",version="_unknown"}' in text
    assert "xxxxxxxx" not in text


HUGE = "n" * 2**20  # 1 MiB: the request fits the message limit; its echo would not fit a reply


HUGE_ECHOES: list[tuple[str, Callable[[dict[str, np.ndarray]], Any], grpc.StatusCode, str]] = [
    (
        "model",
        lambda good: request(good, model=HUGE),
        grpc.StatusCode.NOT_FOUND,
        "unknown model 'nnnn",
    ),
    (
        "version",
        lambda good: request(good, model_version=HUGE),
        grpc.StatusCode.NOT_FOUND,
        "has no version 'nnnn",
    ),
    (
        "input name",
        lambda good: request({**good, HUGE: good[TENSOR]}),
        grpc.StatusCode.INVALID_ARGUMENT,
        "unexpected input 'nnnn",
    ),
    (
        "codec name",
        lambda good: request(good, input_parameters={TENSOR: {crossing.CODEC_PARAM: HUGE}}),
        grpc.StatusCode.INVALID_ARGUMENT,
        "unknown codec 'nnnn",
    ),
    (
        "codec shape",
        lambda good: request(
            good,
            input_parameters={
                TENSOR: {crossing.CODEC_PARAM: "int8", crossing.SHAPE_PARAM: "1," * 2**19}
            },
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "must be 4 comma-separated integers, got '1,1,",
    ),
    (
        "requested output",
        lambda good: request(good, requested_outputs=(HUGE,)),
        grpc.StatusCode.INVALID_ARGUMENT,
        "requested output 'nnnn",
    ),
]


@pytest.mark.parametrize(
    "build,code,start", [c[1:] for c in HUGE_ECHOES], ids=[c[0] for c in HUGE_ECHOES]
)
def test_a_huge_name_keeps_its_status_with_a_short_message(
    shared_cloud: Any, build: Any, code: grpc.StatusCode, start: str
) -> None:
    from cloud_node.logs import configure

    stream = io.StringIO()
    configure("INFO", stream)
    try:
        got, details = call(shared_cloud.stub(), build(one_frame()))
    finally:
        configure("WARNING", io.StringIO())
    assert got == code, details
    assert start in details and "\u2026" in details and len(details) < 600, details
    failed = [json.loads(line) for line in stream.getvalue().splitlines()]
    (logged,) = [e for e in failed if e["event"] == "request_failed"]
    assert len(json.dumps(logged)) < 1500
    text = generate_latest(shared_cloud.node.metrics.registry).decode()
    assert "nnnnnnnn" not in text


def test_model_metadata_for_a_huge_name_is_not_found(shared_cloud: Any) -> None:
    stub = shared_cloud.stub()
    with pytest.raises(grpc.RpcError) as info:
        stub.ModelMetadata(pb.ModelMetadataRequest(name=HUGE), timeout=60)
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    assert len(info.value.details() or "") < 200


def test_a_batch_whose_reply_exceeds_the_message_limit_is_refused_before_decoding(
    repo: Any,
) -> None:
    import logging

    from cloud_node.batcher import Batcher
    from cloud_node.inference import InferenceService, InFlight, add_inference_service
    from cloud_node.metrics import NodeMetrics
    from cloud_node.models import ModelStore

    store = ModelStore(repo.root)
    store.load_all()
    batcher = Batcher(max_batch=8, timeout_s=0.0)
    service = InferenceService(
        store,
        batcher,
        NodeMetrics(),
        logging.getLogger("test_limits"),
        max_request_bytes=2**20,
        max_message_bytes=200,  # digits_cnn answers 10 FP32 logits (40 bytes) per frame
        serving=lambda: True,
        in_flight=InFlight(),
    )
    server = transport.build_server(max_workers=4)
    add_inference_service(service, server)
    port = transport.add_port(server, "127.0.0.1:0")
    server.start()
    try:
        stub = pb_grpc.GRPCInferenceServiceStub(transport.build_channel(f"127.0.0.1:{port}"))
        code, details = call(stub, request({TENSOR: np.ones((6, *FRAME), np.float32)}))
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert details == (
            "batch 6 answers with 240 bytes of outputs, above this server's message limit of "
            "200 bytes"
        )
        assert call(stub, request({TENSOR: np.ones((5, *FRAME), np.float32)}))[0].name == "OK"
    finally:
        server.stop(0)
        batcher.close()
