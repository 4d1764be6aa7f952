"""Uplink estimation: RTT separated from transfer time, samples smoothed by what they carry."""

from __future__ import annotations

import pytest

from edge_node.estimator import BandwidthEstimator


def test_transfer_time_excludes_server_time_and_base_rtt() -> None:
    est = BandwidthEstimator(alpha=1.0)
    for rtt_s in (0.030, 0.020, 0.025):  # the base RTT is the smallest recent ping
        est.add_rtt(rtt_s)
    assert est.rtt_ms == pytest.approx(20.0)
    # 1 MB in 0.9 s of which 0.08 s on the server and 0.02 s round trip: 0.8 s on the wire.
    sample = est.add_transfer(1_000_000, elapsed_s=0.9, server_s=0.08)
    assert sample == pytest.approx(10.0) and est.mbps == pytest.approx(10.0)


def test_smoothing_weighs_samples_by_what_they_carry() -> None:
    est = BandwidthEstimator(alpha=0.5, initial_mbps=3.0)
    assert est.mbps == 3.0 and est.samples == 0
    est.add_transfer(1_000_000, 0.8)  # 10 Mbit/s
    est.add_transfer(10, 1e-9)  # a tiny, instant transfer: floored, and carries almost nothing
    assert est.mbps == pytest.approx((0.5 * 8e6 + 0.5 * 80) / (0.5 * 0.8 + 0.5 * 50e-6) / 1e6)
    assert 9.9 < est.mbps < 10.1


def test_estimate_follows_a_rate_change_within_a_few_transfers() -> None:
    est = BandwidthEstimator(alpha=0.3)
    for _ in range(10):
        est.add_transfer(125_000, 0.01)  # 100 Mbit/s
    steps = 0
    while est.mbps > 2 * 5.0:  # now 5 Mbit/s
        est.add_transfer(125_000, 0.2)
        steps += 1
    assert steps <= 5


def test_a_timeout_counts_as_at_least_that_slow() -> None:
    est = BandwidthEstimator(alpha=1.0)
    est.add_timeout(1_000_000, waited_s=2.0)
    assert est.mbps == pytest.approx(4.0)


def test_bad_settings() -> None:
    with pytest.raises(ValueError):
        BandwidthEstimator(alpha=0)
    with pytest.raises(ValueError):
        BandwidthEstimator(initial_mbps=-1)
