"""The graph of a network, as the planner sees it: ops, tensors, and which tensors flow where.

A :class:`Graph` is a tuple of :class:`Node` in topological order, one per ATen op,
each with its output shape/dtype/bytes per frame (batch 1), FLOPs, parameter bytes,
producers and consumers. Chains and DAGs (residual adds, inception concatenations,
several outputs) are the same data structure. A *cut* is a set of node names closed
under predecessors (:meth:`Graph.close`); :meth:`Graph.crossing_mask` says which
tensors cross it, for one cut or many at once, the one place that is decided (the
cost model, the solvers and :meth:`Graph.crossing` all ask it). Nothing here imports
torch: :mod:`partitioner.model.capture` builds a graph from a torch model.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

# Largest batch the exported halves accept; the cloud batcher stays far below it.
MAX_BATCH = 4096


@dataclass(frozen=True)
class Loop:
    """An op that runs ``steps`` steps one after another, per frame (a recurrent layer:
    its time steps times its layers and directions).

    Each step does ``step_flops`` and re-reads ``step_bytes`` of weights (the hidden-to-
    hidden matrices, counted at float32), which no batch amortises within the step; the
    op's other FLOPs (the input projections, one GEMM over all steps) run at once. A
    device prices the steps by ``kind``: which cell loop runs (fused or op by op) is the
    kernel library's choice, and the step's fixed cost differs by kind.
    """

    kind: str  # the ATen op: "lstm" | "gru" | "rnn_tanh" | "rnn_relu"
    steps: int
    step_flops: int  # per step, per frame
    step_bytes: int  # weights read per step (once per batch)


@dataclass(frozen=True)
class Node:
    """One op of the network. Sizes are per frame (batch 1)."""

    name: str  # unique, readable: the module path (``layer1.0.conv1``) or path.op
    op: str  # ATen op name without namespace/overload: ``conv2d``, ``add``, ``input``
    op_class: str  # one of partitioner.model.ops.OP_CLASSES
    shape: tuple[int, ...]  # output shape at batch 1; () for a tuple-valued op
    dtype: str  # torch dtype name of the output ("float32"); "tuple" for tuple-valued ops
    out_bytes: int  # bytes of the output at batch 1 (what crosses if this node is cut)
    flops: int
    param_bytes: int  # parameters and buffers this op reads
    in_bytes: int  # activation bytes this op reads
    inputs: tuple[str, ...]  # producer node names, in argument order, without repeats
    users: tuple[str, ...]  # consumer node names
    is_output: bool = False  # its value is (part of) the model's output
    # The dim that grows with the batch (frames stack along it; per frame it has ``shape``'s
    # size, e.g. a sequence-first (S, B, E) has 1, Swin's windows (B*nW, ...) have 0). None:
    # no dim does (a constant, or a tensor that mixes frames), see ``Graph.crossing_mask``.
    batch_dim: int | None = 0
    loop: Loop | None = None  # a recurrent op's sequential steps (see ``Loop``)


@dataclass(frozen=True)
class Graph:
    """A captured network: nodes in topological order plus the graph's boundary."""

    model: str
    nodes: tuple[Node, ...]
    inputs: tuple[str, ...]  # the model inputs; always on the edge
    outputs: tuple[str, ...]  # producers of the model outputs, in output order
    # Pairs that must sit on the same side: an op returning several tensors and the
    # getitem that picks one of them (a Python tuple cannot cross the wire).
    ties: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        names = [n.name for n in self.nodes]
        if len(set(names)) != len(names):
            raise ValueError("node names must be unique")
        if tuple(names[: len(self.inputs)]) != tuple(self.inputs):
            raise ValueError("the graph's inputs must be its first nodes")
        seen: set[str] = set()
        for node in self.nodes:
            if any(p not in seen for p in node.inputs):
                raise ValueError(f"nodes are not in topological order at {node.name!r}")
            seen.add(node.name)
        if {n.name for n in self.nodes if n.is_output} != set(self.outputs):
            raise ValueError("the nodes marked is_output must be the graph's outputs")

    @cached_property
    def index(self) -> dict[str, int]:
        return {n.name: i for i, n in enumerate(self.nodes)}

    def node(self, name: str) -> Node:
        try:
            return self.nodes[self.index[name]]
        except KeyError:
            raise KeyError(name) from None

    def __len__(self) -> int:
        return len(self.nodes)

    @cached_property
    def is_chain(self) -> bool:
        """Every node feeds only the next one: each topological prefix is the only kind of cut."""
        for i, node in enumerate(self.nodes[:-1]):
            if node.users != (self.nodes[i + 1].name,):
                return False
        return len(self.inputs) == 1

    def ancestors(self, names: Iterable[str]) -> set[str]:
        """``names`` and every node they depend on: the smallest closed edge set holding them."""
        closed: set[str] = set()
        stack = list(names)
        while stack:
            name = stack.pop()
            if name in closed:
                continue
            closed.add(name)
            stack.extend(self.node(name).inputs)
        return closed

    def close(self, edge: Iterable[str]) -> frozenset[str]:
        """Close a set of edge nodes under predecessors, inputs and ties."""
        closed = self.ancestors([*edge, *self.inputs])
        while True:
            extra = {b for a, b in self.ties if a in closed and b not in closed}
            extra |= {a for a, b in self.ties if b in closed and a not in closed}
            if not extra:
                return frozenset(closed)
            closed = self.ancestors(closed | extra)

    def is_closed(self, edge: Iterable[str]) -> bool:
        edge = set(edge)
        if not set(self.inputs) <= edge:
            return False
        for name in edge:
            if any(p not in edge for p in self.node(name).inputs):
                return False
        return all((a in edge) == (b in edge) for a, b in self.ties)

    def mask(self, edge: Iterable[str]) -> np.ndarray:
        """(n,) bool: which nodes (in topological order) are in ``edge``."""
        mask = np.zeros(len(self.nodes), dtype=bool)
        for name in edge:
            mask[self.index[name]] = True
        return mask

    @cached_property
    def _arcs(self) -> tuple[np.ndarray, np.ndarray]:
        """(producer, consumer) node indices of every tensor read: two (E,) int arrays."""
        pairs = [(i, self.index[u]) for i, n in enumerate(self.nodes) for u in n.users]
        arcs = np.array(pairs, dtype=np.intp).reshape(-1, 2)
        return arcs[:, 0], arcs[:, 1]

    @cached_property
    def _output_mask(self) -> np.ndarray:
        return self.mask(self.outputs)

    @cached_property
    def constant_mask(self) -> np.ndarray:
        """(n,) bool: nodes no model input flows into (position ids, a cached mask).

        Such a tensor is a function of the parameters (and the batch size) alone, so it
        never crosses: the half that reads it computes it (:mod:`partitioner.deploy.split`).
        """
        constant = np.zeros(len(self.nodes), dtype=bool)
        for i, node in enumerate(self.nodes):
            if node.op != "input":
                constant[i] = all(constant[self.index[p]] for p in node.inputs)
        return constant

    def crossing_mask(self, edge_mask: np.ndarray) -> np.ndarray:
        """(..., n) bool edge masks -> (..., n) bool: node i's output crosses that cut.

        A tensor crosses when it is produced on the edge and read on the cloud, or
        when it is a model output computed on the edge while part of the model runs
        on the cloud: the tail returns every output, so the answer has one place.
        Nothing crosses for an edge-only cut, and a constant (:attr:`constant_mask`)
        never does.
        """
        edge_mask = np.asarray(edge_mask, dtype=bool)
        masks = edge_mask.reshape(-1, len(self.nodes))  # (M, n)
        producer, consumer = self._arcs
        read_on_cloud = np.zeros_like(masks)
        # OR over every read: producer i is read on the cloud if any consumer is off the edge.
        np.logical_or.at(read_on_cloud.T, producer, ~masks[:, consumer].T)
        cross = masks & (read_on_cloud | self._output_mask) & ~self.constant_mask
        cross[masks.all(axis=1)] = False
        return cross.reshape(edge_mask.shape)

    def crossing(self, edge: Iterable[str]) -> list[Node]:
        """The nodes whose outputs cross from edge to cloud (:meth:`crossing_mask`), in order."""
        cross = self.crossing_mask(self.mask(edge))
        return [self.nodes[i] for i in np.flatnonzero(cross)]

    def prefix_cuts(self) -> list[frozenset[str]]:
        """The closed cuts made by topological prefixes: one per layer boundary."""
        cuts: list[frozenset[str]] = []
        seen: set[frozenset[str]] = set()
        for i in range(len(self.nodes) + 1):
            cut = self.close(n.name for n in self.nodes[:i])
            if cut not in seen:
                seen.add(cut)
                cuts.append(cut)
        return cuts

    def total_flops(self) -> int:
        return sum(n.flops for n in self.nodes)

    def total_param_bytes(self) -> int:
        return sum(n.param_bytes for n in self.nodes)


