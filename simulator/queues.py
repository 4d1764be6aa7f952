"""The queues of the fleet simulator: every wait of a frame is solved by a kernel here.

* :func:`lindley_rows`: one single-server FIFO per camera (the rows of a camera-major
  CSR layout), each row starting from the departure carried over from the previous
  window. A camera's processor runs it on frames, its uplink on bits
  (:mod:`simulator.camera`); :func:`lindley_rows_limited` adds a bounded buffer that
  drops frames, :func:`window_gate` and :func:`window_pipeline` a bound on the frames a
  camera has in flight.
* :class:`BatchingServers`: a cloud site's ``servers`` identical servers, shared by one
  dynamic-batching queue per tail (:mod:`simulator.site`), by the rule below.
* :func:`stable_sort`: the arrival order of the frames a shard sends to a site.

The tests hold these kernels to independent references (``tests/simulator/oracles.py``:
event-driven queues, double-double arithmetic, and the closed form of the Lindley
recursion over whole arrays).

Batching rule, Triton-like. Frames arrive sorted by time (ties: merged order). Each tail
(one model cut, as a server batches per model version) queues its frames FCFS; the
tails share ``servers`` identical servers. Let ``h_q`` be tail ``q``'s oldest frame not
yet in a batch, ``B = max_batch``, ``W = window_s`` and ``F`` the earliest time a server
is free (servers are free from the start). Tail ``q``'s next batch becomes *ready* at
``R_q = min(a[h_q] + W, a[h_q + B - 1])`` (the window of its oldest frame expires, or
the tail holds ``B`` frames; ``a[h_q + B - 1]``, the tail's ``B``-th waiting frame,
counts as +inf if it does not exist), so with ``W = 0`` a batch is ready as soon as its
first frame arrives. The batch that is ready first (ties: the one whose oldest frame
came first)

* *starts* at ``T = max(min_q R_q, F)`` on the server that has been free the longest
  (ties: lowest server index);
* holds every waiting frame of its tail with ``a[j] <= T``, at most ``B`` of them,
  oldest first: frames that arrive while a ready batch waits for a server join it (an
  arrival at exactly ``T`` joins too);
* takes ``batch_s[q, size - 1]`` seconds, times ``-log(u_k)`` for exponential service
  (``u_k`` the k-th uniform of the site's stream, :mod:`simulator.streams`); every frame
  of the batch departs at its end.

Batches start in order (``T`` never decreases), so no frame overtakes an older one of its
tail. With ``B = 1`` this is the FCFS c-server queue, each frame taking its tail's time.

Windows: a site knows every arrival before the end ``t_end`` of the window just
simulated (a frame reaches the cloud after it was captured), so it dispatches every
batch with ``T < t_end`` and carries the rest (waiting frames, the servers' free times,
the batch counter) into the next window; the result equals one pass over all frames.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numba import njit
from numpy.typing import ArrayLike, NDArray

from simulator import streams

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]

# --------------------------------------------------------------------------------------
# One FIFO server per camera: sequential, numba
# --------------------------------------------------------------------------------------


@njit(cache=True)
def lindley_rows(
    a: FloatArray, s: FloatArray, row_ptr: IntArray, carry: FloatArray
) -> FloatArray:  # pragma: no cover - numba
    """FIFO departures ``d[i] = max(a[i], d[i-1]) + s[i]`` per row, starting from the row's
    carried last departure; ``carry`` is updated to each row's new last departure."""
    out = np.empty_like(a)
    for r in range(row_ptr.shape[0] - 1):
        d = carry[r]
        for i in range(row_ptr[r], row_ptr[r + 1]):
            d = max(a[i], d) + s[i]
            out[i] = d
        carry[r] = d
    return out


@njit(cache=True)
def lindley_rows_limited(
    a: FloatArray,
    s: FloatArray,
    row_ptr: IntArray,
    carry: FloatArray,
    ring: FloatArray,
    ring_pos: IntArray,
) -> FloatArray:  # pragma: no cover - numba
    """:func:`lindley_rows` with room for ``limit = ring.shape[1]`` frames per queue: a
    frame that finds ``limit`` frames in the queue (the limit-th latest departure still
    ahead) is dropped (nan). ``ring`` holds each row's last ``limit`` departures."""
    limit = ring.shape[1]
    out = np.empty_like(a)
    for r in range(row_ptr.shape[0] - 1):
        d = carry[r]
        pos = ring_pos[r]
        for i in range(row_ptr[r], row_ptr[r + 1]):
            if ring[r, pos] > a[i]:
                out[i] = np.nan
                continue
            d = max(a[i], d) + s[i]
            out[i] = d
            ring[r, pos] = d
            pos = pos + 1 if pos + 1 < limit else 0
        carry[r] = d
        ring_pos[r] = pos
    return out


