"""The Open Inference Protocol service: correct answers per cut and codec, clear refusals."""

from __future__ import annotations

import json
import threading
import urllib.request
from collections.abc import Callable
from typing import Any

import grpc
import numpy as np
import pytest
import torch
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from partitioner.codecs import CODECS
from partitioner.deploy import crossing
from protos import serde, transport
from protos.inference import grpc_service_pb2 as pb

MODEL = "digits_cnn"


def frames(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, 1, 8, 8), dtype=np.float32)


def request(inputs: dict[str, np.ndarray], *, version: str = "", **kwargs: Any) -> Any:
    return serde.request_to_proto(
        serde.InferRequest(MODEL, inputs, model_version=version, **kwargs)
    )


def rpc_error(call: Callable[[], Any]) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        call()
    return info.value


def head_outputs(repo: Any, version: str, x: np.ndarray) -> tuple[Any, list[np.ndarray]]:
    art = repo.artifact(version)
    return art, [t.numpy() for t in art.run_head(torch.from_numpy(x))]


@pytest.mark.parametrize("version", ["1", "2"])
@pytest.mark.parametrize("codec", [c.name for c in CODECS.list()])
def test_every_cut_and_codec_answers_like_the_local_tail(
    repo: Any, shared_cloud: Any, version: str, codec: str
) -> None:
    stub = shared_cloud.stub()
    x = frames(3, seed=int(version))
    art, mid = head_outputs(repo, version, x)
    inputs, params = crossing.encode_inputs(mid, art.crossing, codec)
    reply = serde.response_from_proto(
        stub.ModelInfer(
            request(inputs, version=version, id="f7", input_parameters=params), timeout=60
        )
    )
    # What the cloud must compute: the tail on exactly what the codec lets through.
    coder = CODECS.get(codec)
    through = [torch.from_numpy(coder.decode(coder.encode(m)).copy()) for m in mid]
    (want,) = (t.numpy() for t in art.run_tail(*through))
    got = reply.outputs["fc2"]
    assert got.shape == (3, 10) and reply.model_version == version and reply.id == "f7"
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    if codec == "none":
        full = repo.reference(x)
        assert float(np.abs(got - full).max() / np.abs(full).max()) < 1e-4
    assert reply.parameters[crossing.BATCH_FRAMES_PARAM] >= 3
    assert reply.parameters[crossing.SERVER_MS_PARAM] > 0


def test_metadata_readiness_and_index(shared_cloud: Any) -> None:
    stub = shared_cloud.stub()
    assert stub.ServerLive(pb.ServerLiveRequest()).live
    assert stub.ServerReady(pb.ServerReadyRequest()).ready
    assert stub.ModelReady(pb.ModelReadyRequest(name=MODEL, version="2")).ready
    assert not stub.ModelReady(pb.ModelReadyRequest(name=MODEL, version="9")).ready
    assert not stub.ModelReady(pb.ModelReadyRequest(name="nope")).ready
    assert stub.ServerMetadata(pb.ServerMetadataRequest()).name == "edgecut"
    meta = stub.ModelMetadata(pb.ModelMetadataRequest(name=MODEL, version="1"))
    assert list(meta.versions) == ["1", "2"]
    assert [(t.name, t.datatype, list(t.shape)) for t in meta.inputs] == [
        ("pool2", "FP32", [-1, 128, 2, 2])
    ]
    assert [(t.name, list(t.shape)) for t in meta.outputs] == [("fc2", [-1, 10])]
    default = stub.ModelMetadata(pb.ModelMetadataRequest(name=MODEL))
    assert default.properties["edgecut.version"] == "1"  # the table's cut at 5 Mbit/s
    index = stub.RepositoryIndex(pb.RepositoryIndexRequest())
    assert [(m.name, m.version, m.state) for m in index.models] == [
        (MODEL, "1", "READY"),
        (MODEL, "2", "READY"),
    ]
    error = rpc_error(lambda: stub.ModelMetadata(pb.ModelMetadataRequest(name="resnet9")))
    assert error.code() == grpc.StatusCode.NOT_FOUND and "serves digits_cnn" in error.details()


def _good(repo: Any) -> dict[str, np.ndarray]:
    _, mid = head_outputs(repo, "1", frames(1))
    return {"pool2": mid[0]}


def _raw(shape: list[int], datatype: str, raw: bytes, **extra: Any) -> Any:
    msg = pb.ModelInferRequest(model_name=MODEL, model_version="1")
    msg.inputs.add(name="pool2", datatype=datatype, shape=shape)
    msg.raw_input_contents.append(raw)
    for key, value in extra.items():
        setattr(msg, key, value)
    return msg


