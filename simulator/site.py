"""A cloud site: ``servers`` identical servers shared by one dynamic-batching queue per tail.

Frames from every shard are merged in (arrival, camera id, frame index) order, so the
site's schedule does not depend on how cameras were sharded. Frames of one tail (one
model cut, as a server batches per model version) form batches by the rule of
:func:`simulator.queues.batching_servers`; the tails share the servers. The next batch
is the one that becomes ready first (ties: the one whose oldest frame is first in the
merged order): with ``R_q = min(a[h_q] + window, a[h_q + max_batch - 1])`` for each
tail's oldest waiting frame ``h_q``, it starts at ``T = max(min_q R_q, F)`` on the
server free the longest (``F``: its free time) and takes that tail's frames that arrived
by ``T``, at most ``max_batch``. With one tail this is exactly ``batching_servers``; with
``max_batch = 1`` it is the FCFS c-server queue of ``multi_server_fifo``.

Windows: a site knows every arrival before the end ``t_end`` of the window just
simulated (a frame reaches the cloud after it was captured), so it dispatches every
batch with ``T < t_end`` and carries the rest (waiting frames, server free times, the
batch counter) into the next window; the result equals one pass over all frames.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numba import njit
from numpy.typing import NDArray

from simulator import streams
from simulator.camera import FrameBatch
from simulator.fleet import FleetPlan
from simulator.metrics import CameraStats, Timeline, add_at, add_intervals, add_latencies
from simulator.queues import _replace_top

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


@njit(cache=True)
def dispatch_batches(
    a: FloatArray,
    queue: NDArray[np.int32],
    n_queues: int,
    free_s: FloatArray,
    server: IntArray,
    max_batch: int,
    window_s: float,
    batch_s: FloatArray,
    exponential: bool,
    k0: np.uint64,
    k1: np.uint64,
    tag: np.int64,
    first_batch: int,
    t_end: float,
) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray, IntArray, int]:  # pragma: no cover
    """Batches of the frames ``a`` (sorted) that start before ``t_end`` (rule above).

    ``free_s``/``server`` is the servers' heap (free time, index), updated in place.
    Returns per frame the batch start and end (nan: not dispatched yet), per batch its
    start, end and size, and the next batch number. Exponential service multiplies batch
    ``k``'s time by ``-log(u_k)``, ``u_k`` the site's k-th uniform.
    """
    n = a.shape[0]
    first = np.zeros(n_queues + 1, dtype=np.int64)
    for i in range(n):
        first[queue[i] + 1] += 1
    for q in range(n_queues):
        first[q + 1] += first[q]
    pos = np.empty(n, dtype=np.int64)  # frames of queue q: pos[first[q]:first[q + 1]]
    fill = first[:-1].copy()
    for i in range(n):
        q = queue[i]
        pos[fill[q]] = i
        fill[q] += 1
    head = first[:-1].copy()
    start = np.full(n, np.nan)
    end = np.full(n, np.nan)
    b_start = np.empty(n)
    b_end = np.empty(n)
    b_size = np.empty(n, dtype=np.int64)
    nb = 0
    k = first_batch
    while True:
        best = -1
        ready = np.inf
        for q in range(n_queues):
            h = head[q]
            if h == first[q + 1]:
                continue
            r = a[pos[h]] + window_s
            if h + max_batch - 1 < first[q + 1]:
                r = min(r, a[pos[h + max_batch - 1]])
            if r < ready or (r == ready and pos[h] < pos[head[best]]):
                best = q
                ready = r
        if best < 0:
            break
        t = max(ready, free_s[0])
        if not t < t_end:
            break
        h = head[best]
        stop = h + 1
        limit = min(first[best + 1], h + max_batch)
        while stop < limit and a[pos[stop]] <= t:
            stop += 1
        size = stop - h
        service = batch_s[best, size - 1]
        if exponential:
            service *= -np.log(streams.uniform(k0, k1, k, 0, tag))
        done = t + service
        for j in range(h, stop):
            start[pos[j]] = t
            end[pos[j]] = done
        b_start[nb] = t
        b_end[nb] = done
        b_size[nb] = size
        nb += 1
        k += 1
        _replace_top(free_s, server, done, server[0])
        head[best] = stop
    return start, end, b_start[:nb].copy(), b_end[:nb].copy(), b_size[:nb].copy(), k


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
        self.free_s = np.full(site.servers, -np.inf)  # all idle: a valid heap
        self.server = np.arange(site.servers, dtype=np.int64)
        self.next_batch = 0
        self.key = streams.seed_key(plan.seed)
        self.tag = np.int64(streams.stream_tag(index, streams.SERVICE))
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
        start, end, b_start, b_end, b_size, self.next_batch = dispatch_batches(
            frames.arrival_s,
            frames.queue,
            len(site.queue_labels),
            self.free_s,
            self.server,
            site.max_batch,
            site.window_s,
            site.queue_batch_s,
            site.service == "exponential",
            self.key[0],
            self.key[1],
            self.tag,
            self.next_batch,
            float(t_end),
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
        latency = add_latencies(
            gid,
            frames.t_gen_s[idx],
            end + self.back_s[group],
            plan.deadline_s,
            plan.duration_s,
            stats.latency_sum_s,
            stats.latency_max_s,
            stats.done,
            stats.miss,
            stats.done_by_horizon,
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
