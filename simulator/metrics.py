"""Streaming statistics of a run: per camera, per cloud site, and latency samples.

Per-camera counters and sums are accumulated in a fixed order (a camera's frames in
time order, window after window), so they do not depend on how cameras are sharded;
totals are sums over cameras in camera-id order. Percentiles are exact: every latency
is kept (float64, one array per window and group) and the driver selects order
statistics from the pooled samples, which is independent of their order.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

import numpy as np
from numba import njit
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]


@dataclass
class CameraStats:
    """Counters of a range of cameras (index 0 = the first camera of the range)."""

    generated: IntArray
    dropped: IntArray
    done: IntArray  # frames whose result came back
    done_by_horizon: IntArray  # ... by the end of the scenario's duration
    miss: IntArray  # completed after the deadline (dropped frames are counted apart)
    cloud_frames: IntArray
    uplink_bytes: IntArray
    latency_sum_s: FloatArray
    latency_max_s: FloatArray
    edge_sum_s: FloatArray  # capture -> edge done (queue + head + encode), accepted frames
    uplink_sum_s: FloatArray  # edge done -> last bit sent, cloud frames
    cloud_wait_sum_s: FloatArray  # arrival at the site -> batch start
    cloud_sum_s: FloatArray  # arrival at the site -> batch end
    energy_j: FloatArray  # head + encode + radio of the camera's frames

    @classmethod
    def zeros(cls, n: int) -> CameraStats:
        values: dict[str, Any] = {}
        for f in fields(cls):
            dtype = np.int64 if f.type in ("IntArray",) else np.float64
            values[f.name] = np.zeros(n, dtype=dtype)
        return cls(**values)

    def add(self, other: CameraStats, offset: int = 0) -> None:
        """Add ``other`` (a range starting ``offset`` cameras into this one)."""
        for f in fields(self):
            mine = getattr(self, f.name)[offset : offset + len(other.generated)]
            theirs = getattr(other, f.name)
            if f.name == "latency_max_s":
                np.maximum(mine, theirs, out=mine)
            else:
                mine += theirs

    def add_completed(
        self,
        cam: IntArray,
        t_gen_s: FloatArray,
        t_done_s: FloatArray,
        deadline_s: float,
        horizon_s: float,
    ) -> FloatArray:
        """Count completed frames: frame ``i``, of camera ``cam[i]`` (an index into this
        range), captured at ``t_gen_s[i]`` and answered at ``t_done_s[i]``. Adds to the
        done, late and by-the-horizon counts and the latency sum and max, in frame order;
        returns the frames' latencies."""
        return _add_latencies(
            cam,
            t_gen_s,
            t_done_s,
            deadline_s,
            horizon_s,
            self.latency_sum_s,
            self.latency_max_s,
            self.done,
            self.miss,
            self.done_by_horizon,
        )


@njit(cache=True)
def add_at(total: FloatArray, index: IntArray, values: FloatArray) -> None:  # pragma: no cover
    """``total[index[i]] += values[i]`` in order of ``i``: the same rounding whatever the
    windows and shards, as each camera's values are added in its frames' order."""
    for i in range(index.shape[0]):
        total[index[i]] += values[i]


@njit(cache=True)
def _add_latencies(
    cam: IntArray,
    t_gen: FloatArray,
    t_done: FloatArray,
    deadline_s: float,
    horizon_s: float,
    latency_sum: FloatArray,
    latency_max: FloatArray,
    done: IntArray,
    miss: IntArray,
    done_by_horizon: IntArray,
) -> FloatArray:  # pragma: no cover - numba
    """The loop of :meth:`CameraStats.add_completed`."""
    out = np.empty(cam.shape[0])
    for i in range(cam.shape[0]):
        c = cam[i]
        x = t_done[i] - t_gen[i]
        out[i] = x
        latency_sum[c] += x
        if x > latency_max[c]:
            latency_max[c] = x
        done[c] += 1
        if x > deadline_s:
            miss[c] += 1
        if t_done[i] <= horizon_s:
            done_by_horizon[c] += 1
    return out


@njit(cache=True)
def add_intervals(
    begin: FloatArray,
    end: FloatArray,
    horizon_s: float,
    partial: FloatArray,
    cover: IntArray,
) -> None:  # pragma: no cover - numba
    """Add the overlap of each interval ``[begin, end)`` with equal bins of [0, horizon).

    Partly covered bins get the overlap in ``partial`` (seconds); bins covered whole are
    counted in the difference array ``cover`` (integers: exact, order-independent).
    """
    nb = partial.shape[0]
    width = horizon_s / nb
    for i in range(begin.shape[0]):
        b = max(begin[i], 0.0)
        e = min(end[i], horizon_s)
        if not e > b:
            continue
        kb = min(int(b / width), nb - 1)
        ke = min(int(e / width), nb - 1)
        if kb == ke:
            partial[kb] += e - b
        else:
            # b / width and k * width round apart: an end an ulp below a bin boundary can
            # fall in the next bin, overlapping it by minus an ulp (a negative count).
            partial[kb] += max((kb + 1) * width - b, 0.0)
            partial[ke] += max(e - ke * width, 0.0)
            cover[kb + 1] += 1
            cover[ke] -= 1


@dataclass
class Timeline:
    """Integrals over equal bins of [0, horizon): busy servers, waiting and in-system frames."""

    horizon_s: float
    busy_partial: FloatArray
    busy_cover: IntArray
    waiting_partial: FloatArray
    waiting_cover: IntArray
    system_partial: FloatArray
    system_cover: IntArray

    @classmethod
    def zeros(cls, horizon_s: float, bins: int) -> Timeline:
        return cls(
            horizon_s,
            np.zeros(bins),
            np.zeros(bins + 1, dtype=np.int64),
            np.zeros(bins),
            np.zeros(bins + 1, dtype=np.int64),
            np.zeros(bins),
            np.zeros(bins + 1, dtype=np.int64),
        )

    @property
    def bins(self) -> int:
        return self.busy_partial.shape[0]

    @property
    def width_s(self) -> float:
        return self.horizon_s / self.bins

    def _mean(self, partial: FloatArray, cover: IntArray) -> FloatArray:
        whole = np.cumsum(cover[:-1]).astype(np.float64) * self.width_s
        return (partial + whole) / self.width_s

    def busy(self) -> FloatArray:
        """Mean number of busy servers per bin."""
        return self._mean(self.busy_partial, self.busy_cover)

    def waiting(self) -> FloatArray:
        """Mean number of frames waiting (queued or held for a batch) per bin."""
        return self._mean(self.waiting_partial, self.waiting_cover)

    def in_system(self) -> FloatArray:
        return self._mean(self.system_partial, self.system_cover)


def percentiles(samples: FloatArray, qs: tuple[float, ...] = (50.0, 95.0, 99.0)) -> list[float]:
    """Exact percentiles (linear interpolation between order statistics, numpy's default)."""
    if samples.size == 0:
        return [float("nan")] * len(qs)
    return [float(v) for v in np.percentile(samples, qs)]


def cdf_points(samples: FloatArray, points: int = 512) -> tuple[FloatArray, FloatArray]:
    """(latency, fraction) pairs of the empirical CDF, at evenly spaced fractions."""
    if samples.size == 0:
        return np.zeros(0), np.zeros(0)
    q = np.linspace(0.0, 100.0, points)
    return np.percentile(samples, q), q / 100.0