@dataclass(frozen=True)
class TensorSpec:
    """A tensor that crosses the cut (per frame: batch 1 in dim ``batch_dim``)."""

    name: str
    shape: tuple[int, ...]
    dtype: str
    bytes: int
    batch_dim: int | None = 0  # frames stack along this dim; None: the tensor has no batch

    @classmethod
    def of(cls, node: Node) -> TensorSpec:
        """The tensor ``node`` outputs, as it crosses the cut."""
        return cls(node.name, node.shape, node.dtype, node.out_bytes, node.batch_dim)

    def batched(self, batch: int) -> tuple[int, ...]:
        """The shape of ``batch`` frames: the batch dim grown ``batch`` times."""
        shape = list(self.shape)
        if self.batch_dim is not None and shape:
            shape[self.batch_dim] *= batch
        return tuple(shape)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "shape": list(self.shape),
            "dtype": self.dtype,
            "bytes": self.bytes,
            "batch_dim": self.batch_dim,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TensorSpec:
        """From a document; ``batch_dim`` is 0 when absent (documents older than the field)."""
        batch_dim = data.get("batch_dim", 0)
        return cls(
            str(data["name"]),
            tuple(int(d) for d in data["shape"]),
            str(data["dtype"]),
            int(data["bytes"]),
            None if batch_dim is None else int(batch_dim),
        )
