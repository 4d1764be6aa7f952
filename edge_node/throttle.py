"""An emulated uplink inside the edge process: a token bucket in front of the send path.

``TokenBucket(rate_mbps=5, delay_ms=30)`` makes every ModelInfer wait, before it is sent, as
long as its bytes would take on a link of that rate (tokens refill at the rate, at most
``burst_bytes`` saved up while idle), plus a fixed one-way delay. It is how the demo plays a
network preset over loopback, and how tests throttle the uplink from fast to slow and back;
``set_rate`` changes it while frames flow. The real kernel limit (tc tbf) needs no code here.
"""

from __future__ import annotations

import threading
import time


class TokenBucket:
    """Delays sends to ``rate_mbps`` (None: unlimited) plus ``delay_ms``; thread-safe."""

    def __init__(
        self, rate_mbps: float | None, *, burst_bytes: int = 4 * 1500, delay_ms: float = 0.0
    ) -> None:
        if burst_bytes < 1:
            raise ValueError(f"burst_bytes must be >= 1, got {burst_bytes}")
        if delay_ms < 0:
            raise ValueError(f"delay_ms must be >= 0, got {delay_ms}")
        self.burst_bytes = burst_bytes
        self.delay_ms = delay_ms
        self._lock = threading.Lock()
        self._rate_bps: float | None = None
        self._tokens = float(burst_bytes)
        self._stamp = time.monotonic()
        self.set_rate(rate_mbps)

    @property
    def rate_mbps(self) -> float | None:
        return None if self._rate_bps is None else self._rate_bps / 1e6

    def set_rate(self, rate_mbps: float | None) -> None:
        if rate_mbps is not None and not rate_mbps > 0:
            raise ValueError(f"rate must be > 0 Mbit/s (or None), got {rate_mbps}")
        with self._lock:
            self._refill(time.monotonic())
            self._rate_bps = None if rate_mbps is None else rate_mbps * 1e6

    def _refill(self, now: float) -> None:
        if self._rate_bps is None:
            self._tokens = float(self.burst_bytes)
        else:
            elapsed = now - self._stamp
            self._tokens = min(self.burst_bytes, self._tokens + elapsed * self._rate_bps / 8)
        self._stamp = now

    def reserve(self, nbytes: int) -> float:
        """Take ``nbytes`` of tokens (going into debt) and return how long to wait, in seconds."""
        with self._lock:
            now = time.monotonic()
            self._refill(now)
            if self._rate_bps is None:
                return self.delay_ms / 1e3
            self._tokens -= nbytes
            debt_s = max(0.0, -self._tokens * 8 / self._rate_bps)
            return debt_s + self.delay_ms / 1e3

    def send(self, nbytes: int) -> float:
        """Block as long as sending ``nbytes`` takes on this link; returns the seconds waited."""
        wait_s = self.reserve(nbytes)
        if wait_s > 0:
            time.sleep(wait_s)
        return wait_s
