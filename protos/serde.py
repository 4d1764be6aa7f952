"""ModelInfer messages in domain terms and their one conversion to and from protobuf.

``InferRequest`` / ``InferResponse`` hold named numpy arrays plus the protocol's parameters;
``request_to_proto`` / ``request_from_proto`` and ``response_to_proto`` / ``response_from_proto``
convert whole messages, every tensor as raw contents. The ``*_parts`` pairs keep the raw contents
apart from the rest of the message, for the splicer (``protos.splice``) to carry as bytes.
"""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from protos.arrays import (
    CONTENTS_FIELDS,
    DATATYPES,
    array_from_contents,
    array_from_raw,
    array_to_raw_view,
    tensor_nbytes,
)
from protos.errors import TensorWireError, clip
from protos.inference import grpc_service_pb2 as pb

__all__ = [
    "InferRequest",
    "InferResponse",
    "ParamValue",
    "parameters_from_proto",
    "parameters_to_proto",
    "request_from_parts",
    "request_from_proto",
    "request_to_parts",
    "request_to_proto",
    "response_from_parts",
    "response_from_proto",
    "response_to_parts",
    "response_to_proto",
]

ParamValue = bool | int | float | str

_INT64_MIN, _INT64_MAX, _UINT64_MAX = -(2**63), 2**63 - 1, 2**64 - 1
# Triton's parameter for shared-memory inputs, whose data is not in the message at all.
_SHARED_MEMORY_PARAM = "shared_memory_region"


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
            raise TensorWireError(f"parameter {clip(key)!r} has no value set")
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
    msg, raws = request_to_parts(request)
    msg.raw_input_contents.extend(raw.tobytes() for raw in raws)
    return msg


def request_to_parts(request: InferRequest) -> tuple[pb.ModelInferRequest, list[memoryview]]:
    """``request_to_proto`` with the raw contents left apart, as views of the arrays' data.

    The inverse of ``request_from_parts``; ``protos.splice`` sends the two as one message.
    """
    msg = pb.ModelInferRequest(
        model_name=request.model_name, model_version=request.model_version, id=request.id
    )
    parameters_to_proto(request.parameters, msg.parameters)
    raws = _encode_tensors(request.inputs, request.input_parameters, msg.inputs, "input")
    for name in request.requested_outputs:
        wanted = msg.outputs.add(name=name)
        parameters_to_proto(request.requested_output_parameters.get(name, {}), wanted.parameters)
    return msg, raws


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
    """``request_from_proto`` with the raw contents given apart (``splice.split_request``)."""
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
    msg, raws = response_to_parts(response)
    msg.raw_output_contents.extend(raw.tobytes() for raw in raws)
    return msg


def response_to_parts(response: InferResponse) -> tuple[pb.ModelInferResponse, list[memoryview]]:
    """``response_to_proto`` with the raw contents left apart; see ``request_to_parts``."""
    msg = pb.ModelInferResponse(
        model_name=response.model_name, model_version=response.model_version, id=response.id
    )
    parameters_to_proto(response.parameters, msg.parameters)
    raws = _encode_tensors(response.outputs, response.output_parameters, msg.outputs, "output")
    return msg, raws


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
    """``response_from_proto`` with the raw contents given apart (``splice.split_response``)."""
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


def _encode_tensors(
    arrays: Mapping[str, np.ndarray[Any, Any]],
    parameters: Mapping[str, Mapping[str, ParamValue]],
    tensors: Any,
    role: str,
) -> list[memoryview]:
    """Add one tensor per array to ``tensors`` (a message's inputs or outputs); their raw data."""
    raws = []
    for name, array in arrays.items():
        datatype, shape, raw = array_to_raw_view(array, name=name, role=role)
        tensor = tensors.add(name=name, datatype=datatype, shape=shape)
        parameters_to_proto(parameters.get(name, {}), tensor.parameters)
        raws.append(raw)
    return raws


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
                f"{role} {clip(t.name)!r}: shared-memory tensors are not supported; send the data "
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
        arrays = {
            t.name: array_from_raw(t.datatype, t.shape, raw, name=t.name, role=role)
            for t, raw in zip(tensors, raw_contents, strict=True)
        }
        for t in tensors:
            # An empty contents message carries nothing (MLServer 1.7 sends one beside the raw
            # bytes); typed values beside raw ones are refused unless they repeat them.
            if t.contents.ByteSize() and not _same_typed_copy(t, arrays[t.name], role):
                raise TensorWireError(
                    f"{role} {clip(t.name)!r} has typed contents while the message uses {raw_field}; "
                    "the protocol allows one form or the other, not both",
                    tensor=t.name,
                )
        return arrays

    arrays = {}
    for t, nbytes in zip(tensors, sizes, strict=True):
        if not t.HasField("contents") and nbytes:
            member = CONTENTS_FIELDS.get(t.datatype, "")
            where = f"contents.{member} or {raw_field}" if member else raw_field
            raise TensorWireError(
                f"{role} {clip(t.name)!r}: shape {list(t.shape)} of {t.datatype} carries no data; "
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


def _same_typed_copy(tensor: Any, raw: np.ndarray[Any, Any], role: str) -> bool:
    """Whether an output's typed contents repeat its raw contents exactly.

    A server may answer with both forms; an answer whose two forms agree is read, one whose
    forms differ is refused. Requests get no such leniency: a client sends one form.
    """
    if role != "output":
        return False
    try:
        typed = array_from_contents(
            tensor.datatype, tensor.shape, tensor.contents, name=tensor.name, role=role
        )
    except TensorWireError:
        return False
    return typed.shape == raw.shape and bool(np.array_equal(typed, raw, equal_nan=True))


def _parameters_by_name(tensors: Sequence[Any]) -> dict[str, dict[str, ParamValue]]:
    # Only tensors that carry parameters, so a decoded message equals the one encoded.
    return {t.name: parameters_from_proto(t.parameters) for t in tensors if len(t.parameters)}


def _reject_duplicates(names: Sequence[str], role: str) -> None:
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise TensorWireError(f"{role} name {clip(name)!r} appears more than once", tensor=name)
        seen.add(name)
