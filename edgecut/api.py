"""edgecut from Python: the CLI's commands as functions that return typed results.

    import edgecut

    result = edgecut.plan("resnet18", edge="rpi4", bandwidth_mbps=8)
    print(result.plan.predicted.total_ms, result.edge_nodes[-1])
    table = edgecut.breakpoints(result.planner, 0.5, 500)   # reuses the captured model

Every result has ``to_json()``: exactly the object ``edgecut <command> ... --json`` prints for
the same inputs (the commands are thin layers over these functions). A model is a zoo name,
``pkg.module:factory`` or ``path/to/file.py:factory``, or a :class:`Planner` made once by
:func:`planner` so several calls capture and price it only once. Errors a caller can cause
raise :class:`partitioner.errors.EdgecutError` with the CLI's one-line message. Nothing
heavy (torch, numba, Ray) is imported before a function needs it. ``docs/api.md`` has a
worked example.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from protos.allocator import keep_freed_memory as keep_freed_memory  # re-exported: call once

if TYPE_CHECKING:
    from partitioner.compress.search import SearchResult
    from partitioner.planner import Planner
    from partitioner.solve.breakpoints import BreakpointTable
    from partitioner.solve.plan import Plan
    from simulator.results import SimResult
    from simulator.scenario import Scenario

# (task, done, total) and, where a step has one, a note on what is being done: how long
# functions report how far they are (edgecut.output.Progress takes both forms).
ProgressFn = Callable[..., None]


# ------------------------------------------------------------------ planning


def planner(
    model: str,
    *,
    edge: str = "rpi4",
    cloud: str = "x86-server",
    network: str = "lte",
    bandwidth_mbps: float | None = None,
    rtt_ms: float | None = None,
    codec: str = "none",
    input_shape: Sequence[int] | str | None = None,
    edge_dtype: str | None = None,
    **options: Any,
) -> Planner:
    """Capture ``model`` and price it for a device pair and a network (``edgecut plan``'s
    model, device and network flags); pass the result as ``model`` to the other functions.

    ``input_shape`` is batch first, ``(1, 3, 224, 224)`` or ``"1x3x224x224"``; further
    keyword arguments go to :meth:`partitioner.planner.Planner.create` (e.g. ``threads``).
    """
    from partitioner.planner import Planner

    return Planner.create(
        model,
        edge=edge,
        cloud=cloud,
        network=network,
        bandwidth_mbps=bandwidth_mbps,
        rtt_ms=rtt_ms,
        codec=codec,
        input_shape=_shape(input_shape),
        edge_dtype=edge_dtype,
        **options,
    )


def _shape(shape: Sequence[int] | str | None) -> tuple[int, ...] | None:
    if shape is None or not isinstance(shape, str):
        return None if shape is None else tuple(int(d) for d in shape)
    from partitioner.model.spec import parse_input_shape

    return parse_input_shape(shape if "," in shape else re.sub(r"\s*[xX×]\s*", ",", shape))


def _planner(model: str | Planner, options: dict[str, Any]) -> Planner:
    if isinstance(model, str):
        return planner(model, **options)
    if options:
        from partitioner.errors import EdgecutError

        raise EdgecutError(
            f"expected a model name with {', '.join(sorted(options))}, or a Planner without "
            "them; got a Planner (its devices and network are already set)"
        )
    return model


@dataclass(frozen=True)
class PlanResult:
    """A plan: the cut, what crosses it, the predicted latency; ``planner`` is the captured,
    priced model it was made from (reuse it for more plans)."""

    plan: Plan
    planner: Planner = field(repr=False, compare=False)
    # With an accuracy budget: the joint search over cut x compression x codec.
    search: SearchResult | None = field(default=None, repr=False, compare=False)

    @property
    def edge_nodes(self) -> tuple[str, ...]:
        return self.plan.edge_nodes

    @property
    def total_ms(self) -> float:
        return self.plan.predicted.total_ms

    def to_json(self) -> dict[str, Any]:
        """``edgecut plan ... --json``."""
        return self.plan.to_json()

    def write(self, path: str | Path) -> Path:
        """Write the plan (``edgecut plan --out``) atomically: a reader never sees half."""
        from partitioner.deploy.files import write_json_atomic

        write_json_atomic(Path(path), self.to_json())
        return Path(path)

    def plot(self, path: str | Path, *, sweep_factor: float = 30.0) -> Path:
        """``edgecut plan --plot``: latency per cut, and against bandwidth around this plan's."""
        from partitioner.solve.plot import plot_plan

        bw = self.plan.bandwidth_mbps
        table = self.planner.sweep(bw / sweep_factor, bw * sweep_factor, objective="latency")
        plot_plan(self.planner.cost, self.plan, table, str(path))
        return Path(path)


