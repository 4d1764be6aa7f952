"""Plan figures in the style of Neurosurgeon: latency per candidate cut, and against bandwidth.

Left: each layer-boundary cut's predicted latency at the plan's bandwidth, total and
its parts (edge compute; serialisation + transfer + round trip; cloud compute), on a
log axis because the parts span decades; the chosen cut and the breakpoint table's cuts
are marked and always labelled. Right: total latency of the breakpoint table's cuts (and
edge-only, cloud-only) across a bandwidth range, over the lower envelope. ``plot_plan``
saves the PNG and returns the :class:`~matplotlib.figure.Figure` for inspection.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from partitioner.pricing.cost import CostModel
from partitioner.solve.breakpoints import BreakpointTable
from partitioner.solve.chain import prefix_masks
from partitioner.solve.plan import Plan

if TYPE_CHECKING:
    from matplotlib.figure import Figure

DPI = 120
TICK_PT = 8.0  # the smallest text in the figure, at the saved size
MAX_CUT_LABELS = 28  # rotated 8 pt labels stay apart on the 8.5 inch left panel
# Okabe-Ito: distinguishable in colour-blind vision and in greyscale with the line styles.
COLORS = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000")
LINESTYLES = ("-", "--", "-.", ":")
MARKERS = ("o", "s", "^", "v", "D", "P", "X", "*")


def thin_labels(n: int, keep: Iterable[int], max_labels: int = MAX_CUT_LABELS) -> list[int]:
    """Positions ``0 .. n-1`` to label: all of ``keep``, then every k-th one, none so close
    to another that their text would touch (at most about ``max_labels`` in all)."""
    kept = sorted({i for i in keep if 0 <= i < n})
    step = max(1, math.ceil(n / max_labels))
    gap = max(2, math.ceil(step / 2)) if step > 1 else 1
    chosen = list(kept)
    for i in range(0, n, step):
        if all(abs(i - j) >= gap for j in chosen):
            chosen.append(i)
    return sorted(chosen)


def _positive(values: np.ndarray) -> np.ndarray:
    """A log axis cannot draw zero: a part that is absent (no cloud work) leaves a gap."""
    return np.where(values > 0, values, np.nan)


def plot_plan(
    cost: CostModel,
    plan: Plan,
    table: BreakpointTable,
    path: str | Path,
) -> Figure:
    from matplotlib.figure import Figure  # on first use: only `plan --plot` pays for it

    graph = cost.graph
    bw = plan.bandwidth_mbps
    masks = prefix_masks(graph)  # (P, n): cloud-only first, edge-only last
    preds = [cost.predict_mask(m, bw) for m in masks]
    edge = np.array([p.edge_ms for p in preds])
    net = np.array([p.serialize_ms + p.transfer_ms + p.rtt_ms for p in preds])
    cloud = np.array([p.cloud_ms for p in preds])
    total = np.array([p.total_ms for p in preds])
    names = [graph.nodes[np.flatnonzero(m)[-1]].name for m in masks]
    names[0], names[-1] = "cloud-only", "edge-only"
    position = {
        frozenset(graph.nodes[j].name for j in np.flatnonzero(m)): i for i, m in enumerate(masks)
    }

    def label(cut: frozenset[str]) -> str:
        if cut == cost.edge_only():
            return "edge-only"
        if cut == cost.cloud_only():
            return "cloud-only"
        return f"cut after {[n.name for n in graph.nodes if n.name in cut][-1]}"

    # The right panel's cuts, each with one style that its tick label on the left shares.
    cuts = list(
        dict.fromkeys([cost.edge_only(), cost.cloud_only(), *(e.edge_nodes for e in table.entries)])
    )
    style = {
        cut: {
            "color": COLORS[k % len(COLORS)],
            "ls": LINESTYLES[k % len(LINESTYLES)],
            "marker": MARKERS[k % len(MARKERS)],
        }
        for k, cut in enumerate(cuts)
    }

    fig = Figure(figsize=(15, 6), dpi=DPI)
    ax_cut, ax_bw = fig.subplots(1, 2, gridspec_kw={"width_ratios": [3, 2]})
    x = np.arange(len(masks))
    ax_cut.plot(x, total, color="black", lw=2.2, marker="o", ms=3.5, label="total", zorder=5)
    ax_cut.plot(x, _positive(net), color="#E69F00", ls="--", lw=1.3, marker="s", ms=2.5,
                label="serialise + transfer + RTT", zorder=4)  # fmt: skip
    ax_cut.plot(x, _positive(edge), color="#0072B2", ls="-.", lw=1.3, marker="^", ms=2.5,
                label="edge compute", zorder=4)  # fmt: skip
    ax_cut.plot(x, _positive(cloud), color="#009E73", ls=":", lw=1.5, marker="v", ms=2.5,
                label="cloud compute", zorder=4)  # fmt: skip
    ax_cut.set_yscale("log")
    chosen = position.get(frozenset(plan.edge_nodes))
    plan_ms = plan.predicted.total_ms
    if chosen is not None:
        ax_cut.axvline(chosen, color="crimson", lw=6, alpha=0.15, zorder=1)
        ax_cut.plot([chosen], [plan_ms], marker="*", ms=15, color="crimson", ls="none",
                    label=f"plan: {plan_ms:.4g} ms", zorder=6)  # fmt: skip
    else:  # a DAG's min cut need not be a layer boundary
        ax_cut.axhline(plan_ms, color="crimson", ls="--", lw=1,
                       label=f"plan (not a layer boundary): {plan_ms:.4g} ms")  # fmt: skip
    marked = {position[c]: c for c in cuts if c in position}
    ticks = thin_labels(len(masks), [*marked, *([chosen] if chosen is not None else [])])
    ax_cut.set_xticks(x, minor=True)
    ax_cut.set_xticks(ticks, [names[i] for i in ticks], rotation=90, fontsize=TICK_PT)
    for tick, i in zip(ax_cut.get_xticklabels(), ticks, strict=True):
        if i in marked:
            tick.set_color(style[marked[i]]["color"])
            tick.set_fontweight("bold")
        if i == chosen:
            tick.set_color("crimson")
            tick.set_fontweight("bold")
    ax_cut.tick_params(axis="y", labelsize=TICK_PT + 1)
    ax_cut.set_xlim(-1, len(masks))
    ax_cut.set_xlabel(
        f"cut after layer (coloured: the best cut at some bandwidth, as on the right; "
        f"{len(ticks)} of {len(masks)} cuts labelled)",
        fontsize=TICK_PT + 1,
    )
    ax_cut.set_ylabel("predicted latency per frame (ms, log)")
    ax_cut.set_title(
        f"{graph.model}: {cost.edge.name} -> {bw:g} Mbit/s -> {cost.cloud.name}, "
        f"cut after each layer",
        fontsize=10,
    )
    ax_cut.grid(True, which="major", axis="y", alpha=0.3)
    ax_cut.grid(True, which="minor", axis="y", alpha=0.1)
    ax_cut.legend(fontsize=TICK_PT, loc="best", framealpha=0.9)

    lo = min(e.min_mbps for e in table.entries)
    hi = max(e.max_mbps for e in table.entries)
    grid = np.geomspace(lo, hi, 200)
    envelope = [table.lookup(b).value(b) for b in grid]
    # Under the cuts, wide and pale: every cut's own line stays visible on top of it.
    ax_bw.plot(grid, envelope, color="0.6", lw=7, alpha=0.45, solid_capstyle="butt",
               label="best cut (lower envelope)", zorder=1)  # fmt: skip
    for k, cut in enumerate(cuts):
        ys = [cost.predict_mask(cost.mask(cut), b).total_ms for b in grid]
        ax_bw.plot(grid, ys, lw=1.6, ms=5, markevery=(3 * k % 20, 20), label=label(cut),
                   zorder=2 + k, **style[cut])  # fmt: skip
    for e in table.entries[1:]:
        ax_bw.axvline(e.min_mbps, color="0.4", ls=":", lw=0.8, zorder=0)
    ax_bw.axvline(bw, color="crimson", ls="--", lw=1.2, label=f"plan bandwidth {bw:g} Mbit/s")
    ax_bw.set_xscale("log")
    ax_bw.set_yscale("log")
    ax_bw.tick_params(labelsize=TICK_PT + 1)
    ax_bw.set_xlabel("uplink bandwidth (Mbit/s, log)")
    ax_bw.set_ylabel("predicted latency per frame (ms, log)")
    ax_bw.set_title("total latency of each optimal cut against bandwidth", fontsize=10)
    ax_bw.grid(True, which="major", alpha=0.3)
    ax_bw.legend(fontsize=TICK_PT, loc="best", framealpha=0.9)
    fig.tight_layout()
    fig.savefig(Path(path), dpi=DPI)
    return fig
