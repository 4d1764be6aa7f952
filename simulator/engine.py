"""Run a compiled scenario in this process: shards and sites stepped window by window.

The driver loop is the same one the Ray adapter (:mod:`simulator.ray_transport`) runs
with actors: every shard simulates its cameras up to the end of the window, then every
cloud site merges what the shards sent it and serves all batches that start before the
window's end. Results do not depend on the number of shards.

Before the clock starts, :func:`warm_up` runs a miniature of the plan so that numba
compiles (or loads from its cache) every kernel the run will call: the run's ``wall_s``
is simulation only, the warm-up is reported apart as ``compile_s``.

    plan = compile_scenario(load_scenario("scenarios/smart-city.yaml"))
    result = simulate(plan, shards=1)
    print(result.to_json()["latency_ms"])
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace

import numpy as np

from simulator.camera import CameraShard, ShardResult
from simulator.fleet import FleetPlan, GroupPlan
from simulator.policies import CompiledPolicy
from simulator.results import SimResult, collect
from simulator.site import CloudSite, SiteResult

Progress = Callable[[int, int], None]  # (windows done, windows in all)

# Frames each camera of the miniature captures: enough for a queue to form and a batch
# to carry over from one window to the next.
WARM_UP_FRAMES = 4


def miniature(plan: FleetPlan) -> FleetPlan:
    """``plan`` in miniature, for :func:`warm_up`: one camera per group and one more per
    cut option with that option fixed (so every path runs whatever the policy picks),
    periodic from t = 0 for a few frames, in two windows, against the same sites."""
    groups: list[GroupPlan] = []
    for group in plan.groups:
        variants = [group]
        for i, option in enumerate(group.options):
            fixed = CompiledPolicy("fixed", (group.policy.cuts[i],))
            variants.append(
                replace(
                    group,
                    policy=fixed,
                    options=(option,),
                    option_queue=group.option_queue[i : i + 1],
                )
            )
        for v in variants:
            groups.append(
                replace(
                    v,
                    index=len(groups),
                    count=1,
                    first_gid=len(groups),
                    arrival="periodic",
                    jitter_s=0.0,
                )
            )
    duration_s = WARM_UP_FRAMES / min(g.fps for g in plan.groups)
    return FleetPlan(
        replace(plan.scenario, duration_s=duration_s),
        tuple(groups),
        plan.sites,
        np.array([0.0, duration_s / 2, duration_s]),
    )


def warm_up(plan: FleetPlan) -> float:
    """Simulate :func:`miniature` of ``plan`` and forget it; returns the seconds it took
    (numba's compiling, or loading its cache, on the first run of a process)."""
    start = time.perf_counter()
    _run(miniature(plan), shards=1, on_window=None)
    return time.perf_counter() - start


def _run(
    plan: FleetPlan, *, shards: int, on_window: Progress | None
) -> tuple[list[ShardResult], list[SiteResult]]:
    cameras = [CameraShard(plan, lo, hi) for lo, hi in plan.shard_ranges(shards)]
    sites = [CloudSite(plan, i) for i in range(len(plan.sites))]
    windows = plan.windows
    for w, (_, t_end) in enumerate(windows):
        sent = [shard.step(t_end) for shard in cameras]
        for j, site in enumerate(sites):
            site.ingest(t_end, [batches[j] for batches in sent])
        if on_window is not None:
            on_window(w + 1, len(windows))
    return [shard.finish() for shard in cameras], [site.finish() for site in sites]


def simulate(plan: FleetPlan, *, shards: int = 1, on_window: Progress | None = None) -> SimResult:
    """Simulate ``plan`` without Ray, its cameras split into ``shards`` shards."""
    compile_s = warm_up(plan)
    start = time.perf_counter()
    shard_results, site_results = _run(plan, shards=shards, on_window=on_window)
    return collect(
        plan,
        shard_results,
        site_results,
        wall_s=time.perf_counter() - start,
        compile_s=compile_s,
        transport="local",
    )
