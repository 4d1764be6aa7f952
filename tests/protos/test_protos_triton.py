"""Wire compatibility with tritonclient.grpc, the reference Open Inference Protocol client.

tritonclient runs in a subprocess (tests/protos/triton_peer.py): it registers its own copy of
the ``inference`` messages in protobuf's default pool, so it cannot share a process with
``protos.inference``. Bytes and results cross through files in tmp_path.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from google.protobuf import descriptor_pb2

from protos import serde, transport
from protos.errors import TensorWireError
from protos.inference import grpc_service_pb2 as pb

# Fields in our copy that Triton's copy lacks: present in the published KServe spec.
SPEC_ONLY_FIELDS = {"inference.ModelMetadataResponse.properties"}
SPEC_ONLY_MESSAGES = {"inference.ModelMetadataResponse.PropertiesEntry"}  # the map's entry type


@pytest.fixture(scope="module")
def offline(
    tmp_path_factory: pytest.TempPathFactory, run_peer: Callable[[str, Path], None]
) -> Path:
    directory = tmp_path_factory.mktemp("triton_offline")
    outputs: dict[str, np.ndarray[Any, Any]] = {
        "logits": np.linspace(-1, 1, 10, dtype=np.float32).reshape(2, 5),
        "half": np.array([[0.5, -2.0]], dtype=np.float16),
        "mask": np.array([True, False, True]),
        "count": np.array(7, dtype=np.uint64),
        "none": np.zeros((0, 4), dtype=np.int16),
    }
    response = serde.InferResponse("split-net", outputs, model_version="2", id="req-7")
    (directory / "edgecut_response.bin").write_bytes(
        serde.response_to_proto(response).SerializeToString()
    )
    np.savez(directory / "edgecut_outputs.npz", **outputs)  # type: ignore[arg-type]
    run_peer("offline", directory)
    return directory


def _messages(
    file: descriptor_pb2.FileDescriptorProto,
) -> dict[str, descriptor_pb2.DescriptorProto]:
    found: dict[str, descriptor_pb2.DescriptorProto] = {}

    def walk(prefix: str, messages: Any) -> None:
        for message in messages:
            name = f"{prefix}.{message.name}"
            found[name] = message
            walk(name, message.nested_type)

    walk(file.package, file.message_type)
    return found


def test_our_proto_matches_tritons_field_for_field(offline: Path) -> None:
    theirs = descriptor_pb2.FileDescriptorProto.FromString(
        (offline / "triton_descriptor.bin").read_bytes()
    )
    ours = descriptor_pb2.FileDescriptorProto()
    pb.DESCRIPTOR.CopyToProto(ours)
    assert ours.package == theirs.package == "inference"

    their_messages = _messages(theirs)
    assert len(_messages(ours)) >= 28  # the walk really covers the file (28 messages today)
    for name, message in _messages(ours).items():
        if name in SPEC_ONLY_MESSAGES:
            continue
        assert name in their_messages, f"{name} is not in Triton's grpc_service.proto"
        their_fields = {f.name: f for f in their_messages[name].field}
        for field in message.field:
            if f"{name}.{field.name}" in SPEC_ONLY_FIELDS:
                assert field.name not in their_fields
                continue
            theirs_field = their_fields.get(field.name)
            assert theirs_field is not None, f"{name}.{field.name} is not in Triton's copy"
            mine = (field.number, field.type, field.label, field.type_name, field.oneof_index)
            other = (
                theirs_field.number,
                theirs_field.type,
                theirs_field.label,
                theirs_field.type_name,
                theirs_field.oneof_index,
            )
            assert mine == other, f"{name}.{field.name}: ours {mine}, Triton's {other}"
        assert message.options.map_entry == their_messages[name].options.map_entry

    (service,) = ours.service
    (their_service,) = theirs.service
    assert service.name == their_service.name == "GRPCInferenceService"
    their_methods = {m.name: m for m in their_service.method}
    for method in service.method:
        their_method = their_methods[method.name]
        signature = (
            method.input_type,
            method.output_type,
            method.client_streaming,
            method.server_streaming,
        )
        assert signature == (
            their_method.input_type,
            their_method.output_type,
            their_method.client_streaming,
            their_method.server_streaming,
        ), method.name


def test_tritonclient_raw_request_decodes(offline: Path) -> None:
    wire = pb.ModelInferRequest.FromString((offline / "raw_request.bin").read_bytes())
    request = serde.request_from_proto(wire)
    expected = np.load(offline / "raw_inputs.npz")
    assert list(request.inputs) == list(expected.files)
    assert len(expected.files) == 12  # every numeric datatype
    for name in expected.files:
        got, want = request.inputs[name], expected[name]
        assert got.dtype == want.dtype and got.shape == want.shape, name
        assert got.tobytes() == want.tobytes(), name
    assert (request.model_name, request.model_version, request.id) == ("split-net", "2", "req-7")
    assert request.parameters == {"codec": "int8", "frames": 3, "lossless": True}
    assert request.requested_outputs == ("y0", "y1")
    assert request.requested_output_parameters == {"y1": {"classification": 3}}


def test_tritonclient_typed_request_decodes(offline: Path) -> None:
    wire = pb.ModelInferRequest.FromString((offline / "typed_request.bin").read_bytes())
    inputs = serde.request_from_proto(wire).inputs
    assert inputs["x"].dtype == np.float32 and inputs["x"].tolist() == [[1.5, -2.0], [0.25, 8.0]]
    assert inputs["k"].dtype == np.int8 and inputs["k"].tolist() == [-128, 0, 127]
    assert inputs["b"].dtype == np.bool_ and inputs["b"].tolist() == [True, False]


def test_tritonclient_bytes_tensor_is_refused_clearly(offline: Path) -> None:
    wire = pb.ModelInferRequest.FromString((offline / "bytes_request.bin").read_bytes())
    with pytest.raises(TensorWireError, match=r"input 'text': BYTES .* not supported"):
        serde.request_from_proto(wire)


def test_tritonclient_reads_our_response(offline: Path) -> None:
    checked = json.loads((offline / "response_check.json").read_text())
    assert checked == {"logits": True, "half": True, "mask": True, "count": True, "none": True}


def test_tritonclient_talks_to_our_server(
    start_server: Callable[..., Any],
    certs: Any,
    run_peer: Callable[[str, Path], None],
    tmp_path: Path,
) -> None:
    plain = start_server()
    secure = start_server(
        tls=transport.ServerTLS(certs.server_cert, certs.server_key, client_ca_file=certs.ca),
        token="s3cret",
    )
    mtls = {
        "root_ca": str(certs.ca),
        "cert": str(certs.client_cert),
        "key": str(certs.client_key),
    }
    big_floats = 5 * 2**20 // 4 + 1  # a 5 MiB input: above gRPC's 4 MiB default
    config = {
        "scenarios": [
            {"name": "plain", "url": plain.target, "infer": {"big_floats": big_floats}},
            {
                "name": "secure",
                "url": secure.target,
                "tls": mtls,
                "token": "s3cret",
                "infer": {"big_floats": 10},
            },
            {"name": "wrong_token", "url": secure.target, "tls": mtls, "token": "guess"},
            {"name": "no_token", "url": secure.target, "tls": mtls},
        ]
    }
    config_path = tmp_path / "client.json"
    config_path.write_text(json.dumps(config))
    run_peer("client", config_path)
    results = {r["name"]: r for r in json.loads(config_path.with_suffix(".out.json").read_text())}

    echoed = {"x": True, "ids": True, "big": True}
    assert results["plain"] == {
        "name": "plain",
        "live": True,
        "ready": True,
        "infer": {"id": "r1", "echoed": echoed},
    }
    assert results["secure"]["live"] is True
    assert results["secure"]["infer"]["echoed"] == echoed
    assert results["wrong_token"]["error"] == "UNAUTHENTICATED"
    assert results["no_token"]["error"] == "UNAUTHENTICATED"

    # What the server decoded is exactly what tritonclient sent.
    sent = np.load(config_path.with_suffix(".plain.npz"))
    (received,) = plain.servicer.received
    assert received.model_name == "echo" and received.id == "r1"
    for name in sent.files:
        assert received.inputs[name].dtype == sent[name].dtype
        assert np.array_equal(received.inputs[name], sent[name])
    assert received.inputs["big"].nbytes > 4 * 2**20