BAD_REQUESTS: list[tuple[str, Callable[[dict[str, np.ndarray]], Any], str, str]] = [
    (
        "wrong dtype",
        lambda good: request({"pool2": good["pool2"].astype(np.float64)}, version="1"),
        "INVALID_ARGUMENT",
        "datatype FP64, expected FP32",
    ),
    (
        "byte count does not match the shape",
        lambda good: _raw([1, 128, 2, 2], "FP32", good["pool2"].tobytes()[:-4]),
        "INVALID_ARGUMENT",
        "needs 2048 bytes, got 2044",
    ),
    (
        "negative dimension",
        lambda good: _raw([-1, 128, 2, 2], "FP32", b""),
        "INVALID_ARGUMENT",
        "negative dimension; expected [-1, 128, 2, 2]",
    ),
    (
        "huge non-batch dimension",
        lambda good: _raw([1, 128, 2, 2**40], "FP32", b""),
        "INVALID_ARGUMENT",
        "does not match the cut's [-1, 128, 2, 2]",
    ),
    (
        "huge batch",
        lambda good: _raw([2**40, 128, 2, 2], "FP32", b""),
        "RESOURCE_EXHAUSTED",
        "exceeds this model's limit of 4096",
    ),
    (
        "batch over the request byte limit",
        lambda good: _raw([4000, 128, 2, 2], "FP32", b""),
        "RESOURCE_EXHAUSTED",
        "above this server's limit",
    ),
    (
        "unknown model",
        lambda good: serde.request_to_proto(serde.InferRequest("resnet9", good)),
        "NOT_FOUND",
        "unknown model 'resnet9': this server serves digits_cnn",
    ),
    (
        "unknown version",
        lambda good: request(good, version="7"),
        "NOT_FOUND",
        "has no version '7': it has versions 1, 2",
    ),
    (
        "missing input",
        lambda good: request({}, version="1"),
        "INVALID_ARGUMENT",
        "missing input 'pool2': model 'digits_cnn' version 1 takes inputs 'pool2' FP32",
    ),
    (
        "unexpected input",
        lambda good: request({**good, "extra": good["pool2"]}, version="1"),
        "INVALID_ARGUMENT",
        "unexpected input 'extra'",
    ),
    (
        "input of another cut",
        lambda good: request(good, version="2"),
        "INVALID_ARGUMENT",
        "missing input 'relu1'",
    ),
    (
        "unknown codec",
        lambda good: request(
            good,
            version="1",
            input_parameters={
                "pool2": {crossing.CODEC_PARAM: "jpeg", crossing.SHAPE_PARAM: "1,128,2,2"}
            },
        ),
        "INVALID_ARGUMENT",
        "unknown codec 'jpeg'",
    ),
    (
        "codec payload of the wrong size",
        lambda good: request(
            {"pool2": np.zeros(5, dtype=np.int16)},
            version="1",
            input_parameters={
                "pool2": {
                    crossing.CODEC_PARAM: "int8",
                    crossing.SHAPE_PARAM: "1,128,2,2",
                    crossing.WIRE_DTYPE_PARAM: "int8",
                }
            },
        ),
        "INVALID_ARGUMENT",
        "expected INT8 [1, 128, 2, 2] (or a UINT8 byte stream [n])",
    ),
    (
        "unknown requested output",
        lambda good: request(good, version="1", requested_outputs=("logits",)),
        "INVALID_ARGUMENT",
        "requested output 'logits' does not exist",
    ),
    (
        "BYTES datatype",
        lambda good: _raw([1], "BYTES", b"abc"),
        "INVALID_ARGUMENT",
        "BYTES (variable-length strings) is not supported",
    ),
]


@pytest.mark.parametrize(
    "build,code,message", [c[1:] for c in BAD_REQUESTS], ids=[c[0] for c in BAD_REQUESTS]
)
def test_bad_requests_get_the_right_status_and_say_what_was_expected(
    repo: Any, shared_cloud: Any, build: Any, code: str, message: str
) -> None:
    stub = shared_cloud.stub()
    good = _good(repo)
    errors = shared_cloud.node.metrics.errors.labels(code=code)
    before = errors._value.get()
    error = rpc_error(lambda: stub.ModelInfer(build(good), timeout=60))
    assert error.code() == grpc.StatusCode[code], error.details()
    assert message in error.details()
    # The server keeps serving, and counted the error.
    ok = serde.response_from_proto(stub.ModelInfer(request(good, version="1"), timeout=60))
    assert ok.outputs["fc2"].shape == (1, 10)
    assert errors._value.get() == before + 1


