"""Throughput of the queueing kernels (simulator.queues, the fluid link) at fleet scale.

Each block runs after a small warm-up (numba compilation) and is timed twice; the better
run is printed: wall time, process CPU time (less sensitive to other load on the machine),
frames per second of wall time, and the peak growth of resident memory during the call
(RSS sampled every 2 ms from /proc/self/statm, plus at start and end).

    python benchmarks/queues_core.py [--cameras 10000] [--frames 3000] [--trace PATH]
"""

from __future__ import annotations

import argparse
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from simulator.links import load_curve
from simulator.queues import BatchingServers, lindley_rows, stable_sort
from simulator.uplink import CapacityCurve

FPS = 5.0
DEFAULT_TRACE = Path("/work/shared/traces/ATT-LTE-driving.up")
PAGE_BYTES = os.sysconf("SC_PAGE_SIZE")


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE_BYTES


class PeakRSS:
    """Largest resident-memory growth above the level at entry, sampled in a thread."""

    def __init__(self, period_s: float = 0.002) -> None:
        self.period_s = period_s
        self.peak_growth = 0
        self._stop = threading.Event()

    def __enter__(self) -> PeakRSS:
        self._base = rss_bytes()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()
        return self

    def _poll(self) -> None:
        while not self._stop.is_set():
            self.peak_growth = max(self.peak_growth, rss_bytes() - self._base)
            time.sleep(self.period_s)

    def __exit__(self, *exc: object) -> None:
        self.peak_growth = max(self.peak_growth, rss_bytes() - self._base)
        self._stop.set()
        self._thread.join()


def measure(name: str, frames: int, call: Callable[[], Any], repeats: int = 2) -> None:
    """Print the best of ``repeats`` runs (the first also pays first-touch page faults)."""
    best = (np.inf, np.inf, 0)
    for _ in range(repeats):
        with PeakRSS() as mem:
            wall0, cpu0 = time.perf_counter(), time.process_time()
            result = call()
            wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
        del result
        best = min(best, (wall, cpu, mem.peak_growth))
    wall, cpu, peak = best
    print(
        f"{name:58s} {frames / 1e6:6.1f} M {wall:7.2f} s {cpu:7.2f} s "
        f"{frames / wall / 1e6:8.2f} M/s {peak / 2**20:8.0f} MiB",
        flush=True,
    )


def camera_arrivals(rng: np.random.Generator, cams: int, per_cam: int) -> np.ndarray:
    """Periodic cameras at 5 fps, each with a random phase: (cameras, frames) seconds."""
    return np.arange(per_cam) / FPS + rng.uniform(0, 1 / FPS, (cams, 1))


def lindley_by_rows(arrivals_s: np.ndarray, service_s: np.ndarray) -> np.ndarray:
    """The camera shards' edge queue: :func:`lindley_rows` over one CSR row per camera."""
    cams, per_cam = arrivals_s.shape
    row_ptr = np.arange(cams + 1, dtype=np.int64) * per_cam
    carry = np.full(cams, -np.inf)
    return lindley_rows(arrivals_s.ravel(), service_s.ravel(), row_ptr, carry)


def bench_edge(rng: np.random.Generator, cams: int, per_cam: int) -> None:
    """Edge compute: one FIFO per camera, head latency ~ 0.8 of the frame interval."""
    arrivals_s = camera_arrivals(rng, cams, per_cam)
    head_s = rng.exponential(0.8 / FPS, (cams, per_cam))
    lindley_by_rows(arrivals_s[:10], head_s[:10])
    measure(
        "lindley_rows (camera shards: numba loop per row)",
        arrivals_s.size,
        lambda: lindley_by_rows(arrivals_s, head_s),
    )


