"""The fleet core against references: arrivals, edge queue, uplink, cloud site, windows."""

from __future__ import annotations

import math
from collections import deque
from typing import Any

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from simulator import streams
from simulator.camera import (
    CameraShard,
    FrameBatch,
    _arrivals,
    lindley_rows,
    lindley_rows_limited,
)
from simulator.fleet import compile_scenario
from simulator.queues import batching_servers, multi_server_fifo
from simulator.scenario import scenario_from_dict
from simulator.site import dispatch_batches, merge_batches
from simulator.uplink import fluid_fifo_departures, fluid_fifo_departures_reference

PROPERTY = settings(max_examples=60, deadline=None, derandomize=True)


def row_ptr(counts: list[int]) -> np.ndarray:
    return np.concatenate(([0], np.cumsum(counts))).astype(np.int64)


# --------------------------------------------------------------------------- camera kernels


def test_periodic_and_poisson_arrivals_do_not_depend_on_windows() -> None:
    key = streams.seed_key(5)
    tag = np.int64(streams.stream_tag(2, streams.ARRIVAL))
    cams = np.arange(4, dtype=np.int64)
    start = np.array([0.0, 0.05, 0.1, 0.19])
    for kind, rate in ((0, 5.0), (1, 5.0)):
        one = []
        for edges in ([10.0], [1.3, 2.0, 7.77, 10.0]):
            k = np.zeros(4, dtype=np.int64)
            t = start.copy() if kind == 0 else start + 0.1
            frames: list[list[tuple[float, int]]] = [[] for _ in range(4)]
            for t_end in edges:
                ptr, times, index = _arrivals(kind, k, t, start, rate, *key, tag, cams, t_end)
                for c in range(4):
                    frames[c] += list(
                        zip(times[ptr[c] : ptr[c + 1]], index[ptr[c] : ptr[c + 1]], strict=True)
                    )
            one.append(frames)
        assert one[0] == one[1]
        if kind == 0:  # exactly start + k / rate
            for c in range(4):
                assert [t for t, _ in one[0][c]] == [
                    start[c] + i * 0.2 for i in range(len(one[0][c]))
                ]
                assert len(one[0][c]) == 50


def test_lindley_rows_equals_the_loop_and_carries_state() -> None:
    rng = np.random.default_rng(0)
    counts = [5, 0, 7, 3]
    a = np.concatenate([np.sort(rng.uniform(0, 2, n)) for n in counts])
    s = rng.uniform(0, 0.5, a.size)
    carry = np.array([-np.inf, 1.0, 0.5, 10.0])
    got = lindley_rows(a, s, row_ptr(counts), carry.copy())
    ptr = row_ptr(counts)
    for r in range(4):
        d = [-np.inf, 1.0, 0.5, 10.0][r]
        for i in range(ptr[r], ptr[r + 1]):
            d = max(a[i], d) + s[i]
            assert got[i] == d


@PROPERTY
@given(
    gaps=st.lists(st.floats(0.0, 0.3), min_size=1, max_size=60),
    service=st.floats(0.0, 0.5),
    limit=st.integers(1, 3),
)
def test_edge_queue_limit_drops_like_a_bounded_buffer(gaps, service, limit) -> None:
    a = np.cumsum(gaps)
    ring = np.full((1, limit), -np.inf)
    got = lindley_rows_limited(
        a,
        np.full(a.size, service),
        row_ptr([a.size]),
        np.array([-np.inf]),
        ring,
        np.zeros(1, np.int64),
    )
    departures: list[float] = []  # of accepted frames
    for i, t in enumerate(a):
        in_system = sum(d > t for d in departures)
        if in_system >= limit:
            assert math.isnan(got[i])
            continue
        d = max(t, departures[-1] if departures else -math.inf) + service
        departures.append(d)
        assert got[i] == d


# --------------------------------------------------------------------------- uplink


