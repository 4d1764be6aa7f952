"""Each camera's uplink: a constant rate, a rate drawn per camera, or a replayed trace.

:class:`LinkPlan` is a group's network, compiled from its scenario entry: the rate or
the capacity curves of its traces (each loaded once, through
:func:`partitioner.pricing.network.read_trace_file`), the round trip, the way back, and the
radio's energy model. :meth:`LinkPlan.cameras` gives the links of a range of cameras:
which curve and where in it each one starts, or its rate, drawn from the counter-based
streams so a camera's link does not depend on its shard.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
from numpy.typing import NDArray

from partitioner.pricing.network import (
    NETWORKS,
    read_mahimahi_timestamps,
    read_pairs,
    read_trace_file,
)
from simulator import streams
from simulator.scenario import NetworkConfig
from simulator.uplink import CapacityCurve

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]


@functools.lru_cache(maxsize=64)
def load_curve(spec: str) -> tuple[str, CapacityCurve]:
    """A trace (packaged name or file) as a capacity curve: Mahimahi opportunities as
    impulses (the byte-exact model), ``[seconds, Mbit/s]`` pairs as piecewise rates."""
    trace = read_trace_file(spec)
    if trace.is_mahimahi:
        stamps = read_mahimahi_timestamps(trace.text, trace.name)
        return trace.name, CapacityCurve.from_mahimahi(stamps, model="impulse")
    pairs = read_pairs(trace.text, trace.name)
    edges = np.append(pairs.start_s, pairs.period_s)
    return trace.name, CapacityCurve.from_rates(edges, pairs.rate_bps)


class CameraLinks(NamedTuple):
    """The links of a range of cameras (one entry per camera)."""

    rate_bps: FloatArray  # constant links; nan on trace links
    curve: IntArray  # index into LinkPlan.curves; -1 on constant links
    offset_s: FloatArray  # where in its trace the camera starts (trace time at t = 0)


@dataclass(frozen=True, eq=False)
class LinkPlan:
    kind: str  # constant, distribution, traces
    rate_bps: float  # constant
    config: NetworkConfig
    curves: tuple[CapacityCurve, ...]
    curve_names: tuple[str, ...]
    rtt_s: float
    back_s: float  # after the cloud: half the round trip plus the output over the downlink
    radio_j_per_bit: float
    radio_base_w: float

    @property
    def nominal_mbps(self) -> float:
        """The uplink the planner assumes: the rate, the distribution's mean, the traces' mean."""
        if self.kind == "constant":
            return self.rate_bps / 1e6
        if self.kind == "distribution":
            assert self.config.distribution is not None
            return self.config.distribution.mean_mbps
        return float(np.mean([c.mean_rate_bps for c in self.curves])) / 1e6

    def cameras(self, seed: int, group: int, cam_index: IntArray) -> CameraLinks:
        n = cam_index.shape[0]
        nan = np.full(n, np.nan)
        if self.kind == "constant":
            return CameraLinks(np.full(n, self.rate_bps), np.full(n, -1), np.zeros(n))
        if self.kind == "distribution":
            dist = self.config.distribution
            assert dist is not None
            u = streams.uniforms(seed, group, streams.RATE, cam_index)
            if dist.kind == "uniform":
                assert dist.min_mbps is not None and dist.max_mbps is not None
                mbps = dist.min_mbps + (dist.max_mbps - dist.min_mbps) * (1.0 - u)
            else:
                assert dist.median_mbps is not None and dist.sigma is not None
                # Box-Muller on two independent uniforms of the camera.
                u2 = streams.uniforms(seed, group, streams.RATE_2, cam_index)
                z = np.sqrt(-2.0 * np.log(u)) * np.cos(2.0 * np.pi * u2)
                mbps = dist.median_mbps * np.exp(dist.sigma * z)
            return CameraLinks(mbps * 1e6, np.full(n, -1), np.zeros(n))
        n_curves = len(self.curves)
        if self.config.assign == "round-robin":
            curve = cam_index % n_curves
        else:
            u = streams.uniforms(seed, group, streams.TRACE, cam_index)
            curve = np.minimum((u * n_curves).astype(np.int64), n_curves - 1)
        periods = np.array([c.period_s for c in self.curves])[curve]
        if self.config.offset == "random":
            offset = (1.0 - streams.uniforms(seed, group, streams.OFFSET, cam_index)) * periods
        else:
            offset = np.zeros(n)
        return CameraLinks(nan, curve.astype(np.int64), offset)


def compile_link(config: NetworkConfig, output_bytes: int) -> LinkPlan:
    """The group's :class:`LinkPlan`; ``output_bytes`` is what comes back per frame."""
    profile = NETWORKS.get(config.profile_name())
    rtt_ms = config.rtt_ms if config.rtt_ms is not None else profile.rtt_ms
    back_s = rtt_ms / 2e3
    if config.downlink_mbps is not None:
        back_s += output_bytes * 8 / (config.downlink_mbps * 1e6)
    curves: tuple[CapacityCurve, ...] = ()
    names: tuple[str, ...] = ()
    rate_bps = np.nan
    if config.kind == "traces":
        loaded = [load_curve(spec) for spec in config.traces]
        names = tuple(n for n, _ in loaded)
        curves = tuple(c for _, c in loaded)
    elif config.kind == "constant":
        rate_bps = (config.mbps if config.mbps is not None else profile.uplink_mbps) * 1e6
    return LinkPlan(
        kind=config.kind,
        rate_bps=float(rate_bps),
        config=config,
        curves=curves,
        curve_names=names,
        rtt_s=rtt_ms / 1e3,
        back_s=back_s,
        radio_j_per_bit=profile.radio_nj_per_bit * 1e-9,
        radio_base_w=profile.radio_base_mw * 1e-3,
    )