@njit(cache=True)
def window_gate(
    t: FloatArray,
    r: FloatArray,
    row_ptr: IntArray,
    ring: FloatArray,
    ring_pos: IntArray,
    last_s: FloatArray,
    drop: bool,
) -> FloatArray:  # pragma: no cover - numba
    """Start times of frames captured at ``t`` with at most ``W = ring.shape[1]`` in flight.

    A frame is in flight from its start until it is handed over; frames are handed over in
    order, frame ``i`` at ``D[i] = max(r[i], D[i-1])``, ``r[i]`` its own return. Frame
    ``i`` starts at ``max(t[i], D[j])``, ``j`` the ``W``-th frame before it that started;
    with ``drop`` a frame that finds the window full (``D[j] > t[i]``) never starts (nan).
    ``ring`` holds each row's last ``W`` hand-over times (``-inf``: free), ``ring_pos`` the
    oldest, ``last_s`` the latest; all three are updated.
    """
    width = ring.shape[1]
    start = np.empty_like(t)
    for c in range(row_ptr.shape[0] - 1):
        pos = ring_pos[c]
        d = last_s[c]
        for i in range(row_ptr[c], row_ptr[c + 1]):
            gate = ring[c, pos]
            if drop and gate > t[i]:
                start[i] = np.nan
                continue
            start[i] = max(t[i], gate)
            d = max(d, r[i])
            ring[c, pos] = d
            pos = pos + 1 if pos + 1 < width else 0
        ring_pos[c] = pos
        last_s[c] = d
    return start


@njit(cache=True)
def window_pipeline(
    t: FloatArray,
    edge_s: FloatArray,
    cloud: NDArray[np.bool_],
    service_s: FloatArray,
    cloud_s: FloatArray,
    rtt_s: float,
    back_s: float,
    row_ptr: IntArray,
    edge_last: FloatArray,
    link_last: FloatArray,
    cloud_last: FloatArray,
    ring: FloatArray,
    ring_pos: IntArray,
    last_s: FloatArray,
    drop: bool,
) -> FloatArray:  # pragma: no cover - numba
    """:func:`window_gate` with each frame's return computed as it goes, for links of a
    constant rate: the edge FIFO (``edge_s``), then for ``cloud`` frames the uplink FIFO
    (``service_s``: bits over the rate), half the round trip, a FIFO server of the
    camera's own (``cloud_s``) and ``back_s``; a local frame returns when its head is
    done. One pass, exact; every carry is updated (pass copies of those the caller
    recomputes)."""
    width = ring.shape[1]
    start = np.empty_like(t)
    for c in range(row_ptr.shape[0] - 1):
        pos = ring_pos[c]
        d = last_s[c]
        e = edge_last[c]
        u = link_last[c]
        k = cloud_last[c]
        for i in range(row_ptr[c], row_ptr[c + 1]):
            gate = ring[c, pos]
            if drop and gate > t[i]:
                start[i] = np.nan
                continue
            start[i] = max(t[i], gate)
            e = max(start[i], e) + edge_s[i]
            r = e
            if cloud[i]:
                u = max(e, u) + service_s[i]
                k = max(u + rtt_s / 2, k) + cloud_s[i]
                r = k + back_s
            d = max(d, r)
            ring[c, pos] = d
            pos = pos + 1 if pos + 1 < width else 0
        ring_pos[c] = pos
        last_s[c] = d
        edge_last[c] = e
        link_last[c] = u
        cloud_last[c] = k
    return start


# --------------------------------------------------------------------------------------
# Arrival order
# --------------------------------------------------------------------------------------


@njit(cache=True)
def stable_sort(values: FloatArray) -> tuple[IntArray, FloatArray]:  # pragma: no cover
    """``np.argsort(values, kind="stable")`` and the sorted values, by LSD radix sort.

    Merged fleet arrivals are tens of millions of floats: numpy's stable argsort of 3e7
    takes ~9 s here, these eight byte-wise counting passes ~1.5 s, and the sorted values
    come from the sorted keys instead of a random-access gather (~1 s). Finite floats
    only; -0.0 comes back as 0.0.
    """
    n = values.shape[0]
    raw = values.view(np.uint64)
    sign = np.uint64(1) << np.uint64(63)
    keys = np.empty(n, dtype=np.uint64)
    for i in range(n):
        k = raw[i]
        if k == sign:  # -0.0 ties with 0.0, as in numpy
            k = np.uint64(0)
        # Map the IEEE bit pattern to an unsigned key with the same order.
        keys[i] = ~k if k & sign else k | sign
    digit = np.uint64(255)
    counts = np.zeros((8, 256), dtype=np.int64)
    for i in range(n):
        k = keys[i]
        for d in range(8):
            counts[d, (k >> np.uint64(8 * d)) & digit] += 1
    order = np.arange(n)
    keys_out = np.empty_like(keys)
    order_out = np.empty_like(order)
    slot = np.empty(256, dtype=np.int64)
    for d in range(8):
        if counts[d].max() == n:  # every key has the same byte here: nothing to do
            continue
        shift = np.uint64(8 * d)
        total = 0
        for b in range(256):
            slot[b] = total
            total += counts[d, b]
        for i in range(n):  # a stable counting pass
            k = keys[i]
            b = (k >> shift) & digit
            keys_out[slot[b]] = k
            order_out[slot[b]] = order[i]
            slot[b] += 1
        keys, keys_out = keys_out, keys
        order, order_out = order_out, order
    for i in range(n):  # undo the key mapping, in place
        k = keys[i]
        keys[i] = k & ~sign if k & sign else ~k
    return order, keys.view(np.float64)


