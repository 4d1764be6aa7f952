"""One tensor on the wire: a KServe datatype name, a shape and its bytes <-> a numpy array.

The fast form is raw contents, little-endian row-major bytes (``array_to_raw`` /
``array_from_raw``, or ``array_to_raw_view`` to send without a copy); the slower typed
``contents`` form has ``array_to_contents`` / ``array_from_contents``. Decoding checks datatype,
shape and size before it allocates, and raises ``TensorWireError`` naming what was expected.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any

import numpy as np
import numpy.typing as npt

from protos.errors import TensorWireError, clip
from protos.inference import grpc_service_pb2 as pb

__all__ = [
    "CONTENTS_FIELDS",
    "DATATYPES",
    "MAX_DIMS",
    "array_from_contents",
    "array_from_raw",
    "array_to_contents",
    "array_to_raw",
    "array_to_raw_view",
    "datatype_of",
    "dtype_of",
    "tensor_nbytes",
]

# KServe datatype name -> numpy dtype of its raw form. Raw contents are little-endian by the
# protocol, so multi-byte dtypes are spelled '<' and decode correctly on any host.
DATATYPES: Mapping[str, np.dtype[Any]] = MappingProxyType(
    {
        "BOOL": np.dtype("?"),
        "UINT8": np.dtype("u1"),
        "UINT16": np.dtype("<u2"),
        "UINT32": np.dtype("<u4"),
        "UINT64": np.dtype("<u8"),
        "INT8": np.dtype("i1"),
        "INT16": np.dtype("<i2"),
        "INT32": np.dtype("<i4"),
        "INT64": np.dtype("<i8"),
        "FP16": np.dtype("<f2"),
        "FP32": np.dtype("<f4"),
        "FP64": np.dtype("<f8"),
    }
)
_DATATYPE_BY_KIND = {(dt.kind, dt.itemsize): name for name, dt in DATATYPES.items()}

# Protocol datatypes edgecut deliberately does not carry: its tensors are numeric features.
_UNSUPPORTED = {
    "BYTES": "BYTES (variable-length strings) is not supported: edgecut carries numeric "
    "tensors only",
    "BF16": "BF16 is not supported: numpy has no bfloat16 dtype; send FP16 or FP32",
}

# Typed-contents member per datatype. FP16 (and BF16) have none: they travel raw only.
CONTENTS_FIELDS: Mapping[str, str] = MappingProxyType(
    {
        "BOOL": "bool_contents",
        "UINT8": "uint_contents",
        "UINT16": "uint_contents",
        "UINT32": "uint_contents",
        "UINT64": "uint64_contents",
        "INT8": "int_contents",
        "INT16": "int_contents",
        "INT32": "int_contents",
        "INT64": "int64_contents",
        "FP32": "fp32_contents",
        "FP64": "fp64_contents",
    }
)
# The dtype each member holds on the wire (8- and 16-bit ints are widened to 32 bits).
_CONTENTS_DTYPE = {
    "bool_contents": np.dtype("?"),
    "int_contents": np.dtype("i4"),
    "int64_contents": np.dtype("i8"),
    "uint_contents": np.dtype("u4"),
    "uint64_contents": np.dtype("u8"),
    "fp32_contents": np.dtype("f4"),
    "fp64_contents": np.dtype("f8"),
}
_ALL_CONTENTS_FIELDS = (*_CONTENTS_DTYPE, "bytes_contents")

MAX_DIMS = 64  # numpy's own limit on ndim
_MAX_ARRAY_BYTES = 2**63 - 1  # numpy refuses any shape whose non-zero dims exceed this


def dtype_of(datatype: str, *, name: str = "", role: str = "tensor") -> np.dtype[Any]:
    """The numpy dtype of a KServe datatype name, e.g. ``"FP32" -> <f4``."""
    try:
        return DATATYPES[datatype]
    except KeyError:
        reason = _UNSUPPORTED.get(
            datatype, f"unknown datatype {clip(datatype)!r}; expected one of {', '.join(DATATYPES)}"
        )
        raise TensorWireError(_where(role, name) + reason, tensor=name or None) from None


def datatype_of(dtype: npt.DTypeLike, *, name: str = "", role: str = "tensor") -> str:
    """The KServe datatype name of a numpy dtype of either byte order, e.g. ``float32 -> FP32``."""
    dt = np.dtype(dtype)
    try:
        return _DATATYPE_BY_KIND[(dt.kind, dt.itemsize)]
    except KeyError:
        raise TensorWireError(
            f"{_where(role, name)}numpy dtype {dt} has no KServe datatype; "
            f"expected bool, (u)int8/16/32/64 or float16/32/64",
            tensor=name or None,
        ) from None


def tensor_nbytes(
    datatype: str, shape: Sequence[int], *, name: str = "", role: str = "tensor"
) -> int:
    """Bytes of a tensor's raw form, after checking its datatype and shape are representable."""
    dt = dtype_of(datatype, name=name, role=role)
    where = _where(role, name)
    if len(shape) > MAX_DIMS:
        raise TensorWireError(
            f"{where}shape has {len(shape)} dimensions, at most {MAX_DIMS} are supported",
            tensor=name or None,
        )
    count, nonzero_bytes = 1, dt.itemsize
    for dim in shape:
        if dim < 0:
            raise TensorWireError(
                f"{where}shape {list(shape)} has negative dimension {dim}; "
                "a tensor on the wire needs concrete sizes >= 0",
                tensor=name or None,
            )
        count *= dim
        nonzero_bytes *= max(dim, 1)
    if nonzero_bytes > _MAX_ARRAY_BYTES:
        raise TensorWireError(
            f"{where}shape {list(shape)} of {datatype} overflows: its element count times "
            f"{dt.itemsize} bytes exceeds 2**63 - 1",
            tensor=name or None,
        )
    return count * dt.itemsize


