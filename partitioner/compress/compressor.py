"""Compress the head of a plan into a new split artifact, and measure what it cost.

:func:`compress` writes the uncompressed split of the plan (or takes one you
already deployed), runs a method on a copy of its head, and writes a second split
artifact: the new ``head.pt2``, the *same* ``tail.pt2`` file (byte for byte: the
cloud keeps serving what it has) and a manifest that names the feature codec, the
head's runtime, and the report. Both artifacts are then loaded with
:func:`~partitioner.deploy.artifact.load_split`, the path every node uses, and measured
the same way: accuracy on the test split through head, codec and tail; bytes at
the cut; FLOPs; tensor bytes; milliseconds on this host.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from partitioner.codecs import CODECS
from partitioner.compress import measure
from partitioner.compress.config import CompressConfig
from partitioner.compress.data import CompressionData, resolve_data
from partitioner.compress.head import Context, Head, Progress, frozen
from partitioner.compress.modules import modularize
from partitioner.compress.registry import METHODS, method_config
from partitioner.deploy.artifact import (
    MANIFEST,
    SplitArtifact,
    load_split,
    read_manifest,
)
from partitioner.deploy.export import export_half, write_split
from partitioner.deploy.files import sha256_file, write_json_atomic
from partitioner.deploy.split import Halves, split_module
from partitioner.errors import EdgecutError
from partitioner.model.capture import CapturedModel
from partitioner.pricing.profiles import DEVICES, DeviceProfile
from partitioner.solve.plan import Plan


@dataclass(frozen=True)
class CompressionReport:
    """Before and after, measured. Accuracies are percent; bytes and ms are per frame."""

    method: str
    accuracy_before: float
    accuracy_after: float
    head_param_bytes_before: int
    head_param_bytes_after: int
    head_flops_before: int
    head_flops_after: int
    head_ms_before: float
    head_ms_after: float
    cut_bytes_before: float
    cut_bytes_after: float
    codec: str
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "accuracy_before": self.accuracy_before,
            "accuracy_after": self.accuracy_after,
            "head_param_bytes_before": self.head_param_bytes_before,
            "head_param_bytes_after": self.head_param_bytes_after,
            "head_flops_before": self.head_flops_before,
            "head_flops_after": self.head_flops_after,
            "head_ms_before": self.head_ms_before,
            "head_ms_after": self.head_ms_after,
            "cut_bytes_before": self.cut_bytes_before,
            "cut_bytes_after": self.cut_bytes_after,
            "codec": self.codec,
            **self.extra,
        }


def check_plan(captured: CapturedModel, plan: Plan) -> frozenset[str]:
    graph = captured.graph
    if plan.model != graph.model:
        raise EdgecutError(f"the plan is for model {plan.model!r}, not {graph.model!r}")
    missing = [n for n in plan.edge_nodes if n not in graph.index]
    if missing:
        raise EdgecutError(f"the plan names nodes {graph.model} does not have: {missing[:3]}")
    edge = frozenset(plan.edge_nodes)
    if edge <= set(graph.inputs):
        raise EdgecutError(
            "the plan runs nothing on the edge (cloud-only): there is no head to compress; "
            "pick a cut with --cut-after NODE"
        )
    return edge


def make_context(
    captured: CapturedModel,
    halves: Halves,
    data: CompressionData,
    *,
    seed: int,
    progress: Progress | None = None,
    edge: DeviceProfile | None = None,
) -> Context:
    example = captured.example_inputs[0]
    if example.shape[0] < 2:  # export needs two frames to keep the batch symbolic
        example = example.expand(2, *example.shape[1:]).clone()
    return Context(
        teacher=frozen(halves.head),  # type: ignore[arg-type]
        tail=frozen(halves.tail) if halves.tail is not None else None,
        data=data,
        example=example,
        seed=seed,
        progress=progress,
        edge=edge,
    )


def plan_edge(plan: Plan) -> DeviceProfile | None:
    """The plan's edge device preset, if it names one."""
    return DEVICES.get(plan.edge_device) if plan.edge_device in DEVICES else None


def write_artifacts(head: Head, out: Path) -> list[Path]:
    """The files the methods that built ``head`` write from their notes (nas: its Pareto plot)."""
    written: list[Path] = []
    for method in METHODS.list():
        note = head.notes.get(method.name)
        if method.artifacts is not None and isinstance(note, dict):
            written += method.artifacts(note, out)
    return written


def start_head(halves: Halves) -> Head:
    module = modularize(halves.head)
    return Head(module, module)


def run_method(method_name: str, config: CompressConfig, head: Head, ctx: Context) -> Head:
    method = METHODS.get(method_name)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        return method.apply(head, ctx, method_config(config, method_name))


def _check_baseline(baseline: Path, plan: Plan) -> None:
    manifest = read_manifest(baseline)
    if list(manifest["plan"]["edge_nodes"]) != list(plan.edge_nodes):
        raise EdgecutError(
            f"--baseline {baseline}: its plan cuts elsewhere than --plan "
            f"(after {manifest['plan']['edge_nodes'][-1]!r}, not {plan.edge_nodes[-1]!r})"
        )
    if manifest.get("compression"):
        raise EdgecutError(f"--baseline {baseline}: is itself compressed; give the original split")


