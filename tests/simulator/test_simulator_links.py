"""Tests of simulator.links: trace files become the capacity curves the cameras replay."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from simulator.links import load_curve

PACKET_BITS = 12_000.0  # a Mahimahi delivery opportunity: 1500 bytes


def test_mbps_pairs_file_is_a_piecewise_rate(tmp_path: Path) -> None:
    path = tmp_path / "trace.txt"
    path.write_text("# seconds Mbit/s\n0, 2.0\n1 4.0\n\n2 0.5\n")
    name, curve = load_curve(str(path))
    assert name == "trace.txt"
    # The last rate lasts one median step (1 s), then the trace repeats.
    assert curve.period_s == 3.0
    assert curve.period_bits == pytest.approx(6.5e6)
    np.testing.assert_allclose(curve.cumulative_bits([0.5, 1.5, 2.5]), [1e6, 4e6, 6.25e6])


def test_mahimahi_file_is_impulses_at_the_opportunities(tmp_path: Path) -> None:
    path = tmp_path / "link.up"
    path.write_text("1\n1\n3\n")
    name, curve = load_curve(str(path))
    assert name == "link"
    assert curve.period_s == 0.003 and curve.period_bits == 3 * PACKET_BITS
    # Two packets at 1 ms, one at 3 ms: the byte-exact impulse model, not a rate per ms.
    np.testing.assert_array_equal(
        curve.cumulative_bits([0.0005, 0.001, 0.0025, 0.003]),
        [0.0, 2 * PACKET_BITS, 2 * PACKET_BITS, 3 * PACKET_BITS],
    )
