"""Round trips and validation of protos.serde: ModelInfer messages <-> domain objects."""

from __future__ import annotations

from typing import Any

import hypothesis.extra.numpy as hnp
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protos import serde
from protos.arrays import DATATYPES, array_to_raw
from protos.errors import TensorWireError
from protos.inference import grpc_service_pb2 as pb

# Every datatype in either byte order: enough to carry through a message. Strides and the
# rest of one tensor's codec are test_protos_arrays.py's subject.
WIRE_DTYPES = [
    *DATATYPES.values(),
    *(d.newbyteorder(">") for d in DATATYPES.values() if d.itemsize > 1),
]
shapes = hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=5)
any_array = st.sampled_from(WIRE_DTYPES).flatmap(lambda dtype: hnp.arrays(dtype, shapes))


def same(a: np.ndarray[Any, Any], b: np.ndarray[Any, Any]) -> bool:
    """Same datatype, shape and bits (NaN payloads included)."""
    return array_to_raw(a) == array_to_raw(b)


# ---------------------------------------------------------------- round trips


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
    inputs=st.dictionaries(names, any_array, max_size=4),
    params=param_maps,
    per_input=st.data(),
    requested=st.lists(names, unique=True, max_size=3),
)
def test_request_round_trip(
    inputs: dict[str, Any], params: dict[str, Any], per_input: st.DataObject, requested: list[str]
) -> None:
    input_params = {n: per_input.draw(param_maps.filter(bool)) for n in inputs if n < "m"}
    request = serde.InferRequest(
        model_name="resnet18",
        model_version="3",
        id="frame-1",
        inputs=inputs,
        parameters=params,
        input_parameters=input_params,
        requested_outputs=tuple(requested),
    )
    wire = pb.ModelInferRequest.FromString(serde.request_to_proto(request).SerializeToString())
    back = serde.request_from_proto(wire)
    assert (back.model_name, back.model_version, back.id) == ("resnet18", "3", "frame-1")
    assert list(back.inputs) == list(inputs)  # order survives
    assert all(same(back.inputs[n], a) for n, a in inputs.items())
    assert back.parameters == params
    assert back.input_parameters == input_params
    assert back.requested_outputs == tuple(requested)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(outputs=st.dictionaries(names, any_array, max_size=4), params=param_maps)
def test_response_round_trip(outputs: dict[str, Any], params: dict[str, Any]) -> None:
    response = serde.InferResponse(
        model_name="m", model_version="1", outputs=outputs, parameters=params
    )
    wire = pb.ModelInferResponse.FromString(serde.response_to_proto(response).SerializeToString())
    back = serde.response_from_proto(wire)
    assert list(back.outputs) == list(outputs)
    assert all(same(back.outputs[n], a) for n, a in outputs.items())
    assert back.parameters == params


def test_parts_are_the_message_with_its_raw_contents_apart() -> None:
    strided = np.arange(12, dtype=">i4").reshape(3, 4)[:, ::2]
    request = serde.InferRequest("m", {"a": strided, "b": np.ones(3, np.float16)}, id="7")
    msg, raws = serde.request_to_parts(request)
    whole = serde.request_to_proto(request)
    assert not len(msg.raw_input_contents)
    assert [raw.tobytes() for raw in raws] == list(whole.raw_input_contents)
    msg.raw_input_contents.extend(whole.raw_input_contents)
    assert msg == whole
    back = serde.request_from_parts(*serde.request_to_parts(request))
    assert all(same(back.inputs[n], a) for n, a in request.inputs.items())
    response = serde.InferResponse("m", {"y": strided}, output_parameters={"y": {"k": 1}})
    response_msg, response_raws = serde.response_to_parts(response)
    assert not len(response_msg.raw_output_contents)
    back_response = serde.response_from_parts(response_msg, response_raws)
    assert same(back_response.outputs["y"], strided)
    assert back_response.output_parameters == {"y": {"k": 1}}


def test_typed_contents_request_decodes() -> None:
    msg = pb.ModelInferRequest(model_name="m")
    x = msg.inputs.add(name="x", datatype="UINT8", shape=[2, 2])
    x.contents.uint_contents.extend([0, 7, 200, 255])
    msg.inputs.add(name="empty", datatype="FP16", shape=[0, 3])  # zero-size: no data needed
    got = serde.request_from_proto(msg).inputs
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
    serde.parameters_to_proto(values, msg.parameters)
    assert msg.parameters["b"].WhichOneof("parameter_choice") == "bool_param"
    assert msg.parameters["i"].WhichOneof("parameter_choice") == "int64_param"
    assert msg.parameters["u"].WhichOneof("parameter_choice") == "uint64_param"
    assert msg.parameters["f"].WhichOneof("parameter_choice") == "double_param"
    assert serde.parameters_from_proto(msg.parameters) == {**values, "n": 4}
    with pytest.raises(TensorWireError, match="outside the int64 and uint64 ranges"):
        serde.parameters_to_proto({"big": 2**64}, msg.parameters)
    with pytest.raises(TypeError, match="expected bool, int, float or str, got list"):
        serde.parameters_to_proto({"bad": [1]}, msg.parameters)  # type: ignore[dict-item]
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
        serde.request_from_proto(msg)
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
        serde.request_from_proto(raw_request(("x", datatype, shape, raw)))
    assert str(err.value).startswith("input 'x': ")


