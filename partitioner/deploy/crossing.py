"""The crossing tensors on the wire: how a cut's tensors travel as Open Inference Protocol inputs.

The edge sends each tensor that crosses the cut as one OIP input named after it (the
manifest's ``crossing`` order). With the ``none`` codec the input is the plain tensor, the
manifest's dtype and shape with any batch: exactly what a standard client such as
tritonclient sends. Any other codec (see :mod:`partitioner.codecs`) marks the input with
parameters, so every request says how to decode it::

    edgecut.codec       registry name of the codec, e.g. "int8"
    edgecut.shape       shape of the decoded tensor, e.g. "4,64,8,8"
    edgecut.wire_dtype  numpy dtype of the payload's elements, e.g. "int8"
    edgecut.params      comma-separated names of the codec's per-frame arrays, e.g. "scale,zero_point"

Each per-frame array travels as its own input named ``<tensor>#<param>`` in its own dtype and
shape. The payload goes in the wire dtype and the decoded shape when its size says it is not
compressed, else (a lossless stage such as zstd) as a UINT8 byte stream of shape ``[n]``.

:func:`check_inputs` validates names, dtypes and shapes against the manifest before a byte is
decoded; :func:`decode_inputs` then rebuilds the float tensors; :func:`encode_inputs` is the
edge's side. Both sides live here so the format is defined once.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from partitioner.codecs import CODECS, EncodedTensor
from partitioner.errors import EdgecutError, unknown_name
from partitioner.model.graph import TensorSpec
from protos.errors import clip
from protos.serde import ParamValue

CODEC_PARAM = "edgecut.codec"
SHAPE_PARAM = "edgecut.shape"
WIRE_DTYPE_PARAM = "edgecut.wire_dtype"
PARAMS_PARAM = "edgecut.params"
COMPANION_SEPARATOR = "#"  # never in a graph node name (module paths and identifiers)

# Response parameters of an edgecut cloud node: how long the request queued for its batch,
# what the batch computed, the server's whole handling time, and the batch's size. The edge
# subtracts server time from the call's time to see the network's share.
QUEUE_MS_PARAM = "edgecut.queue_ms"
COMPUTE_MS_PARAM = "edgecut.compute_ms"
SERVER_MS_PARAM = "edgecut.server_ms"
BATCH_FRAMES_PARAM = "edgecut.batch_frames"

# Bounds on what a companion array (a per-channel scale) may be: a few numbers per channel.
_MAX_COMPANIONS = 8
_WIRE_DTYPES = frozenset(
    {"float32", "float16", "float64", "int8", "uint8", "int16", "uint16", "int32", "int64"}
)
# A dimension in edgecut.shape: at most 19 digits (int64), a sign and a comma.
_DIM_CHARS = 21
# Dimensions of a client's shape quoted in a message; the rank says how many more there were.
_SHOWN_DIMS = 8


class CrossingError(EdgecutError):
    """Crossing tensors that do not match the cut's manifest; ``code`` is the gRPC status."""

    def __init__(
        self, message: str, *, tensor: str | None = None, code: str = "INVALID_ARGUMENT"
    ) -> None:
        super().__init__(message)
        self.tensor = tensor
        self.code = code


@dataclass(frozen=True)
class WireTensor:
    """What a request says about one input before its bytes are read."""

    name: str
    dtype: np.dtype[Any]
    shape: tuple[int, ...]
    parameters: Mapping[str, ParamValue] = field(default_factory=dict)


def oip_datatype(dtype: np.dtype[Any] | str) -> str:
    """The protocol's name of a numpy dtype, for messages: float32 -> FP32, int8 -> INT8."""
    dt = np.dtype(dtype)
    if dt.kind == "b":
        return "BOOL"
    prefix = {"f": "FP", "i": "INT", "u": "UINT"}.get(dt.kind)
    return f"{prefix}{dt.itemsize * 8}" if prefix else str(dt)


def oip_shape(spec: TensorSpec) -> list[int]:
    """The shape a client sends ``spec`` in: -1 (any batch) in its batch dim, ``[-1, 64, 8, 8]``
    or ``[16, -1, 32]`` (sequence first); as is when it has no batch dim."""
    shape = list(spec.shape)
    if spec.batch_dim is not None and shape:
        shape[spec.batch_dim] = -1
    return shape


