"""The planner: one object from a model spec to plans, tables and split artifacts.

:class:`Planner` resolves a ``--model`` spec, captures it, prices it on an edge
device, a network and a cloud device, and answers the questions the CLI asks:
the best cut (:meth:`plan`), a named cut (:meth:`cut_after`), the best cut for
every bandwidth (:meth:`sweep`), and the artifacts of a plan (:meth:`split`).

    planner = Planner.create("resnet18", edge="rpi4", cloud="x86-server", network="lte")
    plan = planner.plan(objective="latency")
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch

from partitioner.codecs import CODECS, Codec
from partitioner.deploy.artifact import load_split
from partitioner.deploy.export import write_split
from partitioner.model.capture import CapturedModel, capture
from partitioner.model.spec import LoadedModel, load_model
from partitioner.pricing.cost import CostModel
from partitioner.pricing.host import MIN_RUN_S, Timing, host_profile, time_forward
from partitioner.pricing.network import NetworkProfile, resolve_network
from partitioner.pricing.profiles import DEVICES, DeviceProfile
from partitioner.solve.breakpoints import BreakpointTable, build_table
from partitioner.solve.plan import Plan, evaluate_cut, make_plan


def resolve_device(
    device: str | DeviceProfile,
    captured: CapturedModel,
    *,
    repeats: int = 10,
    threads: int | None = None,
) -> DeviceProfile:
    """A device preset (by name or already looked up); ``host`` is measured here on this model,
    with ``threads`` torch threads (None: :data:`~partitioner.pricing.host.HOST_THREADS`)."""
    profile = DEVICES.get(device) if isinstance(device, str) else device
    if profile.name == "host" and profile.measured_ms is None:
        return host_profile(captured, repeats=repeats, threads=threads)
    return profile


@dataclass
class Planner:
    loaded: LoadedModel
    captured: CapturedModel
    cost: CostModel

    @classmethod
    def create(
        cls,
        model: str,
        *,
        edge: str = "rpi4",
        cloud: str = "x86-server",
        network: str | NetworkProfile = "lte",
        bandwidth_mbps: float | None = None,
        rtt_ms: float | None = None,
        codec: str = "none",
        input_shape: tuple[int, ...] | None = None,
        edge_dtype: str | None = None,
        cloud_dtype: str | None = None,
        threads: int | None = None,
    ) -> Planner:
        """Capture ``model`` and price it: the one place a planner's arguments are checked.

        Devices, dtypes, network (a preset, a packaged trace or a trace file), its
        overrides and the codec are all checked before the model is loaded and
        captured, so a typo costs nothing; each bad one raises its one-line
        :class:`~partitioner.errors.EdgecutError`.
        """
        edge_profile, cloud_profile = DEVICES.get(edge), DEVICES.get(cloud)
        edge_dtype = edge_profile.dtype(edge_dtype)
        cloud_dtype = cloud_profile.dtype(cloud_dtype)
        net = resolve_network(network) if isinstance(network, str) else network
        if bandwidth_mbps is not None:
            net = net.with_bandwidth(bandwidth_mbps)
        if rtt_ms is not None:
            net = net.with_rtt(rtt_ms)
        feature_codec = CODECS.get(codec)
        loaded = load_model(model, input_shape)
        captured = capture(loaded.module, loaded.example_input(), name=loaded.name)
        return cls.for_captured(
            loaded,
            captured,
            edge=edge_profile,
            cloud=cloud_profile,
            network=net,
            codec=feature_codec,
            edge_dtype=edge_dtype,
            cloud_dtype=cloud_dtype,
            threads=threads,
        )

    @classmethod
    def for_captured(
        cls,
        loaded: LoadedModel,
        captured: CapturedModel,
        *,
        edge: str | DeviceProfile,
        cloud: str | DeviceProfile,
        network: NetworkProfile,
        codec: str | Codec = "none",
        edge_dtype: str | None = None,
        cloud_dtype: str | None = None,
        threads: int | None = None,
    ) -> Planner:
        """A planner for a model already captured (the simulator captures each model once);
        ``threads``: torch threads if a device is measured here (``host``)."""
        cost = CostModel(
            captured.graph,
            resolve_device(edge, captured, threads=threads),
            resolve_device(cloud, captured, threads=threads),
            network,
            codec,
            edge_dtype=edge_dtype,
            cloud_dtype=cloud_dtype,
        )
        return cls(loaded, captured, cost)

    @property
    def graph(self):
        return self.captured.graph

    def plan(
        self,
        *,
        objective: str = "latency",
        solver: str = "auto",
        bandwidth_mbps: float | None = None,
    ) -> Plan:
        return make_plan(
            self.cost,
            objective=objective,
            solver=solver,
            bandwidth_mbps=bandwidth_mbps,
            input_shape=self.loaded.input_shape,
        )

    def cut_after(
        self, node: str, *, objective: str = "latency", bandwidth_mbps: float | None = None
    ) -> Plan:
        return evaluate_cut(
            self.cost,
            node,
            objective=objective,
            bandwidth_mbps=bandwidth_mbps,
            input_shape=self.loaded.input_shape,
        )

    def sweep(
        self, min_mbps: float, max_mbps: float, *, objective: str = "latency", solver: str = "auto"
    ) -> BreakpointTable:
        return build_table(self.cost, min_mbps, max_mbps, objective=objective, solver=solver)

    def split(self, plan: Plan, out_dir: str | Path, *, model_spec: str | None = None) -> Path:
        return write_split(self.captured, plan, out_dir, model_spec=model_spec or self.loaded.name)

    def measure_halves(
        self, plan: Plan, *, threads: int | None = None, min_run_time_s: float = MIN_RUN_S
    ) -> tuple[Timing, Timing | None]:
        """The plan's head and tail (None if edge-only) timed here as whole segments: exported,
        loaded back as a node loads them and run at batch 1 with ``threads`` torch threads.
        What a cut's halves take when they run, against which a prediction is corrected
        (:class:`~partitioner.pricing.profiles.SegmentCorrection`)."""
        with tempfile.TemporaryDirectory() as tmp:
            artifact = load_split(self.split(plan, tmp))
        # The captured example of a dynamic-batch model holds two frames: time one frame.
        x = self.captured.example_inputs[0][: self.captured.input_shape[0]]
        head = time_forward(
            lambda: artifact.run_head(x), threads=threads, min_run_time_s=min_run_time_s
        )
        if artifact.tail is None:
            return head, None
        mid = artifact.run_head(x)
        tail = time_forward(
            lambda: artifact.run_tail(*mid), threads=threads, min_run_time_s=min_run_time_s
        )
        return head, tail

    def reference_output(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        with torch.inference_mode():
            out = self.loaded.module(x)
        return tuple(out) if isinstance(out, (tuple, list)) else (out,)
