"""Uplink bandwidth estimation from the edge node's own transfers.

Every ModelInfer sends a known number of bytes and takes a measured time. Of that time, the
server reports what it spent (queue + compute), and the base round trip is measured apart with
tiny pings (the minimum of recent ones: queueing only ever adds to it). What remains is the
time the bytes took on the uplink::

    transfer_s = elapsed_s - server_s - rtt_s          sample = bytes / transfer_s

Samples are smoothed as a ratio of two exponentially weighted sums (bits over seconds), so a
tiny transfer whose timing is mostly noise weighs as little as it carries. A call that ran
out of its deadline counts as a transfer that took at least that long.
"""

from __future__ import annotations

import collections
import math
import threading


class BandwidthEstimator:
    """Smoothed uplink estimate in Mbit/s, plus the base RTT in ms."""

    def __init__(
        self,
        *,
        alpha: float = 0.3,
        initial_mbps: float | None = None,
        rtt_window: int = 10,
        min_transfer_s: float = 50e-6,
    ) -> None:
        if not 0 < alpha <= 1:
            raise ValueError(f"alpha must be in (0, 1], got {alpha}")
        if initial_mbps is not None and not initial_mbps > 0:
            raise ValueError(f"initial_mbps must be > 0, got {initial_mbps}")
        self.alpha = alpha
        # Below this a transfer's duration is timer noise; it still counts, at this duration.
        self.min_transfer_s = min_transfer_s
        self._bits = 0.0
        self._seconds = 0.0
        self._samples = 0
        self._initial_mbps = initial_mbps
        self._rtts: collections.deque[float] = collections.deque(maxlen=rtt_window)
        self._lock = threading.Lock()
        self.last_sample_mbps: float | None = None

    @property
    def mbps(self) -> float | None:
        """The current estimate; the initial guess until the first transfer."""
        with self._lock:
            if self._samples == 0:
                return self._initial_mbps
            return self._bits / self._seconds / 1e6

    @property
    def rtt_ms(self) -> float:
        """Base round trip: the smallest of the recent pings (0 before any)."""
        with self._lock:
            return min(self._rtts) * 1e3 if self._rtts else 0.0

    @property
    def samples(self) -> int:
        return self._samples

    def add_rtt(self, rtt_s: float) -> None:
        if rtt_s >= 0 and math.isfinite(rtt_s):
            with self._lock:
                self._rtts.append(rtt_s)

    def add_transfer(self, payload_bytes: int, elapsed_s: float, server_s: float = 0.0) -> float:
        """Record one call; returns its sample in Mbit/s."""
        with self._lock:
            rtt_s = min(self._rtts) if self._rtts else 0.0
            transfer_s = max(elapsed_s - server_s - rtt_s, self.min_transfer_s)
            bits = 8.0 * payload_bytes
            if self._samples == 0:
                self._bits, self._seconds = bits, transfer_s
            else:
                a = self.alpha
                self._bits = (1 - a) * self._bits + a * bits
                self._seconds = (1 - a) * self._seconds + a * transfer_s
            self._samples += 1
            sample = bits / transfer_s / 1e6
            self.last_sample_mbps = sample
            return sample

    def add_timeout(self, payload_bytes: int, waited_s: float) -> float:
        """A call that did not finish in ``waited_s``: its bytes took at least that long."""
        return self.add_transfer(payload_bytes, waited_s, 0.0)