def plan(
    model: str | Planner,
    *,
    objective: str = "latency",
    solver: str = "auto",
    cut_after: str | None = None,
    accuracy_budget: float | None = None,
    compress: str | Sequence[str] | None = None,
    compress_config: str | Path | Any | None = None,
    progress: ProgressFn | None = None,
    **planner_options: Any,
) -> PlanResult:
    """The best cut (``edgecut plan``), or the cut after ``cut_after`` priced as it is.

    With ``accuracy_budget`` (points of measured accuracy the head may lose), cut x head
    compression x feature codec are searched jointly (``--accuracy-budget PTS --compress
    auto``): ``compress`` is ``"auto"`` (default), or method names such as ``"int8,prune"``;
    ``compress_config`` a YAML file or a :class:`~partitioner.compress.CompressConfig`.
    ``planner_options`` (edge, cloud, network, bandwidth_mbps, ...) go to :func:`planner`
    when ``model`` is a name.
    """
    searching = accuracy_budget is not None or compress is not None
    methods = compress_methods(accuracy_budget, compress, cut_after, objective) if searching else []
    p = _planner(model, planner_options)  # after the cheap checks: capturing takes seconds
    if searching:
        import warnings

        from partitioner.compress import CompressConfig, load_config
        from partitioner.compress.search import search

        if compress_config is None:
            compress_config = CompressConfig()
        elif isinstance(compress_config, str | Path):
            compress_config = load_config(compress_config)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            found = search(
                p,
                accuracy_budget=float(accuracy_budget or 0.0),
                methods=methods,
                config=compress_config,
                progress=progress,
            )
        return PlanResult(found.plan, p, found)
    if cut_after:
        return PlanResult(p.cut_after(cut_after, objective=objective), p)
    return PlanResult(p.plan(objective=objective, solver=solver), p)


def compress_methods(
    accuracy_budget: float | None,
    compress: str | Sequence[str] | None,
    cut_after: str | None = None,
    objective: str = "latency",
) -> list[str]:
    """The methods a search under an accuracy budget tries (``none`` among them), after
    checking the options go together; an EdgecutError names the flag otherwise."""
    from partitioner.compress import METHODS
    from partitioner.compress.search import NONE
    from partitioner.errors import EdgecutError

    spec = compress if isinstance(compress, str) or compress is None else ",".join(compress)
    spec = (spec or "auto").strip()
    if accuracy_budget is None:
        raise EdgecutError(
            f"--compress {spec} needs --accuracy-budget PTS (the accuracy, in points, "
            "the compression may cost); got none"
        )
    if cut_after:
        raise EdgecutError("--accuracy-budget searches the cut itself; drop --cut-after")
    if objective != "latency":
        raise EdgecutError(f"--accuracy-budget minimises latency; got --objective {objective}")
    known = [m.name for m in METHODS.list()]
    if spec == "auto":
        return [NONE, *known]
    methods = [m.strip() for m in spec.split(",") if m.strip()]
    unknown = [m for m in methods if m not in (NONE, *known)]
    if unknown or not methods:
        raise EdgecutError(
            f"--compress expects auto or a comma list of {', '.join([NONE, *known])}; got {spec!r}"
        )
    return methods


@dataclass(frozen=True)
class BreakpointsResult:
    """The best cut for every bandwidth in a range (``edgecut plan --sweep-bandwidth``)."""

    table: BreakpointTable
    planner: Planner = field(repr=False, compare=False)

    def to_json(self) -> dict[str, Any]:
        """``edgecut plan ... --sweep-bandwidth LO:HI --json``."""
        return {"model": self.planner.graph.model, **self.table.to_json()}