def fluid_link_by_rows(
    curve: CapacityCurve, arrivals_s: np.ndarray, bits: np.ndarray, offset_s: np.ndarray
) -> np.ndarray:
    """The camera shards' uplink: the Lindley rows in bits over the trace's capacity curve."""
    cams, per_cam = arrivals_s.shape
    phase_s = arrivals_s + offset_s[:, None]
    level = curve.cumulative_bits_before(phase_s).ravel()
    row_ptr = np.arange(cams + 1, dtype=np.int64) * per_cam
    level = lindley_rows(level, bits.ravel(), row_ptr, np.full(cams, -np.inf))
    departures = curve.time_of_bits(level).reshape(cams, per_cam) - offset_s[:, None]
    return np.maximum(departures, arrivals_s)


def bench_uplink(rng: np.random.Generator, cams: int, per_cam: int, trace: Path) -> None:
    """Uplink: every camera on one real trace with a random phase, ~60 % load."""
    if not trace.is_file():
        print(f"fluid link skipped: no trace at {trace}")
        return
    _, curve = load_curve(str(trace))  # as the simulator reads it: impulses
    arrivals_s = camera_arrivals(rng, cams, per_cam)
    bits = rng.uniform(0.2, 1.8, (cams, per_cam)) * 0.6 * curve.mean_rate_bps / FPS
    offset_s = rng.uniform(0, curve.period_s, cams)
    fluid_link_by_rows(curve, arrivals_s[:10], bits[:10], offset_s[:10])
    measure(
        f"fluid link by rows ({trace.name}, {curve.knot_times_s.size} knots)",
        arrivals_s.size,
        lambda: fluid_link_by_rows(curve, arrivals_s, bits, offset_s),
    )


def bench_cloud(rng: np.random.Generator, cams: int, per_cam: int) -> None:
    """Cloud: all cameras merged (50,000 frames/s at 10,000 cameras), one tail."""
    camera_major_s = camera_arrivals(rng, cams, per_cam).ravel()  # sorted within cameras
    stable_sort(camera_major_s[:100])
    measure(
        "stable_sort (a shard's frames into arrival order)",
        camera_major_s.size,
        lambda: stable_sort(camera_major_s),
    )
    merged_s = np.sort(camera_major_s)
    n = merged_s.size
    tail = np.zeros(n, dtype=np.int32)

    def dispatch(servers: int, max_batch: int, window_s: float, batch_s: Any, exp: bool) -> Any:
        site = BatchingServers(servers, max_batch, window_s, [batch_s], exponential=exp)
        return site.dispatch(merged_s, tail)

    # Batches of one on 64 servers, exponential service at rho = 0.8: M/M/64.
    mean_s = 0.8 * 64 / (cams * FPS)
    dispatch(64, 1, 0.0, [mean_s], True)
    measure(
        "BatchingServers c=64 B=1 (exponential: M/M/c)",
        n,
        lambda: dispatch(64, 1, 0.0, [mean_s], True),
    )
    # Dynamic batching: 32 servers, batches up to 16, 2 ms window, 1 ms + 0.5 ms per frame.
    table_s = 1e-3 + 0.5e-3 * np.arange(1, 17)
    measure(
        "BatchingServers c=32 B=16 window 2 ms (deterministic)",
        n,
        lambda: dispatch(32, 16, 2e-3, table_s, False),
    )
    measure(
        "BatchingServers c=32 B=16 window 2 ms (exponential)",
        n,
        lambda: dispatch(32, 16, 2e-3, table_s, True),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cameras", type=int, default=10_000)
    parser.add_argument("--frames", type=int, default=3_000, help="frames per camera")
    parser.add_argument("--trace", type=Path, default=DEFAULT_TRACE, help="Mahimahi uplink trace")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    print(f"cpu cores: {os.cpu_count()}, load average: {os.getloadavg()[0]:.2f}")
    print(
        f"{'block':58s} {'frames':>8s} {'wall':>9s} {'cpu':>9s} {'frames/s':>12s} "
        f"{'peak RSS+':>12s}"
    )
    bench_edge(rng, args.cameras, args.frames)
    bench_uplink(rng, args.cameras, args.frames, args.trace)
    bench_cloud(rng, args.cameras, args.frames)


if __name__ == "__main__":
    main()
