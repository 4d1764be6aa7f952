"""Network profiles: the uplink between an edge device and the cloud.

A :class:`NetworkProfile` gives an uplink bandwidth, a round-trip time and the
radio's energy model; presets (``3g``, ``lte``, ``wifi``, ``5g``, ``ethernet``)
carry their sources. A :class:`BandwidthTrace` is a measured capacity over time,
read from a Mahimahi trace (one line per 1500-byte delivery opportunity, in ms)
or from ``[seconds, Mbit/s]`` pairs; real cellular traces ship with edgecut
(:func:`packaged_traces`).
"""

from __future__ import annotations

import gzip
import json
import math
from dataclasses import dataclass, replace
from functools import cached_property
from importlib import resources
from pathlib import Path

import numpy as np

from partitioner.errors import EdgecutError, did_you_mean
from partitioner.registry import Registry

MAHIMAHI_PACKET_BYTES = 1500  # every line of a Mahimahi trace is one MTU-sized delivery


@dataclass(frozen=True, eq=False)
class BandwidthTrace:
    """Piecewise-constant uplink capacity that repeats after ``period_s``.

    Segment ``k`` runs from ``start_s[k]`` to ``start_s[k+1]`` (the last one to
    ``period_s``) at ``rate_bps[k]``.
    """

    name: str
    start_s: np.ndarray  # (K,) increasing, start_s[0] == 0
    rate_bps: np.ndarray  # (K,) >= 0
    period_s: float

    def __post_init__(self) -> None:
        if (
            self.start_s.ndim != 1
            or self.start_s.shape != self.rate_bps.shape
            or not len(self.start_s)
        ):
            raise EdgecutError(
                f"trace {self.name}: needs matching, non-empty start and rate arrays"
            )
        if self.start_s[0] != 0 or np.any(np.diff(self.start_s) <= 0):
            raise EdgecutError(f"trace {self.name}: segment starts must begin at 0 and increase")
        if self.period_s <= self.start_s[-1]:
            raise EdgecutError(f"trace {self.name}: period must end after the last segment starts")
        if np.any(self.rate_bps < 0) or not np.all(np.isfinite(self.rate_bps)):
            raise EdgecutError(f"trace {self.name}: rates must be finite and >= 0")
        if not np.any(self.rate_bps > 0):
            raise EdgecutError(f"trace {self.name}: carries no data at all")

    @cached_property
    def durations_s(self) -> np.ndarray:
        return np.diff(np.append(self.start_s, self.period_s))

    @property
    def mean_mbps(self) -> float:
        return float(np.sum(self.rate_bps * self.durations_s) / self.period_s / 1e6)

    def mbps_per_window(self, window_s: float = 1.0) -> np.ndarray:
        """Average capacity in consecutive windows over one period (Mbit/s)."""
        edges = np.arange(0.0, self.period_s + 1e-12, window_s)
        cum = self.cumulative_bits(edges)
        return np.diff(cum) / window_s / 1e6

    def cumulative_bits(self, t_s: np.ndarray | float) -> np.ndarray:
        """Bits the link could have delivered in [0, t) if always busy (repeats the trace)."""
        t = np.asarray(t_s, dtype=float)
        seg_bits = self.rate_bps * self.durations_s
        cum_start = np.concatenate([[0.0], np.cumsum(seg_bits)])  # bits at each segment start
        per_period = cum_start[-1]
        periods, within = np.divmod(t, self.period_s)
        k = np.searchsorted(self.start_s, within, side="right") - 1
        return periods * per_period + cum_start[k] + self.rate_bps[k] * (within - self.start_s[k])

    @classmethod
    def constant(cls, mbps: float, name: str = "constant") -> BandwidthTrace:
        return cls(name, np.array([0.0]), np.array([mbps * 1e6]), 1.0)


def read_mahimahi_timestamps(text: str, name: str) -> np.ndarray:
    """The delivery opportunities of a Mahimahi trace: validated ms timestamps, (N,) int64."""
    try:
        stamps = np.array([int(line) for line in text.split() if line.strip()], dtype=np.int64)
    except ValueError as exc:
        raise EdgecutError(
            f"trace {name}: expected one integer millisecond timestamp per line (Mahimahi), {exc}"
        ) from None
    if stamps.size == 0:
        raise EdgecutError(f"trace {name}: is empty; expected one ms timestamp per line")
    if np.any(stamps < 0) or np.any(np.diff(stamps) < 0):
        raise EdgecutError(f"trace {name}: timestamps must be >= 0 and non-decreasing")
    return stamps