def describe(spec: TensorSpec) -> str:
    """``'layer1.0.relu2' FP32 [-1, 64, 8, 8]``: a crossing tensor as a client must send it."""
    per_frame = spec.shape[spec.batch_dim] if spec.batch_dim is not None and spec.shape else 1
    folded = f" ({per_frame} per frame in dim {spec.batch_dim})" if per_frame != 1 else ""
    return f"{spec.name!r} {oip_datatype(spec.dtype)} {oip_shape(spec)}{folded}"


def companion_name(tensor: str, param: str) -> str:
    return f"{tensor}{COMPANION_SEPARATOR}{param}"


def _shown(value: object) -> str:
    """A value a client sent, for a message: strings clipped, shapes cut to their first dims."""
    if isinstance(value, str):
        return repr(clip(value))
    if isinstance(value, tuple | list) and len(value) > _SHOWN_DIMS:
        head = ", ".join(str(d) for d in value[:_SHOWN_DIMS])
        return f"[{head}, ... ({len(value)} dimensions)]"
    if isinstance(value, tuple):
        return str(list(value))
    return repr(value)


# ------------------------------------------------------------------------ edge side


def encode_inputs(
    tensors: Sequence[np.ndarray], crossing: Sequence[TensorSpec], codec: str
) -> tuple[dict[str, np.ndarray], dict[str, dict[str, ParamValue]]]:
    """The OIP inputs (in order) and per-input parameters that carry ``tensors`` with ``codec``."""
    if len(tensors) != len(crossing):
        raise ValueError(f"{len(tensors)} tensors for a cut that crosses {len(crossing)}")
    inputs: dict[str, np.ndarray] = {}
    parameters: dict[str, dict[str, ParamValue]] = {}
    if codec == "none":
        for spec, array in zip(crossing, tensors, strict=True):
            inputs[spec.name] = np.ascontiguousarray(array, dtype=np.dtype(spec.dtype))
        return inputs, parameters
    coder = CODECS.get(codec)
    for spec, array in zip(crossing, tensors, strict=True):
        enc = coder.encode(np.ascontiguousarray(array, dtype=np.dtype(spec.dtype)))
        wire = np.dtype(enc.wire_dtype).newbyteorder("<")
        if len(enc.payload) == math.prod(enc.shape) * wire.itemsize:
            payload = np.frombuffer(enc.payload, dtype=wire).reshape(enc.shape)
        else:  # a lossless stage turned the payload into a byte stream
            payload = np.frombuffer(enc.payload, dtype=np.uint8)
        inputs[spec.name] = payload
        names = sorted(enc.params)
        parameters[spec.name] = {
            CODEC_PARAM: enc.codec,
            SHAPE_PARAM: ",".join(str(d) for d in enc.shape),
            WIRE_DTYPE_PARAM: np.dtype(enc.wire_dtype).name,
            PARAMS_PARAM: ",".join(names),
        }
        for param in names:
            inputs[companion_name(spec.name, param)] = np.ascontiguousarray(enc.params[param])
    return inputs, parameters


# ----------------------------------------------------------------------- cloud side


def _shape_param(spec: TensorSpec, value: ParamValue | None) -> tuple[int, ...]:
    if not isinstance(value, str):
        raise CrossingError(
            f"input {spec.name!r}: parameter {SHAPE_PARAM} must be a string such as "
            f"'{','.join(str(d) for d in spec.shape)}', got {_shown(value)}",
            tensor=spec.name,
        )
    try:
        if len(value) > _DIM_CHARS * len(spec.shape):  # too long for the cut's rank: not parsed
            raise ValueError(value)
        dims = tuple(int(d) for d in value.split(",")) if value else ()
    except ValueError:
        raise CrossingError(
            f"input {spec.name!r}: parameter {SHAPE_PARAM} must be {len(spec.shape)} "
            f"comma-separated integers, got {_shown(value)}",
            tensor=spec.name,
        ) from None
    return dims


