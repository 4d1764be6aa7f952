"""Tests of simulator.queues: the kernels against references, by hand, and queueing theory."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simulator import streams
from simulator.queues import (
    BatchingServers,
    Dispatched,
    lindley_rows,
    lindley_rows_limited,
    stable_sort,
)
from tests.simulator.oracles import (
    batching_reference,
    fifo_departures,
    lindley_double_double,
    lindley_loop,
    multi_server_reference,
)

# Derandomized: the same examples on every run, so CI cannot flake on a new draw.
PROPERTY = settings(max_examples=100, deadline=None, derandomize=True)


def row_ptr(counts: list[int]) -> np.ndarray:
    return np.concatenate(([0], np.cumsum(counts))).astype(np.int64)


def by_lindley_rows(arrivals: np.ndarray, service: np.ndarray | float) -> np.ndarray:
    """:func:`lindley_rows` over each row of a 1-D or 2-D array, every queue idle at first."""
    a = np.asarray(arrivals, dtype=np.float64)
    rows = np.ascontiguousarray(a.reshape(-1, a.shape[-1]))
    s = np.ascontiguousarray(np.broadcast_to(service, a.shape), dtype=np.float64)
    ptr = np.arange(rows.shape[0] + 1, dtype=np.int64) * rows.shape[1]
    carry = np.full(rows.shape[0], -np.inf)
    return lindley_rows(rows.ravel(), s.ravel(), ptr, carry).reshape(a.shape)


# ------------------------------------------------------------------------- strategies

# Gaps drawn from a few exact values as well as arbitrary floats, to produce ties.
gaps = st.one_of(st.sampled_from([0.0, 0.25, 0.5, 1.0]), st.floats(0.0, 3.0))
durations = st.one_of(st.sampled_from([0.0, 0.5, 1.0, 1.5]), st.floats(0.0, 3.0))


@st.composite
def arrival_service(draw: st.DrawFn, max_size: int = 60) -> tuple[list[float], list[float]]:
    n = draw(st.integers(1, max_size))
    arrivals = np.cumsum(draw(st.lists(gaps, min_size=n, max_size=n))).tolist()
    service = draw(st.lists(durations, min_size=n, max_size=n))
    return arrivals, service


# ------------------------------------------------------------------------- one FIFO per camera


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


@settings(max_examples=60, deadline=None, derandomize=True)
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


# ------------------------------------------------------------------------- fifo, closed form


@PROPERTY
@given(arrival_service(120), st.sampled_from([1, 2, 3, 7, 64, 1024]))
def test_fifo_matches_lindley_loop(data: tuple[list[float], list[float]], block: int) -> None:
    arrivals, service = data
    got = fifo_departures(np.array(arrivals), np.array(service), block=block)
    np.testing.assert_allclose(got, lindley_loop(arrivals, service), rtol=0, atol=1e-9)


@PROPERTY
@given(arrival_service(40))
def test_fifo_serves_in_index_order_when_unsorted(data: tuple[list[float], list[float]]) -> None:
    arrivals, service = data
    shuffled = np.random.default_rng(len(arrivals)).permutation(arrivals).tolist()
    got = fifo_departures(np.array(shuffled), np.array(service), block=4)
    np.testing.assert_allclose(got, lindley_loop(shuffled, service), rtol=0, atol=1e-9)


def test_fifo_is_exact_on_dyadic_inputs() -> None:
    # Multiples of 2^-10 below 2^40: every sum is exact, so both forms agree bit for bit.
    rng = np.random.default_rng(11)
    arrivals = np.cumsum(rng.integers(0, 300, 50_000)) / 1024.0
    service = rng.integers(0, 400, 50_000) / 1024.0
    expected = lindley_loop(arrivals.tolist(), service.tolist())
    np.testing.assert_array_equal(fifo_departures(arrivals, service), expected)
    np.testing.assert_array_equal(fifo_departures(arrivals, service, block=5), expected)
    np.testing.assert_array_equal(by_lindley_rows(arrivals, service), expected)


def test_fifo_2d_equals_row_by_row() -> None:
    rng = np.random.default_rng(3)
    for rows, cols in [(1, 1), (5, 1), (37, 2500), (3, 70_000)]:
        arrivals = np.cumsum(rng.exponential(0.2, (rows, cols)), axis=1)
        service = rng.exponential(0.18, (rows, cols))
        got = fifo_departures(arrivals, service)
        for r in range(rows):
            np.testing.assert_array_equal(got[r], fifo_departures(arrivals[r], service[r]))
        np.testing.assert_allclose(got, by_lindley_rows(arrivals, service), rtol=0, atol=1e-9)


def test_fifo_broadcasts_service_and_ignores_inf_padding() -> None:
    arrivals = np.array([[0.0, 0.5, 3.0, np.inf], [1.0, 1.0, 1.0, 1.0]])
    got = fifo_departures(arrivals, 1.0)
    np.testing.assert_array_equal(got, [[1.0, 2.0, 4.0, np.inf], [2.0, 3.0, 4.0, 5.0]])
    assert fifo_departures(np.empty(0), 1.0).shape == (0,)
    with pytest.raises(ValueError, match="service_s"):
        fifo_departures(np.zeros(3), [1.0, -1.0, 1.0])
    with pytest.raises(ValueError, match="1-D or 2-D"):
        fifo_departures(np.zeros((2, 2, 2)), 1.0)


def test_fifo_long_row_error_stays_at_ulp_level() -> None:
    # 10^6 jobs at rho = 0.95 starting at 10^5 s: the blocked closed form stays within a few
    # ulps of the exact departures (a plain float Lindley loop drifts further).
    rng = np.random.default_rng(5)
    arrivals = 1e5 + np.cumsum(rng.exponential(0.2, 1_000_000))
    service = rng.exponential(0.19, 1_000_000)
    exact = lindley_double_double(arrivals, service)
    err = np.max(np.abs(fifo_departures(arrivals, service) - exact))
    assert err <= 4 * np.spacing(exact[-1])


# ------------------------------------------------------------------------- arrival order


@PROPERTY
@given(
    st.lists(
        st.one_of(
            st.sampled_from([0.0, -0.0, 1.0, -1.0, 5e-324, -5e-324]),
            st.floats(allow_nan=False, allow_infinity=False),
        ),
        min_size=1,
        max_size=60,
    )
)
def test_stable_sort_equals_numpy(values: list[float]) -> None:
    x = np.array(values)
    order, sorted_x = stable_sort(x)
    np.testing.assert_array_equal(order, np.argsort(x, kind="stable"))
    np.testing.assert_array_equal(sorted_x, np.sort(x))  # -0.0 == 0.0


# ------------------------------------------------------------------------- batching servers


def serve(
    arrivals, servers: int, max_batch: int, window_s: float, table, queue=None, **service
) -> Dispatched:
    """One pass of a site's servers; ``table`` is one tail's row, or one row per tail."""
    a = np.asarray(arrivals, dtype=np.float64)
    batch_s = np.atleast_2d(np.asarray(table, dtype=np.float64))
    q = np.zeros(a.size, np.int32) if queue is None else np.asarray(queue, np.int32)
    return BatchingServers(servers, max_batch, window_s, batch_s, **service).dispatch(a, q)


TABLE = [0.625, 0.75, 0.875, 1.0]  # 0.5 + 0.125 * b seconds, exact in binary


def test_batching_hand_example_one_server() -> None:
    # max_batch 4, window 0.25 s, service 0.5 + 0.125 b:
    # batch 0: head 0.0, ready min(0.25, a[3]=0.5) = 0.25, server idle -> starts 0.25 with
    #          the two frames there by then; ends 0.25 + 0.75 = 1.0
    # batch 1: head 0.5, ready min(0.75, a[5]=0.75) = 0.75, server busy until 1.0 -> starts
    #          1.0; five frames are waiting, it takes the oldest 4; ends 2.0
    # batch 2: head 0.875, ready 1.125, server free at 2.0 -> starts 2.0 alone; ends 2.625
    # batch 3: head 3.0 on an idle server waits out its window: 3.25 -> 3.875
    arrivals = [0.0, 0.125, 0.5, 0.5, 0.625, 0.75, 0.875, 3.0]
    got = serve(arrivals, 1, 4, 0.25, TABLE)
    np.testing.assert_array_equal(got.start_s, [0.25, 0.25, 1, 1, 1, 1, 2, 3.25])
    np.testing.assert_array_equal(got.end_s, [1, 1, 2, 2, 2, 2, 2.625, 3.875])
    np.testing.assert_array_equal(got.batch_start_s, [0.25, 1, 2, 3.25])
    np.testing.assert_array_equal(got.batch_end_s, [1, 2, 2.625, 3.875])
    np.testing.assert_array_equal(got.batch_size, [2, 4, 1, 1])


def test_batching_full_batch_closes_before_window() -> None:
    # max_batch 2, window 1 s: the second frame fills the batch at 0.25 (an arrival at
    # exactly the start instant joins); the third frame waits its whole window.
    got = serve([0.0, 0.25, 0.5], 1, 2, 1.0, [0.5, 0.5])
    np.testing.assert_array_equal(got.start_s, [0.25, 0.25, 1.5])
    np.testing.assert_array_equal(got.batch_size, [2, 1])


def test_batching_zero_window_several_servers() -> None:
    # Window 0: a batch is ready when its first frame arrives and takes whatever is there.
    # Five simultaneous frames on two servers: batches of 3 and 2 start at once; the late
    # frame waits for the earliest free server.
    got = serve([0.0, 0.0, 0.0, 0.0, 0.0, 0.5], 2, 3, 0.0, [1.0, 2.0, 3.0])
    np.testing.assert_array_equal(got.start_s, [0, 0, 0, 0, 0, 2.0])
    np.testing.assert_array_equal(got.end_s, [3, 3, 3, 2, 2, 3.0])
    np.testing.assert_array_equal(got.batch_size, [3, 2, 1])


def test_batches_of_one_hand_example() -> None:
    # Two servers, batches of one, each frame its own tail (its own service time): ties
    # in arrival keep the merged order; a frame takes the server that frees first.
    got = serve([0.0, 0.0, 0.0, 1.0, 5.0], 2, 1, 0.0, [[2.0], [3.0], [1.0], [1.0], [1.0]],
                queue=np.arange(5))  # fmt: skip
    np.testing.assert_array_equal(got.start_s, [0.0, 0.0, 2.0, 3.0, 5.0])
    np.testing.assert_array_equal(got.end_s, [2.0, 3.0, 3.0, 4.0, 6.0])


@PROPERTY
@given(arrival_service(60), st.integers(1, 5))
def test_batches_of_one_are_a_fcfs_c_server_queue(
    data: tuple[list[float], list[float]], servers: int
) -> None:
    # One tail per frame gives every frame its own service time.
    arrivals, service = data
    n = len(arrivals)
    got = serve(arrivals, servers, 1, 0.0, np.array(service)[:, None], queue=np.arange(n))
    start, dep = multi_server_reference(arrivals, service, servers)
    np.testing.assert_array_equal(got.start_s, start)
    np.testing.assert_array_equal(got.end_s, dep)


def test_batch_of_one_without_window_is_a_c_server_fifo() -> None:
    rng = np.random.default_rng(2)
    arrivals = np.cumsum(rng.exponential(0.3, 20_000))
    got = serve(arrivals, 3, 1, 0.0, [0.8])
    start, dep = multi_server_reference(arrivals.tolist(), [0.8] * arrivals.size, 3)
    np.testing.assert_array_equal(got.start_s, start)
    np.testing.assert_array_equal(got.end_s, dep)
    np.testing.assert_array_equal(got.batch_size, np.ones(arrivals.size))


def test_one_server_batches_of_one_is_the_lindley_recursion() -> None:
    rng = np.random.default_rng(8)
    arrivals = np.cumsum(rng.exponential(1.0, 10_000))
    got = serve(arrivals, 1, 1, 0.0, [0.9])
    np.testing.assert_array_equal(got.end_s, lindley_loop(arrivals.tolist(), [0.9] * 10_000))


def assert_matches_reference(got: Dispatched, ref, atol: float = 0.0) -> None:
    ref_start, ref_end, ref_batches = ref
    np.testing.assert_allclose(got.start_s, ref_start, rtol=0, atol=atol)
    np.testing.assert_allclose(got.end_s, ref_end, rtol=0, atol=atol)
    b_start, b_end, b_size = (np.array(col) for col in zip(*ref_batches, strict=True))
    np.testing.assert_allclose(got.batch_start_s, b_start, rtol=0, atol=atol)
    np.testing.assert_allclose(got.batch_end_s, b_end, rtol=0, atol=atol)
    np.testing.assert_array_equal(got.batch_size, b_size)


@PROPERTY
@given(
    st.lists(gaps, min_size=1, max_size=50),
    st.integers(1, 3),
    st.integers(1, 4),
    st.sampled_from([0.0, 0.25, 0.5, 1.0, 0.3]),
    st.lists(st.sampled_from([0.0, 0.25, 0.5, 1.0, 1.75, 0.7]), min_size=4, max_size=4),
)
def test_one_tail_matches_the_event_driven_batcher(
    gap_list: list[float], servers: int, max_batch: int, window_s: float, table: list[float]
) -> None:
    arrivals = np.cumsum(gap_list)
    table = sorted(table)[:max_batch]
    got = serve(arrivals, servers, max_batch, window_s, table)
    queue = [0] * arrivals.size
    ref = batching_reference(arrivals.tolist(), queue, 1, servers, max_batch, window_s, [table])
    assert_matches_reference(got, ref)


@settings(max_examples=60, deadline=None, derandomize=True)
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
    got = serve(a, servers, max_batch, window_s, table, queue=q)
    ref = batching_reference(list(a), list(q), 3, servers, max_batch, window_s, table)
    assert_matches_reference(got, ref, atol=1e-12)


@pytest.mark.parametrize("exponential", [False, True])
def test_windows_with_carried_state_change_nothing(exponential: bool) -> None:
    rng = np.random.default_rng(6)
    a = np.sort(rng.exponential(0.004, 4000).cumsum())
    q = rng.integers(0, 2, a.size).astype(np.int32)
    table = np.array([[0.01, 0.012, 0.013], [0.02, 0.021, 0.03]])

    def servers() -> BatchingServers:
        return BatchingServers(2, 3, 0.003, table, exponential=exponential, seed=8, stream=1)

    whole = servers().dispatch(a, q)
    site = servers()
    start, end = np.full(a.size, np.nan), np.full(a.size, np.nan)
    pending = np.zeros(0, dtype=np.int64)
    lo = -np.inf
    for t_end in [*np.linspace(1.0, a[-1], 7)[:-1], np.inf]:
        # By t_end every arrival before it is known; the waiting frames come first.
        idx = np.concatenate((pending, np.flatnonzero((a >= lo) & (a < t_end))))
        got = site.dispatch(a[idx], q[idx], t_end)
        done = ~np.isnan(got.start_s)
        start[idx[done]], end[idx[done]] = got.start_s[done], got.end_s[done]
        pending, lo = idx[~done], t_end
    assert site.next_batch == whole.batch_size.size  # numbered across windows
    np.testing.assert_array_equal(start, whole.start_s)
    np.testing.assert_array_equal(end, whole.end_s)


def test_exponential_service_draws_one_uniform_per_batch() -> None:
    rng = np.random.default_rng(4)
    arrivals = np.cumsum(rng.exponential(0.01, 5_000))
    table = [0.02, 0.03, 0.035, 0.04]
    runs = [
        serve(arrivals, 2, 4, 0.005, table, exponential=True, seed=9, stream=3) for _ in range(2)
    ]
    for field in Dispatched._fields:
        np.testing.assert_array_equal(getattr(runs[0], field), getattr(runs[1], field))
    # Batch k takes table[size - 1] times -log of the k-th uniform of the site's stream.
    got = runs[0]
    u = streams.uniforms(9, 3, streams.SERVICE, 0, np.arange(got.batch_size.size))
    expected = np.array(table)[got.batch_size - 1] * -np.log(u)
    np.testing.assert_allclose(got.batch_end_s - got.batch_start_s, expected, rtol=0, atol=1e-12)
    other = serve(arrivals, 2, 4, 0.005, table, exponential=True, seed=10, stream=3)
    assert not np.array_equal(other.end_s, got.end_s)


# ------------------------------------------------------------------------- queueing theory
# rho = 0.8 everywhere. Sample sizes were chosen so that the standard deviation of each
# estimate over seeds is <= 0.5 % (measured over 12-20 seeds), so 3 % is ~6 sigma or more.
# The cloud site's M/M/c queue is checked end to end (test_simulator_validation.py).

MU = 1.0  # services per second
RHO = 0.8


def test_mm1_mean_sojourn() -> None:
    rng = np.random.default_rng(20260101)
    n = 2_000_000
    lam = RHO * MU
    arrivals = np.cumsum(rng.exponential(1 / lam, n))
    departures = fifo_departures(arrivals, rng.exponential(1 / MU, n))
    assert np.mean(departures - arrivals) == pytest.approx(1 / (MU - lam), rel=0.03)


def test_md1_mean_wait_pollaczek_khinchine() -> None:
    rng = np.random.default_rng(20260102)
    n = 2_000_000
    arrivals = np.cumsum(rng.exponential(1 / (RHO * MU), n))
    departures = fifo_departures(arrivals, 1 / MU)
    expected = RHO / (2 * MU * (1 - RHO))
    assert np.mean(departures - 1 / MU - arrivals) == pytest.approx(expected, rel=0.03)
