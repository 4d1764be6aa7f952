"""Plan figures in the style of Neurosurgeon: latency per candidate cut, and against bandwidth.

Left: one stacked bar per layer-boundary cut (edge compute, then serialisation +
transfer + round trip, then cloud compute) at the plan's bandwidth, the chosen
cut marked. Right: total latency of the breakpoint table's cuts (and edge-only,
cloud-only) across a bandwidth range, the lower envelope drawn thick.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from partitioner.pricing.cost import CostModel
from partitioner.solve.breakpoints import BreakpointTable
from partitioner.solve.chain import prefix_masks
from partitioner.solve.plan import Plan


def plot_plan(
    cost: CostModel,
    plan: Plan,
    table: BreakpointTable,
    path: str | Path,
) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    graph = cost.graph
    bw = plan.bandwidth_mbps
    masks = prefix_masks(graph)
    preds = [cost.predict_mask(m, bw) for m in masks]
    edge = np.array([p.edge_ms for p in preds])
    net = np.array([p.serialize_ms + p.transfer_ms + p.rtt_ms for p in preds])
    cloud = np.array([p.cloud_ms for p in preds])
    labels = []
    for m in masks:
        on_edge = np.flatnonzero(m)
        labels.append(
            graph.nodes[on_edge[-1]].name if len(on_edge) > len(graph.inputs) else "input"
        )
    labels[-1] = "edge-only"

    fig, (ax_bar, ax_bw) = plt.subplots(
        1, 2, figsize=(15, 5.5), gridspec_kw={"width_ratios": [3, 2]}
    )
    x = np.arange(len(masks))
    ax_bar.bar(x, edge, color="#4C72B0", label="edge compute")
    ax_bar.bar(x, net, bottom=edge, color="#DD8452", label="serialise + transfer + RTT")
    ax_bar.bar(x, cloud, bottom=edge + net, color="#55A868", label="cloud compute")
    chosen = set(plan.edge_nodes)
    for i, m in enumerate(masks):
        if {graph.nodes[j].name for j in np.flatnonzero(m)} == chosen:
            ax_bar.annotate(
                "plan",
                (i, edge[i] + net[i] + cloud[i]),
                ha="center",
                va="bottom",
                color="crimson",
                fontweight="bold",
            )
    step = max(1, len(masks) // 40)
    ax_bar.set_xticks(x[::step])
    ax_bar.set_xticklabels(labels[::step], rotation=90, fontsize=6)
    ax_bar.set_ylabel("latency per frame (ms)")
    ax_bar.set_title(
        f"{graph.model}: {cost.edge.name} -> {bw:g} Mbit/s -> {cost.cloud.name}, "
        f"cut after each layer"
    )
    ax_bar.legend(loc="upper left", fontsize=8)

    lo = min(e.min_mbps for e in table.entries)
    hi = max(e.max_mbps for e in table.entries)
    grid = np.geomspace(lo, hi, 200)

    def label(cut: frozenset[str]) -> str:
        if cut == cost.edge_only():
            return "edge-only"
        if cut == cost.cloud_only():
            return "cloud-only"
        return f"cut after {[n.name for n in graph.nodes if n.name in cut][-1]}"

    cuts = [cost.edge_only(), cost.cloud_only(), *(e.edge_nodes for e in table.entries)]
    lines = {label(c): c for c in dict.fromkeys(cuts)}
    for name, cut in lines.items():
        mask = cost.mask(cut)
        ys = [cost.predict_mask(mask, b).total_ms for b in grid]
        ax_bw.plot(grid, ys, lw=1.2, label=name)
    envelope = [table.lookup(b).value(b) for b in grid]
    ax_bw.plot(grid, envelope, color="black", lw=3, alpha=0.35, label="best cut")
    ax_bw.set_xscale("log")
    ax_bw.set_yscale("log")
    ax_bw.axvline(bw, color="crimson", ls="--", lw=1)
    ax_bw.set_xlabel("uplink bandwidth (Mbit/s)")
    ax_bw.set_ylabel("latency per frame (ms)")
    ax_bw.set_title("latency of each optimal cut against bandwidth")
    ax_bw.legend(fontsize=7)
    fig.tight_layout()
    out = Path(path)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out