def breakpoints(
    model: str | Planner,
    lo_mbps: float,
    hi_mbps: float,
    *,
    objective: str = "latency",
    solver: str = "auto",
    **planner_options: Any,
) -> BreakpointsResult:
    """The breakpoint table: the best cut for every uplink in ``lo_mbps..hi_mbps``."""
    p = _planner(model, planner_options)
    return BreakpointsResult(p.sweep(lo_mbps, hi_mbps, objective=objective, solver=solver), p)


# ------------------------------------------------------------------ split and compress


@dataclass(frozen=True)
class SplitResult:
    """A split artifact on disk: head.pt2, tail.pt2 and manifest.json in ``path``."""

    path: Path
    manifest: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        """``edgecut split ... --json``: the manifest."""
        return self.manifest


def plan_json(source: PlanResult | Plan | dict[str, Any] | str | Path) -> dict[str, Any]:
    """The JSON object of a plan: a :class:`PlanResult`, a Plan, the object itself, or a plan
    file (``edgecut plan --out``), a file checked against the plan's schema."""
    if isinstance(source, PlanResult):
        return source.to_json()
    if isinstance(source, dict):
        return source
    if isinstance(source, str | Path):
        from edgecut.args import read_plan_json

        return read_plan_json(str(source))
    data: dict[str, Any] = source.to_json()
    return data


def load_plan(source: PlanResult | Plan | dict[str, Any] | str | Path) -> Plan:
    """The Plan of :func:`plan_json`'s sources."""
    from partitioner.solve.plan import Plan

    if isinstance(source, PlanResult):
        return source.plan
    return source if isinstance(source, Plan) else Plan.from_json(plan_json(source))


def split(
    model: str | Planner,
    out: str | Path,
    *,
    plan: PlanResult | Plan | dict[str, Any] | str | Path | None = None,
    cut_after: str | None = None,
    objective: str = "latency",
    solver: str = "auto",
    model_spec: str | None = None,
    **planner_options: Any,
) -> SplitResult:
    """Export the head and tail of ``plan`` (else of the cut after ``cut_after``, else of the
    best cut) to ``out`` (``edgecut split``). ``model_spec`` is recorded in the manifest
    (default: ``model`` when it is a name)."""
    from partitioner.deploy.artifact import read_manifest
    from partitioner.errors import EdgecutError

    chosen = load_plan(plan) if plan is not None else None  # cheap: before the capture
    p = _planner(model, planner_options)
    if chosen is not None:
        if chosen.model != p.graph.model:
            raise EdgecutError(
                f"--plan is for model {chosen.model!r}, but --model is {p.graph.model!r}"
            )
        missing = [n for n in chosen.edge_nodes if n not in p.graph.index]
        if missing:
            raise EdgecutError(f"--plan names nodes this model does not have: {missing[:3]}")
    elif cut_after:
        chosen = p.cut_after(cut_after, objective=objective)
    else:
        chosen = p.plan(objective=objective, solver=solver)
    spec = model_spec if model_spec is not None else model if isinstance(model, str) else None
    path = p.split(chosen, out, model_spec=spec)
    return SplitResult(Path(path), read_manifest(path))


@dataclass(frozen=True)
class RepositoryResult:
    """A model repository both nodes read: one version per cut of the breakpoint table (and
    of the extra cuts asked for), the table, the whole model for local fallback."""

    model: Any = field(repr=False)  # partitioner.deploy.repository.RepositoryModel

    @property
    def path(self) -> Path:
        """The repository's root (what ``--repository`` takes)."""
        return Path(self.model.path).parent

    @property
    def versions(self) -> tuple[str, ...]:
        return tuple(self.model.versions)

    def to_json(self) -> dict[str, Any]:
        """``edgecut repository build ... --json``: model.json."""
        meta: dict[str, Any] = self.model.meta
        return meta


