"""Trace replay: a link's rate follows a bandwidth trace over time.

A trace (a packaged name or a file: Mahimahi ``.up`` or ``[seconds, Mbit/s]`` pairs) is read
by the partitioner's one trace loader (:func:`partitioner.pricing.network.load_trace`) and
averaged over steps of ``step_s`` (:meth:`BandwidthTrace.mbps_per_window`); a background
thread sets the tbf rate to each step's mean at its time (``tc qdisc change``), from
``start_s`` into the trace, and repeats the trace after its end as Mahimahi does. A Mahimahi
trace delivers in 1500-byte bursts each millisecond: averaging over a step is what a token
bucket can replay (the simulator keeps the byte-exact impulses; at steps of 1 s the two
agree within the step's burstiness).

    replay = TraceReplay(link, load_trace("ATT-LTE-driving"), step_s=1.0)
    with replay:
        ...  # frames flow while the rate changes
    replay.applied  # [(seconds since start, Mbit/s), ...]
"""

from __future__ import annotations

import threading
import time

import numpy as np

from edgecut.testbed.link import MIN_RATE_MBIT, Link
from partitioner.pricing.network import BandwidthTrace


def step_rates(trace: BandwidthTrace, step_s: float, start_s: float = 0.0) -> np.ndarray:
    """Mean Mbit/s of each step of ``step_s`` over one period, starting ``start_s`` in."""
    rates = trace.mbps_per_window(step_s)
    shift = round(start_s / step_s) % max(len(rates), 1)
    return np.roll(rates, -shift)


class TraceReplay:
    """Drives ``link``'s rate from ``trace`` in a thread while the context is open."""

    def __init__(
        self,
        link: Link,
        trace: BandwidthTrace,
        *,
        step_s: float = 1.0,
        start_s: float = 0.0,
    ) -> None:
        if not step_s > 0:
            raise ValueError(f"step_s must be > 0, got {step_s}")
        self.link = link
        self.trace = trace
        self.step_s = step_s
        self.rates_mbps = np.maximum(step_rates(trace, step_s, start_s), MIN_RATE_MBIT)
        self.applied: list[tuple[float, float]] = []
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.started_s = 0.0

    def rate_at(self, elapsed_s: float) -> float:
        """The Mbit/s the replay sets ``elapsed_s`` after it started."""
        return float(self.rates_mbps[int(elapsed_s // self.step_s) % len(self.rates_mbps)])

    def start(self) -> None:
        self.link.set_rate(float(self.rates_mbps[0]))
        self.started_s = time.monotonic()
        self.applied.append((0.0, float(self.rates_mbps[0])))
        self._thread = threading.Thread(target=self._loop, name="trace-replay", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        k = 1
        while not self._stop.wait(max(0.0, self.started_s + k * self.step_s - time.monotonic())):
            rate = float(self.rates_mbps[k % len(self.rates_mbps)])
            try:
                self.link.set_rate(rate)
            except BaseException as exc:  # reported by stop(); the link is closed by its owner
                self.error = exc
                return
            self.applied.append((time.monotonic() - self.started_s, rate))
            k += 1

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self.error is not None:
            raise self.error

    def __enter__(self) -> TraceReplay:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
