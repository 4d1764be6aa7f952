"""The one serde layer between numpy tensors and Open Inference Protocol messages.

A tensor crosses the wire as a KServe datatype name, a shape and raw little-endian bytes,
never pickle: ``array_to_raw``/``array_from_raw`` for one tensor, ``request_to_proto``/
``request_from_proto`` and ``response_to_proto``/``response_from_proto`` for whole ModelInfer
messages, and ``request_to_wire``/``split_request``/``response_to_wire``/``response_from_wire``
for the same messages as bytes with the tensors spliced in, not copied through protobuf objects.
Whatever arrives malformed raises ``TensorWireError`` naming what was expected.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import numpy as np
import numpy.typing as npt

from protos.inference import grpc_service_pb2 as pb

__all__ = [
    "DATATYPES",
    "MAX_DIMS",
    "InferRequest",
    "InferResponse",
    "ParamValue",
    "TensorWireError",
    "array_from_contents",
    "array_from_raw",
    "array_to_contents",
    "array_to_raw",
    "datatype_of",
    "dtype_of",
    "parameters_from_proto",
    "parameters_to_proto",
    "request_from_parts",
    "request_from_proto",
    "request_from_wire",
    "request_to_proto",
    "request_to_wire",
    "response_from_parts",
    "response_from_proto",
    "response_from_wire",
    "response_to_proto",
    "response_to_wire",
    "split_request",
    "split_response",
    "tensor_nbytes",
]

ParamValue = bool | int | float | str

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
_CONTENTS_FIELD = {
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
_INT64_MIN, _INT64_MAX, _UINT64_MAX = -(2**63), 2**63 - 1, 2**64 - 1
# Triton's parameter for shared-memory inputs, whose data is not in the message at all.
_SHARED_MEMORY_PARAM = "shared_memory_region"


class TensorWireError(ValueError):
    """A tensor or ModelInfer message that does not decode, with what was expected and found.

    ``code`` names the gRPC status a server should answer with (``grpc.StatusCode[err.code]``);
    ``tensor`` is the offending tensor's name when there is one.
    """

    def __init__(
        self, message: str, *, tensor: str | None = None, code: str = "INVALID_ARGUMENT"
    ) -> None:
        super().__init__(message)
        self.tensor = tensor
        self.code = code


# ------------------------------------------------------------------ one tensor


def dtype_of(datatype: str, *, name: str = "", role: str = "tensor") -> np.dtype[Any]:
    """The numpy dtype of a KServe datatype name, e.g. ``"FP32" -> <f4``."""
    try:
        return DATATYPES[datatype]
    except KeyError:
        reason = _UNSUPPORTED.get(
            datatype, f"unknown datatype {datatype!r}; expected one of {', '.join(DATATYPES)}"
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
    a = np.asarray(array)
    datatype = datatype_of(a.dtype, name=name, role=role)
    raw = a.astype(DATATYPES[datatype], copy=False).tobytes(order="C")
    return datatype, [int(d) for d in a.shape], raw


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
        return _CONTENTS_FIELD[datatype]
    except KeyError:
        raise TensorWireError(
            f"{_where(role, name)}{datatype} has no typed contents field; the protocol "
            f"sends it as raw contents only",
            tensor=name or None,
        ) from None


def _where(role: str, name: str) -> str:
    return f"{role} {name!r}: " if name else f"{role}: "


# ------------------------------------------------------------------ parameters


def parameters_to_proto(
    values: Mapping[str, ParamValue], target: MutableMapping[str, pb.InferParameter]
) -> None:
    """Write ``{key: bool | int | float | str}`` into a message's ``parameters`` map.

    An int goes to ``int64_param``, or to ``uint64_param`` above the int64 range.
    """
    for key, value in values.items():
        member, plain = _parameter_member(key, value)
        setattr(target[key], member, plain)  # validated first: no half-written entry on error


def _parameter_member(key: str, value: object) -> tuple[str, ParamValue]:
    if isinstance(value, bool | np.bool_):
        return "bool_param", bool(value)
    if isinstance(value, int | np.integer):
        number = int(value)
        if _INT64_MIN <= number <= _INT64_MAX:
            return "int64_param", number
        if _INT64_MAX < number <= _UINT64_MAX:
            return "uint64_param", number
        raise TensorWireError(f"parameter {key!r}: {number} is outside the int64 and uint64 ranges")
    if isinstance(value, float | np.floating):
        return "double_param", float(value)
    if isinstance(value, str):
        return "string_param", value
    raise TypeError(
        f"parameter {key!r}: expected bool, int, float or str, got {type(value).__name__}"
    )


def parameters_from_proto(params: Mapping[str, pb.InferParameter]) -> dict[str, ParamValue]:
    """Read a message's ``parameters`` map back into plain Python values, sorted by key."""
    out: dict[str, ParamValue] = {}
    for key in sorted(params):
        param = params[key]
        choice = param.WhichOneof("parameter_choice")
        if choice is None:
            raise TensorWireError(f"parameter {key!r} has no value set")
        out[key] = getattr(param, choice)
    return out


