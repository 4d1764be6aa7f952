"""Joint choice of cut, head compression and feature codec under an accuracy budget.

In the spirit of Auto-Split (KDD'21), the split is searched together with what is
done to the edge side. Every (cut, method, codec) gets a predicted latency: the
compressed head's own graph priced on the edge device (at int8 when the head runs
int8), the codec's bytes and time measured on that cut's real tensors, the round
trip, and the unchanged tail on the cloud. Accuracy is only known by training and
measuring, so candidates are taken best-first by predicted latency and a
(cut, method) is compressed the first time one of its candidates comes up; the
first candidate whose measured validation accuracy is within the budget wins,
because every candidate left is predicted to be slower. A head whose structure
training can still change (low rank under an accuracy budget, and ``nas``, whose
search is given this budget) is priced optimistically first and re-queued at its
real price once trained. The result says which method won and why.
"""

from __future__ import annotations

import heapq
import itertools
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch
from torch import nn

from partitioner.codecs import CODECS, Codec, measure_codec
from partitioner.compress import measure
from partitioner.compress.compressor import make_context, run_method, start_head
from partitioner.compress.config import CompressConfig
from partitioner.compress.data import CompressionData, resolve_data
from partitioner.compress.head import Context, Head, as_tuple
from partitioner.compress.registry import METHODS, method_config
from partitioner.deploy.runtimes import PT2E_INT8
from partitioner.deploy.split import Halves, split_module
from partitioner.errors import EdgecutError
from partitioner.model.capture import capture
from partitioner.model.graph import Graph, TensorSpec
from partitioner.planner import Planner
from partitioner.pricing.cost import CostModel, Prediction
from partitioner.pricing.profiles import DEVICES
from partitioner.solve.plan import Plan

NONE = "none"  # the "method" that leaves the head as it is
CODEC_FRAMES = 8  # frames each codec is measured on, per cut
_SPLITTING = {"conv", "dwconv", "matmul", "norm"}
_FOLLOWERS = {"norm", "elementwise"}


def candidate_cuts(graph: Graph) -> list[frozenset[str]]:
    """Layer-boundary cuts that do not split a conv/linear from its norm or activation.

    Cutting between a convolution and its batch norm or ReLU sends a tensor of the
    same size as cutting right after them, and at int8 those ops are fused into the
    convolution: such cuts are never better, and pricing them would only cost time.
    """
    cuts = []
    for cut in graph.prefix_cuts():
        splits_block = any(
            node.op_class in _SPLITTING
            and node.users
            and all(graph.node(u).op_class in _FOLLOWERS for u in node.users)
            and not node.is_output
            for node in graph.crossing(cut)
        )
        if not splits_block or len(cut) == len(graph):
            cuts.append(cut)
    return cuts


@dataclass
class _Cut:
    edge: frozenset[str]
    name: str  # "after X" for people
    halves: Halves
    ctx: Context
    costs: dict[str, tuple[CostModel, Prediction]]  # codec -> (cost model, plain prediction)


@dataclass
class _Trained:
    head: Head
    edge_ms: float
    error: str | None = None


@dataclass
class SearchResult:
    plan: Plan
    method: str
    codec: str
    accuracy_budget: float
    accuracy_before: float  # test, percent
    accuracy_after: float
    val_accuracy_before: float
    val_accuracy_after: float
    trials: list[dict[str, Any]] = field(default_factory=list)
    candidates: int = 0
    reason: str = ""  # why this method won, for people

    def compression_json(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "reason": self.reason,
            "codec": self.codec,
            "accuracy_budget": self.accuracy_budget,
            "accuracy_before": self.accuracy_before,
            "accuracy_after": self.accuracy_after,
            "val_accuracy_before": self.val_accuracy_before,
            "val_accuracy_after": self.val_accuracy_after,
            "candidates": self.candidates,
            "trials": self.trials,
        }


def _cut_name(graph: Graph, edge: frozenset[str]) -> str:
    if len(edge) == len(graph):
        return "edge-only"
    if edge <= set(graph.inputs):
        return "cloud-only"
    return "after " + next(n.name for n in reversed(graph.nodes) if n.name in edge)


