"""Feature codecs: how a tensor that crosses the cut is turned into wire bytes.

A codec encodes an array into an :class:`EncodedTensor` (payload bytes, the wire
dtype and shape, and the few numbers needed to decode, such as per-channel
scales) and decodes it back. The cost model prices a codec by the bytes it puts
on the wire and the memory passes it makes on each side. Codecs live in a
registry (``CODECS``); ``none`` sends float32 as is.

A lossy base (``fp16``, ``int8``) can be followed by a fast lossless stage
(``fp16+zstd``, ``int8+lz4``; ``zstd`` and ``lz4`` alone keep float32 exact). The
stage first packs sparse tensors as a bitmap of non-zeros plus the non-zero values
(half of a post-ReLU feature map is zero, and lz4 has no entropy coder to exploit
that by itself), then compresses. How much it saves depends on the features, so a
registered codec carries a typical figure and :func:`measure_codec` returns a copy
priced on real tensors: the ratio and the time the cost model then charges. Decoding believes
only the declared shape: a stage never decompresses more than that shape can hold.
"""

from __future__ import annotations

import dataclasses
import math
import struct
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from partitioner.errors import EdgecutError
from partitioner.registry import Registry


class CodecError(EdgecutError):
    """Bytes that do not decode into the tensor their header announces."""


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
    channel_param_bytes: int = 0  # side information per channel (axis 1), e.g. scale + zero point
    stage: str = ""  # the lossless stage after the base codec: "", "zstd" or "lz4"

    def wire_bytes(self, raw_bytes: int, shape: Sequence[int]) -> int:
        """Predicted bytes on the wire for a float32 tensor of ``raw_bytes``."""
        channels = (shape[1] if len(shape) > 1 else 1) if self.channel_param_bytes else 0
        return int(np.ceil(raw_bytes * self.wire_ratio)) + channels * self.channel_param_bytes

    def encode_ms(self, raw_bytes: int, mem_bandwidth_gbps: float) -> float:
        return self.encode_passes * raw_bytes / (mem_bandwidth_gbps * 1e6)

    def decode_ms(self, raw_bytes: int, mem_bandwidth_gbps: float) -> float:
        return self.decode_passes * raw_bytes / (mem_bandwidth_gbps * 1e6)


CODECS: Registry[Codec] = Registry("codec")


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
    source = np.asarray(array)
    decoded = str(source.dtype) if source.dtype.kind == "f" else "float32"
    x = source.astype(np.float32, copy=False)
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
        decoded,
        {"scale": scale, "zero_point": zero_point},
    )


def int8_decode(enc: EncodedTensor) -> np.ndarray:
    q = np.frombuffer(enc.payload, dtype=np.int8).reshape(enc.shape).astype(np.float32)
    ndim = len(enc.shape)
    shape = (-1,) + (1,) * (ndim - 2) if ndim >= 2 else (1,)
    scale = enc.params["scale"].reshape(shape)
    zero_point = enc.params["zero_point"].reshape(shape)
    return ((q - zero_point) * scale).astype(enc.dtype, copy=False)