def test_requested_outputs_and_typed_contents(repo: Any, shared_cloud: Any) -> None:
    stub = shared_cloud.stub()
    good = _good(repo)
    msg = pb.ModelInferRequest(model_name=MODEL, model_version="1")
    tensor = msg.inputs.add(name="pool2", datatype="FP32", shape=list(good["pool2"].shape))
    tensor.contents.fp32_contents.extend(good["pool2"].ravel().tolist())
    msg.outputs.add(name="fc2")
    reply = serde.response_from_proto(stub.ModelInfer(msg, timeout=60))
    want = serde.response_from_proto(stub.ModelInfer(request(good, version="1"), timeout=60))
    np.testing.assert_array_equal(reply.outputs["fc2"], want.outputs["fc2"])


def test_health_per_model_reflection_and_metrics(start_cloud: Callable[..., Any]) -> None:
    cloud = start_cloud(metrics_port=0)
    channel = transport.build_channel(cloud.target)
    health = health_pb2_grpc.HealthStub(channel)
    for service in ("", MODEL, f"{MODEL}/1", f"{MODEL}/2", "inference.GRPCInferenceService"):
        status = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=10).status
        assert status == health_pb2.HealthCheckResponse.SERVING, service
    error = rpc_error(
        lambda: health.Check(health_pb2.HealthCheckRequest(service="nope"), timeout=10)
    )
    assert error.code() == grpc.StatusCode.NOT_FOUND

    refl = reflection_pb2_grpc.ServerReflectionStub(channel)
    replies = refl.ServerReflectionInfo(
        iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=10
    )
    names = {s.name for r in replies for s in r.list_services_response.service}
    assert {"inference.GRPCInferenceService", "edgecut.v1.EdgecutService"} <= names
    assert "grpc.health.v1.Health" in names

    stub = cloud.stub()
    stub.ModelInfer(request({"pool2": np.zeros((2, 128, 2, 2), np.float32)}, version="1"))
    rpc_error(lambda: stub.ModelInfer(request({}, version="1")))
    url = f"http://127.0.0.1:{cloud.node.metrics_port}/metrics"
    text = urllib.request.urlopen(url, timeout=10).read().decode()
    assert 'edgecut_requests_total{code="OK",model="digits_cnn",version="1"} 1.0' in text
    assert 'edgecut_request_errors_total{code="INVALID_ARGUMENT"} 1.0' in text
    assert 'edgecut_frames_total{model="digits_cnn",version="1"} 2.0' in text
    for name in ("edgecut_batch_size_frames", "edgecut_queue_seconds", "edgecut_compute_seconds"):
        assert f'{name}_count{{model="digits_cnn",version="1"}} 1.0' in text, name


def test_graceful_shutdown_finishes_in_flight_work_and_reports_not_serving(
    repo: Any, start_cloud: Callable[..., Any]
) -> None:
    # A long batch window keeps the request in flight while the node is asked to stop.
    cloud = start_cloud(max_batch=8, batch_timeout_ms=1500)
    stub = cloud.stub()
    health = health_pb2_grpc.HealthStub(transport.build_channel(cloud.target))
    watch = health.Watch(health_pb2.HealthCheckRequest(service=MODEL), timeout=60)
    assert next(watch).status == health_pb2.HealthCheckResponse.SERVING
    future = stub.ModelInfer.future(request(_good(repo), version="1"), timeout=60)
    stopper = threading.Thread(target=cloud.node.stop, kwargs={"grace_s": 30, "drain_s": 0.5})
    stopper.start()
    assert next(watch).status == health_pb2.HealthCheckResponse.NOT_SERVING
    reply = serde.response_from_proto(future.result(timeout=60))
    assert reply.outputs["fc2"].shape == (1, 10)
    stopper.join(60)
    assert not stopper.is_alive()
    error = rpc_error(lambda: stub.ServerLive(pb.ServerLiveRequest(), timeout=5))
    assert error.code() == grpc.StatusCode.UNAVAILABLE


def test_structured_logs_are_json_lines(repo: Any, start_cloud: Callable[..., Any]) -> None:
    import io

    from cloud_node.logs import configure

    stream = io.StringIO()
    configure("INFO", stream)
    try:
        stub = start_cloud().stub()
        rpc_error(lambda: stub.ModelInfer(request({}, version="1"), timeout=30))
    finally:
        configure("WARNING", io.StringIO())
    events = [json.loads(line) for line in stream.getvalue().splitlines()]
    by_event = {e["event"]: e for e in events}
    assert by_event["serving"]["models"] == {MODEL: ["1", "2"]}
    failed = by_event["request_failed"]
    assert failed["code"] == "INVALID_ARGUMENT" and "missing input" in failed["message"]