def head_edge_ms(planner: Planner, head: Head, x1: torch.Tensor) -> float:
    """The compressed head's own graph, priced on the edge device."""
    dtype = "int8" if head.runtime == PT2E_INT8 else None
    graph = capture(head.structure, x1, name="head").graph
    cost = planner.cost
    edge_only = CostModel(
        graph, cost.edge, cost.cloud, cost.network, "none", edge_dtype=dtype or cost.edge_dtype
    )
    return float(edge_only.edge_node_ms.sum())


def _assemble(cost: CostModel, edge: frozenset[str], edge_ms: float, bw: float) -> Prediction:
    """The plain prediction of ``edge`` with the edge time of the compressed head instead."""
    plain = cost.predict(edge, bw)
    mask = cost.mask(edge)
    cross = cost.crossing_mask(mask)
    encode = float(cost.encode_ms[cross].sum())
    decode = float(cost.decode_ms[cross].sum())
    total = plain.total_ms - plain.edge_ms + edge_ms
    # Only the head's compute changed: it is priced at the energy objective's busy rate.
    energy = plain.edge_energy_mj + cost.weights("energy").busy * (edge_ms - plain.edge_ms)
    period = max(edge_ms + encode, plain.transfer_ms, decode + plain.cloud_ms)
    return Prediction(
        edge_ms,
        plain.serialize_ms,
        plain.transfer_ms,
        plain.rtt_ms,
        plain.cloud_ms,
        total,
        energy,
        plain.wire_bytes,
        period,
    )


