"""PNG plots of runs and sweeps (matplotlib, headless): latency CDFs, cloud timelines,
and the latency of every cut against bandwidth."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from simulator.metrics import cdf_points


def _pyplot() -> Any:
    # On first use: only runs that draw pay matplotlib's import (~0.7 s).
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_latency_cdf(
    curves: Mapping[str, NDArray[np.float64]], path: str | Path, *, deadline_ms: float | None = None
) -> Path:
    """One empirical CDF of per-frame latency (ms) per label (policy or group)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for label, samples in curves.items():
        x, y = cdf_points(samples)
        if x.size:
            ax.plot(x * 1e3, y, label=f"{label} (p95 {np.percentile(samples, 95) * 1e3:.0f} ms)")
    if deadline_ms is not None:
        ax.axvline(deadline_ms, color="k", ls=":", lw=1, label=f"deadline {deadline_ms:g} ms")
    ax.set_xscale("log")
    ax.set_xlabel("latency per frame (ms)")
    ax.set_ylabel("fraction of frames")
    ax.set_ylim(0, 1)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    ax.set_title("Latency CDF")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)


def plot_timeline(sites: Mapping[str, Mapping[str, Any]], path: str | Path) -> Path:
    """Utilisation and mean queue length over time, one line per cloud site."""
    plt = _pyplot()
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(7, 5), sharex=True)
    for name, site in sites.items():
        tl = site["timeline"]
        t = (np.arange(len(tl["utilization"])) + 0.5) * tl["bin_s"]
        top.plot(t, tl["utilization"], label=f"{name} ({site['servers']} servers)")
        bottom.plot(t, tl["queue"], label=name)
    top.set_ylabel("utilisation")
    top.set_ylim(0, 1.05)
    bottom.set_ylabel("frames waiting")
    bottom.set_xlabel("simulated time (s)")
    for ax in (top, bottom):
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    top.set_title("Cloud sites over time")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)


def plot_sweep(
    cells: list[Mapping[str, Any]], metric: str, path: str | Path, cut_labels: list[str]
) -> Path:
    """The metric of every cut (x) at each bandwidth (one line each), one panel per fleet
    size; the best cut of each line is marked."""
    plt = _pyplot()
    sizes = sorted({c["cameras"] for c in cells})
    bandwidths = sorted({c["bandwidth_mbps"] for c in cells})
    fig, axes = plt.subplots(
        len(sizes),
        1,
        figsize=(max(7, 0.12 * len(cut_labels) + 4), 3.2 * len(sizes)),
        squeeze=False,
        sharex=True,
    )
    position = {label: i for i, label in enumerate(cut_labels)}
    for ax, size in zip(axes[:, 0], sizes, strict=True):
        for bw in bandwidths:
            row = sorted(
                (c for c in cells if c["cameras"] == size and c["bandwidth_mbps"] == bw),
                key=lambda c: position[c["cut"]],
            )
            x = [position[c["cut"]] for c in row]
            y = [np.nan if c["value"] is None else c["value"] for c in row]
            (line,) = ax.plot(x, y, marker=".", ms=3, lw=1, label=f"{bw:g} Mbit/s")
            finite = [(v, i) for v, i in zip(y, x, strict=True) if np.isfinite(v)]
            if finite:
                v, i = min(finite)
                ax.plot([i], [v], marker="*", ms=12, color=line.get_color())
        ax.set_yscale("log")
        ax.set_ylabel(metric)
        ax.set_title(f"{size} cameras", fontsize=9)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7, ncol=2)
    ticks = list(range(len(cut_labels)))
    step = max(1, len(ticks) // 40)
    axes[-1, 0].set_xticks(ticks[::step])
    axes[-1, 0].set_xticklabels(
        [cut_labels[i].removeprefix("after ") for i in ticks[::step]], rotation=90, fontsize=6
    )
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)
