"""Feature codecs: round trips for every registered codec and dtype with their error
bounds, corrupt payloads refused, the wire format of the original names, and measured
ratios and times feeding the cost model."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from partitioner.codecs import CODECS, CodecError, measure_codec
from partitioner.errors import EdgecutError
from partitioner.pricing.cost import CostModel
from partitioner.pricing.network import NETWORKS
from partitioner.pricing.profiles import DEVICES

SHAPES = hnp.array_shapes(min_dims=1, max_dims=4, min_side=0, max_side=7)
DTYPES = ["float32", "float16"]


def _arrays(dtype: str):
    finite = st.floats(-6e4, 6e4, allow_nan=False, width=16 if dtype == "float16" else 32)
    # half of the values exactly zero, as after a ReLU: the sparse packing path
    values = st.one_of(st.just(0.0), st.just(-0.0), finite)
    return hnp.arrays(np.dtype(dtype), SHAPES, elements=values)


def _base(name: str) -> str:
    """The codec a staged one wraps: ``int8+zstd`` -> ``int8``, ``zstd`` -> ``none``."""
    base = name.split("+")[0]
    return "none" if base in ("zstd", "lz4") else base


def _per_channel(a: np.ndarray) -> np.ndarray:
    """(C, rest): int8 quantizes each channel (axis 1) with its own scale."""
    return np.moveaxis(a, 1, 0).reshape(a.shape[1], -1) if a.ndim > 1 else a[None]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", [c.name for c in CODECS.list()])
@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_round_trip_every_codec_and_dtype(name: str, dtype: str, data) -> None:
    codec = CODECS.get(name)
    array = data.draw(_arrays(dtype))
    enc = codec.encode(array)
    dec = codec.decode(enc)
    assert dec.shape == array.shape and dec.dtype == array.dtype
    if codec.lossless:
        assert dec.tobytes() == array.tobytes()  # bit for bit, -0.0 included
    if codec.stage:  # the lossless stage changes bytes on the wire, never values
        base = CODECS.get(_base(name))
        assert dec.tobytes() == base.decode(base.encode(array)).tobytes()
    if _base(name) == "fp16":
        np.testing.assert_array_equal(dec, array.astype(np.float16).astype(array.dtype))
    if _base(name) == "int8" and array.size:
        x = _per_channel(array.astype(np.float32))
        span = np.maximum(x.max(axis=1), 0) - np.minimum(x.min(axis=1), 0)
        err = np.abs(_per_channel(dec.astype(np.float32)) - x)
        # half a quantization step (span / 255), plus float rounding of scale and zero point
        bound = span[:, None] / 255 * 0.5 + 1e-3 * (span[:, None] + 1)
        if dtype == "float16":  # the decoded value is rounded to fp16 once more
            bound = bound + 0.05
        assert np.all(err <= bound)


@pytest.mark.parametrize("name", [c.name for c in CODECS.list() if c.stage])
@settings(max_examples=40, deadline=None)
@given(garbage=st.binary(max_size=64), cut=st.integers(0, 40))
def test_corrupt_payloads_raise_codec_error(name: str, garbage: bytes, cut: int) -> None:
    codec = CODECS.get(name)
    x = np.maximum(np.random.default_rng(0).normal(size=(1, 4, 5, 5)), 0).astype(np.float32)
    enc = codec.encode(x)
    for payload in (garbage, enc.payload[:cut], enc.payload + garbage[:1]):
        if payload == enc.payload:
            continue
        try:
            out = codec.decode(dataclasses.replace(enc, payload=payload))
        except CodecError:
            continue
        assert out.shape == x.shape  # a payload that happens to be valid decodes to the shape


def _post_relu(seed: int = 0, shape=(1, 64, 16, 16)) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [np.maximum(rng.normal(size=shape), 0).astype(np.float32) for _ in range(4)]


@pytest.mark.parametrize("name", ["int8+zstd", "int8+lz4", "fp16+zstd", "zstd"])
def test_lossless_stage_shrinks_sparse_features(name: str) -> None:
    frames = _post_relu()
    staged, base = CODECS.get(name), CODECS.get(_base(name))
    staged_bytes = sum(staged.encode(f).nbytes for f in frames)
    base_bytes = sum(base.encode(f).nbytes for f in frames)
    assert staged_bytes < 0.8 * base_bytes


def test_measured_codec_prices_bytes_and_time_in_the_cost_model(captured_zoo) -> None:
    frames = _post_relu()
    raw = frames[0].nbytes
    measured = measure_codec("int8+zstd", frames, mem_bandwidth_gbps=10.0, repeats=1)
    payload = np.mean([len(CODECS.get("int8+zstd").encode(f).payload) for f in frames])
    assert measured.wire_ratio == pytest.approx(payload / raw)
    assert measured.encode_passes > 0 and measured.decode_passes > 0
    _, cap = captured_zoo("digits_cnn")
    costs = {
        name: CostModel(
            cap.graph, DEVICES.get("rpi4"), DEVICES.get("x86-server"), NETWORKS.get("lte"), name
        )
        for name in ("none", "int8", "int8+zstd", "int8+lz4")
    }
    relu2 = cap.graph.close(["relu2"])
    p = {name: c.predict(relu2) for name, c in costs.items()}
    assert p["int8+zstd"].wire_bytes < p["int8"].wire_bytes < p["none"].wire_bytes
    # the coder costs time on both ends: charged as serialisation, not free
    assert p["int8+zstd"].serialize_ms > p["int8"].serialize_ms > 0
    assert p["int8+lz4"].serialize_ms < p["int8+zstd"].serialize_ms


def test_existing_codec_names_keep_their_wire_format() -> None:
    x = _post_relu()[0]  # (1, 64, 16, 16)
    enc = CODECS.get("int8").encode(x)
    assert len(enc.payload) * 4 == x.nbytes  # one byte per value
    assert enc.params["zero_point"].dtype == np.float32
    # plus a float32 scale and zero point for each of the 64 channels
    assert CODECS.get("int8").wire_bytes(x.nbytes, x.shape) == len(enc.payload) + 64 * 8
    assert CODECS.get("fp16").encode(x).payload == x.astype("<f2").tobytes()
    assert CODECS.get("none").encode(x).payload == x.astype("<f4").tobytes()


def test_unknown_codec() -> None:
    with pytest.raises(EdgecutError, match="unknown codec 'int9'"):
        CODECS.get("int9")


# -- decompression is bounded by what the header declares -------------------------------


def _zstd_frame(size: int, *, content_size: bool) -> bytes:
    import zstandard

    return zstandard.ZstdCompressor(level=1, write_content_size=content_size).compress(bytes(size))


def _lz4_block(size: int) -> bytes:
    import lz4.block

    return lz4.block.compress(bytes(size), store_size=False)


_BIG = 32 * 1024 * 1024  # what each lying stream expands to; the tensor declares 1 KiB
# Streams that decode to more than the stage header declares (or carry a second frame):
# (codec, compressed body) pairs, every one refused.
_LYING_STREAMS = {
    "zstd frame announcing more than the header": ("zstd", _zstd_frame(_BIG, content_size=True)),
    "zstd frame without a size, longer than the header": (
        "zstd",
        _zstd_frame(_BIG, content_size=False),
    ),
    "zstd frame followed by a second one": (
        "zstd",
        _zstd_frame(1024, content_size=False) + _zstd_frame(1024, content_size=False),
    ),
    "lz4 block longer than the header": ("lz4", _lz4_block(_BIG)),
}


@pytest.mark.parametrize("case", list(_LYING_STREAMS))
def test_a_stream_is_never_decompressed_past_its_declared_size(case: str) -> None:
    import struct
    import tracemalloc

    name, body = _LYING_STREAMS[case]
    x = np.zeros((1, 4, 8, 8), dtype=np.float32)  # 1 KiB declared
    enc = CODECS.get(name).encode(x)
    # The stage header: flags (0: dense) and the body's decompressed bytes, here the tensor's.
    lie = dataclasses.replace(enc, payload=struct.pack("<BI", 0, x.nbytes) + body)
    tracemalloc.start()
    try:
        with pytest.raises(CodecError):
            CODECS.get(name).decode(lie)
        _, peak_bytes = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # Refused with at most the declared kilobyte allocated, not the 32 MiB the stream holds.
    assert peak_bytes < 256 * 1024, peak_bytes
