"""Round trips and validation of protos.tensors, the wire <-> numpy serde layer."""

from __future__ import annotations

from typing import Any

import hypothesis.extra.numpy as hnp
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protos import tensors
from protos.inference import grpc_service_pb2 as pb
from protos.tensors import TensorWireError

DATATYPES = list(tensors.DATATYPES)
shapes = hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=5)


@st.composite
def arrays(draw: st.DrawFn, datatype: str | None = None) -> np.ndarray[Any, Any]:
    """Any array of a wire datatype, in either byte order, sometimes non-contiguous."""
    datatype = datatype or draw(st.sampled_from(DATATYPES))
    dtype = tensors.DATATYPES[datatype]
    if dtype.itemsize > 1 and draw(st.booleans()):
        dtype = dtype.newbyteorder(">")
    a = draw(hnp.arrays(dtype, draw(shapes)))
    if a.ndim and draw(st.booleans()):
        a = a[::-1]  # a negative-stride view
    return a


def same(a: np.ndarray[Any, Any], b: np.ndarray[Any, Any]) -> bool:
    """Same datatype, shape and bits (NaN payloads included)."""
    return (
        tensors.datatype_of(a.dtype) == tensors.datatype_of(b.dtype)
        and a.shape == b.shape
        and tensors.array_to_raw(a)[2] == tensors.array_to_raw(b)[2]
    )


# ---------------------------------------------------------------- round trips


@pytest.mark.parametrize("datatype", DATATYPES)
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_raw_round_trip_every_datatype(datatype: str, data: st.DataObject) -> None:
    a = data.draw(arrays(datatype))
    got_datatype, shape, raw = tensors.array_to_raw(a)
    assert got_datatype == datatype
    assert shape == list(a.shape)
    assert len(raw) == a.size * a.dtype.itemsize == tensors.tensor_nbytes(datatype, shape)
    back = tensors.array_from_raw(datatype, shape, raw)
    assert back.dtype == tensors.DATATYPES[datatype]
    assert back.shape == a.shape
    assert back.tobytes() == np.ascontiguousarray(a, back.dtype).tobytes()


@pytest.mark.parametrize("datatype", [d for d in DATATYPES if d != "FP16"])
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_typed_contents_round_trip(datatype: str, data: st.DataObject) -> None:
    a = data.draw(arrays(datatype))
    got_datatype, shape, contents = tensors.array_to_contents(a)
    back = tensors.array_from_contents(got_datatype, shape, contents)
    assert same(back, a)


def test_zero_d_and_zero_size_shapes() -> None:
    scalar = np.float32(3.5)
    datatype, shape, raw = tensors.array_to_raw(scalar)
    assert (datatype, shape, len(raw)) == ("FP32", [], 4)
    assert tensors.array_from_raw(datatype, shape, raw).shape == ()
    empty = np.zeros((3, 0, 2), np.int16)
    datatype, shape, raw = tensors.array_to_raw(empty)
    assert (datatype, shape, raw) == ("INT16", [3, 0, 2], b"")
    assert tensors.array_from_raw(datatype, shape, raw).shape == (3, 0, 2)


def test_raw_is_little_endian_and_decoding_is_zero_copy() -> None:
    raw = tensors.array_to_raw(np.array([1, 256], dtype=">u2"))[2]
    assert raw == b"\x01\x00\x00\x01"
    frozen = tensors.array_from_raw("UINT16", [2], raw)
    assert not frozen.flags.writeable  # a view of the immutable message bytes
    buffer = bytearray(raw)
    view = tensors.array_from_raw("UINT16", [2], buffer)
    assert np.shares_memory(view, np.frombuffer(buffer, np.uint8))
    assert view.tolist() == [1, 256]