# ------------------------------------------------------------ ModelInfer messages


@dataclass(frozen=True)
class InferRequest:
    """One inference request in domain terms: named arrays plus the protocol's parameters.

    ``inputs`` keep their order on the wire. ``input_parameters`` holds per-input settings
    (the edge names its feature codec there); ``requested_outputs`` empty asks for all.
    """

    model_name: str
    inputs: Mapping[str, np.ndarray[Any, Any]]
    model_version: str = ""
    id: str = ""
    parameters: Mapping[str, ParamValue] = field(default_factory=dict)
    input_parameters: Mapping[str, Mapping[str, ParamValue]] = field(default_factory=dict)
    requested_outputs: tuple[str, ...] = ()
    requested_output_parameters: Mapping[str, Mapping[str, ParamValue]] = field(
        default_factory=dict
    )

    def __post_init__(self) -> None:
        _check_keys("input_parameters", self.input_parameters, self.inputs, "inputs")
        _check_keys(
            "requested_output_parameters",
            self.requested_output_parameters,
            self.requested_outputs,
            "requested_outputs",
        )
        if len(set(self.requested_outputs)) != len(self.requested_outputs):
            raise ValueError(f"requested_outputs has duplicates: {list(self.requested_outputs)}")


@dataclass(frozen=True)
class InferResponse:
    """One inference response in domain terms: named output arrays plus parameters."""

    model_name: str
    outputs: Mapping[str, np.ndarray[Any, Any]]
    model_version: str = ""
    id: str = ""
    parameters: Mapping[str, ParamValue] = field(default_factory=dict)
    output_parameters: Mapping[str, Mapping[str, ParamValue]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _check_keys("output_parameters", self.output_parameters, self.outputs, "outputs")


def _check_keys(field_name: str, mapping: Mapping[str, Any], names: Any, names_field: str) -> None:
    unknown = sorted(set(mapping) - set(names))
    if unknown:
        raise ValueError(f"{field_name} names {unknown}, which are not in {names_field}")


def request_to_proto(request: InferRequest) -> pb.ModelInferRequest:
    """Encode a request; every input travels as raw contents, the protocol's fast form."""
    msg = pb.ModelInferRequest(
        model_name=request.model_name, model_version=request.model_version, id=request.id
    )
    parameters_to_proto(request.parameters, msg.parameters)
    for name, array in request.inputs.items():
        datatype, shape, raw = array_to_raw(array, name=name, role="input")
        tensor = msg.inputs.add(name=name, datatype=datatype, shape=shape)
        parameters_to_proto(request.input_parameters.get(name, {}), tensor.parameters)
        msg.raw_input_contents.append(raw)
    for name in request.requested_outputs:
        wanted = msg.outputs.add(name=name)
        parameters_to_proto(request.requested_output_parameters.get(name, {}), wanted.parameters)
    return msg


def request_from_proto(msg: pb.ModelInferRequest, *, max_bytes: int | None = None) -> InferRequest:
    """Decode and validate a request; the inverse of ``request_to_proto``.

    Accepts raw contents (one entry per input, in order) or typed ``contents``, never a mix.
    ``max_bytes`` bounds the decoded size of all inputs together, checked before any decoding.
    """
    return _request(msg, msg.raw_input_contents, max_bytes)


def request_from_parts(
    msg: pb.ModelInferRequest,
    raw_contents: Sequence[bytes | memoryview],
    *,
    max_bytes: int | None = None,
) -> InferRequest:
    """``request_from_proto`` with the raw contents given apart (see ``split_request``)."""
    if len(msg.raw_input_contents):
        raise TensorWireError("raw_input_contents given twice: in the message and apart")
    return _request(msg, raw_contents, max_bytes)


def _request(
    msg: pb.ModelInferRequest, raw_contents: Sequence[bytes | memoryview], max_bytes: int | None
) -> InferRequest:
    inputs = _decode_tensors(msg.inputs, raw_contents, "input", "raw_input_contents", max_bytes)
    requested = tuple(o.name for o in msg.outputs)
    _reject_duplicates(requested, "requested output")
    return InferRequest(
        model_name=msg.model_name,
        model_version=msg.model_version,
        id=msg.id,
        inputs=inputs,
        parameters=parameters_from_proto(msg.parameters),
        input_parameters=_parameters_by_name(msg.inputs),
        requested_outputs=requested,
        requested_output_parameters=_parameters_by_name(msg.outputs),
    )


def response_to_proto(response: InferResponse) -> pb.ModelInferResponse:
    """Encode a response; every output travels as raw contents."""
    msg = pb.ModelInferResponse(
        model_name=response.model_name, model_version=response.model_version, id=response.id
    )
    parameters_to_proto(response.parameters, msg.parameters)
    for name, array in response.outputs.items():
        datatype, shape, raw = array_to_raw(array, name=name, role="output")
        tensor = msg.outputs.add(name=name, datatype=datatype, shape=shape)
        parameters_to_proto(response.output_parameters.get(name, {}), tensor.parameters)
        msg.raw_output_contents.append(raw)
    return msg


def response_from_proto(
    msg: pb.ModelInferResponse, *, max_bytes: int | None = None
) -> InferResponse:
    """Decode and validate a response; the inverse of ``response_to_proto``."""
    return _response(msg, msg.raw_output_contents, max_bytes)


def response_from_parts(
    msg: pb.ModelInferResponse,
    raw_contents: Sequence[bytes | memoryview],
    *,
    max_bytes: int | None = None,
) -> InferResponse:
    """``response_from_proto`` with the raw contents given apart (see ``split_response``)."""
    if len(msg.raw_output_contents):
        raise TensorWireError("raw_output_contents given twice: in the message and apart")
    return _response(msg, raw_contents, max_bytes)


def _response(
    msg: pb.ModelInferResponse, raw_contents: Sequence[bytes | memoryview], max_bytes: int | None
) -> InferResponse:
    outputs = _decode_tensors(msg.outputs, raw_contents, "output", "raw_output_contents", max_bytes)
    return InferResponse(
        model_name=msg.model_name,
        model_version=msg.model_version,
        id=msg.id,
        outputs=outputs,
        parameters=parameters_from_proto(msg.parameters),
        output_parameters=_parameters_by_name(msg.outputs),
    )


def _decode_tensors(
    tensors: Sequence[Any],
    raw_contents: Sequence[bytes | memoryview],
    role: str,
    raw_field: str,
    max_bytes: int | None,
) -> dict[str, np.ndarray[Any, Any]]:
    _reject_duplicates([t.name for t in tensors], role)
    sizes = []
    for t in tensors:
        if _SHARED_MEMORY_PARAM in t.parameters:
            raise TensorWireError(
                f"{role} {t.name!r}: shared-memory tensors are not supported; send the data "
                f"in {raw_field}",
                tensor=t.name,
            )
        sizes.append(tensor_nbytes(t.datatype, t.shape, name=t.name, role=role))
    if max_bytes is not None and sum(sizes) > max_bytes:
        raise TensorWireError(
            f"the {role}s decode to {sum(sizes)} bytes, above the limit of {max_bytes} bytes",
            code="RESOURCE_EXHAUSTED",
        )

    if len(raw_contents):
        if len(raw_contents) != len(tensors):
            raise TensorWireError(
                f"message has {len(tensors)} {role}s but {len(raw_contents)} {raw_field} "
                f"entries; raw contents need exactly one entry per {role}, in order"
            )
        for t in tensors:
            if t.HasField("contents"):
                raise TensorWireError(
                    f"{role} {t.name!r} has typed contents while the message uses {raw_field}; "
                    "the protocol allows one form or the other, not both",
                    tensor=t.name,
                )
        return {
            t.name: array_from_raw(t.datatype, t.shape, raw, name=t.name, role=role)
            for t, raw in zip(tensors, raw_contents, strict=True)
        }

    arrays = {}
    for t, nbytes in zip(tensors, sizes, strict=True):
        if not t.HasField("contents") and nbytes:
            member = _CONTENTS_FIELD.get(t.datatype, "")
            where = f"contents.{member} or {raw_field}" if member else raw_field
            raise TensorWireError(
                f"{role} {t.name!r}: shape {list(t.shape)} of {t.datatype} carries no data; "
                f"expected it in {where}",
                tensor=t.name,
            )
        if t.HasField("contents"):
            arrays[t.name] = array_from_contents(
                t.datatype, t.shape, t.contents, name=t.name, role=role
            )
        else:  # zero-size tensor: nothing to carry
            arrays[t.name] = np.empty(tuple(t.shape), dtype=DATATYPES[t.datatype])
    return arrays


def _parameters_by_name(tensors: Sequence[Any]) -> dict[str, dict[str, ParamValue]]:
    # Only tensors that carry parameters, so a decoded message equals the one encoded.
    return {t.name: parameters_from_proto(t.parameters) for t in tensors if len(t.parameters)}


def _reject_duplicates(names: Sequence[str], role: str) -> None:
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise TensorWireError(f"{role} name {name!r} appears more than once", tensor=name)
        seen.add(name)


# ------------------------------------------------------- ModelInfer as bytes, zero-copy
#
# A tensor message is mostly its raw contents. Going through protobuf objects copies them
# several times (into the message, out to Python bytes, into the serialized form), which
# on loopback costs more than the transport. These functions splice the raw contents onto
# the serialized rest of the message instead: the bytes are the same protobuf encoding
# (raw contents are a repeated bytes field, and protobuf accepts fields in any order), so
# any OIP peer reads them, while the tensors are copied once on the way out and not at all
# on the way in (arrays are read-only views of the received bytes).

_RAW_INPUT_FIELD = 7  # ModelInferRequest.raw_input_contents
_RAW_OUTPUT_FIELD = 6  # ModelInferResponse.raw_output_contents
_LENGTH_DELIMITED = 2


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _read_varint(data: memoryview, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(data) or shift > 63:
            raise TensorWireError("malformed message: a varint runs past the end")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7


def _split(data: bytes | memoryview, field_number: int) -> tuple[bytes, list[memoryview]]:
    """The message without ``field_number``'s entries, and those entries as views, in order."""
    view = memoryview(data).cast("B") if not isinstance(data, bytes) else memoryview(data)
    kept: list[memoryview] = []
    raws: list[memoryview] = []
    pos, start, end = 0, 0, len(view)
    while pos < end:
        field_start = pos
        key, pos = _read_varint(view, pos)
        number, wire_type = key >> 3, key & 7
        if wire_type == 0:
            _, pos = _read_varint(view, pos)
        elif wire_type == 1:
            pos += 8
        elif wire_type == 5:
            pos += 4
        elif wire_type == _LENGTH_DELIMITED:
            length, pos = _read_varint(view, pos)
            if number == field_number:
                if pos + length > end:
                    raise TensorWireError("malformed message: raw contents run past the end")
                kept.append(view[start:field_start])
                raws.append(view[pos : pos + length])
                pos += length
                start = pos
                continue
            pos += length
        else:
            raise TensorWireError(f"malformed message: unsupported wire type {wire_type}")
        if pos > end:
            raise TensorWireError("malformed message: a field runs past the end")
    kept.append(view[start:end])
    return b"".join(kept), raws


def _raw_view(array: npt.ArrayLike, name: str, role: str) -> tuple[str, list[int], memoryview]:
    """Like ``array_to_raw`` but a view of the (little-endian, contiguous) data, not a copy."""
    a = np.asarray(array)
    datatype = datatype_of(a.dtype, name=name, role=role)
    data = np.ascontiguousarray(a.astype(DATATYPES[datatype], copy=False))
    return datatype, [int(d) for d in a.shape], data.reshape(-1).view(np.uint8).data


def _join(header: bytes, field_number: int, raws: Sequence[memoryview]) -> bytes:
    tag = _varint((field_number << 3) | _LENGTH_DELIMITED)
    parts: list[bytes | memoryview] = [header]
    for raw in raws:
        parts += [tag, _varint(raw.nbytes), raw]
    return b"".join(parts)


def request_to_wire(request: InferRequest) -> bytes:
    """The serialized ModelInferRequest of ``request_to_proto``, tensors copied only once."""
    msg = pb.ModelInferRequest(
        model_name=request.model_name, model_version=request.model_version, id=request.id
    )
    parameters_to_proto(request.parameters, msg.parameters)
    raws = []
    for name, array in request.inputs.items():
        datatype, shape, raw = _raw_view(array, name, "input")
        tensor = msg.inputs.add(name=name, datatype=datatype, shape=shape)
        parameters_to_proto(request.input_parameters.get(name, {}), tensor.parameters)
        raws.append(raw)
    for name in request.requested_outputs:
        wanted = msg.outputs.add(name=name)
        parameters_to_proto(request.requested_output_parameters.get(name, {}), wanted.parameters)
    return _join(msg.SerializeToString(), _RAW_INPUT_FIELD, raws)


def split_request(data: bytes) -> tuple[pb.ModelInferRequest, list[memoryview]]:
    """A serialized ModelInferRequest as its message without raw contents, plus those views.

    Check the message's input metadata, then ``request_from_parts(msg, raws)`` decodes.
    """
    header, raws = _split(data, _RAW_INPUT_FIELD)
    try:
        return pb.ModelInferRequest.FromString(header), raws
    except Exception as exc:  # protobuf's DecodeError, or a nested field's
        raise TensorWireError(f"not a ModelInferRequest: {exc}") from None


def request_from_wire(data: bytes, *, max_bytes: int | None = None) -> InferRequest:
    """``request_from_proto`` of serialized bytes; the arrays are views of ``data``."""
    msg, raws = split_request(data)
    return request_from_parts(msg, raws, max_bytes=max_bytes)


def response_to_wire(response: InferResponse) -> bytes:
    """The serialized ModelInferResponse of ``response_to_proto``, tensors copied only once."""
    msg = pb.ModelInferResponse(
        model_name=response.model_name, model_version=response.model_version, id=response.id
    )
    parameters_to_proto(response.parameters, msg.parameters)
    raws = []
    for name, array in response.outputs.items():
        datatype, shape, raw = _raw_view(array, name, "output")
        tensor = msg.outputs.add(name=name, datatype=datatype, shape=shape)
        parameters_to_proto(response.output_parameters.get(name, {}), tensor.parameters)
        raws.append(raw)
    return _join(msg.SerializeToString(), _RAW_OUTPUT_FIELD, raws)


def split_response(data: bytes) -> tuple[pb.ModelInferResponse, list[memoryview]]:
    """A serialized ModelInferResponse as its message without raw contents, plus those views."""
    header, raws = _split(data, _RAW_OUTPUT_FIELD)
    try:
        return pb.ModelInferResponse.FromString(header), raws
    except Exception as exc:
        raise TensorWireError(f"not a ModelInferResponse: {exc}") from None


def response_from_wire(data: bytes, *, max_bytes: int | None = None) -> InferResponse:
    """``response_from_proto`` of serialized bytes; the arrays are views of ``data``."""
    msg, raws = split_response(data)
    return response_from_parts(msg, raws, max_bytes=max_bytes)
