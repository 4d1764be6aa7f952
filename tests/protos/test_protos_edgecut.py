"""The edgecut.v1 messages carry what the cloud node's control API needs, over real gRPC."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from protos import transport
from protos.edgecut.v1 import edgecut_pb2 as ec
from protos.edgecut.v1 import edgecut_pb2_grpc as ec_grpc


def a_model() -> ec.Model:
    plan = ec.Plan(
        solver="mincut",
        objective="latency",
        objective_value=41.5,
        edge_device="rpi4",
        cloud_device="x86-server",
        bandwidth_mbps=10.0,
        rtt_ms=20.0,
        edge_nodes=["conv1", "bn1", "relu"],
        predicted=ec.Prediction(edge_ms=12.0, transfer_ms=9.5, cloud_ms=20.0, total_ms=41.5),
        edge_only_ms=100.3,
        cloud_only_ms=60.2,
    )
    cut = ec.Cut(
        version="3",
        state=ec.CUT_STATE_READY,
        crossing=[
            ec.TensorSpec(
                name="relu",
                datatype="FP32",
                shape=[-1, 64, 112, 112],
                size_bytes=3211264,
                wire_bytes=802816,
            )
        ],
        outputs=[ec.TensorSpec(name="logits", datatype="FP32", shape=[-1, 1000], size_bytes=4000)],
        codec=ec.Codec(
            name="int8",
            wire_datatype="INT8",
            lossless="zstd",
            parameters={"granularity": ec.Value(string_value="per_tensor")},
        ),
        plan=plan,
        manifest_sha256="0" * 64,
    )
    cut.deployed_at.FromSeconds(1_700_000_000)
    return ec.Model(
        name="resnet18",
        cuts=[cut],
        default_version="3",
        breakpoints=[
            ec.Breakpoint(min_mbps=0.0, max_mbps=8.0, version="", total_ms_at_max=100.3),
            ec.Breakpoint(min_mbps=8.0, max_mbps=math.inf, version="3", edge_nodes=["conv1"]),
        ],
    )


def test_list_cuts_response_round_trips() -> None:
    response = ec.ListCutsResponse(models=[a_model()])
    back = ec.ListCutsResponse.FromString(response.SerializeToString())
    assert back == response
    model = back.models[0]
    assert model.breakpoints[-1].max_mbps == math.inf  # the open last band survives
    assert model.cuts[0].codec.parameters["granularity"].string_value == "per_tensor"
    assert model.cuts[0].plan.predicted.total_ms == 41.5


class DeployServicer(ec_grpc.EdgecutServiceServicer):
    """Enough of DeploySplit to prove the stream shape: reassemble, then verify sizes and hashes."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.manifest = ""

    def DeploySplit(
        self, request_iterator: Iterator[ec.DeploySplitRequest], context: Any
    ) -> ec.DeploySplitResponse:
        first = next(request_iterator)
        if first.WhichOneof("part") != "header":
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "the first message must be a header")
        header = first.header
        entries = {f.path: f for f in header.files}
        data = {path: bytearray() for path in entries}
        for message in request_iterator:
            chunk = message.chunk
            if chunk.path not in data or chunk.offset != len(data[chunk.path]):
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"unexpected chunk {chunk.path}")
            data[chunk.path] += chunk.data
        for path, entry in entries.items():
            blob = bytes(data[path])
            if len(blob) != entry.size_bytes or hashlib.sha256(blob).hexdigest() != entry.sha256:
                context.abort(grpc.StatusCode.DATA_LOSS, f"{path} does not match its sha256")
        self.files = {path: bytes(blob) for path, blob in data.items()}
        self.manifest = header.manifest_json
        return ec.DeploySplitResponse(
            model_name=header.model_name,
            version=header.version or "1",
            received_bytes=sum(map(len, data.values())),
        )


def upload(directory: Path, chunk_bytes: int, corrupt: str = "") -> Iterator[ec.DeploySplitRequest]:
    files = sorted(p for p in directory.rglob("*") if p.is_file())
    entries = [
        ec.FileEntry(
            path=p.relative_to(directory).as_posix(),
            size_bytes=p.stat().st_size,
            sha256=hashlib.sha256(p.read_bytes()).hexdigest(),
        )
        for p in files
    ]
    header = ec.DeployHeader(model_name="resnet18", manifest_json='{"cut": "relu"}', files=entries)
    yield ec.DeploySplitRequest(header=header)
    for path, entry in zip(files, entries, strict=True):
        blob = path.read_bytes()
        if entry.path == corrupt:
            blob = blob[:-1] + b"?"
        for offset in range(0, len(blob), chunk_bytes):
            chunk = ec.FileChunk(
                path=entry.path, offset=offset, data=blob[offset : offset + chunk_bytes]
            )
            yield ec.DeploySplitRequest(chunk=chunk)


@pytest.fixture
def deploy_target(tmp_path: Path) -> Iterator[tuple[str, DeployServicer, Path]]:
    artifact = tmp_path / "artifact"
    (artifact / "weights").mkdir(parents=True)
    (artifact / "tail.pt2").write_bytes(bytes(range(256)) * 40)
    (artifact / "weights" / "head.pt2").write_bytes(b"head" * 1000)
    (artifact / "empty.txt").write_bytes(b"")
    server = transport.build_server(max_workers=2, token="deploy-token")
    servicer = DeployServicer()  # type: ignore[abstract]  # unimplemented RPCs answer UNIMPLEMENTED
    ec_grpc.add_EdgecutServiceServicer_to_server(servicer, server)
    port = transport.add_port(server, "127.0.0.1:0")
    server.start()
    yield f"127.0.0.1:{port}", servicer, artifact
    server.stop(grace=None)


def test_deploy_split_streams_and_verifies(deploy_target: tuple[str, DeployServicer, Path]) -> None:
    target, servicer, artifact = deploy_target
    with transport.build_channel(target, token="deploy-token") as channel:
        stub = ec_grpc.EdgecutServiceStub(channel)
        reply = stub.DeploySplit(upload(artifact, chunk_bytes=1000), timeout=30)
        assert (reply.model_name, reply.version, reply.received_bytes) == ("resnet18", "1", 14240)
        assert servicer.files["weights/head.pt2"] == b"head" * 1000
        assert servicer.files["empty.txt"] == b""
        assert servicer.manifest == '{"cut": "relu"}'
        with pytest.raises(grpc.RpcError) as err:
            stub.DeploySplit(upload(artifact, 1000, corrupt="tail.pt2"), timeout=30)
        assert err.value.code() == grpc.StatusCode.DATA_LOSS
    with transport.build_channel(target) as anonymous:
        stub = ec_grpc.EdgecutServiceStub(anonymous)
        with pytest.raises(grpc.RpcError) as err:
            stub.DeploySplit(upload(artifact, 1000), timeout=30)
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
