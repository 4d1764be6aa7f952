"""ModelInfer messages as bytes, with the tensors spliced in rather than copied through protobuf.

A tensor message is mostly its raw contents. Going through protobuf objects copies them
several times (into the message, out to Python bytes, into the serialized form), which
on loopback costs more than the transport. ``request_to_wire`` / ``response_to_wire`` splice
the raw contents onto the serialized rest of the message instead, and ``split_request`` /
``split_response`` cut them out again. The bytes are the same protobuf encoding (raw contents
are a repeated bytes field, and protobuf accepts fields in any order), so any OIP peer reads
them, while the tensors are copied once on the way out and not at all on the way in (arrays
are read-only views of the received bytes).
"""

from __future__ import annotations

from collections.abc import Sequence

from protos.errors import TensorWireError
from protos.inference import grpc_service_pb2 as pb
from protos.serde import (
    InferRequest,
    InferResponse,
    request_from_parts,
    request_to_parts,
    response_from_parts,
    response_to_parts,
)

__all__ = [
    "request_from_wire",
    "request_to_wire",
    "response_from_wire",
    "response_to_wire",
    "split_request",
    "split_response",
]

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


def _join(header: bytes, field_number: int, raws: Sequence[memoryview]) -> bytes:
    tag = _varint((field_number << 3) | _LENGTH_DELIMITED)
    parts: list[bytes | memoryview] = [header]
    for raw in raws:
        parts += [tag, _varint(raw.nbytes), raw]
    return b"".join(parts)


def request_to_wire(request: InferRequest) -> bytes:
    """The serialized ModelInferRequest of ``serde.request_to_proto``, tensors copied once."""
    msg, raws = request_to_parts(request)
    return _join(msg.SerializeToString(), _RAW_INPUT_FIELD, raws)


def split_request(data: bytes) -> tuple[pb.ModelInferRequest, list[memoryview]]:
    """A serialized ModelInferRequest as its message without raw contents, plus those views.

    Check the message's input metadata, then ``serde.request_from_parts(msg, raws)`` decodes.
    """
    header, raws = _split(data, _RAW_INPUT_FIELD)
    try:
        return pb.ModelInferRequest.FromString(header), raws
    except Exception as exc:  # protobuf's DecodeError, or a nested field's
        raise TensorWireError(f"not a ModelInferRequest: {exc}") from None


def request_from_wire(data: bytes, *, max_bytes: int | None = None) -> InferRequest:
    """``serde.request_from_proto`` of serialized bytes; the arrays are views of ``data``."""
    msg, raws = split_request(data)
    return request_from_parts(msg, raws, max_bytes=max_bytes)


def response_to_wire(response: InferResponse) -> bytes:
    """The serialized ModelInferResponse of ``serde.response_to_proto``, tensors copied once."""
    msg, raws = response_to_parts(response)
    return _join(msg.SerializeToString(), _RAW_OUTPUT_FIELD, raws)


def split_response(data: bytes) -> tuple[pb.ModelInferResponse, list[memoryview]]:
    """A serialized ModelInferResponse as its message without raw contents, plus those views."""
    header, raws = _split(data, _RAW_OUTPUT_FIELD)
    try:
        return pb.ModelInferResponse.FromString(header), raws
    except Exception as exc:
        raise TensorWireError(f"not a ModelInferResponse: {exc}") from None


def response_from_wire(data: bytes, *, max_bytes: int | None = None) -> InferResponse:
    """``serde.response_from_proto`` of serialized bytes; the arrays are views of ``data``."""
    msg, raws = split_response(data)
    return response_from_parts(msg, raws, max_bytes=max_bytes)
