"""Tests of simulator.uplink: capacity curves, the fluid FIFO link against references."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simulator.uplink import TIME_TOLERANCE_S, BucketSearch, CapacityCurve
from tests.simulator.oracles import fifo_departures, fluid_fifo_departures, fluid_link_reference

PROPERTY = settings(max_examples=100, deadline=None, derandomize=True)
TRACES_DIR = Path("/work/shared/traces")
PACKET_BITS = 12_000.0


def mahimahi_reference(
    timestamps_ms: list[int], arrivals_s: list[float], frame_bytes: list[int], offset_s: float
) -> list[float]:
    """Byte-level Mahimahi link, straight from the trace lines: each line is a 1500-byte
    delivery opportunity; the trace repeats after its last line; an opportunity serves the
    queued frames' bytes in FIFO order and can be shared between consecutive frames.
    Opportunities before a frame's arrival cannot serve it; one at the same instant (up to
    TIME_TOLERANCE_S earlier) can."""
    period_ms = timestamps_ms[-1]
    lines = len(timestamps_ms)
    first_ms = (arrivals_s[0] + offset_s) * 1000.0
    p, j = math.floor(first_ms / period_ms) - 1, 0
    left = 1500

    def when_s() -> float:
        return (p * period_ms + timestamps_ms[j]) / 1000.0

    out = []
    for a, need in zip(arrivals_s, frame_bytes, strict=True):
        arrive = a + offset_s
        while when_s() < arrive - TIME_TOLERANCE_S:
            j, left = j + 1, 1500
            if j == lines:
                p, j = p + 1, 0
        while need > left:
            need -= left
            j, left = j + 1, 1500
            if j == lines:
                p, j = p + 1, 0
        left -= need
        out.append(when_s() - offset_s)
    return out


# ------------------------------------------------------------------------- strategies


@st.composite
def rate_curves(draw: st.DrawFn) -> CapacityCurve:
    m = draw(st.integers(1, 6))
    durations = draw(
        st.lists(
            st.one_of(st.sampled_from([0.25, 0.5, 1.0]), st.floats(0.01, 2.0)),
            min_size=m,
            max_size=m,
        )
    )
    rates = draw(
        st.lists(
            st.one_of(st.sampled_from([0.0, 1e5, 1e6, 5e7]), st.floats(1e5, 1e8)),
            min_size=m,
            max_size=m,
        )
    )
    if max(rates) == 0.0:
        rates[0] = 1e6
    return CapacityCurve.from_rates(np.concatenate(([0.0], np.cumsum(durations))), rates)


@st.composite
def mahimahi_timestamps(draw: st.DrawFn) -> list[int]:
    ts = sorted(draw(st.lists(st.integers(0, 300), min_size=1, max_size=50)))
    if ts[-1] == 0:
        ts.append(draw(st.integers(1, 300)))
    return ts


def times_s(hi: float) -> st.SearchStrategy[float]:
    """Floats in [0, hi] but none in (0, 1e-6): a time within TIME_TOLERANCE_S of a trace
    event is ill-conditioned (rounding decides which side it is on), so tests avoid it."""
    return st.floats(0.0, hi).filter(lambda x: x == 0.0 or x > 1e-6)


@st.composite
def frames(draw: st.DrawFn, max_bits: float = 4e5) -> tuple[np.ndarray, np.ndarray]:
    n = draw(st.integers(1, 40))
    # Whole-ms gaps produce arrivals exactly at opportunity instants, floats the rest.
    gap = st.one_of(st.integers(0, 400).map(lambda ms: ms / 1000.0), times_s(0.5))
    arrivals = np.cumsum(draw(st.lists(gap, min_size=n, max_size=n)))
    size = st.one_of(st.sampled_from([0.0, 6000.0, 12000.0, 36000.0]), st.floats(1.0, max_bits))
    bits = np.array(draw(st.lists(size, min_size=n, max_size=n)))
    return arrivals, bits


offsets = st.one_of(st.just(0.0), st.integers(0, 5000).map(lambda ms: ms / 1000.0), times_s(50.0))


# ------------------------------------------------------------------------- curves


def test_mahimahi_hand_example() -> None:
    # Opportunities at 5, 10, 10 and 20 ms, repeating every 20 ms (12000 bits each).
    curve = CapacityCurve.from_mahimahi([5, 10, 10, 20])
    assert curve.period_s == 0.02
    assert curve.mean_rate_bps == pytest.approx(4 * PACKET_BITS / 0.02)
    arrivals = [0.001, 0.002, 0.010, 0.011, 0.021, 0.0305]
    bits = [12000.0, 18000.0, 6000.0, 1.0, 12000.0, 24000.0]
    # 1: the 5 ms opportunity. 2: both at 10 ms, 6000 bits left over. 3: arrives at 10 ms
    # exactly and takes the leftover. 4: the 20 ms one. 5: 25 ms (5 ms of period 2).
    # 6: misses 30 ms by 0.5 ms, takes 40 (20 of period 2) and 45 ms.
    expected = [0.005, 0.010, 0.010, 0.020, 0.025, 0.045]
    np.testing.assert_allclose(
        fluid_fifo_departures(curve, arrivals, bits), expected, rtol=0, atol=1e-15
    )
    # The trace repeats backwards too: at t = 0 the 20 ms opportunity of period -1 serves.
    assert fluid_fifo_departures(curve, [0.0], [12000.0])[0] == 0.0


def test_capacity_left_and_right_limits_and_periodicity() -> None:
    # 0 ms is the same instant as 20 ms: two packets at the period boundary. C(0) = 0
    # counts them (right-continuous), so C(0-) = -2 packets.
    curve = CapacityCurve.from_mahimahi([0, 5, 10, 10, 20])
    assert curve.period_bits == 5 * PACKET_BITS
    t = np.array([0.0, 0.005, 0.0075, 0.010, 0.02, 0.025])
    np.testing.assert_array_equal(curve.cumulative_bits(t) / PACKET_BITS, [0, 1, 1, 3, 5, 6])
    np.testing.assert_array_equal(
        curve.cumulative_bits_before(t) / PACKET_BITS, [-2, 0, 1, 1, 3, 5]
    )
    # The earliest time the capacity reaches a level: the jump that reaches it. Less than
    # BITS_TOLERANCE above a level counts as the level (rounding must not skip a gap).
    assert curve.time_of_bits([5 * PACKET_BITS + 1e-4])[0] == pytest.approx(0.02, abs=1e-15)
    np.testing.assert_allclose(
        curve.time_of_bits(np.array([1.0, 2.0, 2.5, 5.5, -1.0]) * PACKET_BITS),
        [0.005, 0.010, 0.010, 0.025, 0.0],
        rtol=0,
        atol=1e-15,
    )


def test_rate_curve_inverse_returns_start_of_outage() -> None:
    # 1 Mbit/s for 1 s, outage for 2 s, 2 Mbit/s for 1 s: period 4 s, 3 Mbit.
    curve = CapacityCurve.from_rates([0.0, 1.0, 3.0, 4.0], [1e6, 0.0, 2e6])
    np.testing.assert_allclose(
        curve.cumulative_bits([0.5, 2.0, 3.5, 4.5, 9.0]),
        [5e5, 1e6, 2e6, 3.5e6, 6e6 + 1e6],
        rtol=1e-15,
    )
    # Level 1e6 is first reached when the outage starts, not when it ends.
    np.testing.assert_allclose(
        curve.time_of_bits([1e6, 1e6 + 2, 3e6, 4e6]), [1.0, 3.000001, 4.0, 5.0]
    )
    # A frame ending exactly as the outage starts leaves then; one bit more waits it out.
    np.testing.assert_allclose(
        fluid_fifo_departures(curve, [0.0, 4.0], [1e6, 1e6 + 2]), [1.0, 7.000001], rtol=1e-15
    )


@PROPERTY
@given(rate_curves(), st.lists(st.floats(-20.0, 200.0), min_size=1, max_size=30))
def test_capacity_matches_interpolation_and_inverse_round_trips(
    curve: CapacityCurve, t: list[float]
) -> None:
    times = np.array(t)
    p = np.floor(times / curve.period_s)
    expected = p * curve.period_bits + np.interp(
        times - p * curve.period_s, curve.knot_times_s, curve.knot_bits
    )
    got = curve.cumulative_bits(times)
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-6)
    # Left and right limits agree on ramps, up to the arrival-time tolerance times the rate.
    slack_bits = float(np.max(curve.slope_bps[np.isfinite(curve.slope_bps)])) * 1e-10
    np.testing.assert_allclose(
        curve.cumulative_bits_before(times), got, rtol=1e-12, atol=slack_bits + 1e-6
    )
    # C^-1(C(t)) is the earliest time with that capacity: never after t.
    back = curve.time_of_bits(got)
    assert np.all(back <= times + 1e-9)
    np.testing.assert_allclose(curve.cumulative_bits(back), got, rtol=1e-12, atol=1e-3)


@PROPERTY
@given(
    st.lists(st.floats(0.0, 10.0), min_size=1, max_size=40),
    st.lists(st.floats(-1.0, 11.0), min_size=1, max_size=40),
)
def test_bucket_search_equals_searchsorted(values: list[float], queries: list[float]) -> None:
    v = np.sort(np.array(values))
    x = np.array(queries)
    index = BucketSearch(v, 0.0, 10.0)
    for side in ("left", "right"):
        np.testing.assert_array_equal(index.search(x, side), np.searchsorted(v, x, side=side))


def test_constructors() -> None:
    rates = CapacityCurve.from_rates([10.0, 11.0, 12.0, 13.0], [1e6, 0.0, 2e6])
    assert rates.period_s == 3.0  # shifted to start at 0
    assert rates.period_bits == 3e6 and rates.mean_rate_bps == 1e6
    per_ms = CapacityCurve.from_mahimahi([1, 1, 3], model="per_ms")
    # ms 1 carries two packets over [0, 1) ms, ms 3 one over [2, 3) ms.
    np.testing.assert_allclose(
        per_ms.cumulative_bits([0.0005, 0.001, 0.002, 0.0025, 0.003]),
        [PACKET_BITS, 2 * PACKET_BITS, 2 * PACKET_BITS, 2.5 * PACKET_BITS, 3 * PACKET_BITS],
    )
    with pytest.raises(ValueError, match="non-decreasing"):
        CapacityCurve.from_mahimahi([5, 3])
    with pytest.raises(ValueError, match="strictly increasing"):
        CapacityCurve.from_rates([0.0, 0.0], [1.0])
    with pytest.raises(ValueError, match="positive"):
        CapacityCurve.from_rates([0.0, 1.0], [0.0])


# ------------------------------------------------------------------------- fluid link


def test_constant_link_is_fifo_with_bits_over_rate() -> None:
    rng = np.random.default_rng(1)
    arrivals = np.cumsum(rng.exponential(0.2, (4, 2000)), axis=1)
    bits = rng.uniform(1e4, 3e5, (4, 2000))
    got = fluid_fifo_departures(CapacityCurve.from_rates([0.0, 0.7], [2e6]), arrivals, bits)
    np.testing.assert_allclose(got, fifo_departures(arrivals, bits / 2e6), rtol=0, atol=1e-10)


def test_zero_bit_frames_and_inf_padding() -> None:
    curve = CapacityCurve.from_rates([0.0, 1.0, 3.0], [1e6, 0.0])  # outage 1..3 s
    arrivals = np.array([[0.0, 0.5, 1.5, 2.0, np.inf], [1.5, 1.6, 3.5, np.inf, np.inf]])
    bits = np.array([[1e6, 0.0, 0.0, 1.0, 5.0], [0.0, 1e5, 0.0, 1.0, 1.0]])
    got = fluid_fifo_departures(curve, arrivals, bits)
    # Row 0: a zero-bit frame behind a busy link leaves with it; one on an idle link in an
    # outage leaves at once; a 1-bit frame in the outage waits for it to end.
    np.testing.assert_allclose(
        got, [[1.0, 1.0, 1.5, 3.000001, np.inf], [1.5, 3.1, 3.5, np.inf, np.inf]], rtol=1e-14
    )


@PROPERTY
@given(rate_curves(), frames(), offsets)
def test_fluid_link_matches_reference_on_rate_traces(
    curve: CapacityCurve, data: tuple[np.ndarray, np.ndarray], offset_s: float
) -> None:
    arrivals, bits = data
    got = fluid_fifo_departures(curve, arrivals, bits, offset_s)
    ref = fluid_link_reference(curve, arrivals, bits, offset_s)
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-9)


@PROPERTY
@given(mahimahi_timestamps(), st.sampled_from(["impulse", "per_ms"]), frames(1e5), offsets)
def test_fluid_link_matches_reference_on_mahimahi_traces(
    ts: list[int], model: str, data: tuple[np.ndarray, np.ndarray], offset_s: float
) -> None:
    arrivals, bits = data
    curve = CapacityCurve.from_mahimahi(ts, model=model)  # type: ignore[arg-type]
    got = fluid_fifo_departures(curve, arrivals, bits, offset_s)
    ref = fluid_link_reference(curve, arrivals, bits, offset_s)
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-9)


@PROPERTY
@given(
    mahimahi_timestamps(),
    st.lists(
        st.tuples(
            st.one_of(st.integers(0, 300).map(lambda ms: ms / 1000.0), times_s(0.3)),
            st.integers(1, 10_000),
        ),
        min_size=1,
        max_size=30,
    ),
    offsets,
)
def test_impulse_model_is_mahimahi_byte_for_byte(
    ts: list[int], frame_list: list[tuple[float, int]], offset_s: float
) -> None:
    arrivals = np.cumsum([gap for gap, _ in frame_list])
    frame_bytes = [size for _, size in frame_list]
    curve = CapacityCurve.from_mahimahi(ts)
    got = fluid_fifo_departures(curve, arrivals, 8.0 * np.array(frame_bytes), offset_s)
    ref = mahimahi_reference(ts, arrivals.tolist(), frame_bytes, offset_s)
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-9)


# ------------------------------------------------------------------------- real traces


@pytest.fixture(scope="module")
def real_traces() -> dict[str, list[int]]:
    names = ["ATT-LTE-driving", "TMobile-LTE-short", "Verizon-EVDO-driving"]
    paths = [TRACES_DIR / f"{name}.up" for name in names]
    if not all(p.is_file() for p in paths):
        pytest.skip(f"real Mahimahi traces not found in {TRACES_DIR} (shared trace directory)")
    return {n: [int(v) for v in p.read_text().split()] for n, p in zip(names, paths, strict=True)}


def camera_frames(
    curve: CapacityCurve, cameras: int, frames_per_camera: int, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """5 fps cameras at ~60 % of the trace's mean rate, random phase in the trace."""
    rng = np.random.default_rng(seed)
    arrivals = np.arange(frames_per_camera) * 0.2 + rng.uniform(0, 0.2, (cameras, 1))
    mean_bits = 0.6 * curve.mean_rate_bps * 0.2
    bits = np.round(rng.uniform(0.2, 1.8, (cameras, frames_per_camera)) * mean_bits / 8) * 8
    return arrivals, bits, rng.uniform(0, curve.period_s, cameras)


@pytest.mark.parametrize("model", ["impulse", "per_ms"])
def test_fluid_link_matches_reference_on_real_traces(
    real_traces: dict[str, list[int]], model: str
) -> None:
    for seed, ts in enumerate(real_traces.values()):
        curve = CapacityCurve.from_mahimahi(ts, model=model)  # type: ignore[arg-type]
        arrivals, bits, offset_s = camera_frames(curve, 4, 500, seed)
        got = fluid_fifo_departures(curve, arrivals, bits, offset_s)
        ref = fluid_link_reference(curve, arrivals, bits, offset_s)
        np.testing.assert_allclose(got, ref, rtol=0, atol=1e-9)
        if model == "impulse":
            for r in range(2):
                byte_ref = mahimahi_reference(
                    ts, arrivals[r].tolist(), (bits[r] // 8).astype(int).tolist(), offset_s[r]
                )
                np.testing.assert_allclose(got[r], byte_ref, rtol=0, atol=1e-9)
        for r in range(arrivals.shape[0]):  # vectorised over cameras == one at a time
            np.testing.assert_array_equal(
                got[r], fluid_fifo_departures(curve, arrivals[r], bits[r], offset_s[r])
            )