def test_datatype_table() -> None:
    assert set(DATATYPES) == {
        "BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64",
        "FP16", "FP32", "FP64",
    }  # fmt: skip
    assert tensors.datatype_of(np.float32) == "FP32"
    assert tensors.datatype_of(np.dtype(">i8")) == "INT64"
    assert tensors.dtype_of("FP16") == np.float16
    for bad in (np.complex64, np.object_, "U3", "datetime64[s]"):
        with pytest.raises(TensorWireError, match="has no KServe datatype"):
            tensors.datatype_of(bad)


param_values = st.one_of(
    st.booleans(),
    st.integers(-(2**63), 2**64 - 1),
    st.floats(allow_nan=False),
    st.text(max_size=8),
)
names = st.text("abcxyz_0123456789", min_size=1, max_size=6)
param_maps = st.dictionaries(names, param_values, max_size=3)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    inputs=st.dictionaries(names, arrays(), max_size=4),
    params=param_maps,
    per_input=st.data(),
    requested=st.lists(names, unique=True, max_size=3),
)
def test_request_round_trip(
    inputs: dict[str, Any], params: dict[str, Any], per_input: st.DataObject, requested: list[str]
) -> None:
    input_params = {n: per_input.draw(param_maps.filter(bool)) for n in inputs if n < "m"}
    request = tensors.InferRequest(
        model_name="resnet18",
        model_version="3",
        id="frame-1",
        inputs=inputs,
        parameters=params,
        input_parameters=input_params,
        requested_outputs=tuple(requested),
    )
    wire = pb.ModelInferRequest.FromString(tensors.request_to_proto(request).SerializeToString())
    back = tensors.request_from_proto(wire)
    assert (back.model_name, back.model_version, back.id) == ("resnet18", "3", "frame-1")
    assert list(back.inputs) == list(inputs)  # order survives
    assert all(same(back.inputs[n], a) for n, a in inputs.items())
    assert back.parameters == params
    assert back.input_parameters == input_params
    assert back.requested_outputs == tuple(requested)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(outputs=st.dictionaries(names, arrays(), max_size=4), params=param_maps)
def test_response_round_trip(outputs: dict[str, Any], params: dict[str, Any]) -> None:
    response = tensors.InferResponse(
        model_name="m", model_version="1", outputs=outputs, parameters=params
    )
    wire = pb.ModelInferResponse.FromString(tensors.response_to_proto(response).SerializeToString())
    back = tensors.response_from_proto(wire)
    assert list(back.outputs) == list(outputs)
    assert all(same(back.outputs[n], a) for n, a in outputs.items())
    assert back.parameters == params


def test_typed_contents_request_decodes() -> None:
    msg = pb.ModelInferRequest(model_name="m")
    x = msg.inputs.add(name="x", datatype="UINT8", shape=[2, 2])
    x.contents.uint_contents.extend([0, 7, 200, 255])
    msg.inputs.add(name="empty", datatype="FP16", shape=[0, 3])  # zero-size: no data needed
    got = tensors.request_from_proto(msg).inputs
    assert got["x"].dtype == np.uint8 and got["x"].tolist() == [[0, 7], [200, 255]]
    assert got["empty"].shape == (0, 3) and got["empty"].dtype == np.float16


def test_parameter_encoding() -> None:
    msg = pb.ModelInferRequest()
    values: dict[str, Any] = {
        "b": True,
        "i": -5,
        "u": 2**63,
        "f": 0.5,
        "s": "int8",
        "n": np.int32(4),
    }
    tensors.parameters_to_proto(values, msg.parameters)
    assert msg.parameters["b"].WhichOneof("parameter_choice") == "bool_param"
    assert msg.parameters["i"].WhichOneof("parameter_choice") == "int64_param"
    assert msg.parameters["u"].WhichOneof("parameter_choice") == "uint64_param"
    assert msg.parameters["f"].WhichOneof("parameter_choice") == "double_param"
    assert tensors.parameters_from_proto(msg.parameters) == {**values, "n": 4}
    with pytest.raises(TensorWireError, match="outside the int64 and uint64 ranges"):
        tensors.parameters_to_proto({"big": 2**64}, msg.parameters)
    with pytest.raises(TypeError, match="expected bool, int, float or str, got list"):
        tensors.parameters_to_proto({"bad": [1]}, msg.parameters)  # type: ignore[dict-item]
    assert "big" not in msg.parameters and "bad" not in msg.parameters