def search(
    planner: Planner,
    *,
    accuracy_budget: float,
    methods: Sequence[str],
    config: CompressConfig,
    codecs: Sequence[str] | None = None,
    data: CompressionData | None = None,
    bandwidth_mbps: float | None = None,
    progress: Any = None,
) -> SearchResult:
    """The fastest (cut, method, codec) whose validation accuracy is within the budget."""
    started = time.perf_counter()
    if not accuracy_budget >= 0:
        raise EdgecutError(f"--accuracy-budget must be >= 0 points, got {accuracy_budget:g}")
    for name in methods:
        if name != NONE:
            METHODS.get(name)
    codec_list = [CODECS.get(c) for c in codecs] if codecs else CODECS.list()
    graph = planner.graph
    cost = planner.cost
    if cost.edge.measured_ms is not None:
        raise EdgecutError(
            f"--accuracy-budget prices compressed heads on a device preset; --edge "
            f"{cost.edge.name} answers only for the nodes it measured (use e.g. rpi4)"
        )
    bw = cost.network.uplink_mbps if bandwidth_mbps is None else bandwidth_mbps
    config = _with_budget(config, accuracy_budget)
    if data is None:
        data = resolve_data(
            config.data,
            model_name=graph.model,
            input_shape=planner.captured.input_shape,
            model=planner.loaded.module,
            seed=config.seed,
            train_samples=config.train_samples,
            eval_samples=config.eval_samples,
        )
    x1 = data.x_val[:1]
    host_bw = DEVICES.get("host").mem_bandwidth_gbps
    int8_ok = "int8" in cost.edge.peak_gflops

    def report(task: str, done: int, total: int) -> None:
        if progress is not None:
            progress(task, done, total)

    # -- price every candidate ---------------------------------------------------------
    cuts: list[_Cut] = []
    heap: list[tuple[float, int, int, str, str, bool]] = []  # (ms, tie, cut, method, codec, exact)
    order = itertools.count()
    skipped: list[dict[str, Any]] = []
    all_cuts = candidate_cuts(graph)
    for ci, edge in enumerate(all_cuts):
        report("search: price candidates", ci, len(all_cuts))
        halves = split_module(planner.captured, edge)
        ctx = make_context(planner.captured, halves, data, seed=config.seed, edge=cost.edge)
        crossing = graph.crossing(edge)
        usable = [CODECS.get(NONE)] if not crossing else codec_list
        costs: dict[str, tuple[CostModel, Prediction]] = {}
        frames = _frames(ctx, halves.head) if crossing else []
        for codec in usable:
            priced: Codec = codec
            if codec.name != NONE and frames:
                priced = measure_codec(codec, frames, mem_bandwidth_gbps=host_bw, repeats=2)
            model = CostModel(
                graph, cost.edge, cost.cloud, cost.network, priced, edge_dtype=cost.edge_dtype
            )
            costs[codec.name] = (model, model.predict(edge, bw))
        cut = _Cut(edge, _cut_name(graph, edge), halves, ctx, costs)
        cuts.append(cut)
        cloud_only = edge <= set(graph.inputs)
        for method in methods:
            if method != NONE and cloud_only:
                continue
            exact = True
            if method == NONE:
                edge_ms = costs[usable[0].name][1].edge_ms
            else:
                try:
                    head = METHODS.get(method).structure(
                        start_head(halves), ctx, method_config(config, method)
                    )
                    if head.runtime == PT2E_INT8 and not int8_ok:
                        raise EdgecutError(f"{cost.edge.name} has no int8 compute")
                    edge_ms = head_edge_ms(planner, head, x1)
                except EdgecutError as exc:
                    skipped.append({"cut": cut.name, "method": method, "reason": str(exc)})
                    continue
                exact = not _structure_may_change(method, config)
            for codec in usable:
                model, _ = costs[codec.name]
                ms = _assemble(model, edge, edge_ms, bw).total_ms
                heapq.heappush(heap, (ms, next(order), ci, method, codec.name, exact))
    candidates = len(heap)
    report("search: price candidates", len(all_cuts), len(all_cuts))

    # -- best first, measuring as we go -------------------------------------------------
    trained: dict[tuple[int, str], _Trained] = {}
    reference: dict[int, float] = {}
    trials: list[dict[str, Any]] = []
    best_seen: dict[str, Any] | None = None
    while heap:
        ms, _, ci, method, codec_name, exact = heapq.heappop(heap)
        cut = cuts[ci]
        key = (ci, method)
        if key not in trained:
            report(f"search: {method} {cut.name}", 0, 1)
            trained[key] = _train(planner, cut, method, config, x1)
        result = trained[key]
        if result.error is not None:
            continue
        if not exact:  # now the structure is known: requeue at its real price
            model, _ = cut.costs[codec_name]
            real = _assemble(model, cut.edge, result.edge_ms, bw).total_ms
            heapq.heappush(heap, (real, next(order), ci, method, codec_name, True))
            continue
        if ci not in reference:
            reference[ci] = _val_accuracy(cut, cut.ctx.teacher, NONE)
        val = _val_accuracy(cut, result.head.module, codec_name)
        drop = reference[ci] - val
        trial = {
            "cut": cut.name,
            "method": method,
            "codec": codec_name,
            "predicted_ms": ms,
            "val_accuracy": val,
            "val_drop": drop,
        }
        trials.append(trial)
        if best_seen is None or val > best_seen["val_accuracy"]:
            best_seen = trial
        if drop <= accuracy_budget + 1e-9:
            return _result(
                planner,
                cut,
                method,
                codec_name,
                result,
                bw,
                accuracy_budget,
                reference[ci],
                val,
                trials,
                candidates,
                time.perf_counter() - started,
            )
    if best_seen is None:
        reasons = "; ".join(f"{s['method']} {s['cut']}: {s['reason']}" for s in skipped[:3])
        raise EdgecutError(
            f"no (cut, method, codec) could be built for methods {', '.join(methods)}"
            + (f" ({reasons})" if reasons else "")
        )
    where = best_seen["cut"]
    where = where if where in ("edge-only", "cloud-only") else f"cut {where}"
    raise EdgecutError(
        f"no cut x method x codec keeps validation accuracy within {accuracy_budget:g} points: "
        f"the best found was {best_seen['method']} with codec {best_seen['codec']}, {where}, "
        f"at {best_seen['val_accuracy']:.2f}% "
        f"(drop {best_seen['val_drop']:.2f} points, {len(trials)} combinations measured)"
    )


def _structure_may_change(method: str, config: CompressConfig) -> bool:
    """Whether training decides the structure (then the untrained price is a lower bound)."""
    if method == "nas":
        return True
    if method == "lowrank":
        return method_config(config, "lowrank").accuracy_budget is not None
    if method == "mixed":
        return any(
            s.method == "nas" or (s.method == "lowrank" and s.config.accuracy_budget is not None)
            for s in method_config(config, "mixed").steps
        )
    return False


def _with_budget(config: CompressConfig, budget: float) -> CompressConfig:
    """``config`` with the search's accuracy budget given to ``nas`` (alone or in a pipeline)."""
    if "nas" not in METHODS:
        return config
    sections = dict(config.sections)
    sections["nas"] = replace(method_config(config, "nas"), accuracy_budget=budget)
    if "mixed" in sections:
        mixed = method_config(config, "mixed")
        steps = tuple(
            replace(s, config=replace(s.config, accuracy_budget=budget)) if s.method == "nas" else s
            for s in mixed.steps
        )
        sections["mixed"] = replace(mixed, steps=steps)
    return replace(config, sections=sections)


