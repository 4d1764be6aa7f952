"""Counter-based random streams: every draw is a pure function of what it is for.

A draw is Philox4x32-10 (Salmon et al., SC'11) of a 128-bit counter under a 64-bit key:
the key is the scenario seed, the counter is ``(n, entity, stream, purpose)``: the n-th
draw of one camera (``entity``) of one fleet group (``stream``) for one ``purpose`` (its
start phase, its k-th inter-arrival time, ...), or the n-th batch of a cloud site. So a
camera's draws do not depend on which shard simulates it, how time is cut into windows,
or how many other cameras exist, and no generator state has to travel between actors.
"""

from __future__ import annotations

import numpy as np
from numba import njit
from numpy.typing import ArrayLike, NDArray

# Purposes: one independent stream each.
START = 1  # a camera's start phase
ARRIVAL = 2  # a camera's k-th Poisson inter-arrival time
TRACE = 3  # which trace a camera replays (assign: random)
OFFSET = 4  # where in its trace a camera starts (offset: random)
RATE = 5  # a camera's constant uplink drawn from a distribution
RATE_2 = 6  # a second uniform for distributions that need two (lognormal)
SERVICE = 7  # a cloud site's k-th exponential service multiplier

_MASK32 = np.uint64(0xFFFFFFFF)
_SHIFT32 = np.uint64(32)
_M0 = np.uint64(0xD2511F53)
_M1 = np.uint64(0xCD9E8D57)
_W0 = np.uint64(0x9E3779B9)
_W1 = np.uint64(0xBB67AE85)
_SHIFT5 = np.uint64(5)
_SHIFT6 = np.uint64(6)
_TWO26 = 67108864.0
_TWO_M53 = 1.0 / 9007199254740992.0


@njit(cache=True, inline="always")
def philox4x32_10(
    c0: np.uint64,
    c1: np.uint64,
    c2: np.uint64,
    c3: np.uint64,
    k0: np.uint64,
    k1: np.uint64,
) -> tuple[np.uint64, np.uint64, np.uint64, np.uint64]:  # pragma: no cover - numba
    """Ten Philox rounds; every argument and result holds a 32-bit word in a uint64."""
    for _ in range(10):
        p0 = _M0 * c0
        p1 = _M1 * c2
        c0, c1, c2, c3 = (
            (p1 >> _SHIFT32) ^ c1 ^ k0,
            p1 & _MASK32,
            (p0 >> _SHIFT32) ^ c3 ^ k1,
            p0 & _MASK32,
        )
        k0 = (k0 + _W0) & _MASK32
        k1 = (k1 + _W1) & _MASK32
    return c0, c1, c2, c3


@njit(cache=True, inline="always")
def uniform(
    k0: np.uint64, k1: np.uint64, n: int | np.int64, entity: int | np.int64, tag: int | np.int64
) -> float:  # pragma: no cover - numba
    """A uniform in (0, 1] with 53 random bits: draw ``n`` of (``entity``, ``tag``)."""
    nn = np.uint64(n)
    x0, x1, _, _ = philox4x32_10(
        nn & _MASK32, nn >> _SHIFT32, np.uint64(entity) & _MASK32, np.uint64(tag) & _MASK32, k0, k1
    )
    return ((x0 >> _SHIFT5) * _TWO26 + (x1 >> _SHIFT6) + 0.5) * _TWO_M53


def seed_key(seed: int) -> tuple[np.uint64, np.uint64]:
    """The Philox key of a scenario seed (0 <= seed < 2**64)."""
    if not 0 <= seed < 1 << 64:
        raise ValueError(f"seed must be in [0, 2**64), got {seed}")
    return np.uint64(seed & 0xFFFFFFFF), np.uint64(seed >> 32)


def stream_tag(stream: int, purpose: int) -> int:
    """The counter word naming a stream (group or site index) and a purpose."""
    if not (0 <= stream < 1 << 16 and 0 <= purpose < 1 << 16):
        raise ValueError(f"stream and purpose must fit 16 bits, got {stream}, {purpose}")
    return (stream << 16) | purpose


@njit(cache=True)
def _uniforms(
    k0: np.uint64, k1: np.uint64, n: NDArray[np.int64], entity: NDArray[np.int64], tag: np.int64
) -> NDArray[np.float64]:  # pragma: no cover - numba
    out = np.empty(n.shape[0])
    for i in range(n.shape[0]):
        out[i] = uniform(k0, k1, n[i], entity[i], tag)
    return out


def uniforms(
    seed: int, stream: int, purpose: int, entity: ArrayLike, n: ArrayLike = 0
) -> NDArray[np.float64]:
    """Uniforms in (0, 1], one per element of the broadcast of ``entity`` and ``n``."""
    k0, k1 = seed_key(seed)
    e, c = np.broadcast_arrays(np.asarray(entity, dtype=np.int64), np.asarray(n, dtype=np.int64))
    flat = _uniforms(
        k0,
        k1,
        np.ascontiguousarray(c).ravel(),
        np.ascontiguousarray(e).ravel(),
        np.int64(stream_tag(stream, purpose)),
    )
    return flat.reshape(e.shape)