def repository(
    model: str | Planner,
    out: str | Path,
    *,
    sweep_bandwidth: tuple[float, float] = (0.5, 500.0),
    cut_after: Sequence[str] = (),
    cloud_only: bool = False,
    name: str | None = None,
    with_local: bool = True,
    objective: str = "latency",
    solver: str = "auto",
    model_spec: str | None = None,
    progress: ProgressFn | None = None,
    **planner_options: Any,
) -> RepositoryResult:
    """Build a model repository in ``out`` (``edgecut repository build``): the breakpoint
    table over ``sweep_bandwidth`` (Mbit/s), a split per distinct cut, plus the cuts after
    ``cut_after`` nodes and, with ``cloud_only``, the whole model as a tail; ``name``
    defaults to the model's (a factory's name for ``file.py:factory``). ``progress``
    gets ``("steps", done, 3, note)``, the note saying what is being done."""
    from partitioner.model.spec import short_name
    from partitioner.publish import build_repository

    steps = (
        "capture and price the model",
        f"breakpoint table over {sweep_bandwidth[0]:g}:{sweep_bandwidth[1]:g} Mbit/s",
        "write a split artifact per cut, the table and the local model",
    )

    def step(i: int, what: str) -> None:
        if progress is not None:
            progress("steps", i, len(steps), what)

    if isinstance(model, str):
        step(0, steps[0])
    p = _planner(model, planner_options)
    step(1, steps[1])
    table = p.sweep(*sweep_bandwidth, objective=objective, solver=solver)
    plans = [p.cut_after(node, objective=objective) for node in cut_after]
    if cloud_only:
        plans.append(p.cut_after(p.graph.inputs[0], objective=objective))
    step(2, steps[2])
    spec = model_spec if model_spec is not None else model if isinstance(model, str) else None
    entry = build_repository(
        p,
        out,
        table=table,
        plans=plans,
        name=name or (short_name(spec) if spec else None),  # a file's model: its factory
        model_spec=spec,
        default_bandwidth_mbps=p.cost.network.uplink_mbps,
        with_local=with_local,
    )
    step(3, "done")
    return RepositoryResult(entry)


@dataclass(frozen=True)
class CompressResult:
    """A compressed head written as a split artifact, and what it cost (measured)."""

    report: Any  # partitioner.compress.compressor's report

    @property
    def path(self) -> Path:
        return Path(self.report.to_json()["out"])

    def to_json(self) -> dict[str, Any]:
        """``edgecut compress ... --json``."""
        result: dict[str, Any] = self.report.to_json()
        return result


def compress(
    model: str,
    out: str | Path,
    *,
    plan: PlanResult | Plan | dict[str, Any] | str | Path | None = None,
    cut_after: str | None = None,
    method: str | None = None,
    config: str | Path | Any | None = None,
    codec: str | None = None,
    baseline: str | Path | None = None,
    threads: int | None = None,
    input_shape: Sequence[int] | str | None = None,
    progress: ProgressFn | None = None,
) -> CompressResult:
    """Make the edge head of a plan smaller and measure the accuracy it costs (``edgecut
    compress``): exactly one of ``plan`` or ``cut_after`` names the head; ``method`` is
    int8, prune, lowrank, distill, nas (a hardware-aware search of the head, docs/compression.md)
    or mixed (default: the config's, else the one a plan from ``plan(accuracy_budget=...)``
    chose); ``config`` a YAML file or a CompressConfig."""
    import warnings
    from dataclasses import replace

    import torch

    from partitioner.compress import METHODS, CompressConfig, load_config
    from partitioner.compress.compressor import compress as compress_head
    from partitioner.errors import EdgecutError
    from partitioner.planner import Planner

    if (plan is None) == (cut_after is None):
        raise EdgecutError(
            "expected exactly one of --plan plan.json (from `edgecut plan --out`) or "
            f"--cut-after NODE; got {'both' if plan is not None else 'neither'}"
        )
    if config is None:
        config = CompressConfig()
    elif isinstance(config, str | Path):
        config = load_config(config)
    plan_data = plan_json(plan) if plan is not None else {}
    chosen = plan_data.get("compression") or {}  # what `plan --compress` chose, if it did
    method = method or config.method or chosen.get("method")
    if not method:
        raise EdgecutError(
            f"expected --method {'|'.join(METHODS.names())} (or method: in --config, or a plan "
            "from `edgecut plan --compress`); got none"
        )
    METHODS.get(method)
    config = replace(config, method=method, codec=codec or config.codec or chosen.get("codec"))
    if threads:
        torch.set_num_threads(threads)
    p = Planner.create(model, input_shape=_shape(input_shape))
    head_plan = load_plan(plan) if plan is not None else p.cut_after(str(cut_after))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        report = compress_head(
            p.captured,
            head_plan,
            config,
            out,
            model_spec=model,
            model=p.loaded.module,
            baseline=baseline,
            progress=progress,
        )
    return CompressResult(report)