def write_compressed(
    baseline: Path, out: Path, head: Head, example: torch.Tensor, codec: str, info: dict
) -> None:
    """The baseline artifact with ``head`` in place of its head: same tail file, new manifest."""
    manifest = read_manifest(baseline)
    out.mkdir(parents=True, exist_ok=True)
    if out.resolve() == baseline.resolve():
        raise EdgecutError(f"--out {out} is the baseline artifact itself; choose another directory")
    dynamic = bool(manifest.get("dynamic_batch"))
    export_half(head.module, (example if dynamic else example[:1],), dynamic, out / "head.pt2")
    files = dict(manifest["files"])
    files["head.pt2"] = {
        "sha256": sha256_file(out / "head.pt2"),
        "bytes": (out / "head.pt2").stat().st_size,
    }
    if "tail.pt2" in files:
        shutil.copyfile(baseline / "tail.pt2", out / "tail.pt2")
    elif (out / "tail.pt2").exists():
        (out / "tail.pt2").unlink()
    manifest["files"] = files
    manifest["codec"] = codec
    runtime = dict(manifest.get("runtime") or {})
    runtime.pop("head.pt2", None)
    if head.runtime:
        runtime["head.pt2"] = head.runtime
    manifest["runtime"] = runtime
    manifest["compression"] = info
    write_json_atomic(out / MANIFEST, manifest)


def compress(
    captured: CapturedModel,
    plan: Plan,
    config: CompressConfig,
    out_dir: str | Path,
    *,
    model_spec: str | None = None,
    model: nn.Module | None = None,
    data: CompressionData | None = None,
    baseline: str | Path | None = None,
    progress: Progress | None = None,
    build: Callable[[Head, Context], Head] | None = None,
) -> CompressionReport:
    """Compress the head of ``plan`` with ``config.method`` into ``out_dir``; measure both.

    ``build(head, context)`` replaces running ``config.method`` on the uncompressed head
    (a benchmark reuses one search's head for ``nas`` and for ``nas`` then ``int8``).
    """
    started = time.perf_counter()
    if config.method is None:
        raise EdgecutError("no compression method: pass --method or set method: in --config")
    method = METHODS.get(config.method)
    edge = check_plan(captured, plan)
    codec = CODECS.get(config.codec or plan.codec)
    out = Path(out_dir)
    halves = split_module(captured, edge)
    if data is None:
        data = resolve_data(
            config.data,
            model_name=captured.graph.model,
            input_shape=captured.input_shape,
            model=model if model is not None else captured.module,
            seed=config.seed,
            train_samples=config.train_samples,
            eval_samples=config.eval_samples,
        )
    with tempfile.TemporaryDirectory(prefix="edgecut-baseline-") as scratch:
        if baseline is not None:
            base_dir = Path(baseline)
            _check_baseline(base_dir, plan)
        else:
            base_dir = write_split(
                captured, plan, Path(scratch) / "split", model_spec=model_spec, halves=halves
            )
        ctx = make_context(
            captured, halves, data, seed=config.seed, progress=progress, edge=plan_edge(plan)
        )
        if build is not None:
            head = build(start_head(halves), ctx)
        else:
            head = run_method(method.name, config, start_head(halves), ctx)
        info = {"method": method.name, "codec": codec.name, "notes": head.notes}
        write_compressed(base_dir, out, head, ctx.example, codec.name, info)
        written = write_artifacts(head, out)
        before = load_split(base_dir)
        before_tensor_bytes = measure.shipped_tensor_bytes(base_dir / "head.pt2")
        tail_sha = before.manifest["files"].get("tail.pt2", {}).get("sha256")
    after = load_split(out)
    x_test, y_test = data.x_test, data.y_test
    x1 = x_test[:1]
    if progress:
        progress("measure", 0, 1)
    ms_before, ms_after = measure.head_ms(
        [before.run_head, after.run_head], x1, repeats=config.timing_repeats
    )
    wire_after, payload_after = measure.cut_bytes(after.run_head, x_test, codec)
    report = CompressionReport(
        method=method.name,
        accuracy_before=measure.accuracy(before.run_head, _tail(before), x_test, y_test),
        accuracy_after=measure.accuracy(after.run_head, _tail(after), x_test, y_test, codec),
        head_param_bytes_before=before_tensor_bytes,
        head_param_bytes_after=measure.shipped_tensor_bytes(out / "head.pt2"),
        head_flops_before=measure.head_flops(halves.head, x1),
        head_flops_after=measure.head_flops(head.structure, x1),
        head_ms_before=ms_before,
        head_ms_after=ms_after,
        cut_bytes_before=measure.cut_bytes(before.run_head, x_test, "none")[0],
        cut_bytes_after=wire_after,
        codec=codec.name,
        extra={
            "cut_payload_bytes_after": payload_after,
            "head_file_bytes_before": before.manifest["files"]["head.pt2"]["bytes"],
            "head_file_bytes_after": after.manifest["files"]["head.pt2"]["bytes"],
            "cut": [t["name"] for t in after.manifest["crossing"]],
            "runtime": after.runtime.get("head.pt2", "pytorch"),
            "tail_sha256": tail_sha,
            "tail_unchanged": tail_sha == after.manifest["files"].get("tail.pt2", {}).get("sha256"),
            "data": data.describe(),
            "notes": head.notes,
            "threads": torch.get_num_threads(),
            "seconds": 0.0,
            "out": str(out),
            "files": [str(p) for p in written],
        },
    )
    if progress:
        progress("measure", 1, 1)
    report.extra["seconds"] = round(time.perf_counter() - started, 2)
    manifest = read_manifest(out)
    manifest["compression"] = {**manifest["compression"], "report": report.to_json()}
    write_json_atomic(out / MANIFEST, manifest)
    return report


def _tail(artifact: SplitArtifact) -> measure.TailFn:
    return artifact.run_tail if artifact.tail is not None else None
