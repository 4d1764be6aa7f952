"""Counter-based random streams: Philox known answers, independence from layout."""

from __future__ import annotations

import numpy as np
import pytest

from simulator import streams

# Random123's tests/kat_vectors, the three "philox4x32 10" lines: counter, key, result.
KNOWN_ANSWERS = [
    ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    (
        (0xFFFFFFFF,) * 4,
        (0xFFFFFFFF,) * 2,
        (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD),
    ),
    (
        (0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344),
        (0xA4093822, 0x299F31D0),
        (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1),
    ),
]


@pytest.mark.parametrize("counter,key,expected", KNOWN_ANSWERS)
def test_philox_known_answers(counter, key, expected) -> None:
    words = streams.philox4x32_10(*(np.uint64(v) for v in counter), *(np.uint64(v) for v in key))
    assert tuple(int(w) for w in words) == expected


def test_draws_depend_only_on_their_counter() -> None:
    cams = np.arange(1000)
    everyone = streams.uniforms(42, 3, streams.START, cams)
    some = streams.uniforms(42, 3, streams.START, cams[[999, 5, 17]])
    np.testing.assert_array_equal(some, everyone[[999, 5, 17]])
    # Another seed, group or purpose is another stream.
    for other in (
        streams.uniforms(43, 3, streams.START, cams),
        streams.uniforms(42, 4, streams.START, cams),
        streams.uniforms(42, 3, streams.OFFSET, cams),
    ):
        assert not np.any(other == everyone)


def test_uniforms_are_in_the_half_open_unit_interval_and_uniform() -> None:
    u = streams.uniforms(7, 0, streams.ARRIVAL, 12, np.arange(200_000))
    assert u.min() > 0.0 and u.max() <= 1.0
    assert u.mean() == pytest.approx(0.5, abs=0.003)
    assert u.var() == pytest.approx(1 / 12, rel=0.01)
    counts = np.bincount((u * 16).astype(int), minlength=16)
    assert counts.min() > 0.95 * 200_000 / 16


def test_seed_and_tag_validation() -> None:
    with pytest.raises(ValueError):
        streams.seed_key(-1)
    with pytest.raises(ValueError):
        streams.stream_tag(1 << 16, 0)
    assert streams.seed_key(2**64 - 1) == (np.uint64(0xFFFFFFFF), np.uint64(0xFFFFFFFF))