def _check_shape(spec: TensorSpec, shape: tuple[int, ...], max_batch: int, what: str) -> int:
    """The batch of ``shape`` once its other dimensions match the manifest (the batch is in
    the tensor's ``batch_dim``, frames stacked along it; a tensor without one is one frame)."""
    expected = oip_shape(spec)
    if any(d < 0 for d in shape):
        raise CrossingError(
            f"input {spec.name!r}: {what} {_shown(shape)} has a negative dimension; expected "
            f"{expected} with a concrete batch >= 1 in place of -1",
            tensor=spec.name,
        )
    if len(shape) != len(spec.shape):
        raise CrossingError(
            f"input {spec.name!r}: {what} {_shown(shape)}, expected {expected} (any batch >= 1)",
            tensor=spec.name,
        )
    at = spec.batch_dim if spec.batch_dim is not None and shape else None
    others = [i for i in range(len(shape)) if i != at]
    per_frame = spec.shape[at] if at is not None else 1
    if any(shape[i] != spec.shape[i] for i in others) or (
        at is not None and per_frame > 1 and shape[at] % per_frame
    ):
        raise CrossingError(
            f"input {spec.name!r}: {what} {_shown(shape)} does not match the cut's {expected}",
            tensor=spec.name,
        )
    batch = shape[at] // max(per_frame, 1) if at is not None else 1
    if batch < 1:
        raise CrossingError(
            f"input {spec.name!r}: {what} {_shown(shape)} has batch {batch}, expected >= 1",
            tensor=spec.name,
        )
    if batch > max_batch:
        raise CrossingError(
            f"input {spec.name!r}: batch {batch} exceeds this model's limit of {max_batch}",
            tensor=spec.name,
            code="RESOURCE_EXHAUSTED",
        )
    return batch


def check_inputs(
    inputs: Sequence[WireTensor],
    crossing: Sequence[TensorSpec],
    *,
    max_batch: int,
    where: str = "the model",
) -> int:
    """Validate a request's inputs against the cut's crossing tensors; returns the batch.

    Checks names (none missing, none unknown), dtypes and shapes, and the codec parameters,
    using only what the request declares: nothing is decoded yet.
    """
    by_name = {t.name: t for t in inputs}
    expected = ", ".join(describe(s) for s in crossing)
    allowed: set[str] = set()
    batches: dict[str, int] = {}
    for spec in crossing:
        allowed.add(spec.name)
        tensor = by_name.get(spec.name)
        if tensor is None:
            raise CrossingError(
                f"missing input {spec.name!r}: {where} takes inputs {expected}", tensor=spec.name
            )
        codec = tensor.parameters.get(CODEC_PARAM)
        if codec is None:
            if tensor.dtype != np.dtype(spec.dtype):
                raise CrossingError(
                    f"input {spec.name!r}: datatype {oip_datatype(tensor.dtype)}, expected "
                    f"{oip_datatype(spec.dtype)} (or an edgecut codec named in parameter "
                    f"{CODEC_PARAM})",
                    tensor=spec.name,
                )
            batches[spec.name] = _check_shape(spec, tensor.shape, max_batch, "shape")
            continue
        batches[spec.name] = _check_encoded(spec, tensor, by_name, max_batch)
        for param in _param_names(spec, tensor.parameters):
            allowed.add(companion_name(spec.name, param))
    unknown = [t.name for t in inputs if t.name not in allowed]
    if unknown:
        raise CrossingError(
            f"unexpected input {_shown(unknown[0])}: {where} takes inputs {expected}",
            tensor=unknown[0],
        )
    if len(set(batches.values())) > 1:
        raise CrossingError(
            f"inputs disagree on the batch size: {batches}; every input needs the same batch"
        )
    return next(iter(batches.values()))


def _param_names(spec: TensorSpec, parameters: Mapping[str, ParamValue]) -> list[str]:
    value = parameters.get(PARAMS_PARAM, "")
    if not isinstance(value, str):
        raise CrossingError(
            f"input {spec.name!r}: parameter {PARAMS_PARAM} must be a comma-separated string, "
            f"got {_shown(value)}",
            tensor=spec.name,
        )
    names = [p for p in value.split(",") if p]
    if len(names) > _MAX_COMPANIONS or len(set(names)) != len(names):
        raise CrossingError(
            f"input {spec.name!r}: parameter {PARAMS_PARAM} must name at most "
            f"{_MAX_COMPANIONS} distinct arrays, got {_shown(value)}",
            tensor=spec.name,
        )
    return names