def read_mahimahi(text: str, name: str) -> BandwidthTrace:
    """Parse Mahimahi delivery opportunities (ms timestamps) into 1 ms rate segments."""
    stamps = read_mahimahi_timestamps(text, name)
    # Mahimahi replays the file from the start after its last timestamp: period = last ms.
    period_ms = int(max(stamps[-1], 1))
    counts = np.bincount(np.minimum(stamps, period_ms - 1), minlength=period_ms)
    rate_bps = counts * MAHIMAHI_PACKET_BYTES * 8 / 1e-3
    # Merge runs of equal rate so a trace is a few thousand segments, not one per ms.
    change = np.flatnonzero(np.diff(rate_bps)) + 1
    starts = np.concatenate([[0], change])
    return BandwidthTrace(name, starts / 1e3, rate_bps[starts].astype(float), period_ms / 1e3)


def read_pairs(text: str, name: str) -> BandwidthTrace:
    """Parse ``[seconds, Mbit/s]`` pairs: JSON (``[[0, 5.2], [1, 3.1]]``) or two columns."""
    text = text.strip()
    try:
        pairs = (
            json.loads(text)
            if text.startswith("[")
            else [
                [float(v) for v in line.replace(",", " ").split()]
                for line in text.splitlines()
                if line.strip() and not line.lstrip().startswith("#")
            ]
        )
        arr = np.array(pairs, dtype=float)
    except (ValueError, json.JSONDecodeError) as exc:
        raise EdgecutError(f"trace {name}: expected [seconds, Mbit/s] pairs: {exc}") from None
    if arr.ndim != 2 or arr.shape[1] != 2 or arr.shape[0] == 0:
        raise EdgecutError(
            f"trace {name}: expected rows of [seconds, Mbit/s], got shape {arr.shape}"
        )
    t, mbps = arr[:, 0], arr[:, 1]
    if t[0] != 0 or np.any(np.diff(t) <= 0):
        raise EdgecutError(f"trace {name}: times must start at 0 and increase")
    if np.any(mbps < 0):
        raise EdgecutError(f"trace {name}: Mbit/s must be >= 0")
    # The last pair lasts as long as the median step, then the trace repeats.
    step = float(np.median(np.diff(t))) if len(t) > 1 else 1.0
    return BandwidthTrace(name, t, mbps * 1e6, float(t[-1] + step))


def packaged_traces() -> dict[str, str]:
    """Names of the traces shipped with edgecut (real cellular uplinks, NSDI'13 Saturator)."""
    root = resources.files("partitioner") / "data" / "traces"
    return {
        p.name.removesuffix(".up.gz"): str(p)
        for p in sorted(root.iterdir(), key=lambda p: p.name)
        if p.name.endswith(".up.gz")
    }


@dataclass(frozen=True)
class TraceFile:
    """The text of a trace file, before parsing."""

    name: str
    text: str
    is_mahimahi: bool


def load_trace(spec: str) -> BandwidthTrace:
    """A packaged trace by name, or a file: ``.up``/``.up.gz`` Mahimahi, else pairs."""
    trace = read_trace_file(spec)
    if trace.is_mahimahi:
        return read_mahimahi(trace.text, trace.name)
    return read_pairs(trace.text, trace.name)


def read_trace_file(spec: str) -> TraceFile:
    """Find and read a trace (packaged name or file, gzipped or not) without parsing it."""
    packaged = packaged_traces()
    if spec in packaged:
        path = Path(packaged[spec])
    else:
        path = Path(spec)
        if not path.is_file():
            raise EdgecutError(
                f"trace {spec!r}: no such file and not a packaged trace "
                f"({', '.join(packaged)}){did_you_mean(spec, packaged)}"
            )
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise EdgecutError(f"trace {spec!r}: cannot read {path}: {exc.strerror}") from None
    if path.name.endswith(".gz"):
        raw = gzip.decompress(raw)
    text = raw.decode("utf-8", errors="replace")
    name = path.name.removesuffix(".gz").removesuffix(".up")
    is_mahimahi = ".up" in path.name or (
        text.lstrip()[:1].isdigit()
        and all(line.strip().isdigit() for line in text.splitlines()[:20] if line.strip())
    )
    return TraceFile(name, text, is_mahimahi)


