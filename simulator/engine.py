"""Run a compiled scenario in this process: shards and sites stepped window by window.

The driver loop is the same one the Ray adapter (:mod:`simulator.ray_transport`) runs
with actors: every shard simulates its cameras up to the end of the window, then every
cloud site merges what the shards sent it and serves all batches that start before the
window's end. Results do not depend on the number of shards.

    plan = compile_scenario(load_scenario("scenarios/smart-city.yaml"))
    result = simulate(plan, shards=1)
    print(result.to_json()["latency_ms"])
"""

from __future__ import annotations

import time
from collections.abc import Callable

from simulator.camera import CameraShard
from simulator.fleet import FleetPlan
from simulator.results import SimResult, collect
from simulator.site import CloudSite

Progress = Callable[[int, int], None]  # (windows done, windows in all)


def simulate(plan: FleetPlan, *, shards: int = 1, on_window: Progress | None = None) -> SimResult:
    """Simulate ``plan`` without Ray, its cameras split into ``shards`` shards."""
    start = time.perf_counter()
    cameras = [CameraShard(plan, lo, hi) for lo, hi in plan.shard_ranges(shards)]
    sites = [CloudSite(plan, i) for i in range(len(plan.sites))]
    windows = plan.windows
    for w, (_, t_end) in enumerate(windows):
        sent = [shard.step(t_end) for shard in cameras]
        for j, site in enumerate(sites):
            site.ingest(t_end, [batches[j] for batches in sent])
        if on_window is not None:
            on_window(w + 1, len(windows))
    shard_results = [shard.finish() for shard in cameras]
    site_results = [site.finish() for site in sites]
    return collect(
        plan,
        shard_results,
        site_results,
        wall_s=time.perf_counter() - start,
        transport="local",
    )