def _check_encoded(
    spec: TensorSpec, tensor: WireTensor, by_name: Mapping[str, WireTensor], max_batch: int
) -> int:
    codec = tensor.parameters[CODEC_PARAM]
    if not isinstance(codec, str):
        raise CrossingError(
            f"input {spec.name!r}: parameter {CODEC_PARAM} must be a codec name, "
            f"got {_shown(codec)}",
            tensor=spec.name,
        )
    if codec not in CODECS:
        unknown = unknown_name("codec", clip(codec), CODECS.names())
        raise CrossingError(f"input {spec.name!r}: {unknown}", tensor=spec.name)
    shape = _shape_param(spec, tensor.parameters.get(SHAPE_PARAM))
    batch = _check_shape(spec, shape, max_batch, f"parameter {SHAPE_PARAM}")
    wire = tensor.parameters.get(WIRE_DTYPE_PARAM)
    if wire not in _WIRE_DTYPES:
        raise CrossingError(
            f"input {spec.name!r}: parameter {WIRE_DTYPE_PARAM} is {_shown(wire)}, expected one of "
            f"{', '.join(sorted(_WIRE_DTYPES))}",
            tensor=spec.name,
        )
    assert isinstance(wire, str)
    as_stream = tensor.dtype == np.dtype(np.uint8) and len(tensor.shape) == 1
    as_tensor = tensor.dtype == np.dtype(wire) and tuple(tensor.shape) == shape
    if not (as_tensor or as_stream):
        raise CrossingError(
            f"input {spec.name!r}: codec {codec!r} payload is {oip_datatype(tensor.dtype)} "
            f"{_shown(tensor.shape)}, expected {oip_datatype(wire)} {list(shape)} (or a UINT8 "
            f"byte stream [n])",
            tensor=spec.name,
        )
    elements = math.prod(shape)
    for param in _param_names(spec, tensor.parameters):
        name = companion_name(spec.name, param)
        companion = by_name.get(name)
        if companion is None:
            raise CrossingError(
                f"input {spec.name!r}: codec {codec!r} names array {_shown(param)} in "
                f"{PARAMS_PARAM}, but input {_shown(name)} is missing",
                tensor=spec.name,
            )
        # The rank first: a product over a million dimensions is itself the attack.
        if (
            companion.dtype.kind not in "fiu"
            or len(companion.shape) > len(spec.shape)
            or math.prod(companion.shape) > max(elements, 64)
        ):
            raise CrossingError(
                f"input {_shown(name)}: expected a small numeric array (at most one value per "
                f"element of {spec.name!r}), got {oip_datatype(companion.dtype)} "
                f"{_shown(companion.shape)}",
                tensor=name,
            )
    return batch


def decode_inputs(
    arrays: Mapping[str, np.ndarray],
    parameters: Mapping[str, Mapping[str, ParamValue]],
    crossing: Sequence[TensorSpec],
) -> list[np.ndarray]:
    """The crossing tensors (manifest order, manifest dtype) of inputs that passed check_inputs."""
    out = []
    for spec in crossing:
        array = arrays[spec.name]
        params = parameters.get(spec.name, {})
        codec = params.get(CODEC_PARAM)
        if codec is None:
            out.append(array)
            continue
        assert isinstance(codec, str)
        shape = _shape_param(spec, params.get(SHAPE_PARAM))
        enc = EncodedTensor(
            codec=codec,
            payload=array.tobytes(),
            wire_dtype=str(params[WIRE_DTYPE_PARAM]),
            shape=shape,
            dtype=spec.dtype,
            params={p: arrays[companion_name(spec.name, p)] for p in _param_names(spec, params)},
        )
        try:
            decoded = CODECS.get(codec).decode(enc)
        except Exception as exc:  # a payload that does not decode is the sender's error
            raise CrossingError(
                f"input {spec.name!r}: codec {codec!r} payload does not decode to "
                f"{oip_datatype(spec.dtype)} {list(shape)}: {type(exc).__name__}: {exc}",
                tensor=spec.name,
            ) from None
        if tuple(decoded.shape) != shape or decoded.dtype != np.dtype(spec.dtype):
            raise CrossingError(
                f"input {spec.name!r}: codec {codec!r} payload decoded to "
                f"{oip_datatype(decoded.dtype)} {list(decoded.shape)}, expected "
                f"{oip_datatype(spec.dtype)} {list(shape)}",
                tensor=spec.name,
            )
        out.append(decoded)
    return out