def uplink_scenario(window_s: float, rtt_ms: float = 0.0) -> dict[str, Any]:
    return {
        "name": "uplink",
        "seed": 9,
        "duration_s": 40,
        "window_s": window_s,
        "policy": {"name": "fixed", "cut_after": "relu1"},  # 8 KB a frame
        "fleet": [
            {
                "name": "cams",
                "count": 6,
                "fps": 10,
                "model": "digits_cnn",
                "device": "rpi4",
                "network": {
                    "traces": ["Verizon-LTE-short", "TMobile-LTE-short", "ATT-LTE-driving"],
                    "rtt_ms": rtt_ms,
                },
            }
        ],
        "cloud": [{"name": "dc", "servers": 64}],
    }


def test_uplink_matches_the_per_frame_event_loop_on_real_traces() -> None:
    plan = compile_scenario(scenario_from_dict(uplink_scenario(3.7)))
    group = plan.groups[0]
    option = group.options[0]
    assert option.wire_bits == 8 * 8192 and option.uses_cloud
    shard = CameraShard(plan, 0, group.count)
    batches = [shard.step(t_end)[0] for _, t_end in plan.windows]
    frames = FrameBatch.concat(batches)
    links = group.link.cameras(plan.seed, 0, np.arange(group.count))
    checked = 0
    for c in range(group.count):
        mine = frames.gid == c
        order = np.argsort(frames.frame[mine])
        sent = frames.arrival_s[mine][order]  # rtt 0: arrival at the site = last bit sent
        # 10 fps and a head shorter than 100 ms: each frame enters its uplink when its
        # head is done, right after capture.
        enter = frames.t_gen_s[mine][order] + option.edge_s
        curve = group.link.curves[links.curve[c]]
        bits = np.full(enter.size, option.wire_bits)
        reference = fluid_fifo_departures_reference(curve, enter, bits, links.offset_s[c])
        np.testing.assert_allclose(sent, reference, rtol=0, atol=1e-9)
        vectorised = fluid_fifo_departures(curve, enter, bits, links.offset_s[c])
        np.testing.assert_allclose(sent, vectorised, rtol=0, atol=1e-9)
        checked += enter.size
    assert checked == 6 * 400
    # The links were busy: queueing happened on at least one trace.
    assert np.max(frames.arrival_s - frames.t_gen_s) > 1.0


# --------------------------------------------------------------------------- cloud site


def dispatch(a, queue, n_queues, servers, max_batch, window_s, table, t_end=np.inf, state=None):
    free, server, k = state or (np.full(servers, -np.inf), np.arange(servers), 0)
    start, end, _, _, b_size, k = dispatch_batches(
        np.asarray(a, dtype=np.float64), np.asarray(queue, dtype=np.int32), n_queues, free, server,
        max_batch, window_s, np.asarray(table, dtype=np.float64).reshape(n_queues, max_batch),
        False, np.uint64(0), np.uint64(0), np.int64(0), k, float(t_end),
    )  # fmt: skip
    return start, end, b_size, (free, server, k)


def test_one_tail_is_exactly_batching_servers() -> None:
    rng = np.random.default_rng(3)
    a = np.sort(rng.exponential(0.01, 5000).cumsum())
    table = [0.02, 0.025, 0.028, 0.03]
    start, end, _, _ = dispatch(a, np.zeros(a.size), 1, 3, 4, 0.004, table)
    ref = batching_servers(a, 3, 4, 0.004, table)
    np.testing.assert_array_equal(start, ref.start_s)
    np.testing.assert_array_equal(end, ref.departures_s)


def test_batches_of_one_over_several_tails_are_a_fcfs_c_server_queue() -> None:
    rng = np.random.default_rng(4)
    a = np.sort(rng.exponential(0.01, 3000).cumsum())
    queue = rng.integers(0, 3, a.size)
    table = np.array([[0.02], [0.05], [0.031]])
    start, end, _, _ = dispatch(a, queue, 3, 2, 1, 0.0, table)
    ref = multi_server_fifo(a, table[queue, 0], 2)
    np.testing.assert_array_equal(start, ref.start_s)
    np.testing.assert_array_equal(end, ref.departures_s)


