"""Publishing: a planner's breakpoint table written out as a model repository.

:func:`build_repository` writes one version per distinct cut of a breakpoint table (plus any
extra cuts), the table with each band pointing at its version (``null`` for an edge-only band)
and the ``local`` artifact (layout in :mod:`partitioner.deploy.repository`, which reads it
back). :func:`manual_table` builds a table from bands you choose instead of solving.
"""

from __future__ import annotations

import bisect
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from partitioner.deploy.export import write_split
from partitioner.deploy.files import write_json_atomic
from partitioner.deploy.repository import (
    FORMAT,
    FORMAT_VERSION,
    LOCAL_DIR,
    MODEL_FILE,
    Band,
    RepositoryError,
    RepositoryModel,
    check_model_name,
    read_json,
    read_model,
)
from partitioner.planner import Planner
from partitioner.solve.breakpoints import Breakpoint, BreakpointTable
from partitioner.solve.plan import Plan, plan_for_cut, resolve_node


def build_repository(
    planner: Planner,
    out_dir: str | Path,
    *,
    table: BreakpointTable | None = None,
    plans: Sequence[Plan] = (),
    name: str | None = None,
    model_spec: str | None = None,
    default_bandwidth_mbps: float | None = None,
    with_local: bool = True,
) -> RepositoryModel:
    """Write one version per distinct cut of ``table`` and ``plans``, the table, and ``local``.

    Versions are numbered 1..k in the order the cuts first appear: the table's bands from
    low to high bandwidth, then ``plans``. The default version is the one the table picks at
    ``default_bandwidth_mbps`` (the nearest cloud cut when that band is edge-only).
    """
    graph = planner.graph
    cost = planner.cost
    model_name = check_model_name(name or graph.model)
    root = Path(out_dir) / model_name
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RepositoryError(f"cannot create {root}: {exc.strerror or exc}") from None
    if not os.access(root, os.W_OK):
        raise RepositoryError(f"repository directory {root} is not writable")
    everything = frozenset(n.name for n in graph.nodes)
    order = {n.name: i for i, n in enumerate(graph.nodes)}
    input_shape = planner.loaded.input_shape

    def plan_for(edge: frozenset[str], bandwidth_mbps: float) -> Plan:
        return plan_for_cut(
            cost,
            edge,
            solver="table",
            objective=table.objective if table else "latency",
            bandwidth_mbps=bandwidth_mbps,
            solve_ms=0.0,
            input_shape=input_shape,
        )

    given = {frozenset(p.edge_nodes): p for p in plans}  # a plan given keeps its own figures
    if everything in given:
        raise RepositoryError("an edge-only plan has no tail to serve; it is the local model")
    cuts: dict[frozenset[str], Plan] = {}
    for entry in table.entries if table is not None else ():
        if entry.edge_nodes != everything and entry.edge_nodes not in cuts:
            mid = math.sqrt(entry.min_mbps * entry.max_mbps)
            cuts[entry.edge_nodes] = given.get(entry.edge_nodes) or plan_for(entry.edge_nodes, mid)
    for edge, plan in given.items():
        cuts.setdefault(edge, plan)

    version_of: dict[frozenset[str], str] = {}
    versions: dict[str, dict[str, Any]] = {}
    spec = model_spec or planner.loaded.name
    for i, (edge, plan) in enumerate(cuts.items(), start=1):
        version = str(i)
        out = write_split(planner.captured, plan, root / version, model_spec=spec)
        manifest = read_json(out / "manifest.json")
        version_of[edge] = version
        versions[version] = {
            "crossing": [t["name"] for t in manifest["crossing"]],
            "cloud_only": manifest["cloud_only"],
            "wire_bytes": plan.predicted.wire_bytes,
            "head_sha256": manifest["files"]["head.pt2"]["sha256"],
            "tail_sha256": manifest["files"]["tail.pt2"]["sha256"],
        }
    if with_local:
        local_plan = plan_for(everything, cost.network.uplink_mbps)
        write_split(planner.captured, local_plan, root / LOCAL_DIR, model_spec=spec)

    bands = []
    if table is not None:
        for entry in table.entries:
            bands.append(
                Band(
                    entry.min_mbps,
                    entry.max_mbps,
                    version_of.get(entry.edge_nodes),
                    tuple(sorted(entry.edge_nodes, key=order.__getitem__)),
                    entry.value(entry.min_mbps),
                    entry.value(entry.max_mbps),
                )
            )
    default = _default_version(bands, list(versions), default_bandwidth_mbps)
    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "name": model_name,
        "model": graph.model,
        "model_spec": spec,
        "input_shape": list(input_shape),
        "codec": cost.codec.name,
        "objective": table.objective if table else "latency",
        "edge_device": cost.edge.name,
        "cloud_device": cost.cloud.name,
        "network": cost.network.name,
        "rtt_ms": cost.network.rtt_ms,
        "default_version": default,
        "versions": versions,
        "local": LOCAL_DIR if with_local else None,
        "breakpoints": [b.to_json() for b in bands],
    }
    write_json_atomic(root / MODEL_FILE, meta)
    return read_model(root)


def manual_table(
    planner: Planner,
    bands: Sequence[tuple[float, float, str | None]],
    *,
    objective: str = "latency",
) -> BreakpointTable:
    """A breakpoint table you choose: ``(min_mbps, max_mbps, cut_after or None)`` per band.

    ``None`` makes the band edge-only. Each band is priced by the cost model like a solved
    one, so the table reads as any other; useful to pin cuts or to test adaptation.
    """
    graph = planner.graph
    everything = frozenset(n.name for n in graph.nodes)
    entries = []
    previous_max = None
    for lo, hi, node in bands:
        if not 0 < lo < hi or (previous_max is not None and lo != previous_max):
            raise RepositoryError(
                f"bands must be ordered and adjacent with 0 < min < max; got {lo:g}:{hi:g} "
                f"after a band ending at {previous_max}"
            )
        previous_max = hi
        edge = everything if node is None else graph.close([resolve_node(graph, node)])
        fixed = planner.cost.predict(edge, math.inf).total_ms if node else 0.0
        at_lo = planner.cost.predict(edge, lo).total_ms
        per = (at_lo - fixed) * lo if node else 0.0
        if node is None:
            fixed = at_lo
        entries.append(Breakpoint(lo, hi, edge, fixed, per))
    return BreakpointTable(objective, tuple(entries), tuple(n.name for n in graph.nodes))


def _default_version(
    bands: Sequence[Band], versions: Sequence[str], bandwidth_mbps: float | None
) -> str | None:
    if not versions:
        return None
    if not bands or bandwidth_mbps is None:
        return versions[0]
    lows = [b.min_mbps for b in bands]
    i = min(max(bisect.bisect_right(lows, bandwidth_mbps) - 1, 0), len(bands) - 1)
    # The band's own version, else the nearest band above (more bandwidth), else below.
    for j in [*range(i, len(bands)), *range(i - 1, -1, -1)]:
        if bands[j].version is not None:
            return bands[j].version
    return versions[0]
