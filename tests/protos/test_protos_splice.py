"""protos.splice: ModelInfer as bytes of the protobuf encoding, tensors copied once or never."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pytest

from protos import serde, splice
from protos.errors import TensorWireError
from protos.inference import grpc_service_pb2 as pb

ARRAYS: dict[str, np.ndarray] = {
    "f32": np.arange(24, dtype=np.float32).reshape(2, 3, 4),
    "f16": np.array([[0.5, -2.0]], dtype=np.float16),
    "i8": np.array([-128, 0, 127], dtype=np.int8),
    "big_endian": np.arange(6, dtype=">i4").reshape(3, 2),
    "strided": np.arange(20, dtype=np.float64).reshape(4, 5)[:, ::2],
    "scalar": np.array(7, dtype=np.uint64),
    "empty": np.zeros((0, 4), dtype=np.int16),
    "mask": np.array([True, False]),
}


def _request() -> serde.InferRequest:
    return serde.InferRequest(
        "split-net",
        ARRAYS,
        model_version="2",
        id="r7",
        parameters={"frames": 3},
        input_parameters={"i8": {"edgecut.codec": "int8"}},
        requested_outputs=("y",),
    )


def _same(got: Mapping[str, np.ndarray], want: Mapping[str, np.ndarray]) -> None:
    assert list(got) == list(want)
    for name, array in want.items():
        assert got[name].dtype == array.dtype.newbyteorder("<") or got[name].dtype == array.dtype
        assert got[name].shape == array.shape and np.array_equal(got[name], array), name


def test_request_bytes_are_the_protobuf_encoding_both_ways() -> None:
    request = _request()
    data = splice.request_to_wire(request)
    # A plain protobuf parser reads the spliced bytes as the same message.
    parsed = pb.ModelInferRequest.FromString(data)
    assert parsed == pb.ModelInferRequest.FromString(
        serde.request_to_proto(request).SerializeToString()
    )
    decoded = splice.request_from_wire(data)
    _same(decoded.inputs, ARRAYS)
    assert decoded.parameters == {"frames": 3} and decoded.requested_outputs == ("y",)
    assert decoded.input_parameters == {"i8": {"edgecut.codec": "int8"}}
    # And the spliced reader reads what protobuf serialized.
    again = splice.request_from_wire(serde.request_to_proto(request).SerializeToString())
    _same(again.inputs, ARRAYS)


def test_response_bytes_round_trip_and_arrays_are_views() -> None:
    response = serde.InferResponse("m", ARRAYS, model_version="1", parameters={"q": 1.5})
    data = splice.response_to_wire(response)
    assert pb.ModelInferResponse.FromString(data) == serde.response_to_proto(response)
    decoded = splice.response_from_wire(data)
    _same(decoded.outputs, ARRAYS)
    assert decoded.parameters == {"q": 1.5}
    assert not decoded.outputs["f32"].flags.writeable  # a view of the received bytes


def test_split_request_separates_metadata_from_raw_contents() -> None:
    msg, raws = splice.split_request(splice.request_to_wire(_request()))
    assert [t.name for t in msg.inputs] == list(ARRAYS) and not len(msg.raw_input_contents)
    assert [r.nbytes for r in raws] == [a.nbytes for a in ARRAYS.values()]
    with pytest.raises(TensorWireError, match="given twice"):
        serde.request_from_parts(serde.request_to_proto(_request()), raws)


@pytest.mark.parametrize("cut", [1, 5, -3])
def test_truncated_or_garbled_bytes_are_refused(cut: int) -> None:
    data = splice.request_to_wire(_request())
    with pytest.raises(TensorWireError):
        splice.request_from_wire(data[:cut] if cut > 0 else data[:cut] + b"\xff\xff\xff")


def test_byte_counts_are_still_checked() -> None:
    msg = pb.ModelInferRequest(model_name="m")
    msg.inputs.add(name="x", datatype="FP32", shape=[2, 2])
    msg.raw_input_contents.append(b"\x00" * 12)
    with pytest.raises(TensorWireError, match="needs 16 bytes, got 12"):
        splice.request_from_wire(msg.SerializeToString())