def test_max_bytes_per_message() -> None:
    msg = raw_request(("a", "FP64", [10], bytes(80)), ("b", "FP64", [10], bytes(80)))
    assert len(serde.request_from_proto(msg, max_bytes=160).inputs) == 2
    with pytest.raises(TensorWireError, match="inputs decode to 160 bytes, above the limit of 159"):
        serde.request_from_proto(msg, max_bytes=159)
    # The limit applies before allocation, even to a claimed shape with no data behind it.
    with pytest.raises(TensorWireError, match="above the limit"):
        serde.request_from_proto(raw_request(("h", "FP32", [10**9], b"")), max_bytes=2**20)


def test_raw_contents_count_must_match_inputs() -> None:
    msg = raw_request(("a", "INT8", [1], b"\1"), ("b", "INT8", [1], b"\2"))
    del msg.raw_input_contents[1]
    with pytest.raises(TensorWireError, match="2 inputs but 1 raw_input_contents entries"):
        serde.request_from_proto(msg)
    response = pb.ModelInferResponse()
    response.outputs.add(name="y", datatype="INT8", shape=[1])
    response.raw_output_contents.extend([b"\1", b"\2"])
    with pytest.raises(TensorWireError, match="1 outputs but 2 raw_output_contents entries"):
        serde.response_from_proto(response)


def test_duplicate_names_are_rejected() -> None:
    msg = raw_request(("x", "INT8", [1], b"\1"), ("x", "INT8", [1], b"\2"))
    with pytest.raises(TensorWireError, match="input name 'x' appears more than once"):
        serde.request_from_proto(msg)
    msg = raw_request(("x", "INT8", [1], b"\1"))
    msg.outputs.add(name="y")
    msg.outputs.add(name="y")
    with pytest.raises(TensorWireError, match="requested output name 'y' appears more than once"):
        serde.request_from_proto(msg)


def test_mixing_raw_and_typed_contents_is_rejected() -> None:
    msg = raw_request(("a", "INT32", [1], bytes(4)), ("b", "INT32", [1], bytes(4)))
    msg.inputs[1].contents.int_contents.append(3)
    with pytest.raises(TensorWireError, match="'b' has typed contents while the message uses raw"):
        serde.request_from_proto(msg)
    # Typed data for one input and raw for another: the raw count then cannot match.
    msg = pb.ModelInferRequest()
    msg.inputs.add(name="a", datatype="INT32", shape=[1]).contents.int_contents.append(1)
    msg.inputs.add(name="b", datatype="INT32", shape=[1])
    msg.raw_input_contents.append(bytes(4))
    with pytest.raises(TensorWireError, match="2 inputs but 1 raw_input_contents"):
        serde.request_from_proto(msg)


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
        serde.request_from_proto(msg)


def test_input_without_data_is_rejected() -> None:
    msg = pb.ModelInferRequest()
    msg.inputs.add(name="x", datatype="FP32", shape=[3])
    with pytest.raises(TensorWireError, match=r"carries no data; expected it in contents\.fp32"):
        serde.request_from_proto(msg)


def test_shared_memory_and_empty_parameters_are_rejected() -> None:
    msg = raw_request(("x", "INT8", [1], b"\1"))
    msg.inputs[0].parameters["shared_memory_region"].string_param = "region0"
    with pytest.raises(TensorWireError, match="shared-memory tensors are not supported"):
        serde.request_from_proto(msg)
    msg = raw_request(("x", "INT8", [1], b"\1"))
    msg.parameters["codec"].SetInParent()
    with pytest.raises(TensorWireError, match="parameter 'codec' has no value set"):
        serde.request_from_proto(msg)


def test_domain_objects_check_their_keys() -> None:
    with pytest.raises(ValueError, match=r"input_parameters names \['z'\]"):
        serde.InferRequest("m", {"x": np.zeros(1)}, input_parameters={"z": {"codec": "fp16"}})
    with pytest.raises(ValueError, match="requested_outputs has duplicates"):
        serde.InferRequest("m", {}, requested_outputs=("y", "y"))
    with pytest.raises(ValueError, match=r"output_parameters names \['q'\]"):
        serde.InferResponse("m", {}, output_parameters={"q": {}})


def _both_forms_response(typed: list[float]) -> pb.ModelInferResponse:
    response = pb.ModelInferResponse(model_name="m")
    out = response.outputs.add(name="y", datatype="FP32", shape=[2])
    out.contents.fp32_contents.extend(typed)
    response.raw_output_contents.append(np.array([1.5, -2.0], dtype=np.float32).tobytes())
    return response


def test_an_empty_typed_contents_beside_raw_bytes_is_no_second_form() -> None:
    # MLServer 1.7.1 answers with an empty `contents` message set beside raw_output_contents.
    got = serde.response_from_proto(_both_forms_response([]))
    np.testing.assert_array_equal(got.outputs["y"], np.array([1.5, -2.0], dtype=np.float32))
    request = raw_request(("a", "INT32", [1], bytes(4)))
    request.inputs[0].contents.SetInParent()
    assert serde.request_from_proto(request).inputs["a"].tolist() == [0]


def test_an_answer_with_both_forms_is_read_only_when_they_agree() -> None:
    got = serde.response_from_proto(_both_forms_response([1.5, -2.0]))
    np.testing.assert_array_equal(got.outputs["y"], np.array([1.5, -2.0], dtype=np.float32))
    with pytest.raises(TensorWireError, match="'y' has typed contents while the message uses raw"):
        serde.response_from_proto(_both_forms_response([1.5, 2.0]))
    with pytest.raises(TensorWireError, match="'y' has typed contents while the message uses raw"):
        serde.response_from_proto(_both_forms_response([1.5]))