def check_bandwidth(mbps: float, *, finite: bool = True) -> float:
    """``mbps`` if it is a usable uplink bandwidth (> 0 Mbit/s), else the user error.

    A link has a finite bandwidth; the cost model alone also prices at ``inf`` (no
    transfer time), to split a cut's cost into its fixed and per-bit parts.
    """
    if not (0 < mbps < math.inf or (not finite and mbps == math.inf)):
        raise EdgecutError(f"bandwidth must be a finite number > 0 Mbit/s, got {mbps:g}")
    return mbps


@dataclass(frozen=True)
class NetworkProfile:
    """An uplink: bandwidth, round trip, and the radio's power model."""

    name: str
    uplink_mbps: float
    rtt_ms: float
    # Radio power while sending, P = alpha * throughput + beta (Huang et al., MobiSys'12):
    # alpha in mW per Mbit/s is the same number as nJ per bit.
    radio_nj_per_bit: float
    radio_base_mw: float
    source: str = ""
    trace: BandwidthTrace | None = None

    def __post_init__(self) -> None:
        check_bandwidth(self.uplink_mbps)
        if not 0 <= self.rtt_ms < math.inf:
            raise EdgecutError(f"RTT must be a finite number >= 0 ms, got {self.rtt_ms:g}")
        if self.radio_nj_per_bit < 0 or self.radio_base_mw < 0:
            raise EdgecutError("radio energy figures must be >= 0")

    def with_bandwidth(self, mbps: float) -> NetworkProfile:
        return replace(self, uplink_mbps=mbps)

    def with_rtt(self, rtt_ms: float) -> NetworkProfile:
        return replace(self, rtt_ms=rtt_ms)


_NEUROSURGEON = "average uplink measured by Kang et al., Neurosurgeon, ASPLOS'17"
_HUANG = "radio power model of Huang et al., MobiSys'12"

NETWORKS: Registry[NetworkProfile] = Registry("network")
for _preset in (
    NetworkProfile(
        "3g", 1.1, 150.0, 868.98, 817.88, f"{_NEUROSURGEON}; RTT typical of UMTS; {_HUANG} (3G)"
    ),
    NetworkProfile(
        "lte",
        5.85,
        60.0,
        438.39,
        1288.04,
        f"{_NEUROSURGEON}; RTT typical of LTE to a regional cloud; {_HUANG} (LTE)",
    ),
    NetworkProfile(
        "wifi",
        18.88,
        10.0,
        283.17,
        132.86,
        f"{_NEUROSURGEON}; RTT typical of Wi-Fi to a nearby server; {_HUANG} (Wi-Fi)",
    ),
    NetworkProfile(
        "5g",
        50.0,
        20.0,
        438.39,
        1288.04,
        "assumed mid-band 5G uplink and RTT; radio model taken as LTE's (no published 5G fit used)",
    ),
    NetworkProfile(
        "ethernet", 1000.0, 0.5, 0.0, 0.0, "gigabit LAN to an on-premises server; no radio"
    ),
):
    NETWORKS.register(_preset)


def resolve_network(spec: str) -> NetworkProfile:
    """A preset name, or a trace (packaged name or file) planned at its mean bandwidth.

    A trace borrows the LTE preset's RTT and radio model; override with --rtt-ms.
    """
    if spec in NETWORKS:
        return NETWORKS.get(spec)
    if spec in packaged_traces() or Path(spec).is_file():
        trace = load_trace(spec)
        lte = NETWORKS.get("lte")
        return NetworkProfile(
            trace.name,
            trace.mean_mbps,
            lte.rtt_ms,
            lte.radio_nj_per_bit,
            lte.radio_base_mw,
            f"trace {trace.name} (mean uplink); {lte.source}",
            trace,
        )
    hint = did_you_mean(spec, [*NETWORKS, *packaged_traces()])
    raise EdgecutError(
        f"unknown network {spec!r}: expected a preset ({', '.join(NETWORKS)}), a packaged trace "
        f"({', '.join(packaged_traces())}) or a trace file{hint}"
    )