def _frames(ctx: Context, head: nn.Module) -> list[np.ndarray]:
    """The crossing tensors of a few validation frames, one array per tensor and frame."""
    with torch.no_grad():
        cut = as_tuple(head(ctx.data.x_val[:CODEC_FRAMES]))
    return [t[i : i + 1].numpy() for t in cut for i in range(t.shape[0])]


def _train(
    planner: Planner, cut: _Cut, method: str, config: CompressConfig, x1: torch.Tensor
) -> _Trained:
    if method == NONE:
        return _Trained(start_head(cut.halves), cut.costs[next(iter(cut.costs))][1].edge_ms)
    try:
        head = run_method(method, config, start_head(cut.halves), cut.ctx)
    except EdgecutError as exc:
        return _Trained(start_head(cut.halves), 0.0, str(exc))
    return _Trained(head, head_edge_ms(planner, head, x1))


def _val_accuracy(cut: _Cut, head: nn.Module, codec: str) -> float:
    data = cut.ctx.data
    tail = cut.ctx.tail
    return measure.accuracy(head, tail, data.x_val, data.y_val, codec)


def _reason(
    cut: str, method: str, codec: str, budget: float, trials: list[dict[str, Any]], candidates: int
) -> str:
    """Why the search stopped here: faster candidates lost too much, the rest are slower."""
    won = trials[-1]
    faster = trials[:-1]
    why = (
        f"{method} won: {cut} with codec {codec} is predicted at {won['predicted_ms']:.2f} ms "
        f"per frame, the fastest combination whose validation accuracy stays within "
        f"{budget:g} points (drop {won['val_drop']:.2f})"
    )
    if faster:
        worst = sorted(faster, key=lambda t: t["predicted_ms"])[:3]
        lost = ", ".join(
            f"{t['method']} {t['cut']} {t['codec']} (drop {t['val_drop']:.2f})" for t in worst
        )
        why += f"; {len(faster)} faster-predicted combinations lost more: {lost}"
    rest = candidates - len(trials)
    if rest > 0:
        why += f"; the other {rest} are predicted slower"
    return why


def _result(
    planner: Planner,
    cut: _Cut,
    method: str,
    codec_name: str,
    result: _Trained,
    bw: float,
    budget: float,
    val_before: float,
    val_after: float,
    trials: list[dict[str, Any]],
    candidates: int,
    seconds: float,
) -> SearchResult:
    graph = planner.graph
    model, _ = cut.costs[codec_name]
    predicted = _assemble(model, cut.edge, result.edge_ms, bw)
    data = cut.ctx.data
    tail = cut.ctx.tail
    before = measure.accuracy(cut.ctx.teacher, tail, data.x_test, data.y_test)
    after = measure.accuracy(result.head.module, tail, data.x_test, data.y_test, codec_name)
    plain = planner.cost
    plan = Plan(
        model=graph.model,
        solver="compress-search",
        objective="latency",
        edge_nodes=tuple(n.name for n in graph.nodes if n.name in cut.edge),
        cut=tuple(TensorSpec.of(n) for n in graph.crossing(cut.edge)),
        predicted=predicted,
        objective_value=predicted.total_ms,
        edge_only_ms=plain.predict(plain.edge_only(), bw).total_ms,
        cloud_only_ms=plain.predict(plain.cloud_only(), bw).total_ms,
        solve_ms=seconds * 1e3,
        edge_device=plain.edge.name,
        cloud_device=plain.cloud.name,
        network=plain.network.name,
        bandwidth_mbps=bw,
        rtt_ms=plain.network.rtt_ms,
        codec=codec_name,
        input_shape=planner.loaded.input_shape,
        n_nodes=len(graph),
    )
    found = SearchResult(
        plan,
        method,
        codec_name,
        budget,
        before,
        after,
        val_before,
        val_after,
        trials,
        candidates,
        _reason(cut.name, method, codec_name, budget, trials, candidates),
    )
    plan.extra["compression"] = {
        **found.compression_json(),
        "cut": cut.name,
        "data": data.describe(),
        "notes": result.head.notes,
    }
    return found