# ------------------------------------------------------------------ simulation


def _scenario(scenario: str | Path | Scenario) -> Scenario:
    from simulator.scenario import load_scenario

    return load_scenario(scenario) if isinstance(scenario, str | Path) else scenario


@dataclass(frozen=True)
class SimulationResult:
    """One simulation per policy (one without ``policy``): ``results[i]`` ran with the
    policy ``labels[i]`` (None: the scenario's own)."""

    labels: tuple[str | None, ...]
    results: tuple[SimResult, ...] = field(repr=False)

    @property
    def summaries(self) -> dict[str | None, dict[str, Any]]:
        return {label: r.to_json() for label, r in zip(self.labels, self.results, strict=True)}

    def to_json(self) -> dict[str, Any]:
        """``edgecut simulate ... --json``: the summary, or ``{"policies": {label: summary}}``
        when several policies ran."""
        summaries = [r.to_json() for r in self.results]
        if len(summaries) == 1:
            return summaries[0]
        return {"policies": dict(zip(self.labels, summaries, strict=True))}

    def write(self, out: str | Path) -> None:
        """``simulate --out DIR``: summary.json, per-camera CSV/Parquet and plots; with
        several policies a directory per policy and a combined latency CDF."""
        out = Path(out)
        if len(self.results) == 1:
            self.results[0].write(out)
            return
        from simulator.plots import plot_latency_cdf

        for label, result in zip(self.labels, self.results, strict=True):
            result.write(out / str(label).replace(":", "_"), plots=True)
        plot_latency_cdf(
            {
                str(label): r.all_samples()
                for label, r in zip(self.labels, self.results, strict=True)
            },
            out / "latency_cdf.png",
            deadline_ms=self.results[0].plan.scenario.deadline_ms,
        )


def policy_variants(
    policies: str | Sequence[str] | None, scenario: Scenario
) -> list[tuple[str | None, Scenario]]:
    """(label, scenario) to run: one per policy (``edge-only``, ``cloud-only``, ``planned``,
    ``adaptive``, ``fixed:NODE``), each applied to every group, or the scenario itself."""
    from dataclasses import replace

    from partitioner.errors import EdgecutError
    from simulator.fields import FieldError
    from simulator.policies import PolicyConfig

    if not policies:
        return [(None, scenario)]
    items = policies.split(",") if isinstance(policies, str) else list(policies)
    out: list[tuple[str | None, Scenario]] = []
    for item in [t.strip() for t in items if t.strip()]:
        name, _, node = item.partition(":")
        base = scenario.policy if scenario.policy.name == name else PolicyConfig(name="edge-only")
        try:
            policy = replace(base, name=name, cut_after=node or None)
        except FieldError as exc:
            raise EdgecutError(f"--policy {item}: {exc}") from None
        fleet = tuple(replace(g, policy=None) for g in scenario.fleet)
        out.append((item, replace(scenario, policy=policy, fleet=fleet)))
    return out


