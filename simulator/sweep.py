"""Sweeps: simulate every (cut, bandwidth, fleet size) of a scenario and pick the best cut.

Each cell is the scenario with every group's policy replaced by one fixed cut, every
group's uplink by a constant ``bandwidth`` (keeping its RTT and radio), and, with fleet
sizes, the group sizes scaled to that many cameras in all. Cells are independent small
simulations, run as Ray tasks (:func:`simulator.ray_transport.map_plans`) or in this
process. The best cut of a condition minimises the metric (mean or a percentile of the
per-frame latency, or the deadline-miss rate); it is set beside the planner's cut for
that bandwidth (chosen for an idle cloud) and that cut's metric *as simulated* in the
same condition (the planner's cut is simulated too when it is not one of the swept
cuts), so that the two compare like with like; the planner's idle-cloud prediction is
kept apart.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from partitioner.errors import ConfigError, EdgecutError
from simulator.cuts import GroupModel
from simulator.engine import simulate
from simulator.fleet import FleetPlan, compile_scenario, network_profile
from simulator.results import finite_json
from simulator.scenario import NetworkConfig, Scenario

METRICS = ("mean", "p50", "p95", "p99", "miss-rate")
# Cuts whose metric is within this relative distance of the best are reported as tied.
TIE_RTOL = 1e-9


def metric_value(summary: dict[str, Any], metric: str) -> float:
    """The metric of one cell (nan when no frame completed)."""
    value = (
        summary["deadline_miss_rate"] if metric == "miss-rate" else summary["latency_ms"][metric]
    )
    return float("nan") if value is None else float(value)


def run_cell(plan: FleetPlan) -> dict[str, Any]:
    """One cell, simulated in this process; the summary without per-site timelines."""
    summary = simulate(plan).to_json()
    for site in summary["sites"].values():
        site.pop("timeline", None)
    summary.pop("groups", None)
    return summary


@dataclass(frozen=True)
class SweepCell:
    cut: str
    bandwidth_mbps: float
    cameras: int
    value: float
    summary: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        s = self.summary
        return {
            "cut": self.cut,
            "bandwidth_mbps": self.bandwidth_mbps,
            "cameras": self.cameras,
            "value": self.value,
            "frames": s["frames"],
            "latency_ms": s["latency_ms"],
            "deadline_miss_rate": s["deadline_miss_rate"],
            "throughput_fps": s["throughput_fps"],
            "cloud_utilization": s["cloud_utilization"],
            "uplink_bytes": s["uplink_bytes"],
            "edge_energy_mj_per_frame": s["edge_energy_mj_per_frame"],
        }


@dataclass(frozen=True)
class SweepResult:
    scenario: str
    metric: str
    cuts: list[str]
    cells: list[SweepCell]  # the grid: every cut x bandwidth x fleet size
    planner: dict[float, tuple[str, float]]  # bandwidth -> (planner's cut, its predicted ms)
    # (bandwidth, cameras) -> the planner's cut simulated there: a cell of the grid when
    # the cut is one of the swept cuts, else a simulation of its own.
    planner_cells: dict[tuple[float, int], SweepCell]
    wall_s: float

    def best(self) -> list[dict[str, Any]]:
        """The best cut of every (bandwidth, fleet size), with ties and the planner's cut."""
        out = []
        keys = sorted({(c.cameras, c.bandwidth_mbps) for c in self.cells})
        order = {label: i for i, label in enumerate(self.cuts)}
        for cameras, bw in keys:
            row = sorted(
                (c for c in self.cells if c.cameras == cameras and c.bandwidth_mbps == bw),
                key=lambda c: order[c.cut],
            )
            values = np.array([c.value for c in row])
            finite = np.isfinite(values)
            lowest = float(values[finite].min()) if finite.any() else float("nan")
            tied = [
                c.cut
                for c in row
                if np.isfinite(c.value) and c.value <= lowest + TIE_RTOL * max(1.0, abs(lowest))
            ]
            planner_cut, planner_ms = self.planner[bw]
            planner_cell = self.planner_cells[bw, cameras]
            swept = any(c is planner_cell for c in row)
            out.append(
                {
                    "bandwidth_mbps": bw,
                    "cameras": cameras,
                    "cut": tied[0] if tied else None,
                    "value": lowest,
                    "tied": tied,
                    "planner_cut": planner_cut,
                    "planner_value": planner_cell.value,
                    "planner_predicted_ms": planner_ms,
                    "matches_planner": swept and planner_cell.cut in tied,
                }
            )
        return out

    def to_json(self) -> dict[str, Any]:
        data = {
            "scenario": self.scenario,
            "metric": self.metric,
            "cuts": self.cuts,
            "bandwidths_mbps": sorted({c.bandwidth_mbps for c in self.cells}),
            "fleet_sizes": sorted({c.cameras for c in self.cells}),
            "best": self.best(),
            "cells": [c.to_json() for c in self.cells],
            "wall_s": self.wall_s,
        }
        return finite_json(data)


def scaled_counts(counts: Sequence[int], total: int) -> list[int]:
    """Group sizes in the proportions of ``counts`` summing to ``total`` (each >= 1;
    largest remainders get the leftover cameras, ties to the earlier group)."""
    if total < len(counts):
        raise EdgecutError(f"a fleet of {total} cameras cannot hold {len(counts)} groups")
    weights = np.asarray(counts, dtype=np.float64)
    exact = weights / weights.sum() * total
    out = np.maximum(np.floor(exact).astype(np.int64), 1)
    while out.sum() < total:
        out[int(np.argmax(exact - out))] += 1
    while out.sum() > total:
        out[int(np.argmax(np.where(out > 1, out - exact, -np.inf)))] -= 1
    return [int(v) for v in out]


