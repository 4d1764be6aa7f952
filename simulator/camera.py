"""The camera side of the fleet: arrivals, the policy, the edge queue and the uplink.

A :class:`CameraShard` simulates a contiguous range of global camera ids, one window of
simulated time at a time, for all its cameras at once (arrays laid out camera-major,
CSR style: the frames of camera ``c`` are ``row_ptr[c]:row_ptr[c + 1]``). Per window:

1. frames captured in the window (periodic with a random phase, or Poisson from
   t = 0: :func:`first_captures`);
2. the policy picks each frame's cut;
3. the camera's processor is a FIFO queue (:func:`simulator.queues.lindley_rows`, or
   :func:`~simulator.queues.lindley_rows_limited` dropping frames that find
   ``edge_queue_limit`` frames in it); a camera with a ``window`` first waits for a slot
   (below);
4. frames that use the cloud cross the camera's own uplink: a FIFO fluid link, exact by
   the cumulative-capacity transform (:func:`~simulator.queues.lindley_rows` in bits,
   then the inverse of ``C``);
5. they reach their cloud site half a round trip later; the shard hands them over in
   (arrival time, camera id, frame index) order.

Every recursion carries its state (last departure, bits level, estimate) per camera
across windows, so cutting time into windows changes nothing.

A camera with ``window: W`` is the pipelined edge node (:mod:`edge_node.node`): at most
``W`` frames in flight, each from the start of its head until its result is handed over
(in frame order), so ``W = 1`` is stop-and-wait. A frame captured while ``W`` are in flight
waits for a slot (``late: queue``) or is skipped (``late: drop``, counted with the dropped
frames). Without ``window`` (the default) a camera heads frame k+1 while frame k uploads,
with no bound: the model of every result before windows existed. The window closes on each
frame's own return, and a camera cannot see the cloud's schedule of the same window, so
the return it waits for is that of *a cloud of its own*: its frames queue behind each
other on one server taking the tail's profile time for a batch of one. That is exact for a
camera alone on a one-server site without batching (the site then serves every frame at
the time the camera assumed); a shared or batching site still reports its true latencies,
but a camera's window does not feel the other cameras' queueing. The start times are
found in one pass per frame (:func:`~simulator.queues.window_pipeline`) on links of a
constant rate; on traces by iterating the vectorised stages to a fixed point, each pass
settling at least ``W`` more frames of every camera (slow for a camera far behind with
``late: queue``).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numba import njit
from numpy.typing import NDArray

from simulator import streams
from simulator.fleet import FleetPlan, GroupPlan
from simulator.metrics import CameraStats, add_at
from simulator.policies import POLICIES, FrameContext
from simulator.queues import (
    lindley_rows,
    lindley_rows_limited,
    stable_sort,
    window_gate,
    window_pipeline,
)

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]

# Arrival processes, as capture_times takes them.
PERIODIC = 0
POISSON = 1


class FrameBatch(NamedTuple):
    """Frames on their way to a cloud site, sorted by (arrival, camera id, frame index)."""

    arrival_s: FloatArray
    gid: IntArray  # global camera id
    frame: IntArray  # frame index within the camera
    queue: NDArray[np.int32]  # the site's queue of the frame's tail
    t_gen_s: FloatArray  # capture time

    @classmethod
    def empty(cls) -> FrameBatch:
        return cls(
            np.zeros(0),
            np.zeros(0, dtype=np.int64),
            np.zeros(0, dtype=np.int64),
            np.zeros(0, dtype=np.int32),
            np.zeros(0),
        )

    def take(self, index: IntArray) -> FrameBatch:
        return FrameBatch._make(np.ascontiguousarray(col[index]) for col in self)

    @staticmethod
    def concat(parts: list[FrameBatch]) -> FrameBatch:
        if len(parts) == 1:
            return parts[0]
        return FrameBatch._make(np.concatenate(cols) for cols in zip(*parts, strict=True))

    @property
    def n_frames(self) -> int:
        return int(self.arrival_s.shape[0])

    def writable(self) -> FrameBatch:
        """This batch, copied if any of its arrays is read-only (as Ray hands them over)."""
        if all(col.flags.writeable for col in self):
            return self
        return FrameBatch._make(np.array(col) for col in self)


# ------------------------------------------------------------------------------ kernels


def first_captures(
    kind: int, rate_hz: float, jitter_s: float, seed: int, group: int, cam_index: IntArray
) -> tuple[FloatArray, FloatArray]:
    """Each camera's phase and first capture time, so that its arrivals are stationary.

    Periodic: the phase is uniform in ``[0, jitter_s)`` (``1 / rate`` by default: the
    phase of a periodic stream seen from a random instant) and frame 0 is at the phase.
    Poisson: the time from any instant to the next arrival is exponential of mean
    ``1 / rate`` (memorylessness), so frame 0 is one exponential gap after t = 0 (draw 0
    of the camera's arrival stream) and the count in ``[0, T)`` is Poisson of mean
    ``rate * T``; a phase before that gap would start the camera late.
    """
    if kind == PERIODIC:
        # u is in (0, 1], so the phase is in [0, jitter).
        start_s = jitter_s * (1.0 - streams.uniforms(seed, group, streams.START, cam_index))
        return start_s, start_s.copy()
    u0 = streams.uniforms(seed, group, streams.ARRIVAL, cam_index, 0)
    return np.zeros(cam_index.shape[0]), -np.log(u0) / rate_hz


@njit(cache=True)
def capture_times(
    kind: int,
    next_k: IntArray,
    next_t: FloatArray,
    start_s: FloatArray,
    rate_hz: float,
    k0: np.uint64,
    k1: np.uint64,
    tag: np.int64,
    cam_index: IntArray,
    t_end: float,
) -> tuple[IntArray, FloatArray, IntArray]:  # pragma: no cover - numba
    """Frames with capture time < t_end, from each camera's next frame on (state updated).

    Periodic: frame k at ``start + k / rate``. Poisson: frame k at frame k-1 plus an
    exponential of mean ``1 / rate`` drawn from the camera's stream with counter k
    (``start`` unused). Frame 0 is each camera's :func:`first_captures`.
    """
    n = next_k.shape[0]
    row_ptr = np.zeros(n + 1, dtype=np.int64)
    cap = 1024
    for c in range(n):  # capacity estimate: expected frames plus slack
        cap += max(0, int((t_end - next_t[c]) * rate_hz) + 1)
    cap = int(cap * 1.1) + 16 * n
    t = np.empty(cap)
    k = np.empty(cap, dtype=np.int64)
    m = 0
    period = 1.0 / rate_hz
    for c in range(n):
        kc = next_k[c]
        tc = next_t[c]
        while tc < t_end:
            if m == t.shape[0]:
                t2 = np.empty(2 * m)
                k2 = np.empty(2 * m, dtype=np.int64)
                t2[:m] = t
                k2[:m] = k
                t, k = t2, k2
            t[m] = tc
            k[m] = kc
            m += 1
            kc += 1
            if kind == PERIODIC:
                tc = start_s[c] + kc * period
            else:
                tc += -np.log(streams.uniform(k0, k1, kc, cam_index[c], tag)) * period
        next_k[c] = kc
        next_t[c] = tc
        row_ptr[c + 1] = m
    return row_ptr, t[:m].copy(), k[:m].copy()


@njit(cache=True)
def _previous_in_row(
    d: FloatArray, row_ptr: IntArray, carry: FloatArray
) -> FloatArray:  # pragma: no cover - numba
    """Per element, the previous element of its row (the row's carried value for the
    first); ``carry`` becomes each row's last element."""
    out = np.empty_like(d)
    for r in range(row_ptr.shape[0] - 1):
        p = carry[r]
        for i in range(row_ptr[r], row_ptr[r + 1]):
            out[i] = p
            p = d[i]
        carry[r] = p
    return out


def _row_ptr(counts: IntArray) -> IntArray:
    ptr = np.zeros(counts.shape[0] + 1, dtype=np.int64)
    np.cumsum(counts, out=ptr[1:])
    return ptr


# ------------------------------------------------------------------------------- blocks


class CameraBlock:
    """Cameras ``lo .. hi - 1`` of one group (indices within the group)."""

    def __init__(self, plan: FleetPlan, group: GroupPlan, lo: int, hi: int) -> None:
        self.plan = plan
        self.group = group
        n = hi - lo
        self.n = n
        self.cam_index = np.arange(lo, hi, dtype=np.int64)
        self.gid = group.first_gid + self.cam_index
        seed, gi = plan.seed, group.index
        self.key = streams.seed_key(seed)
        self.arrival_tag = np.int64(streams.stream_tag(gi, streams.ARRIVAL))
        self.kind = PERIODIC if group.arrival == "periodic" else POISSON
        self.next_k = np.zeros(n, dtype=np.int64)
        self.start_s, self.next_t = first_captures(
            self.kind, group.fps, group.jitter_s, seed, gi, self.cam_index
        )
        self.edge_last = np.full(n, -np.inf)
        limit = group.edge_queue_limit
        self.ring = np.full((n, limit), -np.inf) if limit else None
        self.ring_pos = np.zeros(n, dtype=np.int64)
        self.links = group.link.cameras(seed, gi, self.cam_index)
        self.link_carry = np.full(n, -np.inf)  # bits level (traces) or time (constant)
        self.link_last_s = np.full(n, -np.inf)  # last departure time, for the air time
        self.estimate = np.full(n, np.nan)
        self.stats = CameraStats.zeros(n)
        self.option_frames = np.zeros(len(group.options), dtype=np.int64)
        self.samples: list[FloatArray] = []
        opts = group.options
        self.opt_edge_s = np.array([o.edge_s for o in opts])
        self.opt_bits = np.array([o.wire_bits for o in opts])
        self.opt_cloud = np.array([o.uses_cloud for o in opts])
        self.opt_active_j = np.array([o.active_j for o in opts])
        self.opt_bytes = np.array([o.wire_bytes for o in opts], dtype=np.int64)
        self.policy = POLICIES.get(group.policy.name)
        # The window (frames in flight) and late policy live on the group's config.
        config = next(g for g in plan.scenario.fleet if g.name == group.name)
        self.window = config.window
        self.drop_late = config.late == "drop"
        if self.window is not None:
            self.win_ring = np.full((n, self.window), -np.inf)  # last W hand-over times
            self.win_pos = np.zeros(n, dtype=np.int64)
            self.win_last = np.full(n, -np.inf)  # latest hand-over
            self.own_cloud_last = np.full(n, -np.inf)  # the camera's own cloud (module doc)
            site_s = plan.sites[group.site].queue_batch_s[:, 0] if group.site >= 0 else None
            self.opt_own_cloud_s = np.array(
                [site_s[q] if q >= 0 and site_s is not None else 0.0 for q in group.option_queue]
            )

    # -- link ------------------------------------------------------------------------
    def _by_curve(self, cams: IntArray, fn: str, t_or_bits: FloatArray) -> FloatArray:
        """Evaluate a curve method per frame, each on its camera's curve."""
        curves = self.group.link.curves
        which = self.links.curve[cams]
        out = np.empty(t_or_bits.shape[0])
        for g in np.unique(which):
            m = which == g
            out[m] = getattr(curves[int(g)], fn)(t_or_bits[m])
        return out

    def capacity_mbps(self, cams: IntArray, t_s: FloatArray, span_s: float) -> FloatArray:
        """Mean uplink capacity of each frame's camera over ``[t - span, t]``, Mbit/s."""
        if self.group.link.kind != "traces":
            return self.links.rate_bps[cams] / 1e6
        phase = t_s + self.links.offset_s[cams]
        hi = self._by_curve(cams, "cumulative_bits", phase)
        lo = self._by_curve(cams, "cumulative_bits", phase - span_s)
        return (hi - lo) / span_s / 1e6

    def _uplink(
        self, a: FloatArray, bits: FloatArray, cams: IntArray, row_ptr: IntArray
    ) -> tuple[FloatArray, FloatArray]:
        """Departures (last bit sent) and air time of frames entering their uplinks at ``a``."""
        if self.group.link.kind != "traces":
            service = bits / self.links.rate_bps[cams]
            d = lindley_rows(a, service, row_ptr, self.link_carry)
            return d, service
        offset = self.links.offset_s[cams]
        # FIFO fluid link in bits (simulator.uplink.fluid_fifo_departures, per camera row).
        level = self._by_curve(cams, "cumulative_bits_before", a + offset)
        level = lindley_rows(level, bits, row_ptr, self.link_carry)
        d = self._by_curve(cams, "time_of_bits", level)
        d -= offset
        np.maximum(d, a, out=d)
        previous = _previous_in_row(d, row_ptr, self.link_last_s)
        return d, d - np.maximum(a, previous)

    # -- the window of frames in flight ------------------------------------------------
    def _returns(
        self,
        start: FloatArray,
        opt: NDArray[np.int16],
        cam: IntArray,
        carry: tuple[FloatArray, ...],
    ) -> FloatArray:
        """Each started frame's own return (module doc), from ``carry`` = copies of the
        carried (edge last departure, link carry, link last departure, own cloud), which
        this updates."""
        edge_last, link_carry, link_last, cloud_last = carry
        r = np.full(start.size, -np.inf)
        acc = np.flatnonzero(~np.isnan(start))
        ptr = _row_ptr(np.bincount(cam[acc], minlength=self.n))
        done = lindley_rows(start[acc], self.opt_edge_s[opt[acc]], ptr, edge_last)
        r[acc] = done
        cloud = self.opt_cloud[opt[acc]]
        sel = acc[cloud]
        if sel.size:
            cams = cam[sel]
            sub = _row_ptr(np.bincount(cams, minlength=self.n))
            saved = self.link_carry, self.link_last_s
            self.link_carry, self.link_last_s = link_carry, link_last
            try:
                sent, _ = self._uplink(done[cloud], self.opt_bits[opt[sel]], cams, sub)
            finally:
                self.link_carry, self.link_last_s = saved
            link = self.group.link
            served = lindley_rows(
                sent + link.rtt_s / 2, self.opt_own_cloud_s[opt[sel]], sub, cloud_last
            )
            r[sel] = served + link.back_s
        return r

    def _window_starts(
        self, t: FloatArray, opt: NDArray[np.int16], cam: IntArray, row_ptr: IntArray
    ) -> FloatArray:
        """Start of each frame's head (nan: skipped) under the window, by fixed point.

        Frame i's start depends only on earlier frames' returns: a pass that takes the
        returns of the previous pass settles at least ``W`` more frames per camera, and a
        pass that changes no start has found the unique solution. On a constant link one
        sequential pass computes the same (:func:`~simulator.queues.window_pipeline`)."""
        if self.group.link.kind != "traces":
            link = self.group.link
            start = window_pipeline(
                t,
                self.opt_edge_s[opt],
                self.opt_cloud[opt],
                self.opt_bits[opt] / self.links.rate_bps[cam],
                self.opt_own_cloud_s[opt],
                link.rtt_s,
                link.back_s,
                row_ptr,
                self.edge_last.copy(),  # step() advances the stages' own carries
                self.link_carry.copy(),
                self.own_cloud_last,
                self.win_ring,
                self.win_pos,
                self.win_last,
                self.drop_late,
            )
            return start
        carry = (self.edge_last, self.link_carry, self.link_last_s, self.own_cloud_last)
        guess: tuple[FloatArray, ...] = carry
        r = np.full(t.size, -np.inf)  # first pass: no frame of this window holds a slot
        previous = None
        while True:
            ring, pos, last = self.win_ring.copy(), self.win_pos.copy(), self.win_last.copy()
            start = window_gate(t, r, row_ptr, ring, pos, last, self.drop_late)
            if previous is not None and np.array_equal(start, previous, equal_nan=True):
                break
            guess = tuple(c.copy() for c in carry)
            r = self._returns(start, opt, cam, guess)
            previous = start
        self.win_ring, self.win_pos, self.win_last = ring, pos, last
        # The stages' own carries are advanced by step() itself; the own cloud's only here.
        self.own_cloud_last = guess[3]
        return start

    # -- one window ------------------------------------------------------------------
    def step(self, t_end: float) -> tuple[FrameBatch, int]:
        """Simulate frames captured before ``t_end``; returns the frames for the cloud."""
        group, plan, stats = self.group, self.plan, self.stats
        row_ptr, t, k = capture_times(
            self.kind,
            self.next_k,
            self.next_t,
            self.start_s,
            group.fps,
            self.key[0],
            self.key[1],
            self.arrival_tag,
            self.cam_index,
            t_end,
        )
        counts = np.diff(row_ptr)
        stats.generated += counts
        if t.size == 0:
            return FrameBatch.empty(), group.site
        cam = np.repeat(np.arange(self.n, dtype=np.int64), counts)
        context = FrameContext(
            t, row_ptr, lambda ts, span: self.capacity_mbps(cam, ts, span), self.estimate
        )
        opt = self.policy.choose(group.policy, context)

        service = self.opt_edge_s[opt]
        if self.window is not None:
            start = self._window_starts(t, opt, cam, row_ptr)
            accepted = ~np.isnan(start)
            stats.dropped += np.bincount(cam[~accepted], minlength=self.n)
            acc = np.flatnonzero(accepted)
            edge_done = np.full(t.size, np.nan)
            edge_done[acc] = lindley_rows(
                start[acc], service[acc], _row_ptr(np.bincount(cam[acc], minlength=self.n)),
                self.edge_last,
            )  # fmt: skip
        elif self.ring is None:
            edge_done = lindley_rows(t, service, row_ptr, self.edge_last)
            accepted = np.ones(t.size, dtype=bool)
        else:
            edge_done = lindley_rows_limited(
                t, service, row_ptr, self.edge_last, self.ring, self.ring_pos
            )
            accepted = ~np.isnan(edge_done)
            stats.dropped += np.bincount(cam[~accepted], minlength=self.n)
        acc = np.flatnonzero(accepted)
        add_at(stats.edge_sum_s, cam[acc], edge_done[acc] - t[acc])
        energy_j = self.opt_active_j[opt]  # per frame; the radio's share is added below
        self.option_frames += np.bincount(opt[acc], minlength=len(group.options))

        to_cloud = accepted & self.opt_cloud[opt]
        local = np.flatnonzero(accepted & ~to_cloud)
        if local.size:
            self.samples.append(
                stats.add_completed(
                    cam[local], t[local], edge_done[local], plan.deadline_s, plan.duration_s
                )
            )
        sel = np.flatnonzero(to_cloud)
        if sel.size == 0:
            add_at(stats.energy_j, cam[acc], energy_j[acc])
            return FrameBatch.empty(), group.site
        cams = cam[sel]
        sub_ptr = _row_ptr(np.bincount(cams, minlength=self.n))
        bits = self.opt_bits[opt[sel]]
        sent, air_s = self._uplink(edge_done[sel], bits, cams, sub_ptr)
        link = group.link
        add_at(stats.uplink_sum_s, cams, sent - edge_done[sel])
        energy_j[sel] += link.radio_j_per_bit * bits + link.radio_base_w * air_s
        add_at(stats.energy_j, cam[acc], energy_j[acc])
        # Byte counts are whole numbers far below 2**53: the float sums are exact.
        frame_bytes = self.opt_bytes[opt[sel]].astype(np.float64)
        stats.uplink_bytes += np.rint(np.bincount(cams, frame_bytes, minlength=self.n)).astype(
            np.int64
        )
        stats.cloud_frames += np.bincount(cams, minlength=self.n)
        batch = FrameBatch(
            sent + link.rtt_s / 2,
            self.gid[cams],
            k[sel],
            group.option_queue[opt[sel]],
            t[sel],
        )
        return batch, group.site


class CameraShard:
    """All cameras with global ids in ``[lo, hi)``, group by group."""

    def __init__(self, plan: FleetPlan, lo: int, hi: int) -> None:
        self.plan = plan
        self.lo, self.hi = lo, hi
        self.blocks: list[CameraBlock] = []
        for g in plan.groups:
            a, b = max(lo, g.first_gid), min(hi, g.first_gid + g.count)
            if a < b:
                self.blocks.append(CameraBlock(plan, g, a - g.first_gid, b - g.first_gid))

    def step(self, t_end: float) -> list[FrameBatch]:
        """Frames captured before ``t_end`` (after the previous step's); one batch per
        cloud site, each sorted by (arrival, camera id, frame index)."""
        t_end = min(t_end, self.plan.duration_s)
        per_site: list[list[FrameBatch]] = [[] for _ in self.plan.sites]
        for block in self.blocks:
            batch, site = block.step(t_end)
            if batch.n_frames:
                per_site[site].append(batch)
        out = []
        for parts in per_site:
            if not parts:
                out.append(FrameBatch.empty())
                continue
            # Camera-major input: a stable sort by time leaves equal times in
            # (camera id, frame index) order.
            batch = FrameBatch.concat(parts)
            order, _ = stable_sort(batch.arrival_s)
            out.append(batch.take(order))
        return out

    def finish(self) -> ShardResult:
        stats = CameraStats.zeros(self.hi - self.lo)
        samples: dict[int, list[FloatArray]] = {}
        options: dict[int, IntArray] = {}
        for b in self.blocks:
            stats.add(b.stats, int(b.gid[0]) - self.lo)
            samples.setdefault(b.group.index, []).extend(b.samples)
            options[b.group.index] = options.get(b.group.index, 0) + b.option_frames
        return ShardResult(
            self.lo,
            self.hi,
            stats,
            {g: np.concatenate(s) if s else np.zeros(0) for g, s in samples.items()},
            options,
        )


class ShardResult(NamedTuple):
    lo: int
    hi: int
    stats: CameraStats
    samples: dict[int, FloatArray]  # group index -> latencies of frames answered on the edge
    option_frames: dict[int, IntArray]  # group index -> accepted frames per option