def simulate(
    scenario: str | Path | Scenario,
    *,
    policy: str | Sequence[str] | None = None,
    seed: int | None = None,
    duration_s: float | None = None,
    ray: bool = False,
    address: str | None = None,
    shards: int | None = None,
    out: str | Path | None = None,
    progress: ProgressFn | None = None,
) -> SimulationResult:
    """Play a fleet scenario (a YAML path or a :class:`~simulator.scenario.Scenario`),
    ``edgecut simulate``. In this process by default (results do not depend on where or
    how sharded it ran); ``ray=True`` runs on a local Ray, ``address`` joins a cluster.
    ``policy`` overrides every group's policy; several run one after another. ``progress``
    gets ``(policy, windows done, windows)``."""
    from dataclasses import replace

    from partitioner.errors import EdgecutError
    from simulator.fields import FieldError
    from simulator.fleet import compile_scenario

    base = _scenario(scenario)
    try:
        if seed is not None:
            base = replace(base, seed=seed)
        if duration_s is not None:
            base = replace(base, duration_s=duration_s)
    except FieldError as exc:
        raise EdgecutError(f"--{exc.field_name.replace('_', '-')}: {exc.message}") from None
    labels, variants = zip(*policy_variants(policy, base), strict=True)
    models: dict[Any, Any] = {}
    plans = [compile_scenario(v, models=models) for v in variants]  # all checked before any run
    results = []
    for label, variant, fleet_plan in zip(labels, variants, plans, strict=True):
        name = label or variant.policy.name
        on_window = None if progress is None else (lambda d, t, n=name: progress(n, d, t))
        if ray or address:
            from simulator import ray_transport

            results.append(
                ray_transport.simulate(
                    fleet_plan, shards=shards, address=address, on_window=on_window
                )
            )
        else:
            from simulator.engine import simulate as simulate_here

            results.append(simulate_here(fleet_plan, shards=shards or 1, on_window=on_window))
    result = SimulationResult(tuple(labels), tuple(results))
    if out is not None:
        result.write(out)
    return result


@dataclass(frozen=True)
class SweepResult:
    """Every cut x bandwidth (x fleet size) simulated, the best cut of each condition beside
    the planner's (``edgecut sweep``); ``data`` is the JSON object."""

    data: dict[str, Any]

    @property
    def cells(self) -> list[dict[str, Any]]:
        cells: list[dict[str, Any]] = self.data["cells"]
        return cells

    @property
    def best(self) -> list[dict[str, Any]]:
        best: list[dict[str, Any]] = self.data["best"]
        return best

    def to_json(self) -> dict[str, Any]:
        """``edgecut sweep ... --json``."""
        return self.data

    def write(self, out: str | Path) -> None:
        """``sweep --out DIR``: sweep.json and sweep.png."""
        import json

        from simulator.plots import plot_sweep

        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "sweep.json").write_text(json.dumps(self.data, indent=2) + "\n")
        label = metric_label(self.data["metric"])
        plot_sweep(self.data["cells"], label, out / "sweep.png", self.data["cuts"])


def metric_label(metric: str) -> str:
    """A sweep metric in words, with its unit (an axis or table title)."""
    return "deadline-miss rate" if metric == "miss-rate" else f"{metric} latency (ms)"


