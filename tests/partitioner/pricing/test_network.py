"""Network presets and bandwidth traces (Mahimahi and [seconds, Mbit/s] pairs)."""

from __future__ import annotations

import gzip
import json

import numpy as np
import pytest

from partitioner.errors import EdgecutError
from partitioner.pricing.network import (
    NETWORKS,
    load_trace,
    packaged_traces,
    read_mahimahi,
    read_pairs,
    resolve_network,
)


def test_presets_have_sources_and_sane_values() -> None:
    assert {"3g", "lte", "wifi", "5g", "ethernet"} <= set(NETWORKS)
    for net in NETWORKS.list():
        assert net.uplink_mbps > 0 and net.rtt_ms >= 0 and net.source
    assert (
        NETWORKS.get("3g").uplink_mbps
        < NETWORKS.get("lte").uplink_mbps
        < NETWORKS.get("wifi").uplink_mbps
    )


def test_mahimahi_rate_and_repetition() -> None:
    # 3 packets in ms 0, none in ms 1, 1 packet in ms 2, period 4 ms (last line = 4).
    trace = read_mahimahi("0\n0\n0\n2\n4\n", "t")
    assert trace.period_s == pytest.approx(0.004)
    bits_per_packet = 1500 * 8
    assert trace.cumulative_bits(0.001) == pytest.approx(3 * bits_per_packet)
    assert trace.cumulative_bits(0.003) == pytest.approx(4 * bits_per_packet)
    # Mahimahi replays the file with its last stamp as the period, so each 4 ms period
    # carries all 5 opportunities; the last one is counted in the period's last ms.
    assert trace.cumulative_bits(0.004) == pytest.approx(5 * bits_per_packet)
    assert trace.cumulative_bits(0.008) == pytest.approx(2 * trace.cumulative_bits(0.004))
    assert trace.mean_mbps == pytest.approx(trace.cumulative_bits(0.004) / 0.004 / 1e6)


@pytest.mark.parametrize("name", sorted(packaged_traces()))
def test_packaged_traces_match_their_published_means(name: str) -> None:
    published = {
        "ATT-LTE-driving": 0.83,
        "TMobile-LTE-short": 13.3,
        "TMobile-UMTS-driving": 0.94,
        "Verizon-EVDO-driving": 0.84,
        "Verizon-LTE-short": 5.95,
    }
    trace = load_trace(name)
    assert trace.mean_mbps == pytest.approx(published[name], rel=0.02)
    per_second = trace.mbps_per_window(1.0)
    assert per_second.mean() == pytest.approx(trace.mean_mbps, rel=0.05)


def test_pairs_json_and_columns(tmp_path) -> None:
    text = json.dumps([[0, 5.0], [1, 1.0], [2, 3.0]])
    trace = read_pairs(text, "p")
    assert trace.period_s == 3.0 and trace.mean_mbps == pytest.approx(3.0)
    path = tmp_path / "bw.txt"
    path.write_text("# seconds Mbit/s\n0 5\n1 1\n2 3\n")
    assert load_trace(str(path)).mean_mbps == pytest.approx(3.0)
    gz = tmp_path / "x.up.gz"
    gz.write_bytes(gzip.compress(b"0\n1\n2\n"))
    assert load_trace(str(gz)).period_s == pytest.approx(0.002)


@pytest.mark.parametrize(
    "text,match",
    [
        ("1\nabc\n", "one integer millisecond"),
        ("", "empty"),
        ("5\n3\n", "non-decreasing"),
    ],
)
def test_bad_mahimahi(text: str, match: str) -> None:
    with pytest.raises(EdgecutError, match=match):
        read_mahimahi(text, "bad")


@pytest.mark.parametrize(
    "text,match",
    [
        ("[[1, 5]]", "start at 0"),
        ("[[0, -1]]", ">= 0"),
        ("[[0, 1, 2]]", "rows of"),
        ("0 x\n", "pairs"),
    ],
)
def test_bad_pairs(text: str, match: str) -> None:
    with pytest.raises(EdgecutError, match=match):
        read_pairs(text, "bad")


def test_resolve_network_by_preset_trace_and_error() -> None:
    assert resolve_network("lte") is NETWORKS.get("lte")
    traced = resolve_network("Verizon-LTE-short")
    assert traced.trace is not None and traced.uplink_mbps == pytest.approx(5.95, rel=0.02)
    with pytest.raises(EdgecutError, match="unknown network 'ltee'.*did you mean 'lte'"):
        resolve_network("ltee")


def test_cumulative_bits_is_vectorised_and_monotone() -> None:
    trace = load_trace("TMobile-LTE-short")
    t = np.linspace(0, 3 * trace.period_s, 10_000)
    bits = trace.cumulative_bits(t)
    assert bits.shape == t.shape and np.all(np.diff(bits) >= 0)