def event_reference(a, queue, n_queues, servers, max_batch, window_s, table):
    """Event-driven: at each instant, while a server is free and some tail has a ready
    batch (max_batch waiting, or its oldest frame waited window_s), the tail whose batch
    became ready first gets the server that has been free the longest."""
    n = len(a)
    waiting = [deque() for _ in range(n_queues)]
    free = [-math.inf] * servers
    start, end = [math.nan] * n, [math.nan] * n
    nxt, t = 0, -math.inf

    def ready_at(q):
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
        candidates = [a[nxt]] if nxt < n else []
        candidates += [ready_at(q) for q in range(n_queues) if waiting[q]]
        candidates += [f for f in free if f > t]
        later = [c for c in candidates if c > t]
        if not later:
            break
        t = min(later)
    return start, end


@PROPERTY
@given(
    gaps=st.lists(st.sampled_from([0.0, 0.001, 0.002, 0.005, 0.013]), min_size=1, max_size=60),
    queues=st.lists(st.integers(0, 2), min_size=60, max_size=60),
    servers=st.integers(1, 3),
    max_batch=st.integers(1, 4),
    window_s=st.sampled_from([0.0, 0.002, 0.004]),
)
def test_several_tails_match_the_event_driven_batcher(gaps, queues, servers, max_batch, window_s):
    a = np.cumsum(gaps)
    q = np.array(queues[: a.size])
    table = [[0.004 + 0.002 * b + 0.003 * k for b in range(max_batch)] for k in range(3)]
    start, end, _, _ = dispatch(a, q, 3, servers, max_batch, window_s, table)
    ref_start, ref_end = event_reference(list(a), list(q), 3, servers, max_batch, window_s, table)
    np.testing.assert_allclose(start, ref_start, rtol=0, atol=1e-12)
    np.testing.assert_allclose(end, ref_end, rtol=0, atol=1e-12)


def test_windows_with_carried_state_change_nothing() -> None:
    rng = np.random.default_rng(6)
    a = np.sort(rng.exponential(0.004, 4000).cumsum())
    q = rng.integers(0, 2, a.size).astype(np.int32)
    table = np.array([[0.01, 0.012, 0.013], [0.02, 0.021, 0.03]])
    whole_start, whole_end, _, _ = dispatch(a, q, 2, 2, 3, 0.003, table)
    start, end = np.full(a.size, np.nan), np.full(a.size, np.nan)
    pending = np.zeros(0, dtype=np.int64)
    state, lo = None, -np.inf
    for t_end in [*np.linspace(1.0, a[-1], 7)[:-1], np.inf]:
        # By t_end every arrival before it is known; the waiting frames come first.
        idx = np.concatenate((pending, np.flatnonzero((a >= lo) & (a < t_end))))
        s, e, _, state = dispatch(a[idx], q[idx], 2, 2, 3, 0.003, table, t_end, state)
        done = ~np.isnan(s)
        start[idx[done]], end[idx[done]] = s[done], e[done]
        pending, lo = idx[~done], t_end
    assert state[2] > 0  # batches were numbered across windows
    np.testing.assert_array_equal(start, whole_start)
    np.testing.assert_array_equal(end, whole_end)


def test_merge_orders_by_time_camera_and_frame() -> None:
    def batch(t, g, k):
        n = len(t)
        return FrameBatch(
            np.array(t, float), np.array(g), np.array(k), np.zeros(n, np.int32), np.zeros(n)
        )

    merged = merge_batches(
        [
            batch([1.0, 2.0, 2.0], [5, 1, 5], [0, 0, 1]),
            batch([0.5, 2.0, 2.0, 3.0], [2, 1, 3, 0], [0, 1, 0, 0]),
        ]
    )
    assert list(zip(merged.arrival_s, merged.gid, merged.frame, strict=True)) == [
        (0.5, 2, 0), (1.0, 5, 0), (2.0, 1, 0), (2.0, 1, 1), (2.0, 3, 0), (2.0, 5, 1), (3.0, 0, 0)
    ]  # fmt: skip