def sweep(
    scenario: str | Path | Scenario,
    *,
    bandwidths_mbps: Sequence[float],
    cuts: str | Sequence[str] = "all",
    fleet_sizes: Sequence[int] | None = None,
    metric: str = "mean",
    ray: bool = False,
    address: str | None = None,
    out: str | Path | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> SweepResult:
    """Simulate ``scenario`` for every cut (``"all"``: every layer boundary, or names:
    node names, ``edge-only``, ``cloud-only``) x bandwidth (x fleet size) and pick the best
    cut of each condition by ``metric`` (mean, p50, p95, p99, miss-rate). In this process by
    default; ``ray=True`` or ``address`` spread the cells over Ray. ``progress`` gets
    ``(cells done, cells)``, from ``(0, cells)`` on."""
    from partitioner.errors import EdgecutError
    from simulator.sweep import run_cell
    from simulator.sweep import sweep as sweep_grid

    if isinstance(cuts, str) and cuts.strip() != "all":
        cuts = cuts.split(",")
    if not isinstance(cuts, str):
        cuts = [c.strip() for c in cuts if c.strip()]
        if not cuts:
            raise EdgecutError("--cuts expects all or a comma-separated list of cuts")
    else:
        cuts = "all"

    def run_grid(plans: list[Any]) -> list[Any]:
        if progress is not None:
            progress(0, len(plans))
        if ray or address:
            from simulator import ray_transport

            return ray_transport.map_plans(run_cell, plans, address=address, on_done=progress)
        done = []
        for plan_ in plans:
            done.append(run_cell(plan_))
            if progress is not None:
                progress(len(done), len(plans))
        return done

    result = SweepResult(
        sweep_grid(
            _scenario(scenario),
            cuts=cuts,
            bandwidths_mbps=list(bandwidths_mbps),
            fleet_sizes=list(fleet_sizes) if fleet_sizes else None,
            metric=metric,
            run=run_grid,
        ).to_json()
    )
    if out is not None:
        result.write(out)
    return result


# ------------------------------------------------------------------ nodes


class CloudNode:
    """A cloud node serving every tail of a model repository, in this process.

        with edgecut.CloudNode("repo/", port=0) as cloud:
            print(cloud.address)            # "127.0.0.1:<bound port>"

    Keyword arguments are :class:`cloud_node.server.CloudConfig`'s fields (``max_batch``,
    ``batch_timeout_ms``, ``threads``, ``tokens``, ``tls`` ...), as ``edgecut cloud serve``
    sets them.
    """

    def __init__(
        self, repository: str | Path, *, host: str = "127.0.0.1", port: int = 0, **config: Any
    ) -> None:
        from cloud_node.server import CloudConfig
        from cloud_node.server import CloudNode as Node

        self._node = Node(CloudConfig(repository=Path(repository), host=host, port=port, **config))
        self.port: int | None = None

    @property
    def address(self) -> str:
        """host:port once started."""
        return str(self._node.address)

    def start(self) -> str:
        """Bind, load every tail and serve; returns ``host:port``."""
        self.port = self._node.start()
        return self.address

    def stop(self, grace_s: float = 0.0) -> None:
        """Refuse new calls, let in-flight ones finish for ``grace_s``, stop."""
        self._node.stop(grace_s)

    def __enter__(self) -> CloudNode:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@dataclass(frozen=True)
class EdgeRunResult:
    """An edge run's summary (frames, where they were answered, latency, bytes)."""

    summary: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        """``edgecut edge run ... --json``."""
        return self.summary


class EdgeNode:
    """An edge node in this process: loads the heads of a model repository and streams
    frames to a cloud node (``edgecut edge run``).

        with edgecut.EdgeNode("repo/", cloud.address) as edge:
            result = edge.run(frames=20)

    ``model`` picks the repository's model (default: its only one); keyword arguments are
    :class:`edge_node.node.EdgeConfig`'s fields (``version``, ``adaptive``, ``codec``,
    ``deadline_ms``, ``fallback`` ...). ``emulate_mbps``/``emulate_rtt_ms`` shape the uplink.
    """

    def __init__(
        self,
        repository: str | Path,
        cloud: str,
        *,
        model: str | None = None,
        token: str | None = None,
        tls: Any = None,
        emulate_mbps: float | None = None,
        emulate_rtt_ms: float = 0.0,
        **config: Any,
    ) -> None:
        from edge_node.client import CloudClient
        from edge_node.heads import EdgeModel
        from edge_node.node import EdgeConfig
        from edge_node.throttle import TokenBucket
        from partitioner.deploy.repository import open_model

        self.model = EdgeModel.load(open_model(str(repository), model))
        uplink = (
            TokenBucket(emulate_mbps, delay_ms=emulate_rtt_ms)
            if emulate_mbps or emulate_rtt_ms
            else None
        )
        self.client = CloudClient(cloud, tls=tls, token=token, uplink=uplink)
        self.config = EdgeConfig(**config)

    def run(
        self,
        source: str = "synthetic",
        *,
        frames: int | None = None,
        fps: float = 0.0,
        on_result: Callable[[Any], None] | None = None,
    ) -> EdgeRunResult:
        """Stream ``source`` (``"synthetic"`` or a folder of images) through the node."""
        from edge_node.node import EdgeNode as Node
        from edge_node.sources import open_source

        frames_ = open_source(source, self.model.input_shape, frames=frames, fps=fps)
        node = Node(self.model, self.client, self.config)
        return EdgeRunResult(node.run(frames_, on_result))

    def close(self) -> None:
        self.client.close()

    def __enter__(self) -> EdgeNode:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