CODECS.register(
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
CODECS.register(
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
CODECS.register(
    Codec(
        "int8",
        int8_encode,
        int8_decode,
        0.25,
        3.0,
        1.5,
        description="affine int8 per channel: min/max pass, then quantize",
        channel_param_bytes=8,  # float32 scale + float32 zero point
    )
)


# -- lossless stages -------------------------------------------------------------------


@dataclass(frozen=True)
class _Coder:
    """A general-purpose byte compressor and what it typically costs."""

    name: str
    compress: Callable[[bytes], bytes]
    decompress: Callable[[bytes, int], bytes]  # (data, exact decompressed size)
    # Memory-pass equivalents per input byte: a coder streams at roughly a fixed
    # fraction of memory bandwidth (zstd -1 ~400 MB/s, lz4 ~800 MB/s compressing,
    # 1 and 3 GB/s decompressing, on a core with ~10 GB/s), so its cost scales with
    # the device the way the memory-bound base codecs do.
    encode_passes: float
    decode_passes: float


def _zstd_compress(data: bytes) -> bytes:
    import zstandard

    # level 1: the fast end; no checksum (the transport has one), no content size (ours).
    return zstandard.ZstdCompressor(
        level=1, write_checksum=False, write_content_size=False
    ).compress(data)


# The largest window a zstd encoder picks at any level up to 19 (level 1, ours, uses at most
# 512 KiB). A frame that asks for more than this and more than its content can need is refused
# before its decoder allocates the window.
_ZSTD_MAX_WINDOW_BYTES = 8 * 1024 * 1024


def _zstd_decompress(data: bytes, size: int) -> bytes:
    """Exactly one zstd frame of at most ``size`` bytes; anything larger is refused unread."""
    import zstandard

    try:
        # A frame may carry its own content size, which zstandard trusts over max_output_size
        # and allocates at once: a lie there must be refused before it is believed.
        declared = zstandard.get_frame_parameters(data).content_size
        if declared not in (zstandard.CONTENTSIZE_UNKNOWN, size):
            raise CodecError(f"zstd frame announces {declared} bytes, the stage header {size}")
        window = max(_ZSTD_MAX_WINDOW_BYTES, 1 << max(size - 1, 0).bit_length())
        decompressor = zstandard.ZstdDecompressor(max_window_size=window)
        # max_output_size bounds the output of a frame without a content size: one that would
        # decode to more fails instead ("did not decompress full frame").
        return decompressor.decompress(data, max_output_size=max(size, 1), allow_extra_data=False)
    except zstandard.ZstdError as exc:
        raise CodecError(f"zstd payload does not decompress: {exc}") from None


def _lz4_compress(data: bytes) -> bytes:
    import lz4.block

    return lz4.block.compress(data, mode="default", store_size=False)


def _lz4_decompress(data: bytes, size: int) -> bytes:
    """One lz4 block of at most ``size`` bytes: the output buffer is ``size``, never more."""
    import lz4.block

    if size == 0:
        return b""
    try:
        # A block that would decode past uncompressed_size fails rather than grows the buffer.
        return lz4.block.decompress(data, uncompressed_size=size)
    except lz4.block.LZ4BlockError as exc:
        raise CodecError(f"lz4 payload does not decompress: {exc}") from None


_CODERS = {
    "zstd": _Coder("zstd", _zstd_compress, _zstd_decompress, 25.0, 10.0),
    "lz4": _Coder("lz4", _lz4_compress, _lz4_decompress, 12.5, 3.5),
}

# Stage header: flags (bit 0: sparse-packed) and the length of the packed body.
_HEADER = struct.Struct("<BI")
_SPARSE = 1
# Packing a bitmap and gathering the non-zeros: about three passes over the payload.
_PACK_PASSES = 3.0
_UNPACK_PASSES = 2.0

# Typical stage ratio (stage output / base payload) measured on the real post-ReLU
# features of digits_cnn (relu2, 64x8x8, test split, one frame per tensor); used
# until measure_codec prices a codec on the tensors of the cut at hand.
_TYPICAL_STAGE_RATIO = {
    ("none", "zstd"): 0.48,
    ("none", "lz4"): 0.52,
    ("fp16", "zstd"): 0.51,
    ("fp16", "lz4"): 0.56,
    ("int8", "zstd"): 0.62,
    ("int8", "lz4"): 0.62,
}


def _zero_code(enc: EncodedTensor, wire: np.dtype) -> np.ndarray | int:
    """The wire value that stands for 0.0, broadcastable to the payload's shape."""
    if "zero_point" not in enc.params:
        return 0
    zp = np.asarray(enc.params["zero_point"]).astype(wire)
    ndim = len(enc.shape)
    return zp.reshape((-1,) + (1,) * (ndim - 2)) if ndim >= 2 else zp.reshape(-1)[:1]


def _pack(values: np.ndarray, zero: np.ndarray | int) -> tuple[int, bytes]:
    """(flags, body): a bitmap of non-zeros plus the non-zeros when that is smaller."""
    dense = values.tobytes()
    if values.size == 0:
        return 0, dense
    # Floats are compared as bit patterns: -0.0 and NaNs must come back exactly.
    floats = values.dtype.kind == "f"
    mask = values.view(f"<u{values.itemsize}") != 0 if floats else values != zero
    kept = int(mask.sum())
    packed_size = math.ceil(values.size / 8) + kept * values.itemsize
    if packed_size >= len(dense):
        return 0, dense
    bitmap = np.packbits(mask.reshape(-1), bitorder="little")
    return _SPARSE, bitmap.tobytes() + values[mask].tobytes()


def _unpack(
    flags: int, body: bytes, shape: tuple[int, ...], wire: np.dtype, zero: np.ndarray | int
) -> np.ndarray:
    count = math.prod(shape)
    if not flags & _SPARSE:
        if len(body) != count * wire.itemsize:
            raise CodecError(
                f"payload holds {len(body)} bytes, expected {count * wire.itemsize} for shape "
                f"{list(shape)} of {wire.name}"
            )
        return np.frombuffer(body, dtype=wire).reshape(shape)
    nbitmap = math.ceil(count / 8)
    if len(body) < nbitmap:
        raise CodecError(f"sparse payload of {len(body)} bytes is shorter than its bitmap")
    # (count,) bytes 0/1 viewed as bools: no second copy of a mask as large as the tensor.
    mask = np.unpackbits(
        np.frombuffer(body[:nbitmap], dtype=np.uint8), count=count, bitorder="little"
    ).view(bool)
    kept = np.frombuffer(body[nbitmap:], dtype=wire)
    if kept.size != int(mask.sum()) or len(body) != nbitmap + kept.size * wire.itemsize:
        raise CodecError(
            f"sparse payload holds {len(body) - nbitmap} value bytes for {int(mask.sum())} "
            f"non-zeros of {wire.name}"
        )
    out = np.empty(shape, dtype=wire)
    out[...] = zero
    out.reshape(-1)[mask] = kept
    return out


def _staged(base: Codec, coder: _Coder, name: str) -> Codec:
    wire_of: dict[str, np.dtype] = {}

    def wire_dtype(enc: EncodedTensor) -> np.dtype:
        if enc.wire_dtype not in wire_of:
            wire_of[enc.wire_dtype] = np.dtype(enc.wire_dtype).newbyteorder("<")
        return wire_of[enc.wire_dtype]

    def encode(array: np.ndarray) -> EncodedTensor:
        inner = base.encode(array)
        wire = wire_dtype(inner)
        values = np.frombuffer(inner.payload, dtype=wire).reshape(inner.shape)
        flags, body = _pack(values, _zero_code(inner, wire))
        params = dict(inner.params)
        if "zero_point" in params:  # integral and within [-128, 127]: one byte per channel
            params["zero_point"] = params["zero_point"].astype(np.int8)
        payload = _HEADER.pack(flags, len(body)) + coder.compress(body)
        return EncodedTensor(name, payload, inner.wire_dtype, inner.shape, inner.dtype, params)

    def decode(enc: EncodedTensor) -> np.ndarray:
        if len(enc.payload) < _HEADER.size:
            raise CodecError(f"{name} payload of {len(enc.payload)} bytes has no header")
        flags, size = _HEADER.unpack_from(enc.payload)
        wire = wire_dtype(enc)
        bound = math.ceil(math.prod(enc.shape) / 8) + math.prod(enc.shape) * wire.itemsize
        if size > bound:
            raise CodecError(f"{name} header announces {size} bytes, at most {bound} can be valid")
        body = coder.decompress(enc.payload[_HEADER.size :], size)
        if len(body) != size:
            raise CodecError(f"{name} body decompressed to {len(body)} bytes, header says {size}")
        values = _unpack(flags, body, enc.shape, wire, _zero_code(enc, wire))
        inner = dataclasses.replace(enc, codec=base.name, payload=values.tobytes())
        return base.decode(inner)

    ratio = _TYPICAL_STAGE_RATIO[(base.name, coder.name)]
    return Codec(
        name,
        encode,
        decode,
        wire_ratio=base.wire_ratio * ratio,
        encode_passes=base.encode_passes + base.wire_ratio * (_PACK_PASSES + coder.encode_passes),
        decode_passes=base.decode_passes + base.wire_ratio * (_UNPACK_PASSES + coder.decode_passes),
        lossless=base.lossless,
        description=f"{base.description}, then {coder.name} (sparse bitmap packing first)",
        channel_param_bytes=5 if base.channel_param_bytes else 0,  # float32 scale + int8 zero point
        stage=coder.name,
    )


for _coder in _CODERS.values():
    CODECS.register(_staged(CODECS.get("none"), _coder, _coder.name))
    for _base in ("fp16", "int8"):
        CODECS.register(_staged(CODECS.get(_base), _coder, f"{_base}+{_coder.name}"))


# -- pricing a codec on real tensors ----------------------------------------------------


def measure_codec(
    codec: Codec | str,
    frames: Iterable[np.ndarray],
    *,
    mem_bandwidth_gbps: float,
    repeats: int = 3,
) -> Codec:
    """``codec`` priced on ``frames`` (one tensor per frame, as they cross the cut).

    The copy's ``wire_ratio`` is the measured payload bytes per float32 byte, and its
    pass counts are the measured encode/decode times (best of ``repeats``) expressed
    in passes over the float32 tensor at ``mem_bandwidth_gbps``, the memory bandwidth
    of the machine measuring, so that the cost model scales them to other devices.
    """
    codec = CODECS.get(codec) if isinstance(codec, str) else codec
    raw = payload = 0
    encode_s = decode_s = 0.0
    for frame in frames:
        array = np.ascontiguousarray(frame, dtype=np.float32)
        best_enc = best_dec = math.inf
        for _ in range(max(1, repeats)):
            start = time.perf_counter()
            enc = codec.encode(array)
            mid = time.perf_counter()
            codec.decode(enc)
            end = time.perf_counter()
            best_enc, best_dec = min(best_enc, mid - start), min(best_dec, end - mid)
        raw += array.nbytes
        payload += len(enc.payload)
        encode_s += best_enc
        decode_s += best_dec
    if raw == 0:
        return codec
    bytes_per_s = mem_bandwidth_gbps * 1e9
    return dataclasses.replace(
        codec,
        wire_ratio=payload / raw,
        encode_passes=encode_s * bytes_per_s / raw,
        decode_passes=decode_s * bytes_per_s / raw,
        description=f"{codec.description} (measured on {raw // 4:,} values)",
    )