# ----------------------------------------------------------------- validation


def raw_request(*specs: tuple[str, str, list[int], bytes]) -> pb.ModelInferRequest:
    msg = pb.ModelInferRequest(model_name="m")
    for name, datatype, shape, raw in specs:
        msg.inputs.add(name=name, datatype=datatype, shape=shape)
        msg.raw_input_contents.append(raw)
    return msg


def test_byte_count_mismatch_says_expected_and_got() -> None:
    msg = raw_request(("x", "FP32", [1, 3, 224, 224], bytes(602000)))
    with pytest.raises(TensorWireError) as err:
        tensors.request_from_proto(msg)
    assert (
        str(err.value) == "input 'x': shape [1, 3, 224, 224] of FP32 needs 602112 bytes, got 602000"
    )
    assert err.value.code == "INVALID_ARGUMENT" and err.value.tensor == "x"


@pytest.mark.parametrize(
    ("datatype", "shape", "raw", "message"),
    [
        ("FP8", [1], b"\0", "unknown datatype 'FP8'; expected one of BOOL, UINT8"),
        ("BYTES", [1], b"\0\0\0\0", "BYTES .* is not supported"),
        ("BF16", [1], b"\0\0", "BF16 is not supported: numpy has no bfloat16"),
        ("FP32", [2, -1], b"", r"shape \[2, -1\] has negative dimension -1"),
        ("UINT8", [2**40, 2**40], b"", "overflows: its element count"),
        ("UINT8", [0, 2**40, 2**40], b"", "overflows"),  # numpy refuses it despite the 0
        ("UINT8", [1] * 65, b"\0", "65 dimensions, at most 64"),
        ("BOOL", [2], b"\x01\x02", "BOOL raw contents must be bytes 0 or 1, got 2"),
    ],
)
def test_bad_tensor_is_rejected(datatype: str, shape: list[int], raw: bytes, message: str) -> None:
    with pytest.raises(TensorWireError, match=message) as err:
        tensors.request_from_proto(raw_request(("x", datatype, shape, raw)))
    assert str(err.value).startswith("input 'x': ")


def test_max_bytes_per_tensor_and_per_message() -> None:
    with pytest.raises(TensorWireError, match=r"is 400 bytes, above the limit of 100") as err:
        tensors.array_from_raw("FP32", [10, 10], bytes(400), name="x", max_bytes=100)
    assert err.value.code == "RESOURCE_EXHAUSTED"
    msg = raw_request(("a", "FP64", [10], bytes(80)), ("b", "FP64", [10], bytes(80)))
    assert len(tensors.request_from_proto(msg, max_bytes=160).inputs) == 2
    with pytest.raises(TensorWireError, match="inputs decode to 160 bytes, above the limit of 159"):
        tensors.request_from_proto(msg, max_bytes=159)
    # The limit applies before allocation, even to a claimed shape with no data behind it.
    with pytest.raises(TensorWireError, match="above the limit"):
        tensors.request_from_proto(raw_request(("h", "FP32", [10**9], b"")), max_bytes=2**20)


def test_raw_contents_count_must_match_inputs() -> None:
    msg = raw_request(("a", "INT8", [1], b"\1"), ("b", "INT8", [1], b"\2"))
    del msg.raw_input_contents[1]
    with pytest.raises(TensorWireError, match="2 inputs but 1 raw_input_contents entries"):
        tensors.request_from_proto(msg)
    response = pb.ModelInferResponse()
    response.outputs.add(name="y", datatype="INT8", shape=[1])
    response.raw_output_contents.extend([b"\1", b"\2"])
    with pytest.raises(TensorWireError, match="1 outputs but 2 raw_output_contents entries"):
        tensors.response_from_proto(response)


