"""Feature codecs: how a tensor that crosses the cut is turned into wire bytes.

A codec encodes an array into an :class:`EncodedTensor` (payload bytes, the wire
dtype and shape, and the few numbers needed to decode, such as per-channel
scales) and decodes it back. The cost model prices a codec by the bytes it puts
on the wire and the memory passes it makes on each side. Codecs live in a
registry (:func:`register_codec`); ``none`` sends float32 as is.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from partitioner.errors import EdgecutError


@dataclass(frozen=True)
class EncodedTensor:
    """A tensor as it travels: ``payload`` holds ``wire_dtype`` values of ``shape``."""

    codec: str
    payload: bytes
    wire_dtype: str  # numpy dtype name of the payload elements (before any lossless stage)
    shape: tuple[int, ...]
    dtype: str  # numpy dtype name of the decoded tensor
    params: dict[str, np.ndarray] = field(default_factory=dict)  # e.g. per-channel scale

    @property
    def nbytes(self) -> int:
        return len(self.payload) + sum(p.nbytes for p in self.params.values())


@dataclass(frozen=True)
class Codec:
    """An encoder/decoder pair plus what the cost model needs to price it."""

    name: str
    encode: Callable[[np.ndarray], EncodedTensor]
    decode: Callable[[EncodedTensor], np.ndarray]
    wire_ratio: float  # payload bytes per float32 byte (lossless stages: a typical figure)
    encode_passes: float  # memory passes over the float32 tensor on the sender
    decode_passes: float  # memory passes over the float32 tensor on the receiver
    lossless: bool = False
    description: str = ""

    def wire_bytes(self, raw_bytes: int, shape: Sequence[int]) -> int:
        """Predicted bytes on the wire for a float32 tensor of ``raw_bytes``."""
        channels = shape[1] if self.name != "none" and len(shape) > 1 else 0
        per_channel = 8 if "int8" in self.name else 0  # float32 scale + zero point
        return int(np.ceil(raw_bytes * self.wire_ratio)) + channels * per_channel

    def encode_ms(self, raw_bytes: int, mem_bandwidth_gbps: float) -> float:
        return self.encode_passes * raw_bytes / (mem_bandwidth_gbps * 1e6)

    def decode_ms(self, raw_bytes: int, mem_bandwidth_gbps: float) -> float:
        return self.decode_passes * raw_bytes / (mem_bandwidth_gbps * 1e6)


_CODECS: dict[str, Codec] = {}


def register_codec(codec: Codec) -> Codec:
    if codec.name in _CODECS:
        raise ValueError(f"codec {codec.name!r} registered twice")
    _CODECS[codec.name] = codec
    return codec


def get_codec(name: str) -> Codec:
    try:
        return _CODECS[name]
    except KeyError:
        close = difflib.get_close_matches(name, list(_CODECS), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise EdgecutError(
            f"unknown codec {name!r}: expected one of {', '.join(sorted(_CODECS))}{hint}"
        ) from None


def list_codecs() -> list[Codec]:
    return [_CODECS[k] for k in sorted(_CODECS)]


def _raw_encode(codec: str, wire: str) -> Callable[[np.ndarray], EncodedTensor]:
    def encode(array: np.ndarray) -> EncodedTensor:
        data = np.ascontiguousarray(array, dtype=np.dtype(wire).newbyteorder("<"))
        return EncodedTensor(codec, data.tobytes(), wire, tuple(array.shape), str(array.dtype))

    return encode


def _raw_decode(enc: EncodedTensor) -> np.ndarray:
    values = np.frombuffer(enc.payload, dtype=np.dtype(enc.wire_dtype).newbyteorder("<"))
    return values.reshape(enc.shape).astype(enc.dtype, copy=False)


def _channel_axis_view(array: np.ndarray) -> np.ndarray:
    """(C, rest) view with channels on axis 1 of the original (N, C, ...) tensor."""
    if array.ndim < 2:
        return array.reshape(1, array.size)
    moved = np.moveaxis(array, 1, 0)
    return moved.reshape(moved.shape[0], int(np.prod(moved.shape[1:])))


def int8_encode(array: np.ndarray) -> EncodedTensor:
    """Affine int8 per channel (axis 1): x ~ scale * (q - zero_point), q in [-128, 127]."""
    x = np.asarray(array, dtype=np.float32)
    flat = _channel_axis_view(x)  # (C, K)
    if flat.shape[1] == 0:
        lo = hi = np.zeros(flat.shape[0], dtype=np.float32)
    else:
        lo = np.minimum(flat.min(axis=1), 0.0).astype(np.float32)
        hi = np.maximum(flat.max(axis=1), 0.0).astype(np.float32)
    scale = ((hi - lo) / 255.0).astype(np.float32)
    scale[scale == 0] = 1.0  # a constant channel: any scale reproduces it exactly
    zero_point = np.round(-128.0 - lo / scale).astype(np.float32)
    shape = (-1,) + (1,) * (x.ndim - 2) if x.ndim >= 2 else (1,)
    s = scale.reshape(shape) if x.ndim >= 2 else scale
    z = zero_point.reshape(shape) if x.ndim >= 2 else zero_point
    q = np.clip(np.round(x / s + z), -128, 127).astype(np.int8)
    return EncodedTensor(
        "int8",
        q.tobytes(),
        "int8",
        tuple(x.shape),
        "float32",
        {"scale": scale, "zero_point": zero_point},
    )


def int8_decode(enc: EncodedTensor) -> np.ndarray:
    q = np.frombuffer(enc.payload, dtype=np.int8).reshape(enc.shape).astype(np.float32)
    ndim = len(enc.shape)
    shape = (-1,) + (1,) * (ndim - 2) if ndim >= 2 else (1,)
    scale = enc.params["scale"].reshape(shape)
    zero_point = enc.params["zero_point"].reshape(shape)
    return ((q - zero_point) * scale).astype(enc.dtype, copy=False)


register_codec(
    Codec(
        "none",
        _raw_encode("none", "float32"),
        _raw_decode,
        1.0,
        1.0,
        1.0,
        lossless=True,
        description="float32 as is",
    )
)
register_codec(
    Codec(
        "fp16",
        _raw_encode("fp16", "float16"),
        _raw_decode,
        0.5,
        1.5,
        1.5,
        description="IEEE half precision",
    )
)
register_codec(
    Codec(
        "int8",
        int8_encode,
        int8_decode,
        0.25,
        3.0,
        1.5,
        description="affine int8 per channel: min/max pass, then quantize",
    )
)
