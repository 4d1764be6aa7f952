"""Tests of simulator.metrics: a site's timeline integrals, by hand and by brute force."""

from __future__ import annotations

import itertools

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from simulator.metrics import Timeline, add_intervals

PROPERTY = settings(max_examples=100, deadline=None, derandomize=True)


def test_timeline_hand_example() -> None:
    # Three frames on two servers over [0, 4) in two bins of 2 s: arrivals 0, 0, 1;
    # starts 0, 2, 3; departures 2, 3, 4.
    arrival, start, end = np.array([0.0, 0.0, 1.0]), np.array([0.0, 2, 3]), np.array([2.0, 3, 4])
    tl = Timeline.zeros(4.0, 2)
    add_intervals(start, end, tl.horizon_s, tl.busy_partial, tl.busy_cover)
    add_intervals(arrival, start, tl.horizon_s, tl.waiting_partial, tl.waiting_cover)
    add_intervals(arrival, end, tl.horizon_s, tl.system_partial, tl.system_cover)
    np.testing.assert_array_equal(tl.busy(), [1.0, 1.0])  # mean busy servers
    np.testing.assert_array_equal(tl.waiting(), [1.5, 0.5])
    np.testing.assert_array_equal(tl.in_system(), [2.5, 1.5])


@PROPERTY
@given(
    st.lists(st.tuples(st.floats(-2, 12), st.floats(0, 6)), min_size=1, max_size=30),
    st.integers(1, 7),
)
def test_timeline_matches_brute_force(intervals: list[tuple[float, float]], bins: int) -> None:
    begin = np.array([b for b, _ in intervals])
    end = begin + np.array([d for _, d in intervals])
    horizon_s = 10.0
    tl = Timeline.zeros(horizon_s, bins)
    add_intervals(begin, end, horizon_s, tl.system_partial, tl.system_cover)
    edges = np.linspace(0.0, horizon_s, bins + 1)
    expected = [
        sum(max(0.0, min(e, hi) - max(b, lo)) for b, e in zip(begin, end, strict=True)) / (hi - lo)
        for lo, hi in itertools.pairwise(edges)
    ]
    np.testing.assert_allclose(tl.in_system(), expected, rtol=1e-12, atol=1e-12)
