"""Feature codecs: round trips for every registered codec and dtype, and their error bounds."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from partitioner.codecs import CODECS
from partitioner.errors import EdgecutError

SHAPES = hnp.array_shapes(min_dims=1, max_dims=4, min_side=0, max_side=6)
FLOATS = st.floats(-1e4, 1e4, allow_nan=False, width=32)


@pytest.mark.parametrize("name", [c.name for c in CODECS.list()])
@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_round_trip_keeps_shape_dtype_and_bounds_error(name: str, data) -> None:
    codec = CODECS.get(name)
    array = data.draw(hnp.arrays(np.float32, SHAPES, elements=FLOATS))
    enc = codec.encode(array)
    dec = codec.decode(enc)
    assert dec.shape == array.shape and dec.dtype == array.dtype
    if codec.lossless:
        np.testing.assert_array_equal(dec, array)
    elif name == "fp16":
        np.testing.assert_allclose(dec, array.astype(np.float16).astype(np.float32))
    elif name.startswith("int8") and array.size:
        # per channel (axis 1): error <= half a step, step = range / 255
        def per_channel(a: np.ndarray) -> np.ndarray:
            return np.moveaxis(a, 1, 0).reshape(a.shape[1], -1) if a.ndim > 1 else a[None]

        flat = per_channel(array)
        rng = np.maximum(flat.max(axis=1), 0) - np.minimum(flat.min(axis=1), 0)
        err = np.abs(per_channel(dec - array))
        assert np.all(err <= rng[:, None] / 255 * 0.5 + 1e-3 * (rng[:, None] + 1))


def test_int8_is_four_times_smaller_on_features() -> None:
    x = np.maximum(np.random.default_rng(0).normal(size=(1, 64, 28, 28)), 0).astype(np.float32)
    enc = CODECS.get("int8").encode(x)
    assert len(enc.payload) * 4 == x.nbytes
    assert CODECS.get("int8").wire_bytes(x.nbytes, x.shape) == len(enc.payload) + 64 * 8


def test_unknown_codec() -> None:
    with pytest.raises(EdgecutError, match="unknown codec 'int9'"):
        CODECS.get("int9")