def array_to_raw(
    array: npt.ArrayLike, *, name: str = "", role: str = "tensor"
) -> tuple[str, list[int], bytes]:
    """``(datatype, shape, raw little-endian row-major bytes)`` of an array."""
    datatype, shape, a = _little_endian(array, name, role)
    return datatype, shape, a.tobytes(order="C")


def array_to_raw_view(
    array: npt.ArrayLike, *, name: str = "", role: str = "tensor"
) -> tuple[str, list[int], memoryview]:
    """``array_to_raw`` with the bytes as a view of the array's data, not a copy.

    The data is copied only when it is not already contiguous and little-endian, so the
    splicer copies a tensor once: into the message.
    """
    datatype, shape, a = _little_endian(array, name, role)
    return datatype, shape, np.ascontiguousarray(a).reshape(-1).view(np.uint8).data


def array_from_raw(
    datatype: str,
    shape: Sequence[int],
    raw: bytes | bytearray | memoryview,
    *,
    name: str = "",
    role: str = "tensor",
    max_bytes: int | None = None,
) -> np.ndarray[Any, Any]:
    """The array held by raw contents; the inverse of ``array_to_raw``.

    Zero-copy: the result is a read-only view of ``raw`` when ``raw`` is immutable (``bytes``,
    as protobuf hands out); ``.copy()`` it to write. ``max_bytes`` bounds the tensor's size.
    """
    nbytes = _checked_nbytes(datatype, shape, name, role, max_bytes)
    got = memoryview(raw).nbytes
    if got != nbytes:
        raise TensorWireError(
            f"{_where(role, name)}shape {list(shape)} of {datatype} needs {nbytes} bytes, "
            f"got {got}",
            tensor=name or None,
        )
    dt = DATATYPES[datatype]
    flat = np.frombuffer(raw, dtype=dt)
    if datatype == "BOOL" and flat.size and flat.view(np.uint8).max() > 1:
        raise TensorWireError(
            f"{_where(role, name)}BOOL raw contents must be bytes 0 or 1, got "
            f"{int(flat.view(np.uint8).max())}",
            tensor=name or None,
        )
    return flat.reshape(tuple(shape))


def array_to_contents(
    array: npt.ArrayLike, *, name: str = "", role: str = "tensor"
) -> tuple[str, list[int], pb.InferTensorContents]:
    """``(datatype, shape, typed contents)``: the protocol's slower, non-raw form of a tensor."""
    a = np.asarray(array)
    datatype = datatype_of(a.dtype, name=name, role=role)
    member = _contents_field(datatype, name, role)
    contents = pb.InferTensorContents()
    getattr(contents, member).extend(a.astype(_CONTENTS_DTYPE[member]).ravel().tolist())
    return datatype, [int(d) for d in a.shape], contents


def array_from_contents(
    datatype: str,
    shape: Sequence[int],
    contents: pb.InferTensorContents,
    *,
    name: str = "",
    role: str = "tensor",
    max_bytes: int | None = None,
) -> np.ndarray[Any, Any]:
    """The array held by typed contents; the inverse of ``array_to_contents``.

    Only the member matching ``datatype`` may be filled, with one value per element, and
    values widened on the wire (INT8 in ``int_contents``) must fit the datatype.
    """
    _checked_nbytes(datatype, shape, name, role, max_bytes)
    where = _where(role, name)
    member = _contents_field(datatype, name, role)
    for other in _ALL_CONTENTS_FIELDS:
        if other != member and len(getattr(contents, other)):
            raise TensorWireError(
                f"{where}contents.{other} is filled, but {datatype} data belongs in "
                f"contents.{member}",
                tensor=name or None,
            )
    values = getattr(contents, member)
    count = math.prod(shape)
    if len(values) != count:
        raise TensorWireError(
            f"{where}shape {list(shape)} of {datatype} needs {count} values in "
            f"contents.{member}, got {len(values)}",
            tensor=name or None,
        )
    wide = np.asarray(values, dtype=_CONTENTS_DTYPE[member])
    narrow = wide.astype(DATATYPES[datatype])
    if narrow.dtype.itemsize < wide.dtype.itemsize and not np.array_equal(narrow, wide):
        raise TensorWireError(
            f"{where}contents.{member} holds values outside the range of {datatype}",
            tensor=name or None,
        )
    return narrow.reshape(tuple(shape))


def _little_endian(
    array: npt.ArrayLike, name: str, role: str
) -> tuple[str, list[int], np.ndarray[Any, Any]]:
    a = np.asarray(array)
    datatype = datatype_of(a.dtype, name=name, role=role)
    return datatype, [int(d) for d in a.shape], a.astype(DATATYPES[datatype], copy=False)


def _checked_nbytes(
    datatype: str, shape: Sequence[int], name: str, role: str, max_bytes: int | None
) -> int:
    nbytes = tensor_nbytes(datatype, shape, name=name, role=role)
    if max_bytes is not None and nbytes > max_bytes:
        raise TensorWireError(
            f"{_where(role, name)}shape {list(shape)} of {datatype} is {nbytes} bytes, "
            f"above the limit of {max_bytes} bytes",
            tensor=name or None,
            code="RESOURCE_EXHAUSTED",
        )
    return nbytes


def _contents_field(datatype: str, name: str, role: str) -> str:
    try:
        return CONTENTS_FIELDS[datatype]
    except KeyError:
        raise TensorWireError(
            f"{_where(role, name)}{datatype} has no typed contents field; the protocol "
            f"sends it as raw contents only",
            tensor=name or None,
        ) from None


def _where(role: str, name: str) -> str:
    return f"{role} {clip(name)!r}: " if name else f"{role}: "
