"""What one cut costs a frame in the simulator: edge time, wire bits, cloud batch times.

A :class:`CutOption` is one way a group may split its model, priced once from the
partitioner's cost model (per-node device times, codec, crossing tensors) so that the
simulator core needs neither torch nor the graph. :class:`GroupModel` holds the captured
model and cost model of a group (captures are cached per model and input shape) and
answers the policies' questions: a named cut, the planner's cut, the breakpoint table.

Cloud batch rule (:func:`tail_batch_ms`): a batch of ``b`` frames runs each tail op once,
timed by :meth:`DeviceProfile.node_ms <partitioner.pricing.profiles.DeviceProfile.node_ms>`
at batch ``b`` (overhead once per batch, compute and activations ``b`` times); each
frame's crossing tensor is decoded separately (``b`` decodes). At ``b = 1`` this is the
cost model's cloud time plus decode exactly.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from partitioner.solve.plan import resolve_node

FloatArray = NDArray[np.float64]


@dataclass(frozen=True, eq=False)
class CutOption:
    """One cut of one group's model, priced for the simulator (seconds, bits, joules)."""

    label: str  # "edge-only", "cloud-only" or "after NODE"
    edge_nodes: frozenset[str]
    edge_s: float  # head plus encoding on the camera
    wire_bits: float  # on the uplink per frame (0 when edge-only)
    uses_cloud: bool
    batch_s: FloatArray  # (max_batch,) decode plus tail for a batch of b frames
    active_j: float  # camera energy while computing this frame's head and encoding
    tail_key: tuple[Any, ...]  # frames with equal keys share a cloud queue (and batch)
    predicted_ms: dict[str, float]  # the cost model's breakdown at the nominal uplink

    @property
    def wire_bytes(self) -> int:
        return round(self.wire_bits / 8)


@functools.lru_cache(maxsize=16)
def _captured(model: str, input_shape: tuple[int, ...] | None) -> tuple[Any, Any]:
    # Capturing needs torch, which the shards and sites (they import this module through
    # fleet.py) must never load: imported on first use, when a scenario is compiled.
    from partitioner.model.capture import capture
    from partitioner.model.spec import load_model

    loaded = load_model(model, input_shape)
    captured = capture(loaded.module, loaded.example_input(), name=loaded.name)
    return loaded, captured


def tail_batch_ms(cost: Any, edge_mask: NDArray[np.bool_], max_batch: int) -> FloatArray:
    """Decode plus tail time of a batch of 1..max_batch frames (ms), by the module's rule."""
    cloud_nodes = [n for n, on_edge in zip(cost.graph.nodes, edge_mask, strict=True) if not on_edge]
    decode_ms = float(cost.decode_ms[cost.crossing_mask(edge_mask)].sum())
    out = np.empty(max_batch)
    # b = 1 is the cost model's own figure, summed the same way.
    out[0] = float(cost.cloud_node_ms[~edge_mask].sum()) + decode_ms
    for b in range(2, max_batch + 1):
        times = np.array([cost.cloud.node_ms(n, cost.cloud_dtype, b) for n in cloud_nodes])
        out[b - 1] = float(times.sum()) + b * decode_ms
    return out


class GroupModel:
    """A group's captured model priced on its edge device, uplink and cloud device."""

    def __init__(self, model: str, input_shape: tuple[int, ...] | None, planner: Any) -> None:
        self.model = model
        self.input_shape = tuple(planner.loaded.input_shape)
        self.planner = planner
        self.cost = planner.cost
        self.graph = planner.graph
        self._order = {n.name: i for i, n in enumerate(self.graph.nodes)}

    @classmethod
    def create(
        cls,
        model: str,
        input_shape: tuple[int, ...] | None,
        *,
        edge: str,
        cloud: str,
        network: Any,
        codec: str,
        edge_dtype: str | None = None,
        cloud_dtype: str | None = None,
    ) -> GroupModel:
        from partitioner.planner import Planner  # imports torch: only when compiling

        loaded, captured = _captured(model, input_shape)
        planner = Planner.for_captured(
            loaded,
            captured,
            edge=edge,
            cloud=cloud,
            network=network,
            codec=codec,
            edge_dtype=edge_dtype,
            cloud_dtype=cloud_dtype,
        )
        return cls(model, input_shape, planner)

    @property
    def output_bytes(self) -> int:
        return sum(self.graph.node(name).out_bytes for name in self.graph.outputs)

    # -- cuts ---------------------------------------------------------------------------
    def edge_only(self) -> frozenset[str]:
        return frozenset(self.cost.edge_only())

    def cloud_only(self) -> frozenset[str]:
        return frozenset(self.graph.close(()))

    def cut_after(self, node: str) -> frozenset[str]:
        return frozenset(self.graph.close([resolve_node(self.graph, node)]))

    def best_cut(self, bandwidth_mbps: float, objective: str = "latency") -> frozenset[str]:
        plan = self.planner.plan(objective=objective, bandwidth_mbps=bandwidth_mbps)
        return frozenset(plan.edge_nodes)

    def table(self, min_mbps: float, max_mbps: float, objective: str = "latency") -> Any:
        return self.planner.sweep(min_mbps, max_mbps, objective=objective)

    def prefix_cuts(self) -> list[frozenset[str]]:
        """Every layer-boundary cut, from cloud-only to edge-only (``--cuts all``)."""
        return [frozenset(c) for c in self.graph.prefix_cuts()]

    def label(self, edge_nodes: frozenset[str]) -> str:
        if len(edge_nodes) == len(self.graph):
            return "edge-only"
        if edge_nodes == self.cloud_only():
            return "cloud-only"
        return f"after {max(edge_nodes, key=self._order.__getitem__)}"

    # -- pricing -----------------------------------------------------------------------
    def option(self, edge_nodes: frozenset[str], max_batch: int) -> CutOption:
        cost = self.cost
        mask = cost.mask(edge_nodes)
        uses_cloud = not bool(mask.all())
        cross = cost.crossing_mask(mask)
        edge_ms = float(cost.edge_node_ms[mask].sum())
        encode_ms = float(cost.encode_ms[cross].sum())
        wire_bytes = int(cost.wire_bytes[cross].sum())
        prediction = cost.predict_mask(mask)
        return CutOption(
            label=self.label(edge_nodes),
            edge_nodes=edge_nodes,
            edge_s=(edge_ms + encode_ms) / 1e3,
            wire_bits=8.0 * wire_bytes,
            uses_cloud=uses_cloud,
            batch_s=(
                tail_batch_ms(cost, mask, max_batch) / 1e3 if uses_cloud else np.zeros(max_batch)
            ),
            active_j=cost.edge.active_power_w * (edge_ms + encode_ms) / 1e3,
            tail_key=(
                self.model,
                self.input_shape,
                cost.codec.name,
                cost.cloud.name,
                cost.cloud_dtype,
                edge_nodes,
            ),
            predicted_ms=prediction.to_json(),
        )
