"""Crossing tensors on the wire: every codec round-trips, and bad inputs are refused early."""

from __future__ import annotations

import numpy as np
import pytest

from partitioner.codecs import CODECS
from partitioner.deploy import crossing
from partitioner.model.graph import TensorSpec

SPECS = [
    TensorSpec("layer1.0.relu2", (1, 4, 3, 3), "float32", 144),
    TensorSpec("maxpool2", (1, 2, 5, 5), "float32", 200),
]


def _wire(inputs: dict[str, np.ndarray], params: dict) -> list[crossing.WireTensor]:
    return [
        crossing.WireTensor(name, a.dtype, a.shape, params.get(name, {}))
        for name, a in inputs.items()
    ]


def _tensors(batch: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    # Post-ReLU-like features: half zeros, as the lossless stages expect to meet.
    return [
        np.maximum(rng.standard_normal((batch, *s.shape[1:]), dtype=np.float32), 0) for s in SPECS
    ]


@pytest.mark.parametrize("codec", [c.name for c in CODECS.list()])
def test_every_codec_crosses_and_decodes_as_the_codec_does(codec: str) -> None:
    tensors = _tensors(3)
    inputs, params = crossing.encode_inputs(tensors, SPECS, codec)
    assert list(inputs)[:1] == [SPECS[0].name]
    assert crossing.check_inputs(_wire(inputs, params), SPECS, max_batch=8) == 3
    decoded = crossing.decode_inputs(inputs, params, SPECS)
    coder = CODECS.get(codec)
    for got, original in zip(decoded, tensors, strict=True):
        want = coder.decode(coder.encode(original))
        assert got.dtype == np.float32 and got.shape == original.shape
        np.testing.assert_array_equal(got, want)
    if codec == "none":
        assert params == {}  # exactly what a standard client sends


def _error(inputs: dict[str, np.ndarray], params: dict | None = None) -> crossing.CrossingError:
    with pytest.raises(crossing.CrossingError) as info:
        crossing.check_inputs(_wire(inputs, params or {}), SPECS, max_batch=8, where="cut 1")
    return info.value


def _plain(batch: int = 1) -> dict[str, np.ndarray]:
    return dict(zip([s.name for s in SPECS], _tensors(batch), strict=True))


def test_refusals_say_what_was_expected() -> None:
    good = _plain()
    missing = _error({"maxpool2": good["maxpool2"]})
    assert "missing input 'layer1.0.relu2'" in str(missing)
    assert "cut 1 takes inputs 'layer1.0.relu2' FP32 [-1, 4, 3, 3]" in str(missing)
    assert "unexpected input 'y'" in str(_error({**good, "y": good["maxpool2"]}))
    wrong_dtype = _error({**good, "maxpool2": good["maxpool2"].astype(np.float16)})
    assert "datatype FP16, expected FP32" in str(wrong_dtype)
    wrong_shape = _error({**good, "maxpool2": np.zeros((1, 2, 5, 4), np.float32)})
    assert "[1, 2, 5, 4] does not match the cut's [-1, 2, 5, 5]" in str(wrong_shape)
    rank = _error({**good, "maxpool2": np.zeros((1, 50), np.float32)})
    assert "expected [-1, 2, 5, 5]" in str(rank)
    empty = _error({n: np.zeros((0, *a.shape[1:]), np.float32) for n, a in good.items()})
    assert "batch 0, expected >= 1" in str(empty)
    mixed = _error({**good, "maxpool2": _plain(2)["maxpool2"]})
    assert "disagree on the batch size" in str(mixed)


def test_negative_and_huge_dimensions() -> None:
    negative = [crossing.WireTensor(s.name, np.dtype("float32"), (-1, *s.shape[1:])) for s in SPECS]
    with pytest.raises(crossing.CrossingError, match="negative dimension") as info:
        crossing.check_inputs(negative, SPECS, max_batch=8)
    assert info.value.code == "INVALID_ARGUMENT"
    huge = [crossing.WireTensor(s.name, np.dtype("float32"), (10**12, *s.shape[1:])) for s in SPECS]
    with pytest.raises(crossing.CrossingError, match="exceeds this model's limit of 8") as info:
        crossing.check_inputs(huge, SPECS, max_batch=8)
    assert info.value.code == "RESOURCE_EXHAUSTED"


def test_codec_parameters_are_checked() -> None:
    inputs, params = crossing.encode_inputs(_tensors(1), SPECS, "int8")
    name = SPECS[0].name
    unknown = {**params, name: {**params[name], crossing.CODEC_PARAM: "jpeg"}}
    assert "unknown codec 'jpeg'" in str(_error(inputs, unknown))
    bad_shape = {**params, name: {**params[name], crossing.SHAPE_PARAM: "1,4,x,3"}}
    assert "comma-separated integers" in str(_error(inputs, bad_shape))
    no_scale = {k: v for k, v in inputs.items() if k != f"{name}#scale"}
    assert f"input '{name}#scale' is missing" in str(_error(no_scale, params))
    wire = {**params, name: {**params[name], crossing.WIRE_DTYPE_PARAM: "object"}}
    assert "edgecut.wire_dtype is 'object'" in str(_error(inputs, wire))


def test_a_payload_that_does_not_decode_is_the_senders_error() -> None:
    staged = [c.name for c in CODECS.list() if c.stage]  # int8+zstd and the like are built in
    assert staged
    inputs, params = crossing.encode_inputs(_tensors(1), SPECS, staged[0])
    name = SPECS[0].name
    inputs[name] = np.frombuffer(b"not zstd at all", dtype=np.uint8)
    crossing.check_inputs(_wire(inputs, params), SPECS, max_batch=8)
    with pytest.raises(crossing.CrossingError, match="payload does not decode"):
        crossing.decode_inputs(inputs, params, SPECS)


# A sequence-first transformer's (S, B, E) and Swin's windows folded into the batch (4 a frame).
BATCH_ELSEWHERE = [
    TensorSpec("encoder.layers.0.norm1", (16, 1, 32), "float32", 2048, batch_dim=1),
    TensorSpec("attn.permute", (3, 4, 2, 8), "float32", 768, batch_dim=1),
]


@pytest.mark.parametrize("codec", ["none", "int8", "fp16+zstd"])
def test_the_batch_is_read_from_each_tensors_batch_dim(codec: str) -> None:
    rng = np.random.default_rng(0)
    tensors = [rng.standard_normal(s.batched(3), dtype=np.float32) for s in BATCH_ELSEWHERE]
    assert [t.shape for t in tensors] == [(16, 3, 32), (3, 12, 2, 8)]
    inputs, params = crossing.encode_inputs(tensors, BATCH_ELSEWHERE, codec)
    assert crossing.check_inputs(_wire(inputs, params), BATCH_ELSEWHERE, max_batch=8) == 3
    decoded = crossing.decode_inputs(inputs, params, BATCH_ELSEWHERE)
    assert [d.shape for d in decoded] == [t.shape for t in tensors]
    assert crossing.describe(BATCH_ELSEWHERE[0]).endswith("FP32 [16, -1, 32]")
    assert "[3, -1, 2, 8] (4 per frame in dim 1)" in crossing.describe(BATCH_ELSEWHERE[1])


@pytest.mark.parametrize(
    ("shapes", "message"),
    [
        ([(3, 16, 32), (3, 4, 2, 8)], r"\[3, 16, 32\] does not match the cut's \[16, -1, 32\]"),
        ([(16, 1, 32), (3, 6, 2, 8)], r"does not match the cut's \[3, -1, 2, 8\]"),  # not 4k
        ([(16, 2, 32), (3, 4, 2, 8)], "inputs disagree on the batch size"),
        ([(16, 9, 32), (3, 36, 2, 8)], "batch 9 exceeds this model's limit of 8"),
    ],
)
def test_a_batch_in_the_wrong_dim_is_refused(shapes: list[tuple[int, ...]], message: str) -> None:
    inputs = {
        s.name: np.zeros(shape, np.float32)
        for s, shape in zip(BATCH_ELSEWHERE, shapes, strict=True)
    }
    with pytest.raises(crossing.CrossingError, match=message):
        crossing.check_inputs(_wire(inputs, {}), BATCH_ELSEWHERE, max_batch=8)


def test_a_spec_without_batch_dim_is_one_frame_of_its_shape() -> None:
    spec = TensorSpec("ids", (1, 16), "int64", 128, batch_dim=None)
    assert (
        crossing.check_inputs(_wire({"ids": np.zeros((1, 16), np.int64)}, {}), [spec], max_batch=8)
        == 1
    )
    with pytest.raises(
        crossing.CrossingError, match=r"\[2, 16\] does not match the cut's \[1, 16\]"
    ):
        crossing.check_inputs(_wire({"ids": np.zeros((2, 16), np.int64)}, {}), [spec], max_batch=8)
    assert TensorSpec.from_json(spec.to_json()) == spec
    old = {"name": "x", "shape": [1, 3], "dtype": "float32", "bytes": 12}  # before batch_dim
    assert TensorSpec.from_json(old).batch_dim == 0
