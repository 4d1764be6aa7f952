"""Round trips and validation of protos.arrays: one tensor's datatype, shape and bytes."""

from __future__ import annotations

from typing import Any

import hypothesis.extra.numpy as hnp
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protos import arrays
from protos.errors import TensorWireError

DATATYPES = list(arrays.DATATYPES)
shapes = hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=5)


@st.composite
def wire_arrays(draw: st.DrawFn, datatype: str | None = None) -> np.ndarray[Any, Any]:
    """Any array of a wire datatype, in either byte order, sometimes non-contiguous."""
    datatype = datatype or draw(st.sampled_from(DATATYPES))
    dtype = arrays.DATATYPES[datatype]
    if dtype.itemsize > 1 and draw(st.booleans()):
        dtype = dtype.newbyteorder(">")
    a = draw(hnp.arrays(dtype, draw(shapes)))
    if a.ndim and draw(st.booleans()):
        a = a[::-1]  # a negative-stride view
    return a


def same(a: np.ndarray[Any, Any], b: np.ndarray[Any, Any]) -> bool:
    """Same datatype, shape and bits (NaN payloads included)."""
    return arrays.array_to_raw(a) == arrays.array_to_raw(b)


# ---------------------------------------------------------------- round trips


@pytest.mark.parametrize("datatype", DATATYPES)
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_raw_round_trip_every_datatype(datatype: str, data: st.DataObject) -> None:
    a = data.draw(wire_arrays(datatype))
    got_datatype, shape, raw = arrays.array_to_raw(a)
    assert got_datatype == datatype
    assert shape == list(a.shape)
    assert len(raw) == a.size * a.dtype.itemsize == arrays.tensor_nbytes(datatype, shape)
    back = arrays.array_from_raw(datatype, shape, raw)
    assert back.dtype == arrays.DATATYPES[datatype]
    assert back.shape == a.shape
    assert back.tobytes() == np.ascontiguousarray(a, back.dtype).tobytes()
    assert arrays.array_to_raw_view(a) == (datatype, shape, memoryview(raw))


@pytest.mark.parametrize("datatype", [d for d in DATATYPES if d != "FP16"])
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_typed_contents_round_trip(datatype: str, data: st.DataObject) -> None:
    a = data.draw(wire_arrays(datatype))
    got_datatype, shape, contents = arrays.array_to_contents(a)
    back = arrays.array_from_contents(got_datatype, shape, contents)
    assert same(back, a)


def test_zero_d_and_zero_size_shapes() -> None:
    scalar = np.float32(3.5)
    datatype, shape, raw = arrays.array_to_raw(scalar)
    assert (datatype, shape, len(raw)) == ("FP32", [], 4)
    assert arrays.array_from_raw(datatype, shape, raw).shape == ()
    empty = np.zeros((3, 0, 2), np.int16)
    datatype, shape, raw = arrays.array_to_raw(empty)
    assert (datatype, shape, raw) == ("INT16", [3, 0, 2], b"")
    assert arrays.array_from_raw(datatype, shape, raw).shape == (3, 0, 2)


def test_raw_is_little_endian_and_decoding_is_zero_copy() -> None:
    raw = arrays.array_to_raw(np.array([1, 256], dtype=">u2"))[2]
    assert raw == b"\x01\x00\x00\x01"
    frozen = arrays.array_from_raw("UINT16", [2], raw)
    assert not frozen.flags.writeable  # a view of the immutable message bytes
    buffer = bytearray(raw)
    view = arrays.array_from_raw("UINT16", [2], buffer)
    assert np.shares_memory(view, np.frombuffer(buffer, np.uint8))
    assert view.tolist() == [1, 256]


def test_datatype_table() -> None:
    assert set(DATATYPES) == {
        "BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64",
        "FP16", "FP32", "FP64",
    }  # fmt: skip
    assert arrays.datatype_of(np.float32) == "FP32"
    assert arrays.datatype_of(np.dtype(">i8")) == "INT64"
    assert arrays.dtype_of("FP16") == np.float16
    for bad in (np.complex64, np.object_, "U3", "datetime64[s]"):
        with pytest.raises(TensorWireError, match="has no KServe datatype"):
            arrays.datatype_of(bad)


def test_max_bytes_per_tensor() -> None:
    with pytest.raises(TensorWireError, match=r"is 400 bytes, above the limit of 100") as err:
        arrays.array_from_raw("FP32", [10, 10], bytes(400), name="x", max_bytes=100)
    assert err.value.code == "RESOURCE_EXHAUSTED"