def test_duplicate_names_are_rejected() -> None:
    msg = raw_request(("x", "INT8", [1], b"\1"), ("x", "INT8", [1], b"\2"))
    with pytest.raises(TensorWireError, match="input name 'x' appears more than once"):
        tensors.request_from_proto(msg)
    msg = raw_request(("x", "INT8", [1], b"\1"))
    msg.outputs.add(name="y")
    msg.outputs.add(name="y")
    with pytest.raises(TensorWireError, match="requested output name 'y' appears more than once"):
        tensors.request_from_proto(msg)


def test_mixing_raw_and_typed_contents_is_rejected() -> None:
    msg = raw_request(("a", "INT32", [1], bytes(4)), ("b", "INT32", [1], bytes(4)))
    msg.inputs[1].contents.int_contents.append(3)
    with pytest.raises(TensorWireError, match="'b' has typed contents while the message uses raw"):
        tensors.request_from_proto(msg)
    # Typed data for one input and raw for another: the raw count then cannot match.
    msg = pb.ModelInferRequest()
    msg.inputs.add(name="a", datatype="INT32", shape=[1]).contents.int_contents.append(1)
    msg.inputs.add(name="b", datatype="INT32", shape=[1])
    msg.raw_input_contents.append(bytes(4))
    with pytest.raises(TensorWireError, match="2 inputs but 1 raw_input_contents"):
        tensors.request_from_proto(msg)


@pytest.mark.parametrize(
    ("datatype", "fill", "message"),
    [
        ("FP32", {"fp64_contents": [1.0, 2.0]}, "contents.fp64_contents is filled, but FP32"),
        ("FP32", {"fp32_contents": [1.0]}, r"needs 2 values in contents.fp32_contents, got 1"),
        ("INT8", {"int_contents": [1, 300]}, "outside the range of INT8"),
        ("UINT16", {"uint_contents": [1, 70000]}, "outside the range of UINT16"),
        ("FP16", {}, "FP16 has no typed contents field"),
    ],
)
def test_bad_typed_contents(datatype: str, fill: dict[str, list[Any]], message: str) -> None:
    msg = pb.ModelInferRequest()
    tensor = msg.inputs.add(name="x", datatype=datatype, shape=[2])
    tensor.contents.SetInParent()
    for member, values in fill.items():
        getattr(tensor.contents, member).extend(values)
    with pytest.raises(TensorWireError, match=message):
        tensors.request_from_proto(msg)


def test_input_without_data_is_rejected() -> None:
    msg = pb.ModelInferRequest()
    msg.inputs.add(name="x", datatype="FP32", shape=[3])
    with pytest.raises(TensorWireError, match=r"carries no data; expected it in contents\.fp32"):
        tensors.request_from_proto(msg)


def test_shared_memory_and_empty_parameters_are_rejected() -> None:
    msg = raw_request(("x", "INT8", [1], b"\1"))
    msg.inputs[0].parameters["shared_memory_region"].string_param = "region0"
    with pytest.raises(TensorWireError, match="shared-memory tensors are not supported"):
        tensors.request_from_proto(msg)
    msg = raw_request(("x", "INT8", [1], b"\1"))
    msg.parameters["codec"].SetInParent()
    with pytest.raises(TensorWireError, match="parameter 'codec' has no value set"):
        tensors.request_from_proto(msg)


def test_domain_objects_check_their_keys() -> None:
    with pytest.raises(ValueError, match=r"input_parameters names \['z'\]"):
        tensors.InferRequest("m", {"x": np.zeros(1)}, input_parameters={"z": {"codec": "fp16"}})
    with pytest.raises(ValueError, match="requested_outputs has duplicates"):
        tensors.InferRequest("m", {}, requested_outputs=("y", "y"))
    with pytest.raises(ValueError, match=r"output_parameters names \['q'\]"):
        tensors.InferResponse("m", {}, output_parameters={"q": {}})
