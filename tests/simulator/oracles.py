"""References the simulator's queueing kernels and its fluid link are tested against.

Each follows its queue's definition in plain Python, job by job or event by event, and
shares no code with what it checks (the fluid link's reads only a curve's knots): slow,
short and easy to check by eye.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence

import numpy as np
from numba import njit
from numpy.typing import ArrayLike, NDArray

from simulator.uplink import BITS_TOLERANCE, TIME_TOLERANCE_S, CapacityCurve

FloatArray = NDArray[np.float64]


def lindley_loop(arrivals: Sequence[float], service: Sequence[float]) -> list[float]:
    """Single-server FIFO in index order: ``d[i] = max(a[i], d[i-1]) + s[i]``."""
    out, d = [], -math.inf
    for a, s in zip(arrivals, service, strict=True):
        d = max(a, d) + s
        out.append(d)
    return out


@njit(cache=True)
def _two_sum(x: float, y: float) -> tuple[float, float]:
    s = x + y
    bp = s - x
    return s, (x - (s - bp)) + (y - bp)


@njit(cache=True)
def lindley_double_double(a: np.ndarray, s: np.ndarray) -> np.ndarray:
    """Lindley loop in double-double arithmetic: exact to ~1e-30 relative, then rounded."""
    out = np.empty_like(a)
    hi, lo = -np.inf, 0.0
    for i in range(a.shape[0]):
        if a[i] > hi or (a[i] == hi and lo < 0.0):
            hi, lo = a[i], 0.0
        h, e = _two_sum(hi, s[i])
        hi, lo = _two_sum(h, e + lo)
        out[i] = hi + lo
    return out


def multi_server_reference(
    arrivals: Sequence[float], service: Sequence[float], servers: int
) -> tuple[list[float], list[float]]:
    """FCFS on ``servers`` servers: jobs in arrival order (stable), each on the server
    free the longest (lowest index). Start and departure of each job, in input order."""
    order = sorted(range(len(arrivals)), key=lambda i: arrivals[i])
    free = [-math.inf] * servers
    start, dep = [0.0] * len(arrivals), [0.0] * len(arrivals)
    for i in order:
        j = min(range(servers), key=lambda j: (free[j], j))
        start[i] = max(arrivals[i], free[j])
        dep[i] = start[i] + service[i]
        free[j] = dep[i]
    return start, dep


def batching_reference(
    a: Sequence[float],
    queue: Sequence[int],
    n_queues: int,
    servers: int,
    max_batch: int,
    window_s: float,
    table: Sequence[Sequence[float]],
) -> tuple[list[float], list[float], list[tuple[float, float, int]]]:
    """Event-driven dynamic batcher over frames sorted by arrival ``a``, frame ``i`` in
    tail ``queue[i]``: at each instant, while a server is free and some tail has a ready
    batch (``max_batch`` frames waiting, or its oldest frame waited ``window_s``), the
    tail whose batch became ready first (ties: the older oldest frame) gets the server
    free the longest; a batch of ``b`` frames of tail ``q`` takes ``table[q][b - 1]``.

    Returns each frame's batch start and end, and every batch's (start, end, size) in
    dispatch order.
    """
    n = len(a)
    waiting: list[deque[int]] = [deque() for _ in range(n_queues)]
    free = [-math.inf] * servers
    start, end = [math.nan] * n, [math.nan] * n
    batches: list[tuple[float, float, int]] = []
    nxt, t = 0, -math.inf

    def ready_at(q: int) -> float:
        w = waiting[q]
        r = a[w[0]] + window_s
        return min(r, a[w[max_batch - 1]]) if len(w) >= max_batch else r

    while nxt < n or any(waiting):
        while nxt < n and a[nxt] <= t:
            waiting[queue[nxt]].append(nxt)
            nxt += 1
        while True:
            idle = [j for j in range(servers) if free[j] <= t]
            ready = [q for q in range(n_queues) if waiting[q] and ready_at(q) <= t]
            if not (idle and ready):
                break
            q = min(ready, key=lambda q: (ready_at(q), waiting[q][0]))
            j = min(idle, key=lambda j: (free[j], j))
            size = min(max_batch, len(waiting[q]))
            done = t + table[q][size - 1]
            for _ in range(size):
                i = waiting[q].popleft()
                start[i], end[i] = t, done
            free[j] = done
            batches.append((t, done, size))
        candidates = [a[nxt]] if nxt < n else []
        candidates += [ready_at(q) for q in range(n_queues) if waiting[q]]
        candidates += [f for f in free if f > t]
        later = [c for c in candidates if c > t]
        if not later:
            break
        t = min(later)
    return start, end, batches


def fluid_link_reference(
    curve: CapacityCurve, arrivals_s: ArrayLike, bits: ArrayLike, offset_s: ArrayLike = 0.0
) -> np.ndarray:
    """FIFO fluid link (as :func:`simulator.uplink.fluid_fifo_departures`), frame by frame.

    Walks the curve piece by piece in time (ramps at their rate, impulses with what the
    previous frame left of them), never using ``C`` or its inverse. ``arrivals_s`` is 1-D
    or 2-D (a row per camera); ``offset_s`` a scalar, or one per row.
    """
    a = np.asarray(arrivals_s, dtype=np.float64)
    if a.ndim not in (1, 2):
        raise ValueError(f"arrivals_s must be 1-D or 2-D, got shape {a.shape}")
    b = np.broadcast_to(np.asarray(bits, dtype=np.float64), a.shape)
    off = np.asarray(offset_s, dtype=np.float64)
    if off.ndim == 1 and a.ndim == 2:
        off = off[:, None]
    off = np.broadcast_to(off, a.shape)
    rows_a, rows_b, rows_off = (np.atleast_2d(v) for v in (a, b, off))
    out = np.empty(rows_a.shape)
    for r in range(rows_a.shape[0]):
        out[r] = _fluid_link_row(curve, rows_a[r], rows_b[r], rows_off[r])
    return out.reshape(a.shape)


def _fluid_link_row(
    curve: CapacityCurve, arrivals_s: np.ndarray, bits: np.ndarray, offset_s: np.ndarray
) -> np.ndarray:
    times = curve.knot_times_s.tolist()
    levels = curve.knot_bits.tolist()
    slope = curve.slope_bps.tolist()
    period_s = curve.period_s
    n_pieces = len(slope)
    out = np.empty(arrivals_s.shape[0])
    # Cursor where the link stopped: piece k of period p; in a ramp, pos is the phase
    # (seconds into the period) reached, in an impulse the bits of it already used.
    # Phases keep the arithmetic small and exact-ish even thousands of periods in.
    p, k, pos = 0, 0, 0.0
    free_s = -np.inf  # trace time at which the previous frame left

    def is_impulse(k: int) -> bool:
        return times[k + 1] == times[k]

    for i in range(arrivals_s.shape[0]):
        arrive = float(arrivals_s[i] + offset_s[i])
        need = float(bits[i])
        if need == 0.0:
            out[i] = max(arrive, free_s) - offset_s[i]
            continue
        # Busy if the link is still sending at the arrival, or has just stopped inside an
        # impulse at most TIME_TOLERANCE_S earlier (its leftover serves this frame).
        if arrive > free_s + TIME_TOLERANCE_S or (arrive > free_s and not is_impulse(k)):
            # Idle link: skip what was deliverable before the arrival.
            if free_s == -np.inf:
                p, k = int(np.floor(arrive / period_s)) - 1, 0
            while True:
                base_s = p * period_s
                if is_impulse(k):
                    if base_s + times[k] >= arrive - TIME_TOLERANCE_S:
                        pos = 0.0
                        break
                elif base_s + times[k + 1] > arrive:
                    pos = max(arrive - base_s, times[k])
                    break
                k += 1
                if k == n_pieces:
                    p, k = p + 1, 0
        while True:
            if is_impulse(k):
                left = (levels[k + 1] - levels[k]) - pos
                if need <= left + BITS_TOLERANCE:
                    pos += need
                    free_s = p * period_s + times[k]
                    break
            else:
                left = slope[k] * (times[k + 1] - pos)
                if slope[k] > 0.0 and need <= left + BITS_TOLERANCE:
                    pos = min(pos + need / slope[k], times[k + 1])
                    free_s = p * period_s + pos
                    break
            need -= left
            k += 1
            if k == n_pieces:
                p, k = p + 1, 0
            pos = 0.0 if is_impulse(k) else times[k]
        out[i] = free_s - offset_s[i]
    return out


# -- closed forms over whole arrays: independent of the windowed Lindley rows the shards run

# Block length of the closed-form FIFO. Cumulative sums restart every block, so rounding
# error grows with the block (~block * eps * block service time), not with the row; the
# departure at each block end is carried into the next block. 1024 keeps the error at a
# few ulps of the departure time (smaller blocks add one rounding of a large time per
# block, larger ones longer sums) while the per-block Python overhead stays small.
FIFO_BLOCK = 1024
# Jobs per tile: the closed form runs tile by tile in reused buffers that stay in cache,
# which is several times faster than whole-array passes over fresh memory.
FIFO_TILE = 1 << 15


def fifo_departures(
    arrivals_s: ArrayLike, service_s: ArrayLike, *, block: int = FIFO_BLOCK
) -> FloatArray:
    """Departures of a single-server FIFO queue, or of many independent ones.

    ``arrivals_s`` is 1-D (one queue) or 2-D (one row per queue); ``service_s`` broadcasts
    to its shape. Jobs are served in index order along the last axis, which is FIFO when
    each row is sorted by arrival; pad ragged rows at the end with ``np.inf`` arrivals (their
    departures are ``inf`` and do not affect real jobs).

    Uses the closed form of the Lindley recursion ``d[i] = max(a[i], d[i-1]) + s[i]``:
    ``d[i] = S[i] + max(d0, max_{j<=i}(a[j] - S[j-1]))`` with ``S`` the cumulative service
    since the start of the block of ``block`` jobs and ``d0`` the departure of the last job
    of the previous block, carried from block to block. Restarting ``S`` per block keeps
    the error within a few ulps of the departure time even on rows of 10^7 jobs; one
    cumulative sum over the whole row (``block=n``) drifts like the float Lindley loop
    (tens to hundreds of ulps, measured against double-double arithmetic).
    """
    a = np.asarray(arrivals_s, dtype=np.float64)
    if a.ndim not in (1, 2):
        raise ValueError(f"arrivals_s must be 1-D or 2-D, got shape {a.shape}")
    s = np.broadcast_to(np.asarray(service_s, dtype=np.float64), a.shape)
    if block < 1:
        raise ValueError(f"block must be >= 1, got {block}")
    if a.size == 0:
        return np.empty(a.shape, dtype=np.float64)
    if not np.all(s >= 0.0):
        raise ValueError("service_s must be >= 0 (and not NaN)")

    n_rows, n_jobs = (1, a.shape[0]) if a.ndim == 1 else a.shape
    a2 = a.reshape(n_rows, n_jobs)
    s2 = s.reshape(n_rows, n_jobs)
    out = np.empty((n_rows, n_jobs))
    blk = min(block, n_jobs)
    row_width = -(-n_jobs // blk) * blk
    if row_width <= FIFO_TILE:  # tiles of whole rows
        tile_rows, tile_cols = FIFO_TILE // row_width, row_width
    else:  # tiles along one long row
        tile_rows, tile_cols = 1, max(1, FIFO_TILE // blk) * blk
    buf_a = np.empty(tile_rows * tile_cols)
    buf_s = np.empty_like(buf_a)
    buf_p = np.empty_like(buf_a)

    for r0 in range(0, n_rows, tile_rows):
        r1 = min(n_rows, r0 + tile_rows)
        nr = r1 - r0
        d_last = np.full(nr, -np.inf)  # departure of the last job before this tile
        for c0 in range(0, n_jobs, tile_cols):
            c1 = min(n_jobs, c0 + tile_cols)
            w = c1 - c0
            nb = -(-w // blk)
            tile_a = buf_a[: nr * nb * blk].reshape(nr, nb * blk)
            tile_s = buf_s[: nr * nb * blk].reshape(nr, nb * blk)
            tile_a[:, :w] = a2[r0:r1, c0:c1]
            tile_s[:, :w] = s2[r0:r1, c0:c1]
            # Pad the last block: an arrival at +inf with no service delays nobody.
            tile_a[:, w:] = np.inf
            tile_s[:, w:] = 0.0
            a3 = tile_a.reshape(nr, nb, blk)
            cum = tile_s.reshape(nr, nb, blk)
            peak = buf_p[: nr * nb * blk].reshape(nr, nb, blk)
            np.cumsum(cum, axis=2, out=cum)  # S[i], block-local
            peak[:, :, 0] = a3[:, :, 0]
            np.subtract(a3[:, :, 1:], cum[:, :, :-1], out=peak[:, :, 1:])
            np.maximum.accumulate(peak, axis=2, out=peak)  # max_{j<=i}(a[j] - S[j-1])
            # The carry between blocks is itself a (short) max-plus recursion: one step per
            # block of `blk` jobs, not per job.
            carry = np.empty((nr, nb))
            if nr == 1:
                d0 = float(d_last[0])
                sums, peaks = cum[0, :, -1].tolist(), peak[0, :, -1].tolist()
                row = carry[0]
                for k in range(nb):
                    row[k] = d0
                    d0 = sums[k] + max(peaks[k], d0)
            else:
                carry[:, 0] = d_last
                for k in range(1, nb):
                    carry[:, k] = cum[:, k - 1, -1] + np.maximum(
                        peak[:, k - 1, -1], carry[:, k - 1]
                    )
            np.maximum(peak, carry[:, :, None], out=peak)
            cum += peak
            out[r0:r1, c0:c1] = tile_s[:, :w]
            d_last = out[r0:r1, c1 - 1]

    return out.reshape(a.shape)


def row_offsets(offset_s: ArrayLike, shape: tuple[int, ...]) -> FloatArray:
    off = np.asarray(offset_s, dtype=np.float64)
    if off.ndim == 1 and len(shape) == 2:
        if off.shape[0] != shape[0]:
            raise ValueError(f"need one offset per row ({shape[0]}), got {off.shape[0]}")
        off = off[:, None]
    try:
        np.broadcast_shapes(off.shape, shape)
    except ValueError:
        raise ValueError(f"offset_s of shape {off.shape} does not fit arrivals {shape}") from None
    return off


def fluid_fifo_departures(
    curve: CapacityCurve, arrivals_s: ArrayLike, bits: ArrayLike, offset_s: ArrayLike = 0.0
) -> FloatArray:
    """Departures of frames through a FIFO fluid link with capacity ``curve``.

    Frame i starts sending at ``max(arrival_i, departure_{i-1})`` and leaves when the link
    has delivered its ``bits``: ``D_i = C^-1(max(C(a_i-), C(D_{i-1})) + b_i)``, a Lindley
    recursion in bits solved by :func:`fifo_departures`, then mapped back to
    seconds. ``arrivals_s`` is 1-D (one link) or 2-D (one row per camera, sorted in each row);
    ``bits`` broadcasts to it; ``offset_s`` is the trace phase, a scalar or one per row.
    Capacity arriving at a frame's arrival instant (or up to ``TIME_TOLERANCE_S`` before)
    serves that frame; a frame is done when fewer than ``BITS_TOLERANCE`` bits remain.
    Propagation delay is not included: add RTT/2 to the result.
    """
    a = np.asarray(arrivals_s, dtype=np.float64)
    if a.ndim not in (1, 2):
        raise ValueError(f"arrivals_s must be 1-D or 2-D, got shape {a.shape}")
    b = np.broadcast_to(np.asarray(bits, dtype=np.float64), a.shape)
    if not np.all(b >= 0.0):
        raise ValueError("bits must be >= 0 (and not NaN)")
    off = row_offsets(offset_s, a.shape)
    phase_s = a + off  # trace time of each arrival
    bits_at_arrival = curve.cumulative_bits_before(phase_s, out=phase_s)
    bits_at_departure = fifo_departures(bits_at_arrival, b)
    del phase_s, bits_at_arrival
    d = curve.time_of_bits(bits_at_departure, out=bits_at_departure)
    d -= off
    # A zero-bit frame leaves on arrival; the clamp also absorbs rounding of C^-1(C(a)).
    np.maximum(d, a, out=d)
    return d


def windowed_camera_reference(
    t: Sequence[float],
    edge_s: Sequence[float],
    cloud: Sequence[bool],
    bits: Sequence[float],
    *,
    rate_bps: float,
    rtt_s: float,
    cloud_s: Sequence[float],
    back_s: float,
    window: int,
    drop: bool,
) -> tuple[FloatArray, FloatArray]:
    """One camera with at most ``window`` frames in flight, event by event.

    Frames are captured at ``t``; a frame that finds ``window`` frames taken and not yet
    handed over waits for a slot (``drop``: is skipped). A taken frame queues for the edge
    processor (``edge_s``), then, if it uses the cloud, for a constant-rate uplink
    (``bits / rate_bps``), travels ``rtt_s / 2``, queues for a server of its own
    (``cloud_s``) and comes back ``back_s`` later; a local frame returns when its head is
    done. Results are handed over in frame order, which is when a frame frees its slot.
    Returns each frame's start and return time (nan: skipped).
    """
    import heapq

    n = len(t)
    start = np.full(n, np.nan)
    returned = np.full(n, np.nan)
    skipped = [False] * n
    # Same-time order: a hand-over frees its slot before a capture looks for one.
    RETURN, EDGE, LINK, ARRIVE, CLOUD, CAPTURE = range(6)
    events: list[tuple[float, int, int, int]] = []
    seq = 0

    def at(time_s: float, kind: int, frame: int) -> None:
        nonlocal seq
        heapq.heappush(events, (time_s, kind, seq, frame))
        seq += 1

    class Server:
        def __init__(self, kind: int) -> None:
            self.kind, self.busy, self.queue = kind, False, deque()

        def offer(self, now: float, frame: int, service: float) -> None:
            self.queue.append((frame, service))
            if not self.busy:
                self.next(now)

        def next(self, now: float) -> None:
            self.busy = bool(self.queue)
            if self.queue:
                frame, service = self.queue.popleft()
                at(now + service, self.kind, frame)

    edge, link, server = Server(EDGE), Server(LINK), Server(CLOUD)
    in_flight, waiting, handed = 0, deque(), 0

    def take(now: float, i: int) -> None:
        nonlocal in_flight
        in_flight += 1
        start[i] = now
        edge.offer(now, i, edge_s[i])

    def hand_over(now: float) -> None:
        nonlocal handed, in_flight
        while handed < n and (skipped[handed] or not math.isnan(returned[handed])):
            in_flight -= not skipped[handed]
            handed += 1
        while waiting and in_flight < window:
            take(now, waiting.popleft())

    for i, ti in enumerate(t):
        at(ti, CAPTURE, i)
    while events:
        now, kind, _, i = heapq.heappop(events)
        if kind == CAPTURE:
            if in_flight < window and not waiting:
                take(now, i)
            elif drop:
                skipped[i] = True
                hand_over(now)
            else:
                waiting.append(i)
        elif kind == EDGE:
            edge.next(now)
            if cloud[i]:
                link.offer(now, i, bits[i] / rate_bps)
            else:
                at(now, RETURN, i)
        elif kind == LINK:
            link.next(now)
            at(now + rtt_s / 2, ARRIVE, i)
        elif kind == ARRIVE:
            server.offer(now, i, cloud_s[i])
        elif kind == CLOUD:
            server.next(now)
            at(now + back_s, RETURN, i)
        else:
            returned[i] = now
            hand_over(now)
    return start, returned