def _at_bandwidth(network: NetworkConfig, mbps: float, rtt_s: float) -> NetworkConfig:
    return NetworkConfig(
        mbps=mbps,
        rtt_ms=rtt_s * 1e3,
        downlink_mbps=network.downlink_mbps,
        radio=network.profile_name(),
    )


def _group_model(scenario: Scenario, plan: FleetPlan, bandwidth_mbps: float | None) -> GroupModel:
    """The first group's model priced as the planner sees it (at ``bandwidth_mbps``)."""
    specs = {(g.model, g.input_shape) for g in scenario.fleet}
    if len(specs) != 1:
        raise ConfigError(
            f"{scenario.source}: fleet: a sweep applies one cut to every group, so all groups "
            f"must run the same model and input shape; got {sorted(map(str, specs))}"
        )
    group = scenario.fleet[0]
    site = scenario.cloud[scenario.site_index(group)] if scenario.cloud else None
    network = network_profile(group, plan.groups[0].link)
    if bandwidth_mbps is not None:
        network = network.with_bandwidth(bandwidth_mbps)
    return GroupModel.create(
        group.model,
        group.input_shape,
        edge=group.device,
        cloud=site.device if site else "x86-server",
        network=network,
        codec=group.codec,
        edge_dtype=group.edge_dtype,
        cloud_dtype=site.dtype if site else None,
    )


def resolve_cuts(model: GroupModel, cuts: str | Sequence[str]) -> list[frozenset[str]]:
    """``all`` (every layer boundary) or a list of ``edge-only``, ``cloud-only``, node names."""
    if isinstance(cuts, str):
        if cuts != "all":
            raise EdgecutError(f"--cuts expects all or a comma-separated list, got {cuts!r}")
        return model.prefix_cuts()
    out: list[frozenset[str]] = []
    for name in cuts:
        if name == "edge-only":
            cut = model.edge_only()
        elif name == "cloud-only":
            cut = model.cloud_only()
        else:
            cut = model.cut_after(name)
        if cut not in out:
            out.append(cut)
    return out


def sweep(
    scenario: Scenario,
    *,
    cuts: str | Sequence[str],
    bandwidths_mbps: Sequence[float],
    fleet_sizes: Sequence[int] | None = None,
    metric: str = "mean",
    run: Callable[[list[FleetPlan]], list[dict[str, Any]]] | None = None,
) -> SweepResult:
    """Simulate the grid; ``run`` maps plans to summaries (default: here, one by one)."""
    if metric not in METRICS:
        raise EdgecutError(f"unknown metric {metric!r}: expected one of {', '.join(METRICS)}")
    if not bandwidths_mbps or any(not b > 0 for b in bandwidths_mbps):
        raise EdgecutError(f"bandwidths must be > 0 Mbit/s, got {list(bandwidths_mbps)}")
    if fleet_sizes is not None and any(n < 1 for n in fleet_sizes):
        raise EdgecutError(f"fleet sizes must be >= 1, got {list(fleet_sizes)}")
    start = time.perf_counter()
    models: dict = {}
    base_plan = compile_scenario(scenario, models=models)
    model = _group_model(scenario, base_plan, None)
    cut_sets = resolve_cuts(model, cuts)
    labels = [model.label(c) for c in cut_sets]
    sizes = list(fleet_sizes) if fleet_sizes else [scenario.cameras]
    counts = [g.count for g in scenario.fleet]
    plans: list[FleetPlan] = []
    # Per plan: (cut label, bandwidth, cameras, whether the cut is one of the grid's).
    keys: list[tuple[str, float, int, bool]] = []
    planner: dict[float, tuple[str, float]] = {}
    planner_index: dict[tuple[float, int], int] = {}  # -> the plan of the planner's cut
    rtts = [g.link.rtt_s for g in base_plan.groups]
    for bw in bandwidths_mbps:
        # The planner's choice for this uplink, with the first group's devices and RTT.
        at_bw = _group_model(scenario, base_plan, bw)
        best = at_bw.best_cut(bw)
        planner[float(bw)] = (model.label(best), float(at_bw.cost.predict(best, bw).total_ms))
        for size in sizes:
            fleet = tuple(
                replace(g, count=n, network=_at_bandwidth(g.network, bw, rtt))
                for g, n, rtt in zip(scenario.fleet, scaled_counts(counts, size), rtts, strict=True)
            )
            variant = replace(scenario, fleet=fleet)
            for cut, label in zip(cut_sets, labels, strict=True):
                if cut == best:
                    planner_index[float(bw), size] = len(plans)
                fixed = {g.name: cut for g in fleet}
                plans.append(compile_scenario(variant, fixed_cuts=fixed, models=models))
                keys.append((label, float(bw), size, True))
            if (float(bw), size) not in planner_index:  # simulated apart from the grid
                planner_index[float(bw), size] = len(plans)
                fixed = {g.name: best for g in fleet}
                plans.append(compile_scenario(variant, fixed_cuts=fixed, models=models))
                keys.append((model.label(best), float(bw), size, False))
    summaries = run(plans) if run is not None else [run_cell(p) for p in plans]
    every = [
        SweepCell(label, bw, size, metric_value(s, metric), s)
        for (label, bw, size, _), s in zip(keys, summaries, strict=True)
    ]
    cells = [c for c, key in zip(every, keys, strict=True) if key[3]]
    planner_cells = {k: every[i] for k, i in planner_index.items()}
    return SweepResult(
        scenario.name,
        metric,
        labels,
        cells,
        planner,
        planner_cells,
        time.perf_counter() - start,
    )
