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
