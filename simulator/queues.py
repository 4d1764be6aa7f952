"""Exact, vectorised queueing building blocks for the fleet simulator.

Each function maps arrival times to start/departure times of one queueing stage (a camera's
edge FIFO, a c-server cloud site, a dynamically batching cloud site); the fleet simulator
chains them, feeding one stage's departures as the next stage's arrivals.

Batching rule (``batching_servers``), Triton-like, with one shared FCFS queue and ``servers``
identical servers. Frames are taken in arrival order (ties: input order). Let ``h`` be the
oldest frame not yet in a batch, ``B = max_batch``, ``W = window_s`` and ``F`` the earliest
time a server is free (servers are free from the start). The next batch

* becomes *ready* at ``R = min(a[h] + W, a[h + B - 1])`` (the window of the oldest frame
  expires, or the queue holds ``B`` frames; ``a[h + B - 1]`` counts as +inf if it does not
  exist), so with ``W = 0`` a batch is ready as soon as its first frame arrives;
* *starts* at ``T = max(R, F)`` on the server that has been free the longest (ties: lowest
  server index);
* holds every waiting frame with ``a[j] <= T``, at most ``B`` of them, oldest first: frames
  that arrive while a ready batch waits for a server join it (an arrival at exactly ``T``
  joins too);
* takes ``service_by_batch_s[size - 1]`` seconds, times the batch's exponential draw when
  ``service_model="exponential"``; every frame of the batch departs at its end.

Batches start in order (``T`` never decreases), so a frame never overtakes an older one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal, NamedTuple

import numpy as np
from numba import njit
from numpy.typing import ArrayLike, NDArray

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]
SmallIntArray = NDArray[np.int32]  # server indices and batch sizes: half the memory

# Block length of the closed-form FIFO. Cumulative sums restart every block, so rounding
# error grows with the block (~block * eps * block service time), not with the row; the
# departure at each block end is carried into the next block. 1024 keeps the error at a
# few ulps of the departure time (smaller blocks add one rounding of a large time per
# block, larger ones longer sums) while the per-block Python overhead stays small.
FIFO_BLOCK = 1024
# Jobs per tile: the closed form runs tile by tile in reused buffers that stay in cache,
# which is several times faster than whole-array passes over fresh memory.
_FIFO_TILE = 1 << 15


class ServerSchedule(NamedTuple):
    """Per-job result of :func:`multi_server_fifo`, in input order."""

    start_s: FloatArray
    departures_s: FloatArray
    server_index: SmallIntArray


class BatchSchedule(NamedTuple):
    """Per-frame result of :func:`batching_servers`, in input order."""

    start_s: FloatArray  # start of the frame's batch
    departures_s: FloatArray  # end of the frame's batch
    batch_id: IntArray  # 0, 1, ... in dispatch order
    batch_size: SmallIntArray


class QueueSamples(NamedTuple):
    """Counts of jobs at sample instants (right-continuous: an event at t counts at t)."""

    waiting: IntArray
    in_service: IntArray
    in_system: IntArray


# --------------------------------------------------------------------------------------
# Single-server FIFO: closed form
# --------------------------------------------------------------------------------------


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
    if row_width <= _FIFO_TILE:  # tiles of whole rows
        tile_rows, tile_cols = _FIFO_TILE // row_width, row_width
    else:  # tiles along one long row
        tile_rows, tile_cols = 1, max(1, _FIFO_TILE // blk) * blk
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


def lindley_departures(arrivals_s: ArrayLike, service_s: ArrayLike) -> FloatArray:
    """Single-server FIFO by the sequential Lindley loop (numba): the reference.

    Same contract as :func:`fifo_departures`. Several times faster, but adding each small
    service time to a large absolute time rounds at every job, so on long busy periods it
    drifts further from the exact departures than the blocked closed form does.
    """
    a = np.asarray(arrivals_s, dtype=np.float64)
    s = np.ascontiguousarray(np.broadcast_to(np.asarray(service_s, dtype=np.float64), a.shape))
    if a.ndim not in (1, 2):
        raise ValueError(f"arrivals_s must be 1-D or 2-D, got shape {a.shape}")
    a2 = np.ascontiguousarray(a.reshape(-1, a.shape[-1]) if a.size else a.reshape(0, 0))
    s2 = s.reshape(a2.shape)
    return _lindley_rows(a2, s2).reshape(a.shape)


@njit(cache=True)
def _lindley_rows(a: FloatArray, s: FloatArray) -> FloatArray:  # pragma: no cover - numba
    out = np.empty_like(a)
    for r in range(a.shape[0]):
        d = -np.inf
        for i in range(a.shape[1]):
            d = max(a[r, i], d) + s[r, i]
            out[r, i] = d
    return out


# --------------------------------------------------------------------------------------
# c-server FCFS queue and dynamic batching: sequential, numba
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
def _multi_server_kernel(
    a: FloatArray, s: FloatArray, servers: int
) -> tuple[FloatArray, FloatArray, SmallIntArray]:  # pragma: no cover - numba
    n = a.shape[0]
    start = np.empty(n)
    dep = np.empty(n)
    srv = np.empty(n, dtype=np.int32)
    free_s = np.full(servers, -np.inf)  # all servers idle since forever: a valid heap
    server = np.arange(servers)
    for i in range(n):
        t = max(a[i], free_s[0])
        start[i] = t
        dep[i] = t + s[i]
        srv[i] = server[0]
        _replace_top(free_s, server, dep[i], server[0])
    return start, dep, srv


@njit(cache=True)
def _batching_kernel(
    a: FloatArray,
    servers: int,
    max_batch: int,
    window_s: float,
    service_by_batch_s: FloatArray,
    multiplier: FloatArray,
) -> tuple[FloatArray, FloatArray, IntArray, SmallIntArray]:  # pragma: no cover - numba
    n = a.shape[0]
    start = np.empty(n)
    dep = np.empty(n)
    batch_id = np.empty(n, dtype=np.int64)
    batch_size = np.empty(n, dtype=np.int32)
    use_multiplier = multiplier.shape[0] > 0
    free_s = np.full(servers, -np.inf)
    server = np.arange(servers)
    head = 0
    k = 0
    while head < n:
        ready = a[head] + window_s
        if head + max_batch - 1 < n:
            ready = min(ready, a[head + max_batch - 1])
        t = max(ready, free_s[0])
        end = head + 1  # ready >= a[head], so the oldest frame is always in
        limit = min(n, head + max_batch)
        while end < limit and a[end] <= t:
            end += 1
        size = end - head
        service = service_by_batch_s[size - 1]
        if use_multiplier:
            service *= multiplier[k]
        done = t + service
        for j in range(head, end):
            start[j] = t
            dep[j] = done
            batch_id[j] = k
            batch_size[j] = size
        _replace_top(free_s, server, done, server[0])
        head = end
        k += 1
    return start, dep, batch_id, batch_size


@njit(cache=True)
def _stable_sort(values: FloatArray) -> tuple[IntArray, FloatArray]:  # pragma: no cover
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


def _sorted_arrivals(arrivals_s: FloatArray) -> tuple[FloatArray, IntArray | None]:
    """Arrivals in stable sorted order, and that order (None when already sorted)."""
    if arrivals_s.size < 2 or bool(np.all(arrivals_s[1:] >= arrivals_s[:-1])):
        return arrivals_s, None
    order, sorted_s = _stable_sort(arrivals_s)
    return sorted_s, order


def _in_input_order(values: NDArray, order: IntArray | None) -> NDArray:
    if order is None:
        return values
    out = np.empty_like(values)
    out[order] = values
    return out


def _check_arrivals(arrivals_s: ArrayLike) -> FloatArray:
    a = np.ascontiguousarray(arrivals_s, dtype=np.float64)
    if a.ndim != 1:
        raise ValueError(f"arrivals_s must be 1-D, got shape {a.shape}")
    if not np.all(np.isfinite(a)):
        raise ValueError("arrivals_s must be finite")
    return a


def multi_server_fifo(arrivals_s: ArrayLike, service_s: ArrayLike, servers: int) -> ServerSchedule:
    """Exact FCFS queue with ``servers`` identical servers.

    Jobs start in arrival order (ties: input order), each on the server that has been free
    the longest (ties: lowest index), at ``max(arrival, that server's free time)``.
    ``arrivals_s`` need not be sorted: it is sorted stably and the results are returned in
    input order. ``service_s`` (per job, or a scalar) is the job's service time.
    """
    a = _check_arrivals(arrivals_s)
    s = np.broadcast_to(np.asarray(service_s, dtype=np.float64), a.shape)
    if servers < 1:
        raise ValueError(f"servers must be >= 1, got {servers}")
    if not np.all(s >= 0.0):
        raise ValueError("service_s must be >= 0 (and not NaN)")
    a, order = _sorted_arrivals(a)
    if order is not None:
        s = s[order]
    start, dep, srv = _multi_server_kernel(a, np.ascontiguousarray(s), int(servers))
    return ServerSchedule(
        _in_input_order(start, order), _in_input_order(dep, order), _in_input_order(srv, order)
    )


def batching_servers(
    arrivals_s: ArrayLike,
    servers: int,
    max_batch: int,
    window_s: float,
    service_by_batch_s: ArrayLike | Callable[[IntArray], ArrayLike],
    *,
    service_model: Literal["deterministic", "exponential"] = "deterministic",
    rng: np.random.Generator | None = None,
) -> BatchSchedule:
    """Exact dynamic batching on ``servers`` identical servers (rule in the module docstring).

    ``service_by_batch_s[b - 1]`` is the service time of a batch of ``b`` frames,
    ``b = 1..max_batch``; a callable is evaluated once on ``np.arange(1, max_batch + 1)``.
    With ``service_model="exponential"`` the k-th batch (in dispatch order) takes
    ``service_by_batch_s[b - 1] * e[k]`` with ``e = rng.standard_exponential(len(arrivals))``,
    so a seed fixes the schedule. ``arrivals_s`` need not be sorted; results are per frame, in
    input order.
    """
    a = _check_arrivals(arrivals_s)
    if servers < 1:
        raise ValueError(f"servers must be >= 1, got {servers}")
    if max_batch < 1:
        raise ValueError(f"max_batch must be >= 1, got {max_batch}")
    if not (0.0 <= window_s < np.inf):
        raise ValueError(f"window_s must be finite and >= 0, got {window_s}")
    sizes = np.arange(1, max_batch + 1)
    table = np.ascontiguousarray(
        service_by_batch_s(sizes) if callable(service_by_batch_s) else service_by_batch_s,
        dtype=np.float64,
    )
    if table.shape != (max_batch,):
        raise ValueError(
            f"service_by_batch_s must give one time per batch size 1..{max_batch}, "
            f"got shape {table.shape}"
        )
    if not np.all((table >= 0.0) & np.isfinite(table)):
        raise ValueError("service_by_batch_s must be finite and >= 0")
    multiplier: FloatArray
    if service_model == "exponential":
        if rng is None:
            raise ValueError('service_model="exponential" needs rng (a numpy Generator)')
        # One draw per frame bounds the number of batches; only the first n_batches are used.
        multiplier = np.asarray(rng.standard_exponential(a.shape[0]), dtype=np.float64)
    elif service_model == "deterministic":
        multiplier = np.empty(0)
    else:
        raise ValueError(
            f"service_model must be 'deterministic' or 'exponential', got {service_model!r}"
        )

    a, order = _sorted_arrivals(a)
    start, dep, batch_id, size = _batching_kernel(
        a, int(servers), int(max_batch), float(window_s), table, multiplier
    )
    return BatchSchedule(
        _in_input_order(start, order),
        _in_input_order(dep, order),
        _in_input_order(batch_id, order),
        _in_input_order(size, order),
    )


# --------------------------------------------------------------------------------------
# Sample-path statistics
# --------------------------------------------------------------------------------------


def time_average_count(
    begin_s: ArrayLike, end_s: ArrayLike, t0: float, t1: float, bins: int = 1
) -> FloatArray:
    """Time-average number of intervals ``[begin, end)`` that are open, per bin of [t0, t1).

    With (arrival, departure) this is the mean number in system L; with (arrival, start) the
    mean queue length; with (start, departure) the mean number of busy servers. Each
    interval's overlap with each bin is added exactly (whole bins by a difference array), so
    the result does not suffer from cancellation in large prefix sums.
    """
    b = np.asarray(begin_s, dtype=np.float64).ravel()
    e = np.asarray(end_s, dtype=np.float64).ravel()
    if b.shape != e.shape:
        raise ValueError(f"begin_s and end_s differ in size: {b.size} != {e.size}")
    if not (t1 > t0) or bins < 1:
        raise ValueError(f"need t1 > t0 and bins >= 1, got t0={t0}, t1={t1}, bins={bins}")
    width = (t1 - t0) / bins
    edges = t0 + width * np.arange(bins + 1)
    edges[-1] = t1
    b = np.clip(b, t0, t1)
    e = np.clip(e, t0, t1)
    keep = e > b
    b, e = b[keep], e[keep]
    # Bin of each end point; an end exactly on an edge belongs to the bin on its left so
    # that a whole-bin interval is counted as covering that bin, not as a partial overlap.
    kb = np.clip(np.searchsorted(edges, b, side="right") - 1, 0, bins - 1)
    ke = np.clip(np.searchsorted(edges, e, side="left") - 1, 0, bins - 1)
    same = kb == ke
    total = np.zeros(bins)
    total += np.bincount(kb[same], weights=e[same] - b[same], minlength=bins)
    kb, ke, b, e = kb[~same], ke[~same], b[~same], e[~same]
    total += np.bincount(kb, weights=edges[kb + 1] - b, minlength=bins)
    total += np.bincount(ke, weights=e - edges[ke], minlength=bins)
    # Bins strictly between kb and ke are covered whole.
    cover = np.bincount(kb + 1, minlength=bins + 1) - np.bincount(ke, minlength=bins + 1)
    total += np.cumsum(cover[:bins]) * np.diff(edges)
    return total / np.diff(edges)


def utilization(
    start_s: ArrayLike, departures_s: ArrayLike, servers: int, t0: float, t1: float, bins: int = 1
) -> FloatArray:
    """Fraction of ``servers`` busy in each of ``bins`` equal bins of [t0, t1).

    Pass one (start, end) pair per busy period of a server: per job for
    :func:`multi_server_fifo`; per batch for :func:`batching_servers` (e.g. the frames at
    ``np.unique(batch_id, return_index=True)[1]``).
    """
    if servers < 1:
        raise ValueError(f"servers must be >= 1, got {servers}")
    return time_average_count(start_s, departures_s, t0, t1, bins) / servers


def queue_length_samples(
    arrivals_s: ArrayLike, start_s: ArrayLike, departures_s: ArrayLike, times_s: ArrayLike
) -> QueueSamples:
    """Number of jobs waiting, in service and in system at each instant of ``times_s``."""
    times = np.asarray(times_s, dtype=np.float64)

    def count_at_or_before(events_s: ArrayLike) -> IntArray:
        events = np.sort(np.asarray(events_s, dtype=np.float64).ravel())
        return np.searchsorted(events, times, side="right").astype(np.int64)

    arrived = count_at_or_before(arrivals_s)
    started = count_at_or_before(start_s)
    departed = count_at_or_before(departures_s)
    return QueueSamples(arrived - started, started - departed, arrived - departed)
