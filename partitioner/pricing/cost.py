"""The cost of a cut: edge compute, serialisation, transfer, round trip, cloud compute.

:class:`CostModel` prices every node on both devices once, then any cut (the set
of nodes kept on the edge) in one pass: ``predict(edge)`` gives the breakdown
the plan reports. For the solvers it exposes the same costs as a
:class:`LinearCost` (a per-node price for each side, a per-node price for
crossing, and a constant for using the cloud at all), which is exactly the form
a min-cut minimises. Latency and energy are linear: each is a :class:`StageWeights`
pricing the edge's busy and waiting time, the transfer time and the wire bits, so
one cut's prediction and the solvers' per-node prices come from the same weights.
Throughput is the slowest of three pipeline stages (:func:`frame_period_ms`) and is
priced from :class:`StageCosts`. Which tensors cross a cut is the graph's rule
(:meth:`~partitioner.model.graph.Graph.crossing_mask`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from partitioner.codecs import CODECS, Codec
from partitioner.errors import EdgecutError, unknown_name
from partitioner.model.graph import Graph
from partitioner.pricing.network import NetworkProfile, check_bandwidth
from partitioner.pricing.profiles import DeviceProfile, SegmentCorrection

# What a plan can minimise: ms per frame, edge mJ per frame, ms per frame when pipelined.
OBJECTIVES = ("latency", "energy", "throughput")


def check_objective(objective: str) -> str:
    """``objective`` if it is one of :data:`OBJECTIVES`, else the user error listing them."""
    if objective not in OBJECTIVES:
        raise unknown_name("objective", objective, OBJECTIVES)
    return objective


def frame_period_ms(edge_stage_ms: Any, link_ms: Any, cloud_stage_ms: Any) -> Any:
    """ms per frame of the edge -> link -> cloud pipeline: its slowest stage (scalars or arrays)."""
    return np.maximum(np.maximum(edge_stage_ms, link_ms), cloud_stage_ms)


@dataclass(frozen=True)
class Prediction:
    """What one cut is predicted to cost per frame."""

    edge_ms: float
    serialize_ms: float  # encode on the edge + decode on the cloud
    transfer_ms: float  # crossing bytes over the uplink (excludes the RTT)
    rtt_ms: float
    cloud_ms: float
    total_ms: float  # sum of the above: one frame's latency
    edge_energy_mj: float
    wire_bytes: int
    frame_period_ms: float  # the slowest pipeline stage: ms per frame at full throughput

    def to_json(self) -> dict[str, float]:
        return {
            "edge_ms": self.edge_ms,
            "transfer_ms": self.transfer_ms,
            "cloud_ms": self.cloud_ms,
            "total_ms": self.total_ms,
            "edge_energy_mj": self.edge_energy_mj,
            "serialize_ms": self.serialize_ms,
            "rtt_ms": self.rtt_ms,
            "wire_bytes": self.wire_bytes,
            "frame_period_ms": self.frame_period_ms,
        }


@dataclass(frozen=True)
class LinearCost:
    """cost(S) = sum edge[S] + sum cloud[not S] + sum cross[crossing(S)] + remote*[cloud used]."""

    edge: np.ndarray  # (n,) price of a node on the edge
    cloud: np.ndarray  # (n,) price of a node on the cloud
    cross: np.ndarray  # (n,) price of a node's output crossing the cut
    remote: float  # paid once when any node runs on the cloud (the round trip)

    def __add__(self, other: LinearCost) -> LinearCost:
        return LinearCost(
            self.edge + other.edge,
            self.cloud + other.cloud,
            self.cross + other.cross,
            self.remote + other.remote,
        )

    def scaled(self, k: float) -> LinearCost:
        return LinearCost(self.edge * k, self.cloud * k, self.cross * k, self.remote * k)

    def evaluate(self, edge_masks: np.ndarray, cross_masks: np.ndarray) -> np.ndarray:
        """(M, n) edge masks and their crossing masks -> (M,) cost of each cut."""
        remote = ~edge_masks.all(axis=1)
        return (
            edge_masks @ self.edge
            + (~edge_masks) @ self.cloud
            + cross_masks @ self.cross
            + remote * self.remote
        )


@dataclass(frozen=True)
class StageWeights:
    """A linear objective per frame: a price per ms the edge computes, per ms it waits
    (for the round trip and the cloud), per ms the uplink sends, and per bit it sends.
    """

    busy: float  # per ms of edge compute and encoding
    waiting: float  # per ms of round trip, decoding and cloud compute
    transfer: float  # per ms of sending
    wire_bit: float  # per bit sent

    def price(self, busy_ms: Any, waiting_ms: Any, transfer_ms: Any, wire_bits: Any) -> Any:
        """The objective of the given times and bits (scalars, or arrays element-wise)."""
        return (
            self.busy * busy_ms
            + self.waiting * waiting_ms
            + self.transfer * transfer_ms
            + self.wire_bit * wire_bits
        )


@dataclass(frozen=True)
class StageCosts:
    """Per-node times of the three pipeline stages (for the throughput objective)."""

    edge_ms: np.ndarray  # (n,) if the node runs on the edge
    cloud_ms: np.ndarray  # (n,) if the node runs on the cloud
    encode_ms: np.ndarray  # (n,) on the edge if the node's output crosses
    decode_ms: np.ndarray  # (n,) on the cloud if the node's output crosses
    transfer_ms: np.ndarray  # (n,) on the link if the node's output crosses
    rtt_ms: float


def _segment_node_ms(
    node_ms: np.ndarray, correction: SegmentCorrection, carriers: np.ndarray
) -> np.ndarray:
    """(n,) node times as shares of their segment's time: each scaled by the correction's
    factor, its per-segment overhead split evenly over the (n,) bool ``carriers``."""
    return correction.factor * node_ms + carriers * (correction.overhead_ms / carriers.sum())


class CostModel:
    """Prices cuts of one graph between an edge device, a network and a cloud device."""

    def __init__(
        self,
        graph: Graph,
        edge: DeviceProfile,
        cloud: DeviceProfile,
        network: NetworkProfile,
        codec: Codec | str = "none",
        *,
        edge_dtype: str | None = None,
        cloud_dtype: str | None = None,
    ) -> None:
        self.graph = graph
        self.edge = edge
        self.cloud = cloud
        self.network = network
        self.codec = CODECS.get(codec) if isinstance(codec, str) else codec
        self.edge_dtype = edge.dtype(edge_dtype)
        self.cloud_dtype = cloud.dtype(cloud_dtype)
        nodes = graph.nodes
        # Each side's node times as parts of the half that will run (SegmentCorrection):
        # the head runs on every cut (an identity head when cloud-only), so its overhead
        # rides on the inputs, always on the edge; the tail runs whenever the cloud is
        # used, which for a model with one output is exactly when that output is on the
        # cloud (several outputs share it).
        self.edge_node_ms = _segment_node_ms(
            np.array([edge.node_ms(n, self.edge_dtype) for n in nodes]),
            edge.segment,
            graph.mask(graph.inputs),
        )
        self.cloud_node_ms = _segment_node_ms(
            np.array([cloud.node_ms(n, self.cloud_dtype) for n in nodes]),
            cloud.segment,
            graph.mask(graph.outputs),
        )
        raw = np.array([n.out_bytes for n in nodes], dtype=float)
        self.wire_bytes = np.array(
            [self.codec.wire_bytes(n.out_bytes, n.shape) for n in nodes], dtype=float
        )
        self.encode_ms = np.array([self.codec.encode_ms(b, edge.mem_bandwidth_gbps) for b in raw])
        self.decode_ms = np.array([self.codec.decode_ms(b, cloud.mem_bandwidth_gbps) for b in raw])
        self._all = frozenset(graph.index)

    # -- one cut -------------------------------------------------------------------
    def mask(self, edge_nodes: Iterable[str]) -> np.ndarray:
        """(n,) bool edge mask of ``edge_nodes`` (:meth:`Graph.mask`)."""
        return self.graph.mask(edge_nodes)

    def crossing_mask(self, edge_mask: np.ndarray) -> np.ndarray:
        """(n,) bool: whose outputs cross the cut ``edge_mask`` (:meth:`Graph.crossing_mask`)."""
        return self.graph.crossing_mask(edge_mask)

    def predict(self, edge_nodes: Iterable[str], bandwidth_mbps: float | None = None) -> Prediction:
        edge_mask = self.mask(edge_nodes)
        return self.predict_mask(edge_mask, bandwidth_mbps)

    def predict_mask(
        self, edge_mask: np.ndarray, bandwidth_mbps: float | None = None
    ) -> Prediction:
        bw = self._bandwidth(bandwidth_mbps)
        cross = self.crossing_mask(edge_mask)
        remote = not edge_mask.all()
        edge_ms = float(self.edge_node_ms[edge_mask].sum())
        cloud_ms = float(self.cloud_node_ms[~edge_mask].sum())
        encode_ms = float(self.encode_ms[cross].sum())
        decode_ms = float(self.decode_ms[cross].sum())
        wire_bytes = int(self.wire_bytes[cross].sum())
        transfer_ms = wire_bytes * 8 / (bw * 1e3)
        rtt_ms = self.network.rtt_ms if remote else 0.0
        total = edge_ms + encode_ms + transfer_ms + rtt_ms + decode_ms + cloud_ms
        energy = self.weights("energy").price(
            edge_ms + encode_ms, rtt_ms + decode_ms + cloud_ms, transfer_ms, wire_bytes * 8
        )
        period = float(frame_period_ms(edge_ms + encode_ms, transfer_ms, decode_ms + cloud_ms))
        return Prediction(
            edge_ms,
            encode_ms + decode_ms,
            transfer_ms,
            rtt_ms,
            cloud_ms,
            total,
            energy,
            wire_bytes,
            period,
        )

    def objective_value(self, prediction: Prediction, objective: str) -> float:
        """What ``objective`` minimises, read from a prediction: ms, mJ, or ms per frame."""
        check_objective(objective)
        if objective == "latency":
            return prediction.total_ms
        if objective == "energy":
            return prediction.edge_energy_mj
        return prediction.frame_period_ms

    def weights(self, objective: str) -> StageWeights:
        """The linear objective ``objective`` (latency or energy) as stage weights."""
        if objective == "latency":
            return StageWeights(busy=1.0, waiting=1.0, transfer=1.0, wire_bit=0.0)
        if objective == "energy":
            # The edge draws its active power while it computes and encodes and its idle
            # power while it waits; while it sends, the radio adds P = alpha * throughput
            # + beta (network.py), i.e. alpha per bit plus beta per ms.
            # Units: W * ms = mJ; nJ/bit * 1e-6 = mJ/bit; mW * 1e-3 = W.
            net = self.network
            idle_w = self.edge.idle_power_w
            return StageWeights(
                busy=self.edge.active_power_w,
                waiting=idle_w,
                transfer=idle_w + net.radio_base_mw * 1e-3,
                wire_bit=net.radio_nj_per_bit * 1e-6,
            )
        raise EdgecutError(
            f"objective {check_objective(objective)!r} is not linear in the cut; "
            "expected latency or energy"
        )

    def _bandwidth(self, bandwidth_mbps: float | None) -> float:
        return check_bandwidth(
            self.network.uplink_mbps if bandwidth_mbps is None else bandwidth_mbps, finite=False
        )

    # -- all cuts at once (for the solvers) -------------------------------------------
    def linear_parts(self, objective: str) -> tuple[LinearCost, LinearCost]:
        """(fixed, per_inverse_mbps): cost at bandwidth B is ``fixed + per_inverse_mbps / B``."""
        w = self.weights(objective)
        bits = self.wire_bytes * 8
        transfer_ms_at_1mbps = bits / 1e3  # ms to send these bits at 1 Mbit/s
        zeros = np.zeros(len(self.graph))
        # A node on the edge keeps it busy; on the cloud, the edge waits for it. A
        # crossing tensor is encoded (busy), decoded (waiting) and sent (bits now, time
        # per 1/B); using the cloud at all costs a round trip of waiting.
        fixed = LinearCost(
            w.busy * self.edge_node_ms,
            w.waiting * self.cloud_node_ms,
            w.busy * self.encode_ms + w.waiting * self.decode_ms + w.wire_bit * bits,
            w.waiting * self.network.rtt_ms,
        )
        per = LinearCost(zeros, zeros, w.transfer * transfer_ms_at_1mbps, 0.0)
        return fixed, per

    def linear(self, objective: str, bandwidth_mbps: float | None = None) -> LinearCost:
        fixed, per = self.linear_parts(objective)
        return fixed + per.scaled(1.0 / self._bandwidth(bandwidth_mbps))

    def stages(self, bandwidth_mbps: float | None = None) -> StageCosts:
        bw = self._bandwidth(bandwidth_mbps)
        return StageCosts(
            self.edge_node_ms,
            self.cloud_node_ms,
            self.encode_ms,
            self.decode_ms,
            self.wire_bytes * 8 / (bw * 1e3),
            self.network.rtt_ms,
        )

    def edge_only(self) -> frozenset[str]:
        return self._all

    def cloud_only(self) -> frozenset[str]:
        return frozenset(self.graph.inputs)
