"""PNG plots of runs and sweeps (matplotlib, headless): latency CDFs, cloud timelines,
and the latency of every cut against bandwidth.

Each function saves its PNG and returns the :class:`~matplotlib.figure.Figure`, so a
test can check what was drawn (scales, limits, labels). Curves get a colour, a line
style and a marker each, widest first, so that one that coincides with another still
shows around it; counts start at zero.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from partitioner.solve.plot import COLORS, DPI, LINESTYLES, MARKERS, TICK_PT, thin_labels
from simulator.metrics import cdf_points

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def _figure(width_in: float, height_in: float) -> Figure:
    # On first use: only runs that draw pay matplotlib's import (~0.7 s). A bare Figure
    # draws with Agg and leaves pyplot's global state (and backend) alone.
    from matplotlib.figure import Figure

    return Figure(figsize=(width_in, height_in), dpi=DPI)


def _style(k: int, n: int) -> dict[str, Any]:
    """The k-th of n curves: its own colour, dash and marker; the first drawn widest."""
    return {
        "color": COLORS[k % len(COLORS)],
        "ls": LINESTYLES[k % len(LINESTYLES)],
        "marker": MARKERS[k % len(MARKERS)],
        "lw": 1.5 + 1.1 * (n - 1 - k),
        "zorder": 2 + k,
    }


def _amount(x: float) -> str:
    return f"{x:,.0f}" if abs(x) >= 100 else f"{x:.3g}"


def plot_latency_cdf(
    curves: Mapping[str, NDArray[np.float64]], path: str | Path, *, deadline_ms: float | None = None
) -> Figure:
    """One empirical CDF of per-frame latency (ms, log axis) per label (policy or group)."""
    fig = _figure(7.5, 5.2)
    ax = fig.subplots()
    n = len(curves)
    for k, (label, samples) in enumerate(curves.items()):
        x, y = cdf_points(samples)  # 512 points evenly spaced in fraction
        if not x.size:
            ax.plot([], [], label=f"{label} (no frame completed)", **_style(k, n))
            continue
        p95 = np.percentile(samples, 95) * 1e3
        every = 64  # a marker every 1/8 of the frames, shifted per curve to stay apart
        ax.plot(x * 1e3, y, ms=5, markevery=(k * every // max(n, 1), every),
                label=f"{label}: p95 {_amount(p95)} ms", **_style(k, n))  # fmt: skip
    if deadline_ms is not None:
        ax.axvline(deadline_ms, color="crimson", ls=(0, (1, 2)), lw=1.2, zorder=1,
                   label=f"deadline {deadline_ms:g} ms")  # fmt: skip
    ax.set_xscale("log")
    ax.set_xlabel("latency per completed frame (ms, log)")
    ax.set_ylabel("fraction of completed frames")
    ax.set_ylim(0, 1.0)
    ax.tick_params(labelsize=TICK_PT + 1)
    ax.grid(True, which="major", alpha=0.35)
    ax.grid(True, which="minor", alpha=0.12)
    ax.legend(
        fontsize=TICK_PT + 1,
        loc="upper center",
        bbox_to_anchor=(0.5, -0.14),
        ncol=2 if n + (deadline_ms is not None) > 2 else 1,
        frameon=False,
    )
    ax.set_title("Latency CDF", fontsize=11)
    fig.tight_layout()
    fig.savefig(Path(path), dpi=DPI)
    return fig


def plot_timeline(sites: Mapping[str, Mapping[str, Any]], path: str | Path) -> Figure:
    """Utilisation (%) and mean frames waiting per time bin, one line per cloud site; both
    axes start at zero. A site no frame reached (an edge-only run) says so instead of
    drawing a flat line."""
    fig = _figure(7.5, 5.8)
    top, bottom = fig.subplots(2, 1, sharex=True)
    n = len(sites)
    highest = 0.0
    idle = []
    horizon_s = 0.0
    bin_s = 0.0
    for k, (name, site) in enumerate(sites.items()):
        tl = site["timeline"]
        bin_s = tl["bin_s"]
        edges = np.arange(len(tl["utilization"]) + 1) * bin_s
        horizon_s = max(horizon_s, float(edges[-1]))
        if not site["frames"]:
            idle.append(name)
            continue
        style = {key: v for key, v in _style(k, n).items() if key != "marker"}  # stairs: none
        util = np.asarray(tl["utilization"]) * 100
        label = (
            f"{name}: {site['servers']} servers, {site['utilization']:.0%} busy, "
            f"{_amount(site['mean_queue'])} frames waiting on average"
        )
        top.stairs(util, edges, baseline=None, label=label, **style)
        bottom.stairs(tl["queue"], edges, baseline=None, **style)
        highest = max(highest, float(np.max(tl["queue"], initial=0.0)))
    if idle:
        note = f"no frame reached {', '.join(idle)}: nothing to draw"
        for ax in (top, bottom):
            ax.text(0.5, 0.5, note, transform=ax.transAxes, ha="center", va="center",
                    fontsize=TICK_PT + 1, color="0.35")  # fmt: skip
    top.set_ylabel("utilisation (%)")
    top.set_ylim(0, 104)  # headroom: a saturated site's line is not hidden by the frame
    top.set_yticks(range(0, 101, 20))
    bottom.set_ylabel(f"frames waiting\n(mean per {bin_s:g} s bin)")
    bottom.set_ylim(0, max(1.0, highest * 1.08))
    bottom.set_xlabel("simulated time (s)")
    bottom.set_xlim(0, horizon_s or 1.0)
    for ax in (top, bottom):
        ax.tick_params(labelsize=TICK_PT + 1)
        ax.grid(True, alpha=0.3)
    if len(idle) < n:  # above the plots, where no line can be
        top.legend(fontsize=TICK_PT, loc="lower left", bbox_to_anchor=(0, 1.0), frameon=False)
    fig.suptitle("Cloud sites over time", fontsize=11)
    fig.tight_layout()
    fig.savefig(Path(path), dpi=DPI)
    return fig


def plot_sweep(
    cells: list[Mapping[str, Any]], metric: str, path: str | Path, cut_labels: list[str]
) -> Figure:
    """The metric of every cut (x) at each bandwidth (one line each), one panel per fleet
    size; the best cut of each line is marked."""
    sizes = sorted({c["cameras"] for c in cells})
    bandwidths = sorted({c["bandwidth_mbps"] for c in cells})
    fig = _figure(max(7, 0.12 * len(cut_labels) + 4), 3.2 * len(sizes) + 1)
    axes = fig.subplots(len(sizes), 1, squeeze=False, sharex=True)
    position = {label: i for i, label in enumerate(cut_labels)}
    for ax, size in zip(axes[:, 0], sizes, strict=True):
        for k, bw in enumerate(bandwidths):
            row = sorted(
                (c for c in cells if c["cameras"] == size and c["bandwidth_mbps"] == bw),
                key=lambda c: position[c["cut"]],
            )
            x = [position[c["cut"]] for c in row]
            y = [np.nan if c["value"] is None else c["value"] for c in row]
            style = _style(k, len(bandwidths)) | {"lw": 1.2}
            (line,) = ax.plot(x, y, ms=3, label=f"{bw:g} Mbit/s", **style)
            finite = [(v, i) for v, i in zip(y, x, strict=True) if np.isfinite(v)]
            if finite:
                v, i = min(finite)
                ax.plot([i], [v], marker="*", ms=12, color=line.get_color(), zorder=10)
        ax.set_yscale("log")
        ax.set_ylabel(metric)
        ax.set_title(f"{size} cameras", fontsize=TICK_PT + 1)
        ax.tick_params(axis="y", labelsize=TICK_PT + 1)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=TICK_PT, ncol=2)
    ticks = thin_labels(len(cut_labels), [0, len(cut_labels) - 1])
    axes[-1, 0].set_xticks(range(len(cut_labels)), minor=True)
    axes[-1, 0].set_xticks(
        ticks,
        [cut_labels[i].removeprefix("after ") for i in ticks],
        rotation=90,
        fontsize=TICK_PT,
    )
    axes[-1, 0].set_xlabel("cut (a star: the best cut of each line)", fontsize=TICK_PT + 1)
    fig.tight_layout()
    fig.savefig(Path(path), dpi=DPI)
    return fig
