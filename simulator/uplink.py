"""Time-varying uplinks as cumulative-capacity curves, and the FIFO fluid link over them.

``C(t)`` counts the bits a link could have delivered by time ``t`` (periodic: traces repeat).
A frame that starts sending at ``s`` leaves when ``C`` has advanced by its bits; in
``C``-space a FIFO link is an ordinary single-server FIFO queue, so the link is solved by a
Lindley recursion in bits plus one inverse lookup per frame, with no per-packet loop.
The camera shards do so window by window (:mod:`simulator.camera`); the tests check them
against a closed form over whole arrays (``tests/simulator/oracles.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from partitioner.pricing.network import MAHIMAHI_PACKET_BYTES

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]

_CHUNK = 1 << 15  # elements per chunk of a lookup: temporaries stay in cache
# A frame is complete when fewer than this many bits remain (plus a relative part for huge
# cumulative counts): far below one byte, far above float64 rounding of bit counts. Without
# it, a rounding error can push a departure from the start to the end of an outage.
BITS_TOLERANCE = 1e-3
_BITS_REL_TOLERANCE = 64 * np.finfo(np.float64).eps
# Capacity that arrives this little before a frame counts as arriving with it, so that "an
# opportunity at the arrival instant serves the frame" holds even when folding the time into
# the trace period rounds it (by ~1e-13 s at 1000 s).
TIME_TOLERANCE_S = 1e-10


class BucketSearch:
    """``np.searchsorted(values, x, side)`` for many queries in ``[lo, hi]``, in O(1) each.

    Values and queries are put in equal-width buckets by the same monotone formula, so the
    count of values in lower buckets is a lower bound of the answer; a few vectorised steps
    over the query's own bucket finish it. ``np.searchsorted`` into a 10^5-knot trace costs
    ~100-200 ns per query; this is several times faster for the frames of a fleet.
    """

    def __init__(self, values: FloatArray, lo: float, hi: float) -> None:
        self.buckets = int(min(max(16, 2 * values.size), 1 << 23))
        self.lo = lo
        self.scale = self.buckets / (hi - lo)
        self.values_next = np.append(values, np.inf)  # values_next[k] = values[k], guarded
        self.start = np.searchsorted(self._bucket(values), np.arange(self.buckets), side="left")

    def _bucket(self, x: FloatArray) -> IntArray:
        g = ((x - self.lo) * self.scale).astype(np.int64)
        np.minimum(g, self.buckets - 1, out=g)
        np.maximum(g, 0, out=g)
        return g

    def search(self, x: FloatArray, side: Literal["left", "right"]) -> IntArray:
        k = self.start[self._bucket(x)]  # values in lower buckets are all < x
        step: Callable[..., NDArray[np.bool_]] = np.less if side == "left" else np.less_equal
        idx = np.flatnonzero(step(self.values_next[k], x))
        while idx.size:
            k[idx] += 1
            idx = idx[step(self.values_next[k[idx]], x[idx])]
        return k


def _chunked(
    fn: Callable[[FloatArray], FloatArray], x: ArrayLike, out: FloatArray | None
) -> FloatArray:
    """Apply an elementwise ``fn`` chunk by chunk (``out`` may be ``x`` itself)."""
    xa = np.asarray(x, dtype=np.float64)
    if out is None:
        out = np.empty(xa.shape)
    elif out.shape != xa.shape or not out.flags.c_contiguous or out.dtype != np.float64:
        raise ValueError("out must be a C-contiguous float64 array of the input's shape")
    flat_in = xa.reshape(-1)
    flat_out = out.reshape(-1)
    finite = bool(np.all(np.isfinite(flat_in)))
    for i in range(0, flat_in.size, _CHUNK):
        part = flat_in[i : i + _CHUNK]
        if finite:
            flat_out[i : i + _CHUNK] = fn(part)
        else:
            # +-inf pass through (inf is the padding of ragged rows); NaN stays NaN.
            res = np.array(part)
            ok = np.isfinite(part)
            res[ok] = fn(part[ok])
            flat_out[i : i + _CHUNK] = res
    return out


@dataclass(frozen=True, eq=False)
class CapacityCurve:
    """Cumulative capacity ``C(t)`` of a link over one period, repeated forever.

    ``C`` is piecewise linear through the knots ``(knot_times_s[i], knot_bits[i])``, from
    ``(0, 0)`` to ``(period_s, period_bits)``; two knots at the same time are an impulse (a
    jump of capacity, e.g. a Mahimahi delivery opportunity), a flat piece is an outage.
    After one period it continues as ``C(t + period_s) = C(t) + period_bits``. A camera with
    phase ``offset_s`` sees capacity ``C(t + offset_s)``.
    """

    knot_times_s: FloatArray
    knot_bits: FloatArray
    slope_bps: FloatArray = field(init=False, repr=False)  # rate between knots; inf on jumps
    _jump_into_bits: FloatArray = field(init=False, repr=False)  # jump ending at knot k
    _time_index: BucketSearch = field(init=False, repr=False)
    _bits_index: BucketSearch = field(init=False, repr=False)

    def __post_init__(self) -> None:
        t = np.array(self.knot_times_s, dtype=np.float64)
        c = np.array(self.knot_bits, dtype=np.float64)
        if t.ndim != 1 or t.shape != c.shape or t.size < 2:
            raise ValueError(
                f"knot_times_s and knot_bits must be 1-D of equal length >= 2, "
                f"got shapes {t.shape} and {c.shape}"
            )
        if not (np.all(np.isfinite(t)) and np.all(np.isfinite(c))):
            raise ValueError("knots must be finite")
        if t[0] != 0.0 or c[0] != 0.0:
            raise ValueError(f"the first knot must be (0, 0), got ({t[0]}, {c[0]})")
        dt, dc = np.diff(t), np.diff(c)
        if np.any(dt < 0) or np.any(dc < 0):
            raise ValueError("knot_times_s and knot_bits must be non-decreasing")
        if not (t[-1] > 0.0 and c[-1] > 0.0):
            raise ValueError(
                f"a period needs positive duration and capacity, got {t[-1]} s, {c[-1]} bits"
            )
        # Drop knots that carry no information: duplicates, the middle of a straight or
        # flat run with equal slope, and the middle of several jumps at one instant.
        keep = np.ones(t.size, dtype=bool)
        keep[1:] = (dt > 0) | (dc > 0)
        t, c = t[keep], c[keep]
        with np.errstate(divide="ignore", invalid="ignore"):
            slope = np.diff(c) / np.diff(t)
        inner = np.ones(t.size, dtype=bool)
        inner[1:-1] = slope[1:] != slope[:-1]
        t, c = t[inner], c[inner]
        with np.errstate(divide="ignore"):
            slope = np.diff(c) / np.diff(t)  # dt == 0 only with dc > 0 here: +inf
        for a in (t, c, slope):
            a.setflags(write=False)
        object.__setattr__(self, "knot_times_s", t)
        object.__setattr__(self, "knot_bits", c)
        object.__setattr__(self, "slope_bps", slope)
        jump_into = np.zeros(t.size)
        jump_into[1:] = np.where(np.diff(t) == 0.0, np.diff(c), 0.0)
        jump_into[0] = jump_into[-1]  # a jump at the period's end is one at its start
        object.__setattr__(self, "_jump_into_bits", jump_into)
        object.__setattr__(self, "_time_index", BucketSearch(t, 0.0, float(t[-1])))
        object.__setattr__(self, "_bits_index", BucketSearch(c, 0.0, float(c[-1])))

    # ---------------------------------------------------------------- constructors

    @classmethod
    def from_rates(cls, times_s: ArrayLike, rate_bps: ArrayLike) -> CapacityCurve:
        """Piecewise-constant rate: ``rate_bps[k]`` over ``[times_s[k], times_s[k + 1])``.

        ``times_s`` has one more entry than ``rate_bps``; the trace starts at ``times_s[0]``
        (taken as t = 0) and repeats after ``times_s[-1]``.
        """
        t = np.asarray(times_s, dtype=np.float64)
        r = np.asarray(rate_bps, dtype=np.float64)
        if t.ndim != 1 or r.ndim != 1 or t.size != r.size + 1 or r.size < 1:
            raise ValueError(
                f"need len(times_s) == len(rate_bps) + 1 >= 2, got {t.size} and {r.size}"
            )
        if not np.all(np.diff(t) > 0):
            raise ValueError("times_s must be strictly increasing")
        if not (np.all(r >= 0) and np.all(np.isfinite(r))):
            raise ValueError("rate_bps must be finite and >= 0")
        t = t - t[0]
        bits = np.concatenate(([0.0], np.cumsum(r * np.diff(t))))
        return cls(t, bits)

    @classmethod
    def from_mahimahi(
        cls,
        timestamps_ms: ArrayLike,
        *,
        packet_bytes: int = MAHIMAHI_PACKET_BYTES,
        model: Literal["impulse", "per_ms"] = "impulse",
    ) -> CapacityCurve:
        """Mahimahi trace: each entry is one ``packet_bytes`` delivery opportunity at that ms.

        The trace repeats after its last timestamp ``P``, so an opportunity at 0 ms is the
        same instant as one at ``P`` ms.

        ``model="impulse"`` (default) puts each opportunity's bytes at its instant, as
        Mahimahi delivers them: a frame's bytes fill opportunities in order, a partly used
        opportunity serves the next frame, and one at the arrival instant serves the frame;
        departures are those of Mahimahi's byte-level link, at opportunity instants.
        ``model="per_ms"`` spreads the opportunities of ms ``t`` evenly over ``[t - 1, t)``
        ms: a rate per ms, equal to the impulses at every whole ms. A frame then leaves up
        to 1 ms earlier than with impulses, or, when it arrives inside a ms whose capacity it
        now only partly gets, one gap between opportunities later: on the shared cellular
        traces at 60 % load 2-6 % of frames move by more than 2 ms, the worst by 0.4-2.6 s
        (an outage). Hence impulses are the default.
        """
        ts = np.asarray(timestamps_ms)
        if ts.ndim != 1 or ts.size < 1:
            raise ValueError(f"timestamps_ms must be a non-empty 1-D array, got {ts.shape}")
        if not np.all(ts == np.round(ts)) or np.any(ts < 0):
            raise ValueError("timestamps_ms must be whole, non-negative milliseconds")
        ts = ts.astype(np.int64)
        if np.any(np.diff(ts) < 0):
            raise ValueError("timestamps_ms must be non-decreasing")
        period_ms = int(ts[-1])
        if period_ms <= 0:
            raise ValueError("a Mahimahi trace must end after 0 ms")
        folded = np.where(ts == 0, period_ms, ts)  # 0 and P are the same instant
        bits_per_opportunity = 8.0 * packet_bytes
        if model == "impulse":
            when_ms, count = np.unique(folded, return_counts=True)
            level = np.cumsum(count) * bits_per_opportunity  # whole bits: exact in float64
            times = np.concatenate(([0.0], np.repeat(when_ms / 1000.0, 2)))
            bits = np.concatenate(
                ([0.0], np.column_stack((level - count * bits_per_opportunity, level)).ravel())
            )
            return cls(times, bits)
        if model == "per_ms":
            count = np.bincount(folded - 1, minlength=period_ms)  # ms t covers [t-1, t)
            # Knots where the per-ms count changes, at whole ms with whole-bit levels (exact
            # in float64, so a frame of whole packets ends exactly on a level).
            level = np.concatenate(([0], np.cumsum(count))) * bits_per_opportunity
            knot_ms = np.concatenate(([0], np.flatnonzero(np.diff(count)) + 1, [period_ms]))
            return cls(knot_ms / 1000.0, level[knot_ms])
        raise ValueError(f"model must be 'impulse' or 'per_ms', got {model!r}")

    # ---------------------------------------------------------------- properties

    @property
    def period_s(self) -> float:
        return float(self.knot_times_s[-1])

    @property
    def period_bits(self) -> float:
        return float(self.knot_bits[-1])

    @property
    def mean_rate_bps(self) -> float:
        return self.period_bits / self.period_s

    # ---------------------------------------------------------------- evaluation

    def cumulative_bits(self, t_s: ArrayLike, out: FloatArray | None = None) -> FloatArray:
        """``C(t)``: bits deliverable in ``[0, t]`` (right-continuous: a jump at t counts)."""
        return _chunked(lambda t: self._capacity(t, side="right"), t_s, out)

    def cumulative_bits_before(self, t_s: ArrayLike, out: FloatArray | None = None) -> FloatArray:
        """``C(t-)``: bits deliverable in ``[0, t)``: a jump at t does not count, nor one
        less than ``TIME_TOLERANCE_S`` before t (so that it serves a frame arriving at t)."""
        return _chunked(lambda t: self._capacity(t, side="left"), t_s, out)

    def time_of_bits(self, bits: ArrayLike, out: FloatArray | None = None) -> FloatArray:
        """``C^-1(bits)``: the earliest t with ``C(t) >= bits``."""
        return _chunked(self._inverse, bits, out)

    def _capacity(self, t: FloatArray, side: Literal["left", "right"]) -> FloatArray:
        times, levels, slope = self.knot_times_s, self.knot_bits, self.slope_bps
        if side == "right":
            # Phase r in [0, P): the knot found then starts a piece of positive length.
            p, r = _fold(t, self.period_s, closed_right=False)
            k = self._time_index.search(r, "right") - 1
            return p * self.period_bits + levels[k] + slope[k] * (r - times[k])
        # Left limit: phase r in (0, P], so the piece found has positive length and ends
        # at or after r. A jump that ends that piece's start knot less than
        # TIME_TOLERANCE_S before r is counted as at r, i.e. not yet delivered.
        p, r = _fold(t, self.period_s, closed_right=True)
        k = self._time_index.search(r, "left") - 1  # times[k] < r <= times[k + 1]
        r -= times[k]
        just_after_jump = r <= TIME_TOLERANCE_S
        r *= slope[k]
        r += levels[k]
        r -= np.where(just_after_jump, self._jump_into_bits[k], 0.0)
        r += p * self.period_bits
        return r

    def _inverse(self, y: FloatArray) -> FloatArray:
        # Search for y minus a tolerance: when y is a rounding error above the level of an
        # outage (a zero-bit frame, or a frame that ends exactly as an outage starts), the
        # answer is where the outage starts, not where it ends. The tolerance only picks
        # the piece; the time within the piece uses y itself. r in (0, Q]: C^-1 of a
        # multiple of Q is the start of the flat that ends the previous period.
        tol = np.abs(y)
        tol *= _BITS_REL_TOLERANCE
        tol += BITS_TOLERANCE
        p, r = _fold(y - tol, self.period_bits, closed_right=True)
        k = self._bits_index.search(r, "left")  # knot_bits[k - 1] < r <= knot_bits[k]
        k -= 1
        r += tol
        r -= self.knot_bits[k]
        r /= self.slope_bps[k]  # 0 on a jump
        r += self.knot_times_s[k]
        np.minimum(r, self.knot_times_s[k + 1], out=r)
        r += p * self.period_s
        return r


def _fold(x: FloatArray, period: float, *, closed_right: bool) -> tuple[FloatArray, FloatArray]:
    """Split ``x`` into whole periods ``p`` and a phase ``r``: ``x = p * period + r``.

    ``r`` lies in ``[0, period)``, or in ``(0, period]`` with ``closed_right``.
    """
    if closed_right:
        p = np.ceil(x / period)
        p -= 1.0
    else:
        p = np.floor(x / period)
    r = x - p * period
    # Rounding can leave r an ulp outside its interval; moving it back can round onto the
    # other end (e.g. -1e-300 + period == period), hence the second pass.
    for _ in range(2):
        over = (r > period) if closed_right else (r >= period)
        under = (r <= 0.0) if closed_right else (r < 0.0)
        if not (over.any() or under.any()):
            break
        shift = over.astype(np.float64) - under
        p += shift
        r -= shift * period
    return p, r


# ------------------------------------------------------------------------------------
# FIFO fluid link
# ------------------------------------------------------------------------------------
