"""References the simulator's queueing kernels are tested against.

Each follows its queue's definition in plain Python, job by job or event by event, and
shares no code with ``simulator/``: slow, short and easy to check by eye.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence

import numpy as np
from numba import njit


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
