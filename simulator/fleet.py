"""A scenario compiled for the simulator core: numbers per group and per cloud site.

:func:`compile_scenario` does everything that needs the partitioner (torch): it captures
each model once, prices the cuts each group's policy may use (:mod:`simulator.cuts`),
loads the traces (:mod:`simulator.links`), assigns every tail to a queue of its cloud
site and cuts simulated time into windows. The :class:`FleetPlan` it returns holds only
numpy arrays and small dataclasses: it is what shards and sites (local or Ray actors)
receive, and they never import torch.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from partitioner.errors import ConfigError, EdgecutError
from partitioner.pricing.network import NETWORKS
from simulator.cuts import CutOption, GroupModel
from simulator.links import LinkPlan, compile_link
from simulator.policies import POLICIES, CompiledPolicy
from simulator.scenario import GroupConfig, Scenario, SiteConfig

# Frames per window when the scenario does not set window_s: large enough that per-window
# overheads (Python, Ray messages) are small, small enough that a window's frame arrays
# (~100 bytes a frame) stay well under a GB.
WINDOW_FRAMES = 1_500_000
MAX_WINDOWS = 10_000


@dataclass(frozen=True, eq=False)
class GroupPlan:
    index: int
    name: str
    count: int
    first_gid: int  # global camera ids first_gid .. first_gid + count - 1
    fps: float
    arrival: str
    jitter_s: float
    policy: CompiledPolicy
    options: tuple[CutOption, ...]  # indexed like policy.cuts
    option_queue: NDArray[np.int32]  # queue of each option at the site; -1: edge-only
    site: int  # -1: no cloud
    link: LinkPlan
    edge_queue_limit: int | None
    model: str
    device: str
    codec: str
    idle_w: float


@dataclass(frozen=True, eq=False)
class SitePlan:
    index: int
    name: str
    servers: int
    device: str
    max_batch: int
    window_s: float
    service: str  # profile or exponential
    queue_batch_s: NDArray[np.float64]  # (queues, max_batch): batch service time per tail
    queue_labels: tuple[str, ...]


@dataclass(frozen=True, eq=False)
class FleetPlan:
    scenario: Scenario
    groups: tuple[GroupPlan, ...]
    sites: tuple[SitePlan, ...]
    window_edges_s: NDArray[np.float64]  # 0 = e[0] < e[1] < ... < e[-1] = duration

    @property
    def duration_s(self) -> float:
        return self.scenario.duration_s

    @property
    def deadline_s(self) -> float:
        return self.scenario.deadline_ms / 1e3

    @property
    def seed(self) -> int:
        return self.scenario.seed

    @property
    def n_cameras(self) -> int:
        return sum(g.count for g in self.groups)

    @property
    def first_gids(self) -> NDArray[np.int64]:
        return np.array([g.first_gid for g in self.groups], dtype=np.int64)

    @property
    def windows(self) -> list[tuple[float, float]]:
        e = self.window_edges_s
        return [(float(e[i]), float(e[i + 1])) for i in range(e.size - 1)]

    def shard_ranges(self, shards: int) -> list[tuple[int, int]]:
        """Contiguous ranges of global camera ids, as equal as possible, in id order."""
        n = self.n_cameras
        shards = max(1, min(int(shards), n))
        edges = [n * i // shards for i in range(shards + 1)]
        return [(edges[i], edges[i + 1]) for i in range(shards)]


def _window_edges(scenario: Scenario, frames_per_s: float) -> NDArray[np.float64]:
    duration = scenario.duration_s
    if scenario.window_s is not None:
        window = scenario.window_s
    else:
        window = WINDOW_FRAMES / max(frames_per_s, 1e-9)
    window = min(max(window, duration / MAX_WINDOWS), duration)
    n = max(1, int(np.ceil(duration / window - 1e-9)))
    edges = np.arange(n + 1, dtype=np.float64) * window
    edges[-1] = duration
    return edges


def network_profile(group: GroupConfig, link: LinkPlan) -> Any:
    profile = NETWORKS.get(group.network.profile_name())
    return profile.with_bandwidth(link.nominal_mbps).with_rtt(link.rtt_s * 1e3)


def _context(scenario: Scenario, where: str, exc: EdgecutError) -> ConfigError:
    return ConfigError(f"{scenario.source}: {where}: {' '.join(str(exc).split())}")


def compile_scenario(
    scenario: Scenario,
    *,
    fixed_cuts: Mapping[str, frozenset[str]] | None = None,
    models: dict[tuple[Any, ...], GroupModel] | None = None,
) -> FleetPlan:
    """Price, load and lay out ``scenario`` for the core.

    ``fixed_cuts`` (group name -> edge node set) replaces those groups' policies by that
    one cut (sweeps); ``models`` caches :class:`GroupModel` objects across calls.
    """
    models = {} if models is None else models
    fixed_cuts = fixed_cuts or {}
    site_queues: list[dict[tuple[Any, ...], int]] = [{} for _ in scenario.cloud]
    site_tables: list[list[NDArray[np.float64]]] = [[] for _ in scenario.cloud]
    site_labels: list[list[str]] = [[] for _ in scenario.cloud]
    groups: list[GroupPlan] = []
    first_gid = 0
    for gi, group in enumerate(scenario.fleet):
        where = f"fleet[{gi}]"
        site_index = scenario.site_index(group)
        site: SiteConfig | None = scenario.cloud[site_index] if site_index >= 0 else None
        max_batch = site.batching.max_batch if site else 1
        try:
            link_probe = compile_link(group.network, 0)
            key = (
                group.model,
                group.input_shape,
                group.device,
                group.edge_dtype,
                site.device if site else "x86-server",
                site.dtype if site else None,
                group.codec,
                group.network.profile_name(),
                link_probe.nominal_mbps,
                link_probe.rtt_s,
            )
            if key not in models:
                models[key] = GroupModel.create(
                    group.model,
                    group.input_shape,
                    edge=group.device,
                    cloud=site.device if site else "x86-server",
                    network=network_profile(group, link_probe),
                    codec=group.codec,
                    edge_dtype=group.edge_dtype,
                    cloud_dtype=site.dtype if site else None,
                )
            model = models[key]
        except EdgecutError as exc:
            raise _context(scenario, where, exc) from None
        link = compile_link(group.network, model.output_bytes)
        policy_config = scenario.policy_of(group)
        policy_where = f"{where}.policy" if group.policy else "policy"
        try:
            if group.name in fixed_cuts:
                policy = CompiledPolicy("fixed", (frozenset(fixed_cuts[group.name]),))
            else:
                policy = POLICIES.get(policy_config.name).compile(policy_config, model)
            options = tuple(model.option(cut, max_batch) for cut in policy.cuts)
        except EdgecutError as exc:
            raise _context(scenario, policy_where, exc) from None
        queue = np.full(len(options), -1, dtype=np.int32)
        for oi, option in enumerate(options):
            if not option.uses_cloud:
                continue
            if site is None:
                raise ConfigError(
                    f"{scenario.source}: {policy_where}: cut {option.label} needs a cloud site"
                )
            queues = site_queues[site_index]
            if option.tail_key not in queues:
                queues[option.tail_key] = len(queues)
                site_tables[site_index].append(option.batch_s)
                site_labels[site_index].append(f"{model.model} {option.label}")
            queue[oi] = queues[option.tail_key]
        groups.append(
            GroupPlan(
                index=gi,
                name=group.name,
                count=group.count,
                first_gid=first_gid,
                fps=group.fps,
                arrival=group.arrival,
                jitter_s=group.jitter_s,
                policy=policy,
                options=options,
                option_queue=queue,
                site=site_index,
                link=link,
                edge_queue_limit=group.edge_queue_limit,
                model=model.model,
                device=group.device,
                codec=group.codec,
                idle_w=model.cost.edge.idle_power_w,
            )
        )
        first_gid += group.count
    sites = []
    for si, site in enumerate(scenario.cloud):
        tables = site_tables[si]
        batch = site.batching.max_batch
        sites.append(
            SitePlan(
                index=si,
                name=site.name,
                servers=site.servers,
                device=site.device,
                max_batch=batch,
                window_s=site.batching.window_ms / 1e3,
                service=site.service,
                queue_batch_s=np.array(tables).reshape(len(tables), batch),
                queue_labels=tuple(site_labels[si]),
            )
        )
    frames_per_s = sum(g.count * g.fps for g in scenario.fleet)
    return FleetPlan(scenario, tuple(groups), tuple(sites), _window_edges(scenario, frames_per_s))
