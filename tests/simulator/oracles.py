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
from numpy.typing import ArrayLike

from simulator.uplink import BITS_TOLERANCE, TIME_TOLERANCE_S, CapacityCurve


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
