"""A cloud site: ``servers`` identical servers shared by one dynamic-batching queue per tail.

A :class:`CloudSite` takes the frames every shard sent it in a window, merges them in
(arrival, camera id, frame index) order, so that its schedule does not depend on how
cameras were sharded, and serves them on its :class:`~simulator.queues.BatchingServers`
(the batching rule is in :mod:`simulator.queues`): every batch that starts before the
window's end. Frames still waiting, the servers' free times and the batch counter carry
into the next window, so the result equals one pass over all frames. It counts what it
served per camera (latency, waits), per tail and over time.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numba import njit
from numpy.typing import NDArray

from simulator.camera import FrameBatch
from simulator.fleet import FleetPlan
from simulator.metrics import CameraStats, Timeline, add_at, add_intervals
from simulator.queues import BatchingServers

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]


@njit(cache=True)
def _merge_order(
    ta: FloatArray, ga: IntArray, ka: IntArray, tb: FloatArray, gb: IntArray, kb: IntArray
) -> IntArray:  # pragma: no cover - numba
    """Positions in ``concat(a, b)`` that merge two runs sorted by (t, gid, k)."""
    na, nb = ta.shape[0], tb.shape[0]
    out = np.empty(na + nb, dtype=np.int64)
    i = 0
    j = 0
    for o in range(na + nb):
        take_a = j >= nb or (
            i < na
            and (
                ta[i] < tb[j]
                or (ta[i] == tb[j] and (ga[i] < gb[j] or (ga[i] == gb[j] and ka[i] <= kb[j])))
            )
        )
        if take_a:
            out[o] = i
            i += 1
        else:
            out[o] = na + j
            j += 1
    return out


def merge_batches(parts: list[FrameBatch]) -> FrameBatch:
    """One batch sorted by (arrival, camera id, frame index) from batches sorted so."""
    acc = FrameBatch.empty()
    for part in parts:
        if part.n_frames == 0:
            continue
        if acc.n_frames == 0:
            acc = part
            continue
        order = _merge_order(
            acc.arrival_s, acc.gid, acc.frame, part.arrival_s, part.gid, part.frame
        )
        acc = FrameBatch.concat([acc, part]).take(order)
    return acc


class SiteResult(NamedTuple):
    site_index: int
    stats: CameraStats  # all cameras of the fleet: their frames served here
    samples: dict[int, FloatArray]  # group index -> latencies of frames served here
    timeline: Timeline
    batches: int
    batch_sizes: IntArray  # batch_sizes[b - 1]: batches of b frames
    queue_frames: IntArray  # frames per tail queue
    busy_s: float  # server-seconds busy within [0, duration)


class CloudSite:
    def __init__(self, plan: FleetPlan, index: int) -> None:
        self.plan = plan
        self.site = site = plan.sites[index]
        self.index = index
        self.servers = BatchingServers(
            site.servers,
            site.max_batch,
            site.window_s,
            site.queue_batch_s,
            exponential=site.service == "exponential",
            seed=plan.seed,
            stream=index,
        )
        self.pending = FrameBatch.empty()
        self.stats = CameraStats.zeros(plan.n_cameras)
        self.timeline = Timeline.zeros(plan.duration_s, plan.scenario.timeline_bins)
        self.samples: dict[int, list[FloatArray]] = {}
        self.batches = 0
        self.batch_sizes = np.zeros(site.max_batch, dtype=np.int64)
        self.queue_frames = np.zeros(len(site.queue_labels), dtype=np.int64)
        self.first_gids = plan.first_gids
        self.back_s = np.array([g.link.back_s for g in plan.groups])

    def ingest(self, t_end: float, batches: list[FrameBatch]) -> int:
        """Take the frames of one window (one batch per shard, in shard order) and serve
        every batch that starts before ``t_end``; returns the frames still waiting."""
        merged = merge_batches([self.pending, *batches])
        self._serve(merged, t_end)
        return self.pending.n_frames

    def finish(self) -> SiteResult:
        self._serve(self.pending, np.inf)
        samples = {g: np.concatenate(s) for g, s in self.samples.items()}
        busy = self.timeline.busy()
        return SiteResult(
            self.index,
            self.stats,
            samples,
            self.timeline,
            self.batches,
            self.batch_sizes,
            self.queue_frames,
            float(np.sum(busy) * self.timeline.width_s),
        )

    def _serve(self, frames: FrameBatch, t_end: float) -> None:
        site, plan = self.site, self.plan
        if frames.n_frames == 0:
            self.pending = frames
            return
        start, end, b_start, b_end, b_size = self.servers.dispatch(
            frames.arrival_s, frames.queue, t_end
        )
        served = ~np.isnan(start)
        self.pending = frames.take(np.flatnonzero(~served))
        idx = np.flatnonzero(served)
        if idx.size == 0:
            return
        gid = frames.gid[idx]
        arrival = frames.arrival_s[idx]
        start, end = start[idx], end[idx]
        group = np.searchsorted(self.first_gids, gid, side="right") - 1
        stats = self.stats
        latency = stats.add_completed(
            gid, frames.t_gen_s[idx], end + self.back_s[group], plan.deadline_s, plan.duration_s
        )
        add_at(stats.cloud_wait_sum_s, gid, start - arrival)
        add_at(stats.cloud_sum_s, gid, end - arrival)
        for g in np.unique(group):
            self.samples.setdefault(int(g), []).append(latency[group == g])
        tl = self.timeline
        add_intervals(b_start, b_end, tl.horizon_s, tl.busy_partial, tl.busy_cover)
        add_intervals(arrival, start, tl.horizon_s, tl.waiting_partial, tl.waiting_cover)
        add_intervals(arrival, end, tl.horizon_s, tl.system_partial, tl.system_cover)
        self.batches += b_size.size
        self.batch_sizes += np.bincount(b_size - 1, minlength=site.max_batch)
        self.queue_frames += np.bincount(frames.queue[idx], minlength=len(site.queue_labels))
