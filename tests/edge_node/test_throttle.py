"""The in-process token bucket that emulates an uplink."""

from __future__ import annotations

import pytest

from edge_node.throttle import TokenBucket


def test_each_send_waits_its_bytes_over_the_rate_plus_the_delay() -> None:
    bucket = TokenBucket(8.0, burst_bytes=1000, delay_ms=5)
    # 8 Mbit/s = 1 MB/s: the first 1000 bytes are the burst, the rest waits.
    assert bucket.reserve(101_000) == pytest.approx(0.1 + 0.005, abs=2e-3)
    # The link is still busy with the first send's debt: the next one queues behind it.
    assert bucket.reserve(100_000) == pytest.approx(0.2 + 0.005, abs=5e-3)


def test_unlimited_and_changing_rate() -> None:
    bucket = TokenBucket(None, delay_ms=0)
    assert bucket.reserve(10**9) == 0.0 and bucket.rate_mbps is None
    bucket.set_rate(80.0)
    assert bucket.rate_mbps == 80.0
    assert bucket.reserve(10_000 + bucket.burst_bytes) == pytest.approx(0.001, abs=5e-4)
    bucket.set_rate(None)
    assert bucket.reserve(10**9) == 0.0


def test_send_sleeps() -> None:
    bucket = TokenBucket(80.0, burst_bytes=1)
    assert bucket.send(50_000) == pytest.approx(0.005, abs=1e-3)


@pytest.mark.parametrize("kwargs", [{"burst_bytes": 0}, {"delay_ms": -1}])
def test_bad_settings(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        TokenBucket(1.0, **kwargs)
    with pytest.raises(ValueError):
        TokenBucket(0.0)