# --------------------------------------------------------------------------------------
# A cloud site's servers and its batching queues: sequential, numba
# --------------------------------------------------------------------------------------


@njit(cache=True, inline="always")
def _before(t1: float, i1: int, t2: float, i2: int) -> bool:  # pragma: no cover - numba
    return t1 < t2 or (t1 == t2 and i1 < i2)


@njit(cache=True)
def _replace_top(
    free_s: FloatArray, server: IntArray, t: float, idx: int
) -> None:  # pragma: no cover - numba
    """Replace the heap's root (earliest-free server) by (t, idx) and restore heap order.

    Keys are (free time, server index) so that ties go to the lowest server index, which
    makes the assignment independent of heap layout.
    """
    n = free_s.shape[0]
    pos = 0
    while True:
        child = 2 * pos + 1
        if child >= n:
            break
        right = child + 1
        if right < n and _before(free_s[right], server[right], free_s[child], server[child]):
            child = right
        if _before(free_s[child], server[child], t, idx):
            free_s[pos] = free_s[child]
            server[pos] = server[child]
            pos = child
        else:
            break
    free_s[pos] = t
    server[pos] = idx


@njit(cache=True)
def _dispatch_kernel(
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
    """Batches of the frames ``a`` (sorted) that start before ``t_end`` (the module's rule).

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


class Dispatched(NamedTuple):
    """What one call of :meth:`BatchingServers.dispatch` served."""

    start_s: FloatArray  # per frame: its batch's start (nan: not dispatched yet)
    end_s: FloatArray  # per frame: its batch's end (nan: not dispatched yet)
    batch_start_s: FloatArray  # per batch, in dispatch order
    batch_end_s: FloatArray
    batch_size: IntArray


class BatchingServers:
    """``servers`` identical servers shared by one batching queue per tail (module rule).

    ``batch_s[q, b - 1]`` is the service time of a batch of ``b`` frames of tail ``q``
    (shape ``(tails, max_batch)``). With ``exponential``, batch ``k`` (numbered from 0
    across all calls) takes that time ``-log(u_k)`` times, ``u_k`` the k-th uniform of
    ``(seed, stream, SERVICE)``. The servers' free times and the batch counter carry from
    one :meth:`dispatch` to the next, which is how a site serves window after window.
    """

    def __init__(
        self,
        servers: int,
        max_batch: int,
        window_s: float,
        batch_s: ArrayLike,
        *,
        exponential: bool = False,
        seed: int = 0,
        stream: int = 0,
    ) -> None:
        self.batch_s = np.ascontiguousarray(batch_s, dtype=np.float64)
        self.max_batch = max_batch
        self.window_s = window_s
        self.exponential = exponential
        self.key = streams.seed_key(seed)
        self.tag = np.int64(streams.stream_tag(stream, streams.SERVICE))
        # A heap of (free time, server index); all idle since forever is a valid heap.
        self.free_s = np.full(servers, -np.inf)
        self.server = np.arange(servers, dtype=np.int64)
        self.next_batch = 0

    def dispatch(
        self, arrivals_s: FloatArray, queue: NDArray[np.int32], t_end: float = np.inf
    ) -> Dispatched:
        """Serve the frames arriving at ``arrivals_s`` (sorted) into tails ``queue``: every
        batch that starts before ``t_end``. Frames left waiting get nan; pass them again,
        first, with the next window's arrivals."""
        start, end, b_start, b_end, b_size, self.next_batch = _dispatch_kernel(
            np.ascontiguousarray(arrivals_s, dtype=np.float64),
            np.ascontiguousarray(queue, dtype=np.int32),
            self.batch_s.shape[0],
            self.free_s,
            self.server,
            self.max_batch,
            self.window_s,
            self.batch_s,
            self.exponential,
            self.key[0],
            self.key[1],
            self.tag,
            self.next_batch,
            float(t_end),
        )
        return Dispatched(start, end, b_start, b_end, b_size)


# --------------------------------------------------------------------------------------
# Single-server FIFO over whole arrays: closed form
# --------------------------------------------------------------------------------------
