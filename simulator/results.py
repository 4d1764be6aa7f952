"""The outcome of a run: the ``edgecut simulate --json`` summary, per-camera tables, files.

:func:`collect` pools what the shards and sites return into a :class:`SimResult`.
:meth:`SimResult.to_json` is the public JSON contract (docs/contracts.md): per-frame
latency percentiles (exact), deadline misses, throughput, drops, uplink bytes, edge
energy, cloud utilisation and queue timelines, per group and overall.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from simulator.camera import ShardResult
from simulator.fleet import FleetPlan
from simulator.metrics import CameraStats, percentiles
from simulator.plots import plot_latency_cdf, plot_timeline
from simulator.site import SiteResult

FloatArray = NDArray[np.float64]


def finite_json(value: Any) -> Any:
    """The JSON with nan (no frames to measure) as null: strict JSON has no NaN."""
    if isinstance(value, dict):
        return {k: finite_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [finite_json(v) for v in value]
    if isinstance(value, float) and value != value:
        return None
    return value


def _ms(x: float) -> float:
    return float(x) * 1e3


def _ratio(num: float, den: float) -> float:
    return float(num) / float(den) if den else 0.0


@dataclass
class SimResult:
    plan: FleetPlan
    stats: CameraStats  # every camera of the fleet, by global id
    samples: dict[int, FloatArray]  # group index -> every completed frame's latency (s)
    option_frames: dict[int, NDArray[np.int64]]  # group index -> accepted frames per option
    sites: list[SiteResult]
    wall_s: float
    shards: int
    transport: str
    compile_s: float = 0.0  # warming numba up before the clock started (not in wall_s)
    _percentiles: dict[int, list[float]] = field(default_factory=dict, repr=False)

    # -- summaries -------------------------------------------------------------------
    def _summary(self, lo: int, hi: int, key: int) -> dict[str, Any]:
        """Totals of cameras ``lo .. hi - 1``; ``key`` names their samples (-1: all)."""
        s = self.stats
        sl = slice(lo, hi)
        if key not in self._percentiles:  # selecting from tens of millions takes a while
            samples = self.all_samples() if key < 0 else self.group_samples(key)
            self._percentiles[key] = percentiles(samples)
        frames = int(s.generated[sl].sum())
        done = int(s.done[sl].sum())
        dropped = int(s.dropped[sl].sum())
        accepted = frames - dropped
        cloud = int(s.cloud_frames[sl].sum())
        p50, p95, p99 = self._percentiles[key]
        duration = self.plan.duration_s
        return {
            "cameras": hi - lo,
            "frames": frames,
            "completed": done,
            "dropped_frames": dropped,
            "latency_ms": {
                "p50": _ms(p50),
                "p95": _ms(p95),
                "p99": _ms(p99),
                "mean": _ms(_ratio(s.latency_sum_s[sl].sum(), done)),
                "max": _ms(s.latency_max_s[sl].max()) if done else float("nan"),
            },
            "deadline_miss_rate": _ratio(int(s.miss[sl].sum()) + dropped, frames),
            "throughput_fps": int(s.done_by_horizon[sl].sum()) / duration,
            "uplink_bytes": int(s.uplink_bytes[sl].sum()),
            "uplink_mbps": int(s.uplink_bytes[sl].sum()) * 8 / duration / 1e6,
            "edge_energy_j": float(s.energy_j[sl].sum()),
            "edge_energy_mj_per_frame": _ratio(s.energy_j[sl].sum() * 1e3, accepted),
            "cloud_fraction": _ratio(cloud, accepted),
            "stages_ms": {
                "edge": _ms(_ratio(s.edge_sum_s[sl].sum(), accepted)),
                "uplink": _ms(_ratio(s.uplink_sum_s[sl].sum(), cloud)),
                "cloud_wait": _ms(_ratio(s.cloud_wait_sum_s[sl].sum(), cloud)),
                "cloud": _ms(_ratio(s.cloud_sum_s[sl].sum(), cloud)),
            },
        }

    def group_samples(self, index: int) -> FloatArray:
        return self.samples.get(index, np.zeros(0))

    def all_samples(self) -> FloatArray:
        parts = [self.samples[g] for g in sorted(self.samples)]
        return np.concatenate(parts) if parts else np.zeros(0)

    def to_json(self) -> dict[str, Any]:
        plan = self.plan
        out = self._summary(0, plan.n_cameras, -1)
        frames = out["frames"]
        busy = sum(site.busy_s for site in self.sites)
        capacity = sum(s.servers for s in plan.sites) * plan.duration_s
        out = {
            "scenario": plan.scenario.name,
            "seed": plan.seed,
            "duration_s": plan.duration_s,
            "deadline_ms": plan.scenario.deadline_ms,
            **out,
            "cloud_utilization": _ratio(busy, capacity),
            "wall_s": self.wall_s,
            "frames_per_s": _ratio(frames, self.wall_s),
            "compile_s": self.compile_s,
            "shards": self.shards,
            "transport": self.transport,
            "windows": len(plan.windows),
            "groups": {},
            "sites": {},
        }
        for g in plan.groups:
            summary = self._summary(g.first_gid, g.first_gid + g.count, g.index)
            used = self.option_frames.get(g.index, np.zeros(len(g.options), dtype=np.int64))
            total = int(used.sum())
            cuts: dict[str, float] = {}
            for option, n in zip(g.options, used, strict=True):
                cuts[option.label] = cuts.get(option.label, 0.0) + _ratio(int(n), total)
            out["groups"][g.name] = {
                "policy": g.policy.name,
                "model": g.model,
                "device": g.device,
                "network": g.link.kind,
                "site": plan.sites[g.site].name if g.site >= 0 else None,
                **summary,
                "cuts": cuts,
            }
        for site_plan, site in zip(plan.sites, self.sites, strict=True):
            tl = site.timeline
            frames_served = int(site.queue_frames.sum())
            out["sites"][site_plan.name] = {
                "servers": site_plan.servers,
                "device": site_plan.device,
                "frames": frames_served,
                "batches": site.batches,
                "mean_batch": _ratio(frames_served, site.batches),
                "utilization": _ratio(site.busy_s, site_plan.servers * plan.duration_s),
                "mean_queue": float(np.mean(tl.waiting())),
                "mean_in_system": float(np.mean(tl.in_system())),
                "queues": {
                    label: int(n)
                    for label, n in zip(site_plan.queue_labels, site.queue_frames, strict=True)
                },
                "timeline": {
                    "bin_s": tl.width_s,
                    "utilization": (tl.busy() / site_plan.servers).tolist(),
                    "queue": tl.waiting().tolist(),
                    "in_system": tl.in_system().tolist(),
                },
            }
        return finite_json(out)

    # -- per camera -------------------------------------------------------------------
    def camera_table(self) -> dict[str, NDArray[Any]]:
        plan, s = self.plan, self.stats
        n = plan.n_cameras
        group = np.empty(n, dtype=np.int64)
        index = np.empty(n, dtype=np.int64)
        link = np.empty(n, dtype=object)
        offset = np.zeros(n)
        for g in plan.groups:
            sl = slice(g.first_gid, g.first_gid + g.count)
            group[sl] = g.index
            cams = np.arange(g.count, dtype=np.int64)
            index[sl] = cams
            links = g.link.cameras(plan.seed, g.index, cams)
            if g.link.kind == "traces":
                names = np.array(g.link.curve_names, dtype=object)
                link[sl] = names[links.curve]
                offset[sl] = links.offset_s
            else:
                link[sl] = np.char.add(np.round(links.rate_bps / 1e6, 3).astype(str), " Mbit/s")
        names = np.array([g.name for g in plan.groups], dtype=object)
        accepted = s.generated - s.dropped
        with np.errstate(invalid="ignore", divide="ignore"):
            mean_ms = np.where(s.done > 0, s.latency_sum_s / np.maximum(s.done, 1) * 1e3, np.nan)
            energy_mj = np.where(accepted > 0, s.energy_j / np.maximum(accepted, 1) * 1e3, np.nan)
        return {
            "camera": np.arange(n, dtype=np.int64),
            "group": names[group],
            "index_in_group": index,
            "link": link,
            "trace_offset_s": offset,
            "frames": s.generated,
            "completed": s.done,
            "dropped": s.dropped,
            "deadline_misses": s.miss,
            "cloud_frames": s.cloud_frames,
            "latency_mean_ms": mean_ms,
            "latency_max_ms": np.where(s.done > 0, s.latency_max_s * 1e3, np.nan),
            "uplink_bytes": s.uplink_bytes,
            "edge_energy_j": s.energy_j,
            "edge_energy_mj_per_frame": energy_mj,
        }

    def write(self, out_dir: str | Path, *, plots: bool = True) -> list[Path]:
        """summary.json, cameras.csv, cameras.parquet and (``plots``) PNGs in ``out_dir``."""
        # On first use: only runs that write tables pay pyarrow's import (~0.25 s).
        import pyarrow as pa
        import pyarrow.csv as pacsv
        import pyarrow.parquet as pq

        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        written = []
        path = out / "summary.json"
        path.write_text(json.dumps(self.to_json(), indent=2) + "\n")
        written.append(path)
        columns = self.camera_table()
        table = pa.table(
            {k: pa.array(v.tolist() if v.dtype == object else v) for k, v in columns.items()}
        )
        pq.write_table(table, out / "cameras.parquet")
        pacsv.write_csv(table, out / "cameras.csv")
        written += [out / "cameras.parquet", out / "cameras.csv"]
        if plots:
            label = {g.index: f"{g.name} ({g.policy.name})" for g in self.plan.groups}
            curves = {label[g]: self.group_samples(g) for g in sorted(label)}
            if len(curves) > 1:
                curves = {"all cameras": self.all_samples(), **curves}
            path = out / "latency_cdf.png"
            plot_latency_cdf(curves, path, deadline_ms=self.plan.scenario.deadline_ms)
            written.append(path)
            if self.plan.sites:
                path = out / "cloud_timeline.png"
                plot_timeline(self.to_json()["sites"], path)
                written.append(path)
        return written


def collect(
    plan: FleetPlan,
    shards: list[ShardResult],
    sites: list[SiteResult],
    *,
    wall_s: float,
    transport: str,
    compile_s: float = 0.0,
) -> SimResult:
    """Pool shard and site results (camera ranges added in id order: shard-independent)."""
    stats = CameraStats.zeros(plan.n_cameras)
    samples: dict[int, list[FloatArray]] = {}
    options: dict[int, NDArray[np.int64]] = {}
    for shard in sorted(shards, key=lambda r: r.lo):
        stats.add(shard.stats, shard.lo)
        for g, x in shard.samples.items():
            samples.setdefault(g, []).append(x)
        for g, n in shard.option_frames.items():
            options[g] = options.get(g, 0) + n
    for site in sorted(sites, key=lambda r: r.site_index):
        stats.add(site.stats)
        for g, x in site.samples.items():
            samples.setdefault(g, []).append(x)
    pooled = {g: np.concatenate(parts) for g, parts in samples.items()}
    return SimResult(plan, stats, pooled, options, sites, wall_s, len(shards), transport, compile_s)
